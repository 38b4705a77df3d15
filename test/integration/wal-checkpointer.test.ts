/**
 * The WAL checkpointer (src/leases/checkpointer.ts): committed pages reach the database file from a
 * worker thread, not inside a writer tick, and that worker runs only while the WAL holds something.
 * Observable: the main file grows while the writer's own automatic checkpoints are off; the WAL file
 * is truncated to zero bytes when the worker stops; the thread count of the process.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { createMemoryDataplane } from '../../src/dataplane/memory.js';
import { createCheckpointer, MAIN_BYTES, START_BYTES } from '../../src/leases/checkpointer.js';
import { createFixedClock } from '../../src/leases/clock.js';
import { createLeaseTable } from '../../src/leases/table.js';
import { createPolicy } from '../../src/policy/policy.js';
import { testPolicy } from '../helpers/leases.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const size = (p: string) => {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
};
const threads = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
async function until(what: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (what()) return true;
    await sleep(20);
  }
  return what();
}

function open(checkpointIntervalMs: number, onCheckpointerStopped?: () => void) {
  const dir = mkdtempSync(join(tmpdir(), 'portd-ckpt-'));
  dirs.push(dir);
  const path = join(dir, 'portd.sqlite');
  const table = createLeaseTable({
    database: { path, checkpointIntervalMs, ...(onCheckpointerStopped ? { onCheckpointerStopped } : {}) },
    dataplane: createMemoryDataplane(),
    policy: createPolicy(testPolicy({ maxLeasesPerClient: 100_000 })),
    clock: createFixedClock(),
    log: pino({ level: 'silent' }),
    externalAddress: '203.0.113.1',
  });
  let next = 20000;
  /** `ticks` writer ticks of 50 new leases each */
  const write = async (ticks: number) => {
    for (let i = 0; i < ticks; i++)
      await Promise.all(
        Array.from({ length: 50 }, () => {
          const port = next++;
          return table.request({
            source: 'upnp',
            identity: 'external',
            protocol: 'tcp',
            owner: '192.168.77.11',
            internalAddress: '192.168.77.11',
            internalPort: port,
            externalPort: port,
            allowOtherPort: false,
            lifetime: 3600,
            description: 'x'.repeat(40),
          });
        }),
      );
  };
  return { path, table, write };
}

