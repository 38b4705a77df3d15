import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { adminListen, isLoopbackListen, resolveAdminToken } from '../../src/admin/index.js';
import { createAdminServer } from '../../src/admin/index.js';
import { PortdError } from '../../src/errors.js';
import type { Lease } from '../../src/leases/types.js';
import { TOKEN, makeAdmin, pcpReq } from './admin-helpers.js';

const fixtures: { dispose(): Promise<void> }[] = [];
const dirs: string[] = [];
after(async () => {
  for (const f of fixtures) await f.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
async function admin(o: Parameters<typeof makeAdmin>[0] = {}) {
  const f = await makeAdmin(o);
  fixtures.push(f);
  return f;
}
const bearer = { authorization: `Bearer ${TOKEN}` };

describe('admin auth: loopback vs non-loopback', () => {
  it('decides from admin.listen: loopback addresses need no token', () => {
    for (const l of ['127.0.0.1:8080', '127.1.2.3:80', '[::1]:8080']) assert.equal(isLoopbackListen(l), true, l);
    for (const l of ['0.0.0.0:8080', '192.168.1.1:8080', '[::]:8080', '[fe80::1]:80'])
      assert.equal(isLoopbackListen(l), false, l);
    assert.deepEqual(adminListen('[::1]:9'), { host: '::1', port: 9 });
    // one listen contract (src/common/listen.ts): names and bare ports are not listen addresses
    for (const l of ['nonsense', 'localhost:8080', '8080']) assert.throws(() => adminListen(l), PortdError, l);
  });

  it('a non-loopback listen without any token refuses to build the server', async () => {
    const f = await admin();
    assert.throws(
      () =>
        createAdminServer({
          config: {
            admin: { listen: '0.0.0.0:8080', token: null, tokenFile: null },
            policy: { maxLeasesPerClient: 1 } as never,
          },
          leases: f.table,
          metrics: f.metrics,
          log: pino({ level: 'silent' }),
          status: () => {
            throw new Error('unused');
          },
          token: { value: null, name: 'admin' },
          readyz: async () => ({ ok: true }),
        }),
      /no admin token/,
    );
  });

  it('loopback: every route answers without a token; actor is admin:local', async () => {
    const f = await admin({ requireAuth: false });
    assert.equal(f.server.authRequired, false);
    for (const url of ['/api/v1/leases', '/api/v1/status', '/metrics', '/readyz', '/api/v1/openapi.json']) {
      assert.equal((await f.app.inject({ url })).statusCode, 200, url);
    }
  });

  it('non-loopback: 401 without or with a wrong token, on every API route, with WWW-Authenticate', async () => {
    const f = await admin({ requireAuth: true });
    const g = await f.table.request(pcpReq());
    assert.ok(g.ok);
    const routes: [string, string][] = [
      ['GET', '/api/v1/leases'],
      ['GET', `/api/v1/leases/${g.lease.id}`],
      ['DELETE', `/api/v1/leases/${g.lease.id}`],
      ['POST', '/api/v1/leases'],
      ['GET', '/api/v1/status'],
      ['GET', '/api/v1/events'],
      ['GET', '/metrics'],
      ['GET', '/readyz'],
      ['GET', '/api/v1/openapi.json'],
      ['GET', '/api/v1/nothing'],
    ];
    for (const [method, url] of routes) {
      for (const headers of [
        {},
        { authorization: 'Bearer wrong' },
        { authorization: `Basic ${TOKEN}` },
        { cookie: 'portd_session=forged' },
      ]) {
        const r = await f.app.inject({
          method: method as 'GET',
          url,
          headers,
          ...(method === 'POST'
            ? { payload: { protocol: 'tcp', externalPort: 8080, internalAddress: '192.168.77.5', description: '' } }
            : {}),
        });
        assert.equal(r.statusCode, 401, `${method} ${url} ${JSON.stringify(headers)}`);
        assert.equal((r.json() as { code: string }).code, 'PORTD_ADMIN_UNAUTHORIZED');
        assert.match(String(r.headers['www-authenticate']), /^Bearer/);
      }
    }
    // nothing changed behind the refusals
    assert.equal(f.table.get(g.lease.id)?.state, 'active');
    assert.equal(f.dataplane.entries.size, 1);
    assert.ok(f.lines.some((l) => l['msg'] === 'admin: refused: no token'));
    assert.ok(f.lines.some((l) => l['msg'] === 'admin: refused: wrong token or expired session'));
  });

  it('non-loopback: the page, login and liveness stay public', async () => {
    const f = await admin({ requireAuth: true });
    assert.equal((await f.app.inject({ url: '/' })).statusCode, 200);
    assert.equal((await f.app.inject({ url: '/dashboard.js' })).statusCode, 200);
    assert.equal((await f.app.inject({ url: '/healthz' })).statusCode, 200);
  });

  it('Bearer token: changes are recorded with the token name as actor', async () => {
    const f = await admin({ requireAuth: true });
    const r = await f.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: bearer,
      payload: { protocol: 'tcp', externalPort: 8080, internalAddress: '192.168.77.5', description: 'web' },
    });
    assert.equal(r.statusCode, 201);
    const { lease } = r.json() as { lease: Lease };
    const d = await f.app.inject({ method: 'DELETE', url: `/api/v1/leases/${lease.id}`, headers: bearer });
    assert.equal(d.statusCode, 200);
    assert.deepEqual(
      f.table.history(lease.id).map((h) => [h.type, h.actor]),
      [
        ['granted', 'admin:ops'],
        ['revoked', 'admin:ops'],
      ],
    );
    assert.ok(f.lines.some((l) => l['msg'] === 'admin: static forward added' && l['actor'] === 'admin:ops'));
    const s = (await f.app.inject({ url: '/api/v1/status', headers: bearer })).json() as { auth: unknown };
    assert.deepEqual(s.auth, { required: true, caller: 'ops' });
  });

  it('login sets an HttpOnly SameSite=Strict cookie that authorizes API calls; logout ends it', async () => {
    const f = await admin({ requireAuth: true });
    const bad = await f.app.inject({ method: 'POST', url: '/api/v1/login', payload: { token: 'nope' } });
    assert.equal(bad.statusCode, 401);
    assert.equal(bad.headers['set-cookie'], undefined);
    assert.ok(f.lines.some((l) => l['msg'] === 'admin: login failed: wrong token'));
    const ok = await f.app.inject({ method: 'POST', url: '/api/v1/login', payload: { token: TOKEN } });
    assert.equal(ok.statusCode, 200);
    const cookie = String(ok.headers['set-cookie']);
    assert.match(cookie, /^portd_session=[A-Za-z0-9_-]{20,}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    const sid = cookie.split(';')[0]!;
    const r = await f.app.inject({ url: '/api/v1/leases', headers: { cookie: sid } });
    assert.equal(r.statusCode, 200);
    await f.app.inject({ method: 'POST', url: '/api/v1/logout', headers: { cookie: sid } });
    assert.equal((await f.app.inject({ url: '/api/v1/leases', headers: { cookie: sid } })).statusCode, 401);
  });

  it('behind a TLS proxy (X-Forwarded-Proto: https) the cookie is also Secure', async () => {
    const f = await admin({ requireAuth: true });
    const ok = await f.app.inject({
      method: 'POST',
      url: '/api/v1/login',
      headers: { 'x-forwarded-proto': 'https' },
      payload: { token: TOKEN },
    });
    assert.match(String(ok.headers['set-cookie']), /; Secure$/);
  });

  it('login with a missing token field is a 400 naming it', async () => {
    const f = await admin({ requireAuth: true });
    const r = await f.app.inject({ method: 'POST', url: '/api/v1/login', payload: {} });
    assert.equal(r.statusCode, 400);
    assert.equal((r.json() as { field: string }).field, 'token');
  });
});

describe('resolveAdminToken', () => {
  const log = pino({ level: 'silent' });
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'portd-token-'));
    dirs.push(d);
    return d;
  };
  const cfg = (
    over: Partial<{ listen: string; token: string | null; tokenFile: string | null }>,
    stateDir: string,
  ) => ({ admin: { listen: '0.0.0.0:8080', token: null, tokenFile: null, ...over }, stateDir });

  it('order: config token, token file, env, state file', () => {
    const d = tmp();
    const file = join(d, 'tok');
    writeFileSync(file, 'from-file\n');
    assert.equal(
      resolveAdminToken({
        config: cfg({ token: 'from-config', tokenFile: file }, d),
        env: { PORTD_ADMIN_TOKEN: 'from-env' },
        log,
      }).value,
      'from-config',
    );
    const f = resolveAdminToken({ config: cfg({ tokenFile: file }, d), env: { PORTD_ADMIN_TOKEN: 'from-env' }, log });
    assert.deepEqual([f.value, f.origin], ['from-file', 'file']);
    const e = resolveAdminToken({ config: cfg({}, d), env: { PORTD_ADMIN_TOKEN: 'from-env' }, log });
    assert.deepEqual([e.value, e.origin], ['from-env', 'env']);
  });

  it('a missing token file is a config error naming the path', () => {
    const d = tmp();
    assert.throws(
      () => resolveAdminToken({ config: cfg({ tokenFile: join(d, 'missing') }, d), log }),
      (e: unknown) => e instanceof PortdError && e.code === 'PORTD_CONFIG_INVALID' && e.message.includes('missing'),
    );
  });

  it('generates a token once, stores it 0600, logs where, and reuses it on the next start', () => {
    const d = join(tmp(), 'state');
    const lines: { msg: string; path?: string }[] = [];
    const l = pino(
      { level: 'info' },
      {
        write: (s: string) => {
          lines.push(JSON.parse(s));
        },
      },
    );
    const a = resolveAdminToken({ config: cfg({}, d), env: {}, log: l });
    assert.equal(a.origin, 'generated');
    assert.ok(a.value && a.value.length >= 32);
    const path = join(d, 'admin-token');
    assert.equal(a.path, path);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(readFileSync(path, 'utf8').trim(), a.value);
    assert.ok(lines.some((x) => x.path === path && x.msg.includes(path)));
    const b = resolveAdminToken({ config: cfg({}, d), env: {}, log: l });
    assert.deepEqual([b.value, b.origin], [a.value, 'state-file']);
  });

  it('tightens a token file readable by others to 0600', () => {
    const d = tmp();
    writeFileSync(join(d, 'admin-token'), 'abc\n');
    chmodSync(join(d, 'admin-token'), 0o644);
    const r = resolveAdminToken({ config: cfg({}, d), env: {}, log });
    assert.equal(r.value, 'abc');
    assert.equal(statSync(join(d, 'admin-token')).mode & 0o777, 0o600);
  });

  it('on loopback nothing is generated when no token is configured', () => {
    const d = tmp();
    const r = resolveAdminToken({ config: cfg({ listen: '127.0.0.1:8080' }, d), env: {}, log });
    assert.deepEqual([r.value, r.origin], [null, 'none']);
    assert.throws(() => statSync(join(d, 'admin-token')));
  });
});
