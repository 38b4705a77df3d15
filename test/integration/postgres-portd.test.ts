// portd on database.driver: postgres end to end (issue 18 item 2): the loopback configuration on a throwaway
// cluster, a NAT-PMP client maps a port, portd is killed with SIGKILL and started again: the lease is still there
// (loaded from PostgreSQL at start, renewed as the same lease). A second portd on the same database is refused
// by the writer lock. Under CI=true a cluster that cannot start fails this file.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { postgresOrSkip } from '../helpers/postgres.js';

const { cluster, skip } = postgresOrSkip();
const dir = mkdtempSync(join(tmpdir(), 'portd-pg-e2e-'));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** a free loopback port (TCP; the UDP one of the same number is free too on a quiet loopback, checked by bind) */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** NAT-PMP (RFC 6886 §3.3): map TCP internal port → suggested external, lifetime s; the answer's fields */
async function natpmpMap(server: number, internal: number, external: number, lifetime: number) {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  try {
    const req = Buffer.alloc(12);
    req.writeUInt8(0, 0);
    req.writeUInt8(2, 1); // TCP
    req.writeUInt16BE(internal, 4);
    req.writeUInt16BE(external, 6);
    req.writeUInt32BE(lifetime, 8);
    const answer = new Promise<Buffer>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no NAT-PMP answer in 3 s')), 3000);
      s.once('message', (m) => {
        clearTimeout(t);
        resolve(m);
      });
    });
    s.send(req, server, '127.0.0.1');
    const m = await answer;
    return { result: m.readUInt16BE(2), internal: m.readUInt16BE(8), external: m.readUInt16BE(10) };
  } finally {
    s.close();
  }
}

function start(cfg: string): { child: ChildProcess; out: () => string; ready: Promise<string> } {
  const child = spawn(process.execPath, ['bin/portd.js', 'start', '--config', cfg], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const ready = (async () => {
    const deadline = Date.now() + 30_000;
    while (!/portd ready/.test(out) && Date.now() < deadline && child.exitCode === null)
      await new Promise((r) => setTimeout(r, 50));
    const line = out.split('\n').find((l) => l.includes('portd ready'));
    if (!line) throw new Error(`portd did not get ready:\n${out.slice(-3000)}`);
    return line;
  })();
  return { child, out: () => out, ready };
}

describe('portd on PostgreSQL', { skip, timeout: 90_000 }, () => {
  it('a NAT-PMP mapping survives kill -9 and a restart; a second portd on the database is refused', async () => {
    const url = cluster!.url;
    const pcpPort = await freePort();
    const cfg = join(dir, 'portd.yaml');
    writeFileSync(
      cfg,
      readFileSync('config/portd.yaml', 'utf8')
        .replace(
          /database:\n {2}path: \.\/var\/portd\.sqlite\n {2}synchronous: normal/,
          `database:\n  driver: postgres\n  url: ${JSON.stringify(url)}`,
        )
        .replace('stateDir: ./var', `stateDir: ${join(dir, 'state')}`)
        .replace('httpPort: 5000', 'httpPort: 0')
        .replace('port: 5351', `port: ${pcpPort}`)
        .replace('127.0.0.1:8080', '127.0.0.1:0'),
    );
    assert.match(readFileSync(cfg, 'utf8'), /driver: postgres/);
    const a = start(cfg);
    assert.match(await a.ready, /"active":0/);
    const m = await natpmpMap(pcpPort, 40123, 40123, 3600);
    assert.equal(m.result, 0, 'mapped');
    assert.equal(m.external, 40123);

    // a second portd on the same database: the writer lock refuses it (exit 3, naming the lock)
    const second = spawnSync(process.execPath, ['bin/portd.js', 'start', '--config', cfg], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(second.status, 3, second.stderr + second.stdout);
    assert.match(second.stderr + second.stdout, /PORTD_DATABASE_LOCKED[\s\S]*advisory lock/);

    a.child.kill('SIGKILL');
    await new Promise((r) => a.child.once('exit', r));
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const rows = (await c.query(`SELECT id, external_port, state FROM leases WHERE source = 'natpmp'`)).rows;
      assert.equal(rows.length, 1, 'the acknowledged lease is a row in PostgreSQL');
      assert.equal(rows[0].state, 'active');
      const id = rows[0].id as string;

      // restarted: the lease is loaded, and the client's renewal renews that lease (no second row)
      const b = start(cfg);
      assert.match(await b.ready, /"active":1/);
      // the killed portd's image (a copy under /dev/shm) was removed by the next start
      const images = (pid: number | undefined) =>
        existsSync('/dev/shm') ? readdirSync('/dev/shm').filter((n) => n.startsWith(`portd-pg-image-${pid}-`)) : [];
      assert.deepEqual(images(a.child.pid), []);
      const again = await natpmpMap(pcpPort, 40123, 0, 3600);
      assert.equal(again.result, 0);
      assert.equal(again.external, 40123, 'the same external port: the same lease');
      const after2 = (await c.query(`SELECT id, renew_count FROM leases WHERE source = 'natpmp'`)).rows;
      assert.deepEqual(
        after2.map((r) => [r.id, r.renew_count]),
        [[id, 1]],
      );
      b.child.kill('SIGTERM');
      assert.equal(await new Promise((r) => b.child.once('exit', r)), 0);
      assert.deepEqual(images(b.child.pid), [], 'a clean stop removes its image');
    } finally {
      await c.end();
    }
  });
});