describe('WAL checkpointer', () => {
  it('moves committed pages into the database file from a worker; the writer does not checkpoint itself', async () => {
    const { path, table, write } = open(50);
    try {
      const before = size(path);
      assert.equal(table.store.db.pragma('wal_autocheckpoint', { simple: true }), 0, 'automatic checkpoints off');
      await write(20);
      assert.ok(
        await until(() => size(path) > before + 64 * 1024, 5000),
        'the database file grew: pages were checkpointed',
      );
    } finally {
      await table.close();
    }
  });

  it('with the checkpointer off (0), SQLite keeps its own automatic checkpoints (1,000 pages): 1,000 leases stay in the WAL', async () => {
    const { path, table, write } = open(0);
    try {
      const before = size(path);
      assert.equal(table.store.db.pragma('wal_autocheckpoint', { simple: true }), 1000);
      assert.equal(table.store.checkpointer, null);
      await write(20);
      await sleep(1000);
      assert.equal(size(path) > before + 64 * 1024, false);
    } finally {
      await table.close();
    }
  });

  it('not running while idle; starts when the WAL grows past 1 MiB, bounds it, stops and truncates it once quiet', async () => {
    // 500 ms periods, as shipped: due after 30 s, quiet for 10 s to stop
    const { path, table, write } = open(500);
    try {
      const ck = table.store.checkpointer!;
      const idleThreads = threads();
      await sleep(1200);
      assert.equal(ck.running(), false, 'no worker at start with an empty WAL');
      assert.equal(ck.starts(), 0);
      // a little writing (under 1 MiB) does not start it either
      await write(2);
      const small = size(`${path}-wal`);
      assert.ok(small > 0 && small < START_BYTES, `WAL ${small} B`);
      await sleep(1200);
      assert.equal(ck.running(), false, 'a small WAL waits until a checkpoint is due');
      assert.equal(threads(), idleThreads, 'no extra thread');
      const before = size(path);
      // past 1 MiB: started within a period, and the pages reach the main file
      for (let i = 0; i < 40 && size(`${path}-wal`) < START_BYTES; i++) await write(5);
      assert.ok(size(`${path}-wal`) >= START_BYTES, 'the WAL grew past 1 MiB');
      assert.ok(await until(() => ck.running(), 2000), 'started');
      assert.ok(threads() > idleThreads, 'a worker thread runs');
      assert.ok(await until(() => size(path) > before + 256 * 1024, 5000), 'pages checkpointed into the file');
      // quiet: stopped after ≈ 10 s, the WAL truncated to zero bytes
      assert.ok(await until(() => !ck.running(), 16_000), 'stopped once quiet');
      assert.equal(size(`${path}-wal`), 0, 'WAL truncated');
      assert.ok(await until(() => threads() === idleThreads, 2000), 'its thread is gone');
      // and starts again for the next growth
      for (let i = 0; i < 40 && size(`${path}-wal`) < START_BYTES; i++) await write(5);
      assert.ok(await until(() => ck.starts() === 2 && ck.running(), 2000), 'started again');
    } finally {
      await table.close();
    }
  });

  it('a small WAL (up to 256 KiB) is checkpointed once due (60 periods) by the main thread, without a worker', async () => {
    const { path, table, write } = open(50); // due after 3 s
    try {
      const ck = table.store.checkpointer!;
      const idleThreads = threads();
      await write(1);
      const before = size(path);
      const wal = size(`${path}-wal`);
      assert.ok(wal > 0 && wal <= MAIN_BYTES, `WAL ${wal} B`);
      await sleep(1000);
      assert.equal(size(`${path}-wal`), wal, 'not yet due');
      assert.ok(await until(() => size(`${path}-wal`) === 0, 4000), 'checkpointed and truncated when due');
      assert.ok(size(path) > before, 'the pages are in the database file');
      assert.equal(ck.starts(), 0, 'no worker was started');
      assert.equal(threads(), idleThreads, 'no extra thread');
      assert.equal(table.list({ state: 'active' }).total, 50);
    } finally {
      await table.close();
    }
  });

  it('a due WAL between 256 KiB and 1 MiB is checkpointed by the worker, which then stops again and says so', async () => {
    let stopped = 0;
    const { path, table, write } = open(50, () => stopped++); // due after 3 s, quiet 1 s to stop
    try {
      const ck = table.store.checkpointer!;
      for (let i = 0; i < 20 && size(`${path}-wal`) <= MAIN_BYTES; i++) await write(1);
      const wal = size(`${path}-wal`);
      assert.ok(wal > MAIN_BYTES && wal < START_BYTES, `WAL ${wal} B`);
      const before = size(path);
      assert.ok(await until(() => ck.starts() === 1, 5000), 'started when due');
      assert.equal(stopped, 0, 'no onCheckpointerStopped while it runs');
      assert.ok(await until(() => !ck.running() && size(`${path}-wal`) === 0, 5000), 'stopped, WAL truncated');
      assert.ok(size(path) > before, 'the pages are in the database file');
      assert.ok(await until(() => stopped === 1, 1000), 'onCheckpointerStopped once it exited (main.ts: idle GC)');
    } finally {
      await table.close();
    }
    assert.equal(stopped, 1, 'not again for the close');
  });

  it('a WAL left by a killed portd is checkpointed when the next one opens the database', async () => {
    const { path, table, write } = open(0); // SQLite's own checkpoints: 1,000 pages stay in the WAL
    await write(40);
    // no close: copy the files as a kill -9 leaves them
    const wal = size(`${path}-wal`);
    assert.ok(wal >= START_BYTES, `WAL ${wal} B`);
    const dir = mkdtempSync(join(tmpdir(), 'portd-ckpt-'));
    dirs.push(dir);
    const copy = join(dir, 'portd.sqlite');
    for (const suffix of ['', '-wal']) {
      const { copyFileSync } = await import('node:fs');
      copyFileSync(`${path}${suffix}`, `${copy}${suffix}`);
    }
    await table.close();
    const again = createLeaseTable({
      database: { path: copy, checkpointIntervalMs: 50 },
      dataplane: createMemoryDataplane(),
      policy: createPolicy(testPolicy({ maxLeasesPerClient: 100_000 })),
      clock: createFixedClock(),
      log: pino({ level: 'silent' }),
      externalAddress: '203.0.113.1',
    });
    try {
      assert.equal(again.store.checkpointer!.starts(), 1, 'started at open');
      assert.ok(await until(() => size(`${copy}-wal`) === 0, 5000), 'checkpointed and truncated');
      assert.equal(again.list({ state: 'active' }).total, 2000, 'every lease of the WAL is in the table');
    } finally {
      await again.close();
    }
  });

  it('a WAL past 1 MiB that is still growing (a burst) starts the worker only once it pauses, or past burstBytes', async () => {
    const opened: { db: Database.Database; ck: ReturnType<typeof createCheckpointer> }[] = [];
    /** a fresh WAL database with a checkpointer of 100 ms periods, due after 60 s: only a pause or the size bound */
    const fresh = (burstBytes: number) => {
      const dir = mkdtempSync(join(tmpdir(), 'portd-ckpt-'));
      dirs.push(dir);
      const path = join(dir, 'burst.sqlite');
      const db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)');
      const ck = createCheckpointer(db, {
        path,
        intervalMs: 100,
        synchronous: 'NORMAL',
        warn: () => {},
        dueMs: 60_000,
        burstBytes,
      });
      opened.push({ db, ck });
      const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
      const blob = Buffer.alloc(3000, 7);
      /** a commit of ≈ 1 page every ms or so, for `ms` */
      const burst = async (ms: number) => {
        const end = Date.now() + ms;
        while (Date.now() < end) {
          insert.run(blob);
          await sleep(1);
        }
      };
      return { ck, burst, wal: () => size(`${path}-wal`) };
    };
    try {
      const a = fresh(32 * 1024 * 1024);
      for (let i = 0; i < 200 && a.wal() < START_BYTES; i++) await a.burst(20);
      assert.ok(a.wal() >= START_BYTES, 'the WAL grew past 1 MiB');
      // still writing, for 10 periods: no worker
      await a.burst(1000);
      assert.ok(a.wal() < 32 * 1024 * 1024, `WAL ${a.wal()} B under burstBytes`);
      assert.equal(a.ck.starts(), 0, 'no worker while the burst writes');
      // the pause: started within a period or two
      assert.ok(await until(() => a.ck.running(), 1000), 'started once the WAL stopped growing');
      // a burst that does not pause: started once past burstBytes
      const b = fresh(3 * 1024 * 1024);
      for (let i = 0; i < 400 && !b.ck.running(); i++) await b.burst(20);
      assert.ok(b.ck.running(), 'started while the burst still wrote');
      assert.ok(b.wal() >= 3 * 1024 * 1024, `and only once past burstBytes (WAL ${b.wal()} B)`);
    } finally {
      for (const o of opened) {
        await o.ck.stop();
        o.db.close();
      }
    }
  });
});
