/**
 * Who the admin server answers, over real loopback sockets (issue 14 item 2): the Host must name
 * the server (DNS rebinding), a foreign Origin / Sec-Fetch-Site is refused (CSRF), a request that
 * came through a proxy needs the token, and so does every change on loopback. Plus: no Server
 * header naming the kernel.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { release } from 'node:os';
import { after, describe, it } from 'node:test';
import { counter } from '../fuzz/mutate.js';
import { TOKEN, makeAdmin, pcpReq } from '../unit/admin-helpers.js';

const fixtures: { dispose(): Promise<void> }[] = [];
after(async () => {
  for (const f of fixtures) await f.dispose();
});

const FORWARD = {
  protocol: 'tcp',
  externalPort: 8443,
  internalAddress: '192.168.77.20',
  internalPort: 443,
  description: 'nas',
};
const bearer = { authorization: `Bearer ${TOKEN}` };

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: { code?: string; message?: string };
}

/** one request with exactly these headers (Host included: node's fetch would not let us choose it) */
function call(
  port: number,
  o: { method?: string; path?: string; headers?: Record<string, string>; body?: unknown; address?: string },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = o.body === undefined ? undefined : JSON.stringify(o.body);
    const headers: Record<string, string> = {
      host: `127.0.0.1:${port}`,
      ...(payload ? { 'content-type': 'application/json' } : {}),
      ...o.headers,
    };
    const req = http.request(
      {
        host: o.address ?? '127.0.0.1',
        port,
        method: o.method ?? 'GET',
        path: o.path ?? '/api/v1/leases',
        headers,
        setHost: false,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
          if (res.headers['content-type']?.startsWith('text/event-stream')) res.destroy();
        });
        const done = () => {
          let json = {};
          try {
            json = JSON.parse(body);
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
        };
        res.on('end', done);
        res.on('close', done);
      },
    );
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end(payload);
  });
}

async function running(o: Parameters<typeof makeAdmin>[0] = {}) {
  const f = await makeAdmin(o);
  fixtures.push(f);
  const { port } = await f.server.listen();
  return { ...f, port };
}

