import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Type } from '@sinclair/typebox';
import type { Lease } from '../../src/leases/types.js';
import { TOKEN, makeAdmin, pcpReq, staticForward } from './admin-helpers.js';

const fixtures: { dispose(): Promise<void> }[] = [];
after(async () => {
  for (const f of fixtures) await f.dispose();
});
async function admin(o: Parameters<typeof makeAdmin>[0] = {}) {
  const f = await makeAdmin(o);
  fixtures.push(f);
  return f;
}
/** changes need the token on loopback too */
const bearer = { authorization: `Bearer ${TOKEN}` };

const forward = {
  protocol: 'tcp',
  externalPort: 8080,
  internalAddress: '192.168.77.5',
  internalPort: 80,
  description: 'web',
};

describe('admin API: static forwards (POST /api/v1/leases)', () => {
  it('adds a forward: 201, a row, a dataplane entry, history naming the admin', async () => {
    const f = await admin();
    const r = await f.app.inject({ method: 'POST', url: '/api/v1/leases', headers: bearer, payload: forward });
    assert.equal(r.statusCode, 201);
    const { lease, created } = r.json() as { lease: Lease; created: boolean };
    assert.equal(created, true);
    assert.equal(lease.source, 'static');
    assert.equal(lease.owner, '192.168.77.5');
    assert.equal(lease.expiresAt, null);
    assert.equal(lease.description, 'web');
    const entries = [...f.dataplane.entries.values()];
    assert.equal(entries.length, 1);
    assert.deepEqual(
      {
        p: entries[0]!.protocol,
        e: entries[0]!.externalPort,
        a: entries[0]!.internalAddress,
        i: entries[0]!.internalPort,
        t: entries[0]!.timeoutSeconds,
      },
      { p: 'tcp', e: 8080, a: '192.168.77.5', i: 80, t: null },
    );
    const h = f.table.history(lease.id);
    assert.equal(h[0]!.type, 'granted');
    assert.equal(h[0]!.actor, 'admin:ops');
  });

  it('a range with a lifetime and a remote host maps 1:1 and expires', async () => {
    const f = await admin();
    const r = await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: bearer,
      payload: {
        protocol: 'udp',
        externalPort: 6000,
        externalPortEnd: 6010,
        internalAddress: '192.168.77.6',
        remoteAddress: '203.0.113.9',
        lifetime: 600,
        description: 'game',
      },
    });
    assert.equal(r.statusCode, 201);
    const { lease } = r.json() as { lease: Lease };
    assert.equal(lease.externalPortEnd, 6010);
    assert.equal(lease.internalPort, 6000);
    assert.equal(lease.remoteAddress, '203.0.113.9');
    assert.equal(lease.expiresAt, lease.createdAt + 600_000);
    const e = [...f.dataplane.entries.values()][0]!;
    assert.equal(e.externalPortEnd, 6010);
    assert.equal(e.remoteAddress, '203.0.113.9');
  });

  it('the same forward again is a renewal (200, created false); another host gets 409 naming the holder', async () => {
    const f = await admin();
    const a = await f.app.inject({ method: 'POST', url: '/api/v1/leases', headers: bearer, payload: forward });
    const b = await f.app.inject({ method: 'POST', url: '/api/v1/leases', headers: bearer, payload: forward });
    assert.equal(b.statusCode, 200);
    assert.equal((b.json() as { created: boolean }).created, false);
    const c = await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: bearer,
      payload: { ...forward, internalAddress: '192.168.77.7' },
    });
    assert.equal(c.statusCode, 409);
    const body = c.json() as { code: string; message: string; holder: { id: string; source: string; owner: string } };
    assert.equal(body.code, 'PORTD_LEASE_CONFLICT');
    assert.equal(body.holder.id, (a.json() as { lease: Lease }).lease.id);
    assert.equal(body.holder.source, 'static');
    assert.equal(body.holder.owner, '192.168.77.5');
    assert.match(body.message, /static lease of 192\.168\.77\.5/);
  });

  it('a port held by a PCP lease: the forward replaces it (201; the PCP lease ends as replaced)', async () => {
    const f = await admin();
    const g = await f.table.request(pcpReq({ protocol: 'tcp', externalPort: 9000, internalPort: 9000 }));
    assert.ok(g.ok);
    const r = await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: bearer,
      payload: { ...forward, externalPort: 9000 },
    });
    assert.equal(r.statusCode, 201);
    assert.equal(f.table.get(g.lease.id)!.endReason, 'replaced');
  });

  const bad: [string, Record<string, unknown>, string][] = [
    ['port out of range', { ...forward, externalPort: 70000 }, 'externalPort'],
    ['missing internal address', { protocol: 'tcp', externalPort: 1 }, 'internalAddress'],
    ['bad protocol', { ...forward, protocol: 'sctp' }, 'protocol'],
    ['not an IPv4 address', { ...forward, internalAddress: 'nas.local' }, 'internalAddress'],
    ['unknown field', { ...forward, color: 'red' }, 'color'],
    ['lifetime not a number', { ...forward, lifetime: 'soon' }, 'lifetime'],
    ['range end before start', { ...forward, externalPortEnd: 8000 }, 'externalPortEnd'],
    ['range runs past 65535 internally', { ...forward, externalPortEnd: 8090, internalPort: 65530 }, 'internalPort'],
  ];
  for (const [name, payload, field] of bad) {
    it(`400 names the field: ${name}`, async () => {
      const f = await admin();
      const r = await f.app.inject({ method: 'POST', url: '/api/v1/leases', headers: bearer, payload });
      assert.equal(r.statusCode, 400);
      const body = r.json() as { code: string; field: string; message: string };
      assert.equal(body.code, 'PORTD_ADMIN_BAD_REQUEST');
      assert.equal(body.field, field);
      assert.ok(body.message.includes(field), body.message);
      assert.equal(f.dataplane.entries.size, 0);
      assert.ok(
        f.lines.some(
          (l) => String(l['msg']).includes('bad request') && (l['field'] === field || String(l['msg']).includes(field)),
        ),
      );
    });
  }

  it('400 on a body that is not JSON', async () => {
    const f = await admin();
    const r = await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: { ...bearer, 'content-type': 'application/json' },
      payload: '{"protocol":',
    });
    assert.equal(r.statusCode, 400);
    assert.equal((r.json() as { code: string }).code, 'PORTD_ADMIN_BAD_REQUEST');
  });
});

