import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/index.js';
import { startPortd } from '../../src/main.js';
import { createFixedClock } from '../../src/leases/clock.js';
import { adminClientTarget, runAdminCommand } from '../../src/admin/index.js';
import type { Lease } from '../../src/leases/types.js';
import { TOKEN, makeAdmin, pcpReq, staticForward } from '../unit/admin-helpers.js';

const fixtures: { dispose(): Promise<void> }[] = [];
after(async () => {
  for (const f of fixtures) await f.dispose();
});

function sink() {
  let text = '';
  return {
    write(s: string) {
      text += s;
      return true;
    },
    get text() {
      return text;
    },
  };
}

async function running(o: Parameters<typeof makeAdmin>[0] = {}) {
  const f = await makeAdmin({ clock: createFixedClock(Date.now()), ...o });
  fixtures.push(f);
  const { port } = await f.server.listen();
  const baseUrl = `http://127.0.0.1:${port}`;
  const run = async (argv: string[], token: string | null = TOKEN) => {
    const out = sink();
    const err = sink();
    const code = await runAdminCommand(argv, { baseUrl, token, out, err, now: () => f.clock.now() });
    return { code, out: out.text, err: err.text };
  };
  return { ...f, baseUrl, run };
}

describe('portd leases | revoke | forward | status against a running server', () => {
  it('forward add creates a static forward (row + dataplane), leases shows it, forward rm removes it', async () => {
    const f = await running();
    const add = await f.run(['forward', 'add', 'tcp', '8080', '192.168.77.5:80', '--description', 'web server']);
    assert.equal(add.code, 0, add.err);
    assert.match(add.out, /^added (\S+): tcp 203\.0\.113\.1:8080 -> 192\.168\.77\.5:80 \(no expiry\)\n$/);
    const id = /^added (\S+):/.exec(add.out)![1]!;
    assert.equal(f.table.get(id)?.description, 'web server');
    assert.equal([...f.dataplane.entries.values()][0]?.internalPort, 80);

    const range = await f.run(['forward', 'add', 'udp', '6000-6010', '192.168.77.6', '--lifetime', '600']);
    assert.equal(range.code, 0, range.err);
    assert.match(range.out, /udp 203\.0\.113\.1:6000-6010 -> 192\.168\.77\.6:6000 \(expires in 10m0s\)/);

    const list = await f.run(['leases']);
    assert.equal(list.code, 0);
    const lines = list.out.trimEnd().split('\n');
    assert.match(lines[0]!, /^ID\s+SOURCE\s+PROTO\s+EXTERNAL\s+INTERNAL\s+OWNER\s+LEFT\s+DESCRIPTION$/);
    assert.ok(
      lines.some(
        (l) =>
          l.startsWith(id) &&
          /static\s+tcp\s+203\.0\.113\.1:8080\s+192\.168\.77\.5:80\s+192\.168\.77\.5\s+never\s+web server$/.test(l),
      ),
      list.out,
    );
    assert.ok(
      lines.some((l) => /udp\s+203\.0\.113\.1:6000-6010\s+192\.168\.77\.6:6000-6010\s+192\.168\.77\.6\s+10m0s/.test(l)),
      list.out,
    );

    const rm = await f.run(['forward', 'rm', id]);
    assert.equal(rm.code, 0, rm.err);
    assert.equal(f.table.get(id)?.state, 'ended');
    assert.equal([...f.dataplane.entries.values()].filter((e) => e.externalPort === 8080).length, 0);
    assert.equal(f.table.history(id).at(-1)?.actor, 'admin:ops');
  });

  it('leases --json and --source filter; revoke ends a PCP lease', async () => {
    const f = await running();
    const g = await f.table.request(pcpReq());
    assert.ok(g.ok);
    await f.run(['forward', 'add', 'tcp', '8080', '192.168.77.5']);
    const js = await f.run(['leases', '--json', '--source', 'pcp']);
    assert.equal(js.code, 0);
    const arr = JSON.parse(js.out) as Lease[];
    assert.deepEqual(
      arr.map((l) => l.id),
      [g.lease.id],
    );

    const rv = await f.run(['revoke', g.lease.id, '--reason', 'abuse']);
    assert.equal(rv.code, 0, rv.err);
    assert.match(
      rv.out,
      new RegExp(`^revoked ${g.lease.id}: udp 4000 -> 192\\.168\\.77\\.11:4000 \\(pcp, owner 192\\.168\\.77\\.11\\)`),
    );
    assert.equal(f.table.get(g.lease.id)?.endReason, 'revoked');
    assert.equal(f.table.history(g.lease.id).at(-1)?.reason, 'abuse');
    assert.equal(JSON.parse((await f.run(['leases', '--json', '--source', 'pcp'])).out).length, 0);
  });

  it('forward rm refuses a lease that is not a static forward; errors give exit 1 with the API message', async () => {
    const f = await running({ staticForwards: [staticForward()] });
    const g = await f.table.request(pcpReq());
    assert.ok(g.ok);
    const rm = await f.run(['forward', 'rm', g.lease.id]);
    assert.equal(rm.code, 1);
    assert.match(rm.err, /is a pcp lease, not a static forward/);
    assert.equal(f.table.get(g.lease.id)?.state, 'active');

    // an admin forward outranks a dynamic lease: it replaces it; another static forward is a conflict
    const over = await f.run(['forward', 'add', 'udp', '4000', '192.168.77.9']);
    assert.equal(over.code, 0, over.err);
    assert.equal(f.table.get(g.lease.id)?.endReason, 'replaced');
    const conflict = await f.run(['forward', 'add', 'tcp', '8443', '192.168.77.9']);
    assert.equal(conflict.code, 1);
    assert.match(conflict.err, /held by a static lease of 192\.168\.77\.20.*PORTD_LEASE_CONFLICT/);

    const ro = f.table.list({ source: 'static' }).leases[0]!;
    const r = await f.run(['revoke', ro.id]);
    assert.equal(r.code, 1);
    assert.match(r.err, /PORTD_LEASE_READ_ONLY/);
    const missing = await f.run(['revoke', 'nope']);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /PORTD_LEASE_NOT_FOUND/);
    // the listing marks config forwards read-only
    assert.match(
      (await f.run(['leases', '--source', 'static'])).out,
      /static\*.*\n.*static .*\n\* from the config file \(read-only\)\n$/,
    );
  });

  it('usage errors exit 2 without calling the API', async () => {
    const f = await running();
    for (const argv of [
      ['forward', 'add', 'sctp', '80', '192.168.77.5'],
      ['forward', 'add', 'tcp', 'x', '192.168.77.5'],
      ['forward', 'add', 'tcp', '80', 'nas'],
      ['forward', 'add', 'tcp', '80', '192.168.77.5', '--lifetime', 'soon'],
      ['revoke'],
      ['leases', '--bogus'],
      ['frobnicate'],
      ['forward'],
    ]) {
      const r = await f.run(argv);
      assert.equal(r.code, 2, argv.join(' '));
      assert.match(r.err, /^portd: /);
    }
    assert.equal(f.table.countActive().total, 0);
  });

  it('status prints a human summary and --json the API document', async () => {
    const f = await running();
    await f.table.request(pcpReq());
    const s = await f.run(['status']);
    assert.equal(s.code, 0);
    assert.match(s.out, /^portd 0\.1\.0-test, up \d+s\n/);
    assert.match(s.out, /external address {2}203\.0\.113\.1/);
    assert.match(s.out, /leases {12}1 active: upnp 0, pcp 1, natpmp 0, trigger 0, static 0/);
    assert.match(s.out, /pcp {15}127\.0\.0\.1:5351/);
    const j = await f.run(['status', '--json']);
    assert.equal((JSON.parse(j.out) as { pcpEpoch: number }).pcpEpoch, 42);
  });

  it('with auth required: no token exits 3 with a hint; --token or the configured token works', async () => {
    const f = await running({ requireAuth: true });
    const anon = await f.run(['leases'], null);
    assert.equal(anon.code, 3);
    assert.match(anon.err, /PORTD_ADMIN_UNAUTHORIZED[\s\S]*hint: pass --config FILE.*--token/);
    assert.equal((await f.run(['leases', '--token', TOKEN], null)).code, 0);
    const add = await f.run(['forward', 'add', 'tcp', '8080', '192.168.77.5'], TOKEN);
    assert.equal(add.code, 0, add.err);
    const id = /^added (\S+):/.exec(add.out)![1]!;
    assert.equal(f.table.history(id)[0]?.actor, 'admin:ops');
  });

  it('loopback without a token: reads work, a change exits 3 with a hint naming where the token is; nothing changes', async () => {
    const f = await running();
    const g = await f.table.request(pcpReq());
    assert.ok(g.ok);
    const list = await f.run(['leases'], null);
    assert.equal(list.code, 0, list.err);
    assert.ok(list.out.includes(g.lease.id));
    assert.equal((await f.run(['status'], null)).code, 0);
    for (const argv of [
      ['forward', 'add', 'tcp', '8080', '192.168.77.5'],
      ['revoke', g.lease.id],
    ]) {
      const r = await f.run(argv, null);
      assert.equal(r.code, 3, argv.join(' '));
      assert.match(
        r.err,
        /authentication required for changes.*PORTD_ADMIN_UNAUTHORIZED[\s\S]*hint: .*--config.*admin-token/,
      );
    }
    assert.equal(f.table.get(g.lease.id)?.state, 'active');
    assert.equal(f.table.list({ source: 'static' }).total, 0);
  });

  it('an unreachable API exits 3 naming the URL', async () => {
    const out = sink();
    const err = sink();
    // a port that was just free: nothing listens there
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise((r) => srv.close(r));
    const code = await runAdminCommand(['status'], { baseUrl: `http://127.0.0.1:${port}`, token: null, out, err });
    assert.equal(code, 3);
    assert.ok(
      err.text.includes(`cannot reach the portd admin API at http://127.0.0.1:${port}: ECONNREFUSED`),
      err.text,
    );
  });

  it('adminClientTarget: flags, env and config; a wildcard listen is reached on loopback', () => {
    const cfg = (listen: string, token: string | null = null) => ({ admin: { listen, token, tokenFile: null } });
    assert.deepEqual(adminClientTarget({ config: cfg('0.0.0.0:8080') }), {
      baseUrl: 'http://127.0.0.1:8080',
      token: null,
    });
    assert.deepEqual(adminClientTarget({ config: cfg('[::]:9000', 'c') }), {
      baseUrl: 'http://[::1]:9000',
      token: 'c',
    });
    assert.deepEqual(adminClientTarget({ config: cfg('192.168.1.1:8080', 'c'), env: { PORTD_ADMIN_TOKEN: 'e' } }), {
      baseUrl: 'http://192.168.1.1:8080',
      token: 'e',
    });
    assert.deepEqual(adminClientTarget({ config: cfg('127.0.0.1:8080', 'c'), url: 'http://x:1/', token: 't' }), {
      baseUrl: 'http://x:1',
      token: 't',
    });
    assert.deepEqual(adminClientTarget({ config: null, tokenFromFile: 'f' }), {
      baseUrl: 'http://127.0.0.1:8080',
      token: 'f',
    });
  });
});