describe('admin API: Host must name this server (DNS rebinding)', () => {
  it('a foreign Host is refused with 421 for writes (even with the token), reads, the page and /healthz; nothing changes', async () => {
    const f = await running();
    const held = await f.table.request(pcpReq({ description: 'private mapping' }));
    assert.ok(held.ok);
    const evil = { host: `rebind.example:${f.port}` };
    const add = await call(f.port, { method: 'POST', body: FORWARD, headers: { ...evil, ...bearer } });
    assert.equal(add.status, 421);
    assert.equal(add.json.code, 'PORTD_ADMIN_FORBIDDEN_HOST');
    assert.match(
      add.json.message ?? '',
      /rebind\.example.*does not name this server \(127\.0\.0\.1:\d+, localhost:\d+\)/,
    );
    assert.equal(f.table.list({ source: 'static' }).total, 0);
    for (const path of [
      '/api/v1/leases',
      `/api/v1/leases/${held.lease.id}`,
      '/api/v1/status',
      '/api/v1/events',
      '/metrics',
      '/',
      '/dashboard.js',
      '/healthz',
    ]) {
      const r = await call(f.port, { path, headers: evil });
      assert.equal(r.status, 421, path);
      assert.ok(!r.body.includes('private mapping'), path);
    }
    const del = await call(f.port, {
      method: 'DELETE',
      path: `/api/v1/leases/${held.lease.id}`,
      headers: { ...evil, ...bearer },
    });
    assert.equal(del.status, 421);
    assert.equal(f.table.get(held.lease.id)?.state, 'active');
    assert.equal(await counter(f.metrics, 'portd_bad_input_total', { frontend: 'admin', kind: 'forbidden_host' }), 10);
    assert.equal(
      f.lines.filter((l) => String(l['msg']).startsWith('admin: refused: Host')).length,
      1,
      'logged once per client and kind',
    );
  });

  it('loopback listen: the address and localhost with the bound port, any case, a trailing dot; nothing else', async () => {
    const f = await running();
    const p = f.port;
    for (const host of [`127.0.0.1:${p}`, `localhost:${p}`, `LOCALHOST:${p}`, `localhost.:${p}`, `LocalHost.:${p}`]) {
      assert.equal((await call(p, { path: '/api/v1/status', headers: { host } })).status, 200, host);
    }
    for (const host of [
      '127.0.0.1',
      'localhost',
      `127.0.0.1:${p + 1}`,
      `localhost:${p === 65535 ? 1 : p + 1}`,
      `localhost..:${p}`,
      `localhost.rebind.example:${p}`,
      `127.0.0.1.rebind.example:${p}`,
      `[::1]:${p}`,
      `user@127.0.0.1:${p}`,
      `127.0.0.1:${p}/x`,
      `127.0.0.1:${p}:${p}`,
      `127.0.0.2:${p}`,
      `0.0.0.0:${p}`,
      ' ',
      `rebind.example`,
    ]) {
      const r = await call(p, { path: '/api/v1/status', headers: { host } });
      assert.ok(r.status === 421 || r.status === 400, `${host} → ${r.status}`);
      if (r.status === 421) assert.equal(r.json.code, 'PORTD_ADMIN_FORBIDDEN_HOST');
    }
  });

  it('a request without Host (HTTP/1.0) is refused', async () => {
    const f = await running();
    const line = await new Promise<string>((resolve) => {
      const s = net.connect(f.port, '127.0.0.1', () => s.write('GET /api/v1/leases HTTP/1.0\r\n\r\n'));
      let d = '';
      s.on('data', (c) => {
        d += c.toString();
      });
      s.on('close', () => resolve(d.split('\r\n')[0] ?? ''));
      s.setTimeout(5000, () => s.destroy());
    });
    assert.match(line, /^HTTP\/1\.[01] 421 /);
  });

  it('IPv6 loopback listen: [::1]:port (any spelling) and localhost:port', async () => {
    const f = await running({ listen: '[::1]:0' });
    const p = f.port;
    for (const host of [`[::1]:${p}`, `[0:0:0:0:0:0:0:1]:${p}`, `localhost:${p}`]) {
      assert.equal((await call(p, { address: '::1', path: '/api/v1/status', headers: { host } })).status, 200, host);
    }
    for (const host of [`127.0.0.1:${p}`, `[::2]:${p}`, `[::1]`, `::1:${p}`]) {
      const r = await call(p, { address: '::1', path: '/api/v1/status', headers: { host } });
      assert.ok(r.status === 421 || r.status === 400, `${host} → ${r.status}`);
    }
  });

  it('wildcard listen: the address the connection arrived on; admin.allowedHosts adds names (any port)', async () => {
    const f = await running({ listen: '0.0.0.0:0', requireAuth: true, allowedHosts: ['router.lan'] });
    const p = f.port;
    for (const host of [
      `127.0.0.1:${p}`,
      `localhost:${p}`,
      `router.lan:${p}`,
      `ROUTER.LAN.:${p}`,
      'router.lan',
      'router.lan:443',
    ]) {
      assert.equal((await call(p, { path: '/api/v1/status', headers: { host, ...bearer } })).status, 200, host);
    }
    for (const host of [`192.168.77.1:${p}`, `nas.lan:${p}`, `router.lan.rebind.example:${p}`]) {
      assert.equal((await call(p, { path: '/api/v1/status', headers: { host, ...bearer } })).status, 421, host);
    }
    // the page of a TLS proxy in front, reached as https://router.lan
    const viaProxy = await call(p, {
      method: 'POST',
      body: FORWARD,
      headers: { host: 'router.lan', origin: 'https://router.lan', ...bearer },
    });
    assert.equal(viaProxy.status, 201);
  });
});