describe('admin API: listing and inspecting leases', () => {
  async function seeded() {
    const f = await admin({ staticForwards: [staticForward()] });
    const a = await f.table.request(pcpReq({ description: 'torrent' }));
    const b = await f.table.request(
      pcpReq({
        owner: '192.168.77.12',
        internalAddress: '192.168.77.12',
        internalPort: 4100,
        externalPort: 4100,
        protocol: 'tcp',
        description: 'camera feed',
      }),
    );
    const c = await f.table.request({
      source: 'upnp',
      identity: 'external',
      protocol: 'tcp',
      owner: '192.168.77.13',
      internalAddress: '192.168.77.13',
      internalPort: 5000,
      externalPort: 5000,
      allowOtherPort: false,
      lifetime: 3600,
      description: 'console',
    });
    assert.ok(a.ok && b.ok && c.ok);
    return { f, a: a.lease, b: b.lease, c: c.lease };
  }

  it('lists active leases with total, and filters by source, owner, protocol, ports and text', async () => {
    const { f, a, b, c } = await seeded();
    const q = async (qs: string) => {
      const r = await f.app.inject({ url: `/api/v1/leases${qs}` });
      assert.equal(r.statusCode, 200, r.body);
      return r.json() as { leases: Lease[]; total: number; limit: number; offset: number };
    };
    const all = await q('');
    assert.equal(all.total, 4);
    assert.equal(all.limit, 100);
    assert.deepEqual((await q('?source=pcp')).leases.map((l) => l.id).sort(), [a.id, b.id].sort());
    assert.deepEqual(
      (await q('?owner=192.168.77.12')).leases.map((l) => l.id),
      [b.id],
    );
    assert.deepEqual(
      (await q('?protocol=udp')).leases.map((l) => l.id),
      [a.id],
    );
    assert.deepEqual(
      (await q('?externalPort=5000')).leases.map((l) => l.id),
      [c.id],
    );
    assert.deepEqual(
      (await q('?internalPort=443')).leases.map((l) => l.source),
      ['static'],
    );
    assert.deepEqual(
      (await q('?q=camera')).leases.map((l) => l.id),
      [b.id],
    );
    const page = await q('?sort=externalPort&order=desc&limit=2&offset=1');
    assert.equal(page.total, 4);
    assert.deepEqual(
      page.leases.map((l) => l.externalPort),
      [5000, 4100],
    );
  });

  it('state=ended and state=all include revoked leases', async () => {
    const { f, a } = await seeded();
    assert.ok((await f.table.revoke(a.id, 'admin:test')).ok);
    const ended = (await f.app.inject({ url: '/api/v1/leases?state=ended' })).json() as { leases: Lease[] };
    assert.deepEqual(
      ended.leases.map((l) => [l.id, l.endReason]),
      [[a.id, 'revoked']],
    );
    const all = (await f.app.inject({ url: '/api/v1/leases?state=all' })).json() as { total: number };
    assert.equal(all.total, 4);
  });

  it('400 on bad query values, naming the parameter', async () => {
    const f = await admin();
    for (const [qs, field] of [
      ['?state=gone', 'state'],
      ['?limit=0', 'limit'],
      ['?externalPort=x', 'externalPort'],
      ['?sort=color', 'sort'],
      ['?owner=abc', 'owner'],
      ['?bogus=1', 'bogus'],
    ] as const) {
      const r = await f.app.inject({ url: `/api/v1/leases${qs}` });
      assert.equal(r.statusCode, 400, qs);
      assert.equal((r.json() as { field: string }).field, field, qs);
    }
  });

  it('GET /api/v1/leases/:id returns the lease and its history; 404 for unknown ids', async () => {
    const { f, a } = await seeded();
    await f.table.request(pcpReq({ description: 'torrent' })); // renewal
    const r = await f.app.inject({ url: `/api/v1/leases/${a.id}` });
    assert.equal(r.statusCode, 200);
    const body = r.json() as { lease: Lease; history: { type: string; actor: string | null }[] };
    assert.equal(body.lease.id, a.id);
    assert.deepEqual(
      body.history.map((h) => h.type),
      ['granted', 'renewed'],
    );
    assert.equal(body.history[0]!.actor, 'pcp:192.168.77.11');
    const nf = await f.app.inject({ url: '/api/v1/leases/nope' });
    assert.equal(nf.statusCode, 404);
    assert.equal((nf.json() as { code: string }).code, 'PORTD_LEASE_NOT_FOUND');
  });
});

