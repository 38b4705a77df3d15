/**
 * portd's files are not readable by others whoever starts it (issue 14 item 9): under umask 022
 * (a shell, `npm start`) the database, its -wal/-shm, the lock file and the admin token are 0600
 * and the state directory 0700; files left looser by an older portd are tightened and logged; a
 * directory shared with other programs is left alone.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/index.js';
import { startPortd } from '../../src/main.js';

const dirs: string[] = [];
let umask = 0;
before(() => {
  umask = process.umask(0o022);
});
after(() => {
  process.umask(umask);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const mode = (p: string) => (statSync(p).mode & 0o777).toString(8).padStart(4, '0');

async function start(stateDir: string, dbDir = stateDir) {
  const lines: { msg: string; level: number }[] = [];
  const log = pino(
    { level: 'info' },
    {
      write: (s: string) => {
        lines.push(JSON.parse(s));
      },
    },
  );
  const portd = await startPortd(
    parseConfig(`
interfaces: { wan: lo, lan: [lo] }
externalAddress: 192.0.2.1
listenAddresses: [127.0.0.1]
stateDir: ${stateDir}
database: { path: ${join(dbDir, 'portd.sqlite')} }
dataplane: { driver: memory }
upnp: { enabled: false }
pcp: { enabled: false }
natpmp: { enabled: false }
admin: { listen: "127.0.0.1:0" }
`),
    log,
  );
  return { portd, lines };
}

describe('file modes under umask 022', () => {
  it('a fresh start: state dir 0700; database, -wal, -shm, lock and admin token 0600', async () => {
    const root = mkdtempSync(join(tmpdir(), 'portd-modes-'));
    dirs.push(root);
    const state = join(root, 'state');
    const { portd } = await start(state);
    try {
      // a lease, so the WAL has frames
      const r = await fetch(`http://127.0.0.1:${portd.admin.port}/api/v1/status`);
      assert.equal(r.status, 200);
      assert.equal(mode(state), '0700');
      for (const f of ['portd.sqlite', 'portd.sqlite-wal', 'portd.sqlite-shm', 'portd.sqlite.lock', 'admin-token']) {
        assert.equal(mode(join(state, f)), '0600', f);
      }
    } finally {
      await portd.close();
    }
  });

  it('files and a directory an older portd left readable by others are tightened, and the log says so', async () => {
    const root = mkdtempSync(join(tmpdir(), 'portd-modes-'));
    dirs.push(root);
    const state = join(root, 'state');
    // a first run leaves the files; then someone loosens them (what a start under umask 022 used to leave)
    const first = await start(state);
    await first.portd.close();
    chmodSync(state, 0o755);
    chmodSync(join(state, 'portd.sqlite'), 0o644);
    chmodSync(join(state, 'admin-token'), 0o644);
    writeFileSync(join(state, 'portd.sqlite-wal'), '');
    chmodSync(join(state, 'portd.sqlite-wal'), 0o666);
    const { portd, lines } = await start(state);
    try {
      assert.equal(mode(state), '0700');
      for (const f of ['portd.sqlite', 'portd.sqlite-wal', 'portd.sqlite-shm', 'admin-token'])
        assert.equal(mode(join(state, f)), '0600', f);
      const warned = lines.filter((l) => l.level === 40).map((l) => l.msg);
      for (const re of [
        /portd\.sqlite was mode 0644.*set to 0600/,
        /portd\.sqlite-wal was mode 0666.*set to 0600/,
        /admin-token was mode 0644.*set to 0600/,
        /directory .*state was mode 0755: set to 0700/,
      ]) {
        assert.ok(
          warned.some((m) => re.test(m)),
          `${re} in ${JSON.stringify(warned)}`,
        );
      }
    } finally {
      await portd.close();
    }
  });

  it("a directory shared with other programs keeps its mode (others must traverse it); portd's files in it are 0600", async () => {
    const root = mkdtempSync(join(tmpdir(), 'portd-modes-'));
    dirs.push(root);
    const shared = join(root, 'shared');
    mkdirSync(shared, { mode: 0o755 });
    chmodSync(shared, 0o755);
    writeFileSync(join(shared, 'someone-else.conf'), 'x');
    const { portd, lines } = await start(shared);
    try {
      assert.equal(mode(shared), '0755');
      assert.equal(mode(join(shared, 'portd.sqlite')), '0600');
      assert.equal(mode(join(shared, 'admin-token')), '0600');
      assert.ok(lines.some((l) => /holds more than portd's files: left as it is/.test(l.msg)));
    } finally {
      await portd.close();
    }
  });
});