describe('admin API: requests from other pages (Origin, Sec-Fetch-Site)', () => {
  it('a foreign Origin is refused for a change even with the token: POST, DELETE, login; nothing changes, no session', async () => {
    const f = await running();
    const held = await f.table.request(pcpReq());
    assert.ok(held.ok);
    for (const origin of [
      'http://evil.example',
      `http://evil.example:${f.port}`,
      'null',
      `http://127.0.0.1:${f.port + 1}`,
      `https://127.0.0.1:${f.port}`,
      `http://127.0.0.2:${f.port}`,
      'file://',
      'garbage',
    ]) {
      const add = await call(f.port, { method: 'POST', body: FORWARD, headers: { origin, ...bearer } });
      assert.equal(add.status, 403, origin);
      assert.equal(add.json.code, 'PORTD_ADMIN_FORBIDDEN_ORIGIN');
      const del = await call(f.port, {
        method: 'DELETE',
        path: `/api/v1/leases/${held.lease.id}`,
        headers: { origin, ...bearer },
      });
      assert.equal(del.status, 403, origin);
      const login = await call(f.port, {
        method: 'POST',
        path: '/api/v1/login',
        body: { token: TOKEN },
        headers: { origin },
      });
      assert.equal(login.status, 403, origin);
      assert.equal(login.headers['set-cookie'], undefined);
    }
    assert.equal(f.table.list({ source: 'static' }).total, 0);
    assert.equal(f.table.get(held.lease.id)?.state, 'active');
  });

  it('reads and the event stream are refused to a foreign Origin too', async () => {
    const f = await running();
    for (const path of ['/api/v1/leases', '/api/v1/events', '/api/v1/status']) {
      const r = await call(f.port, { path, headers: { origin: 'http://evil.example' } });
      assert.equal(r.status, 403, path);
      assert.equal(r.json.code, 'PORTD_ADMIN_FORBIDDEN_ORIGIN');
    }
  });

  it("the dashboard's own origin (the listen address, localhost on loopback) is accepted", async () => {
    const f = await running();
    for (const [i, origin] of [`http://127.0.0.1:${f.port}`, `http://localhost:${f.port}`].entries()) {
      const add = await call(f.port, {
        method: 'POST',
        body: { ...FORWARD, externalPort: 8443 + i },
        headers: { origin, 'sec-fetch-site': 'same-origin', ...bearer },
      });
      assert.equal(add.status, 201, origin);
    }
  });

  it('Sec-Fetch-Site cross-site or same-site: refused, except a top-level GET navigation', async () => {
    const f = await running();
    for (const site of ['cross-site', 'same-site']) {
      const add = await call(f.port, {
        method: 'POST',
        body: FORWARD,
        headers: { 'sec-fetch-site': site, 'sec-fetch-mode': 'no-cors', ...bearer },
      });
      assert.equal(add.status, 403, site);
      const form = await call(f.port, {
        method: 'POST',
        body: FORWARD,
        headers: { 'sec-fetch-site': site, 'sec-fetch-mode': 'navigate', ...bearer },
      });
      assert.equal(form.status, 403, `${site} form post`);
      const read = await call(f.port, {
        path: '/api/v1/leases',
        headers: { 'sec-fetch-site': site, 'sec-fetch-mode': 'cors' },
      });
      assert.equal(read.status, 403, `${site} read`);
      const nav = await call(f.port, { path: '/', headers: { 'sec-fetch-site': site, 'sec-fetch-mode': 'navigate' } });
      assert.equal(nav.status, 200, `${site} navigation to the page`);
    }
    assert.equal(f.table.list({ source: 'static' }).total, 0);
    const same = await call(f.port, {
      method: 'POST',
      body: FORWARD,
      headers: { 'sec-fetch-site': 'same-origin', ...bearer },
    });
    assert.equal(same.status, 201);
  });
});

describe('admin API: who needs the token', () => {
  it('loopback: reads without a token, every change needs it (401, nothing changed); with it the change is made', async () => {
    const f = await running();
    const held = await f.table.request(pcpReq());
    assert.ok(held.ok);
    assert.equal((await call(f.port, {})).status, 200);
    assert.equal((await call(f.port, { path: '/api/v1/status' })).status, 200);
    const add = await call(f.port, { method: 'POST', body: FORWARD });
    assert.equal(add.status, 401);
    assert.equal(add.json.code, 'PORTD_ADMIN_UNAUTHORIZED');
    assert.match(add.json.message ?? '', /for changes/);
    assert.equal((await call(f.port, { method: 'DELETE', path: `/api/v1/leases/${held.lease.id}` })).status, 401);
    assert.equal(
      (await call(f.port, { method: 'POST', body: FORWARD, headers: { authorization: 'Bearer wrong' } })).status,
      401,
    );
    assert.equal(f.table.list({ source: 'static' }).total, 0);
    assert.equal(f.table.get(held.lease.id)?.state, 'active');
    const ok = await call(f.port, { method: 'POST', body: FORWARD, headers: bearer });
    assert.equal(ok.status, 201);
  });

  it('loopback: a request that came through a proxy needs the token, reads too; the page and /healthz stay public', async () => {
    const f = await running();
    const headers: Record<string, string>[] = [
      { 'x-forwarded-for': '198.51.100.7' },
      { forwarded: 'for=198.51.100.7;proto=https' },
      { 'x-forwarded-host': 'portd.example' },
      { 'x-real-ip': '198.51.100.7' },
      { via: '1.1 nginx' },
      { 'x-forwarded-proto': 'https' },
    ];
    for (const h of headers) {
      for (const path of ['/api/v1/leases', '/api/v1/status', '/api/v1/events', '/metrics']) {
        const r = await call(f.port, { path, headers: h });
        assert.equal(r.status, 401, `${path} ${JSON.stringify(h)}`);
        assert.match(r.json.message ?? '', /came through a proxy/);
      }
      assert.equal((await call(f.port, { path: '/api/v1/leases', headers: { ...h, ...bearer } })).status, 200);
      assert.equal((await call(f.port, { path: '/', headers: h })).status, 200);
      assert.equal((await call(f.port, { path: '/healthz', headers: h })).status, 200);
    }
  });

  it('no Server header naming the kernel (or anything) on the page, the API and errors', async () => {
    const f = await running();
    for (const path of ['/', '/api/v1/leases', '/api/v1/nothing', '/healthz']) {
      const r = await call(f.port, { path });
      assert.equal(r.headers['server'], undefined, path);
      assert.ok(!JSON.stringify(r.headers).includes(release()), path);
    }
  });
});