/** the `portd` command as a child process (async: the daemon answers from this process meanwhile) */
function portdCli(args: string[], o: { uid?: number } = {}): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bin/portd.js', ...args],
      {
        timeout: 30_000,
        env: { ...process.env, PORTD_ADMIN_TOKEN: '', PORTD_ADMIN_URL: '' },
        ...(o.uid !== undefined ? { uid: o.uid, gid: o.uid } : {}),
      },
      (e, out, err) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, out, err }),
    );
  });
}

describe('the portd command against a running daemon on loopback (the token from the state directory)', () => {
  it('with --config it reads <stateDir>/admin-token and makes changes; without, reads work and changes exit 3 with a hint; another user cannot read the token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-cli-token-'));
    chmodSync(dir, 0o755);
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise((r) => srv.close(r));
    const yaml = `
interfaces: { wan: lo, lan: [lo] }
externalAddress: 192.0.2.1
listenAddresses: [127.0.0.1]
stateDir: ${join(dir, 'state')}
database: { path: ${join(dir, 'state', 'portd.sqlite')} }
dataplane: { driver: memory }
upnp: { enabled: false }
pcp: { enabled: false }
natpmp: { enabled: false }
admin: { listen: "127.0.0.1:${port}" }
policy: { rules: ["allow 1024-65535 0.0.0.0/0 1-65535"] }
`;
    const cfg = join(dir, 'portd.yaml');
    writeFileSync(cfg, yaml);
    chmodSync(cfg, 0o644);
    const portd = await startPortd(parseConfig(yaml), pino({ level: 'silent' }));
    try {
      const url = `http://127.0.0.1:${port}`;
      const anon = await portdCli(['forward', 'add', 'tcp', '8080', '192.168.77.5', '--url', url]);
      assert.equal(anon.code, 3, anon.err);
      assert.match(anon.err, /authentication required for changes[\s\S]*hint: pass --config FILE/);
      assert.equal((await portdCli(['leases', '--url', url])).code, 0, 'reads need no token on loopback');
      const add = await portdCli(['forward', 'add', 'tcp', '8080', '192.168.77.5', '--config', cfg]);
      assert.equal(add.code, 0, add.err);
      const id = /^added (\S+):/.exec(add.out)![1]!;
      assert.equal(portd.leases.history(id)[0]?.actor, 'admin:admin');
      // nobody (uid 65534) reads the config but not the 0600 token
      if (process.getuid?.() === 0) {
        const other = await portdCli(['revoke', id, '--config', cfg], { uid: 65534 });
        assert.equal(other.code, 3, other.err);
        assert.match(other.err, /cannot read .*admin-token \(permission denied\): run as root/);
        assert.equal(portd.leases.get(id)?.state, 'active');
      }
    } finally {
      await portd.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
