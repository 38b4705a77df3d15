/**
 * The admin API and CLI with IPv6 pinholes (issue 15 items 2 and 7): POST /api/v1/leases with an IPv6
 * internal address creates a static pinhole; listings filter by family and by an IPv6 owner in any
 * spelling; the SSE stream carries the family; `portd leases` brackets IPv6 endpoints.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, describe, it } from 'node:test';
import type { Lease } from '../../src/leases/types.js';
import { formatLeases, runAdminCommand } from '../../src/admin/cli-commands.js';
import { TOKEN, makeAdmin } from './admin-helpers.js';

const fixtures: { dispose(): Promise<void> }[] = [];
after(async () => {
  for (const f of fixtures) await f.dispose();
});
async function admin(o: Parameters<typeof makeAdmin>[0] = {}) {
  const f = await makeAdmin(o);
  fixtures.push(f);
  return f;
}
const bearer = { authorization: `Bearer ${TOKEN}` };
const pinhole = { protocol: 'tcp', externalPort: 443, internalAddress: '2001:DB8:77::10', description: 'web6' };

describe('admin API: static IPv6 pinholes', () => {
  it('POST with an IPv6 internal address: 201, a family-6 lease (canonical, no translation), a dataplane entry', async () => {
    const f = await admin();
    const r = await f.app.inject({ method: 'POST', url: '/api/v1/leases', headers: bearer, payload: pinhole });
    assert.equal(r.statusCode, 201, r.body);
    const { lease } = r.json() as { lease: Lease };
    assert.equal(lease.family, 6);
    assert.equal(lease.source, 'static');
    assert.equal(lease.internalAddress, '2001:db8:77::10');
    assert.equal(lease.externalAddress, '2001:db8:77::10');
    assert.deepEqual([lease.externalPort, lease.internalPort], [443, 443]);
    const e = [...f.dataplane.entries.values()];
    assert.deepEqual(
      e.map((x) => [x.family, x.internalAddress, x.internalPort]),
      [[6, '2001:db8:77::10', 443]],
    );
    // the same again renews it (200); an IPv4 forward on port 443... is reserved, so 8443 beside it coexists
    const again = await f.app.inject({ method: 'POST', url: '/api/v1/leases', headers: bearer, payload: pinhole });
    assert.equal(again.statusCode, 200, again.body);
    const v4 = await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: bearer,
      payload: {
        protocol: 'tcp',
        externalPort: 8443,
        internalAddress: '192.168.77.5',
        internalPort: 443,
        description: '',
      },
    });
    assert.equal(v4.statusCode, 201, v4.body);
    assert.equal(f.dataplane.entries.size, 2);
    assert.ok(
      f.lines.some((l) => l['msg'] === 'admin: static forward added' && l['internal'] === '[2001:db8:77::10]:443'),
    );
  });

  const bad: [string, Record<string, unknown>, string, number, RegExp][] = [
    ['another internal port', { ...pinhole, internalPort: 8443 }, 'internalPort', 400, /no translation/],
    ['an IPv4 remote', { ...pinhole, remoteAddress: '203.0.113.7' }, 'remoteAddress', 400, /IPv6/],
    ['a link-local target', { ...pinhole, internalAddress: 'fe80::10' }, '', 400, /link-local/],
    ['a multicast target', { ...pinhole, internalAddress: 'ff02::1' }, '', 400, /multicast/],
    ['not an address', { ...pinhole, internalAddress: '2001:db8::zz' }, 'internalAddress', 400, /internalAddress/],
  ];
  for (const [name, payload, field, status, msg] of bad) {
    it(`refuses ${name}, saying why; nothing is added`, async () => {
      const f = await admin();
      const r = await f.app.inject({ method: 'POST', url: '/api/v1/leases', headers: bearer, payload });
      assert.equal(r.statusCode, status, r.body);
      const body = r.json() as { field?: string; message: string };
      if (field) assert.equal(body.field, field);
      assert.match(body.message, msg);
      assert.equal(f.dataplane.entries.size, 0);
    });
  }

  it('GET /api/v1/leases?family=6 and ?owner=<any spelling of an IPv6 owner>', async () => {
    const f = await admin();
    await f.app.inject({ method: 'POST', url: '/api/v1/leases', headers: bearer, payload: pinhole });
    await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: bearer,
      payload: { protocol: 'tcp', externalPort: 8080, internalAddress: '192.168.77.5', description: '' },
    });
    const q = async (qs: string) =>
      (await f.app.inject({ url: `/api/v1/leases${qs}` })).json() as { leases: Lease[]; total: number };
    const six = await q('?family=6');
    assert.deepEqual(
      six.leases.map((l) => [l.family, l.internalAddress]),
      [[6, '2001:db8:77::10']],
    );
    assert.equal(six.total, 1);
    assert.deepEqual(
      (await q('?family=4')).leases.map((l) => l.internalAddress),
      ['192.168.77.5'],
    );
    assert.equal((await q('')).total, 2);
    assert.equal((await q('?owner=2001:db8:77:0:0:0:0:10')).total, 1);
    const r = await f.app.inject({ url: '/api/v1/leases?family=5' });
    assert.equal(r.statusCode, 400);
    assert.equal((r.json() as { field: string }).field, 'family');
  });

  it('the OpenAPI document names the family field and filter', async () => {
    const f = await admin();
    const doc = (await f.app.inject({ url: '/api/v1/openapi.json' })).json() as {
      paths: Record<string, Record<string, { parameters: { name: string }[] }>>;
      components?: unknown;
    };
    assert.ok(doc.paths['/api/v1/leases']!['get']!.parameters.some((p) => p.name === 'family'));
    assert.match(JSON.stringify(doc), /IPv6 pinhole/);
  });

  it('the event stream carries the family and filters by it', async () => {
    const f = await admin();
    const { port } = await f.server.listen();
    let text = '';
    let destroy = () => {};
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/api/v1/events?family=6' }, (res) => {
        assert.equal(res.statusCode, 200);
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        resolve();
      });
      req.on('error', reject);
      destroy = () => req.destroy();
    });
    const until = async (re: RegExp) => {
      for (let i = 0; i < 500 && !re.test(text); i++) await new Promise((r) => setTimeout(r, 10));
    };
    await until(/portd events/);
    // an IPv4 forward first: filtered out; then a pinhole
    await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: { ...bearer, host: `127.0.0.1:${port}` },
      payload: { protocol: 'tcp', externalPort: 8080, internalAddress: '192.168.77.5', description: '' },
    });
    const pr = await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: { ...bearer, host: `127.0.0.1:${port}` },
      payload: pinhole,
    });
    assert.equal(pr.statusCode, 201, pr.body);
    await until(/event: granted\ndata: .*\n\n/);
    destroy();
    const data = [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as { lease: Lease });
    assert.deepEqual(
      data.map((d) => [d.lease.family, d.lease.internalAddress]),
      [[6, '2001:db8:77::10']],
    );
  });
});

describe('CLI: IPv6 endpoints in brackets', () => {
  it('portd leases shows a pinhole as [address]:port on both sides', () => {
    const base = {
      id: '000000000001',
      source: 'static',
      protocol: 'tcp',
      remoteAddress: null,
      remotePrefix: null,
      remotePort: null,
      description: 'web6',
      nonce: null,
      createdAt: 0,
      updatedAt: 0,
      expiresAt: null,
      requestedLifetime: null,
      readOnly: false,
      rule: null,
      state: 'active',
      endedAt: null,
      endReason: null,
      renewCount: 0,
      lastRenewedAt: null,
    } as const;
    const out = formatLeases(
      [
        {
          ...base,
          family: 6,
          externalAddress: '2001:db8:77::10',
          externalPort: 6000,
          externalPortEnd: 6010,
          internalAddress: '2001:db8:77::10',
          internalPort: 6000,
          owner: '2001:db8:77::10',
        },
        {
          ...base,
          id: '000000000002',
          family: 4,
          externalAddress: '203.0.113.1',
          externalPort: 8080,
          externalPortEnd: 8080,
          internalAddress: '192.168.77.5',
          internalPort: 80,
          owner: '192.168.77.5',
        },
      ],
      0,
    );
    assert.match(out, /\[2001:db8:77::10\]:6000-6010 +\[2001:db8:77::10\]:6000-6010 /);
    assert.match(out, /203\.0\.113\.1:8080 +192\.168\.77\.5:80 /);
  });

  it('portd forward add tcp 443 [2001:db8:77::10] posts a pinhole; --family reaches the listing', async () => {
    const calls: { url: string; body: unknown }[] = [];
    const lease = {
      family: 6,
      id: 'x',
      protocol: 'tcp',
      externalAddress: '2001:db8:77::10',
      externalPort: 443,
      externalPortEnd: 443,
      internalAddress: '2001:db8:77::10',
      internalPort: 443,
      expiresAt: null,
    };
    const fakeFetch = (async (url: string, init: { body?: string }) => {
      calls.push({ url, body: init.body ? JSON.parse(init.body) : undefined });
      const json = url.includes('?') ? { leases: [], total: 0 } : { lease, created: true };
      return new Response(JSON.stringify(json), { status: 200 });
    }) as unknown as typeof fetch;
    let out = '';
    const io = {
      baseUrl: 'http://127.0.0.1:1',
      token: TOKEN,
      out: { write: (s: string) => (out += s) },
      err: { write: (s: string) => (out += s) },
      fetch: fakeFetch,
    } as unknown as Parameters<typeof runAdminCommand>[1];
    assert.equal(await runAdminCommand(['forward', 'add', 'tcp', '443', '[2001:db8:77::10]'], io), 0);
    assert.deepEqual(calls[0]!.body, {
      protocol: 'tcp',
      externalPort: 443,
      internalAddress: '2001:db8:77::10',
      description: '',
    });
    assert.match(out, /added x: tcp \[2001:db8:77::10\]:443 -> \[2001:db8:77::10\]:443/);
    assert.equal(await runAdminCommand(['forward', 'add', 'tcp', '443', '[2001:db8:77::10]:80'], io), 2);
    assert.match(out, /no translation/);
    assert.equal(await runAdminCommand(['leases', '--family', '6'], io), 0);
    assert.match(calls.at(-1)!.url, /[?&]family=6/);
  });
});