describe('admin API: revoke (DELETE /api/v1/leases/:id)', () => {
  it('revokes: the dataplane entry goes, the history records who and why, the holder cannot renew it by nonce-less takeover', async () => {
    const f = await admin();
    const g = await f.table.request(pcpReq());
    assert.ok(g.ok);
    assert.equal(f.dataplane.entries.size, 1);
    const r = await f.app.inject({
      method: 'DELETE',
      url: `/api/v1/leases/${g.lease.id}?reason=abuse`,
      headers: bearer,
    });
    assert.equal(r.statusCode, 200, r.body);
    const body = r.json() as { lease: Lease; history: { type: string; actor: string | null; reason: string | null }[] };
    assert.equal(body.lease.state, 'ended');
    assert.equal(body.lease.endReason, 'revoked');
    assert.equal(f.dataplane.entries.size, 0);
    const last = body.history.at(-1)!;
    assert.equal(last.type, 'revoked');
    assert.equal(last.actor, 'admin:ops');
    assert.equal(last.reason, 'abuse');
    assert.ok(
      f.lines.some((l) => l['msg'] === 'admin: lease revoked' && l['id'] === g.lease.id && l['actor'] === 'admin:ops'),
    );
    // a second revoke: already ended
    const again = await f.app.inject({ method: 'DELETE', url: `/api/v1/leases/${g.lease.id}`, headers: bearer });
    assert.equal(again.statusCode, 409);
    assert.equal((again.json() as { code: string }).code, 'PORTD_LEASE_ENDED');
  });

  it('404 for an unknown lease, 403 LEASE_READ_ONLY for a config forward (which stays)', async () => {
    const f = await admin({ staticForwards: [staticForward()] });
    const nf = await f.app.inject({ method: 'DELETE', url: '/api/v1/leases/does-not-exist', headers: bearer });
    assert.equal(nf.statusCode, 404);
    const [ro] = f.table.list({ source: 'static' }).leases;
    assert.ok(ro?.readOnly);
    const r = await f.app.inject({ method: 'DELETE', url: `/api/v1/leases/${ro.id}`, headers: bearer });
    assert.equal(r.statusCode, 403);
    const body = r.json() as { code: string; message: string };
    assert.equal(body.code, 'PORTD_LEASE_READ_ONLY');
    assert.match(body.message, /configuration/);
    assert.equal(f.table.get(ro.id)?.state, 'active');
    assert.equal(f.dataplane.entries.size, 1);
  });
});

describe('admin API: status, probes, metrics, OpenAPI, dashboard', () => {
  it('status reports version, uptime, external address, counts per source, quota use, dataplane, front-ends', async () => {
    const f = await admin();
    await f.table.request(pcpReq());
    await f.table.request(pcpReq({ internalPort: 4001, externalPort: 4001 }));
    const r = await f.app.inject({ url: '/api/v1/status' });
    assert.equal(r.statusCode, 200);
    // biome-ignore lint/suspicious/noExplicitAny: the response's JSON, checked field by field below
    const s = r.json() as Record<string, any>;
    assert.equal(s['version'], '0.1.0-test');
    assert.ok(s['uptimeSeconds'] >= 5);
    assert.equal(s['externalAddress'], '203.0.113.1');
    assert.equal(s['pcpEpoch'], 42);
    assert.deepEqual(s['leases'], { total: 2, bySource: { upnp: 0, pcp: 2, natpmp: 0, trigger: 0, static: 0 } });
    assert.deepEqual(s['quota'], { maxLeasesPerClient: 128, clients: [{ owner: '192.168.77.11', leases: 2 }] });
    assert.equal(s['dataplane'].driver, 'memory');
    assert.equal(s['dataplane'].ok, true);
    assert.deepEqual(s['frontends'][0], { name: 'pcp', listening: ['127.0.0.1:5351'] });
    assert.deepEqual(s['upnpDescriptionUrls'], ['http://127.0.0.1:5000/rootDesc.xml']);
    assert.deepEqual(s['auth'], { required: false, caller: 'local' });
  });

  it('healthz answers 200; readyz answers 200 or 503 with the detail', async () => {
    let ready = { ok: true, detail: 'database ok, dataplane ok' };
    const f = await admin({ ready: async () => ready });
    assert.deepEqual((await f.app.inject({ url: '/healthz' })).json(), { ok: true });
    const a = await f.app.inject({ url: '/readyz' });
    assert.equal(a.statusCode, 200);
    ready = { ok: false, detail: 'dataplane: nft missing' };
    const b = await f.app.inject({ url: '/readyz' });
    assert.equal(b.statusCode, 503);
    assert.deepEqual(b.json(), { ok: false, detail: 'dataplane: nft missing' });
  });

  it('a readyz probe that throws answers 503', async () => {
    const f = await admin({
      ready: async () => {
        throw new Error('database is locked');
      },
    });
    const r = await f.app.inject({ url: '/readyz' });
    assert.equal(r.statusCode, 503);
    assert.equal((r.json() as { detail: string }).detail, 'database is locked');
  });

  it('/metrics is Prometheus text with lease gauges, admin request counters and refusals', async () => {
    const f = await admin();
    await f.table.request(pcpReq());
    await f.app.inject({ url: '/api/v1/leases?state=nope' }); // a 400
    await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: bearer,
      payload: { ...forward, externalPort: 4000, protocol: 'udp' },
    });
    await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: bearer,
      payload: { ...forward, externalPort: 4000, protocol: 'udp', internalAddress: '192.168.77.7' },
    }); // conflict
    const r = await f.app.inject({ url: '/metrics' });
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(r.body, /^portd_leases_active\{source="pcp"\} 0$/m, 'replaced by the static forward');
    assert.match(r.body, /^portd_leases_active\{source="static"\} 1$/m);
    assert.match(r.body, /^portd_requests_total\{frontend="admin",result="400"\} 1$/m);
    assert.match(r.body, /^portd_refusals_total\{reason="conflict",source="static"\} 1$/m);
    assert.match(r.body, /^portd_bad_input_total\{frontend="admin",kind="validation"\} 1$/m);
    assert.match(r.body, /^portd_request_duration_seconds_count\{frontend="admin"\} \d+$/m);
  });

  it('OpenAPI document lists every route with its parameters and schemas', async () => {
    const f = await admin();
    const r = await f.app.inject({ url: '/api/v1/openapi.json' });
    assert.equal(r.statusCode, 200);
    // biome-ignore lint/suspicious/noExplicitAny: the OpenAPI document's JSON, checked field by field below
    const doc = r.json() as { openapi: string; paths: Record<string, Record<string, any>> };
    assert.equal(doc.openapi, '3.1.0');
    for (const [p, m] of [
      ['/api/v1/leases', 'get'],
      ['/api/v1/leases', 'post'],
      ['/api/v1/leases/{id}', 'get'],
      ['/api/v1/leases/{id}', 'delete'],
      ['/api/v1/status', 'get'],
      ['/api/v1/events', 'get'],
      ['/api/v1/login', 'post'],
      ['/healthz', 'get'],
      ['/readyz', 'get'],
      ['/metrics', 'get'],
    ] as const) {
      assert.ok(doc.paths[p]?.[m], `${m} ${p}`);
    }
    const list = doc.paths['/api/v1/leases']!['get'];
    assert.ok(list.parameters.some((x: { name: string; in: string }) => x.name === 'source' && x.in === 'query'));
    assert.deepEqual(doc.paths['/api/v1/leases/{id}']!['get'].parameters[0].in, 'path');
    assert.deepEqual(doc.paths['/api/v1/leases']!['post'].requestBody.content['application/json'].schema.required, [
      'protocol',
      'externalPort',
      'internalAddress',
      'description',
    ]);
    assert.ok(doc.paths['/api/v1/leases']!['post'].responses['409']);
    assert.equal(doc.paths['/'], undefined);
  });

  it('unknown routes answer 404 in the error format', async () => {
    const f = await admin();
    const r = await f.app.inject({ url: '/api/v1/nothing' });
    assert.equal(r.statusCode, 404);
    assert.equal((r.json() as { code: string }).code, 'PORTD_ADMIN_NOT_FOUND');
  });

  it('serves the dashboard page and its script with a strict CSP', async () => {
    const f = await admin();
    const page = await f.app.inject({ url: '/' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.match(page.body, /<script src="\/dashboard\.js"><\/script>/);
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    assert.equal(page.headers['x-frame-options'], 'DENY');
    const js = await f.app.inject({ url: '/dashboard.js' });
    assert.equal(js.statusCode, 200);
    assert.match(String(js.headers['content-type']), /javascript/);
    assert.ok(js.body.includes("new EventSource(API + '/events')"));
  });

  it('route plugins (e.g. triggers) join the API, its auth and the OpenAPI document', async () => {
    const f = await admin({
      requireAuth: true,
      routes: [
        (app, ctx) => {
          app.get(
            '/api/v1/triggers',
            {
              schema: {
                summary: 'Trigger rules',
                response: {
                  200: Type.Object({ triggers: Type.Array(Type.Object({ name: Type.String() })) }),
                  401: ctx.ErrorSchema,
                },
              },
            },
            async () => ({ triggers: [{ name: 'example' }] }),
          );
        },
      ],
    });
    const denied = await f.app.inject({ url: '/api/v1/triggers' });
    assert.equal(denied.statusCode, 401);
    const ok = await f.app.inject({
      url: '/api/v1/triggers',
      headers: { authorization: 'Bearer test-token-0123456789' },
    });
    assert.deepEqual(ok.json(), { triggers: [{ name: 'example' }] });
    const doc = (
      await f.app.inject({ url: '/api/v1/openapi.json', headers: { authorization: 'Bearer test-token-0123456789' } })
    ).json() as { paths: Record<string, unknown> };
    assert.ok(doc.paths['/api/v1/triggers']);
  });
});
