/**
 * The writer and a lock held by another connection (the WAL checkpointer's TRUNCATE takes SQLite's WAL write
 * lock and keeps it while it copies pages and waits for readers): a tick that cannot begin within busy_timeout
 * (2 s) is retried a little later, not refused. Here a worker thread holds the write lock (BEGIN IMMEDIATE) for
 * 3 s — what a TRUNCATE of a large WAL on a loaded machine did — while 32 requests are submitted: every one is
 * granted and has its row.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { createMemoryDataplane } from '../../src/dataplane/memory.js';
import { createFixedClock } from '../../src/leases/clock.js';
import { createLeaseTable } from '../../src/leases/table.js';
import { createMetrics } from '../../src/metrics.js';
import { createPolicy } from '../../src/policy/policy.js';
import { testPolicy } from '../helpers/leases.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** another connection takes the write lock and keeps it holdMs (Atomics.wait: the thread does nothing else) */
function holdWriteLock(path: string, holdMs: number): Promise<{ released: Promise<void> }> {
  const w = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const db = new (require(workerData.driver))(workerData.path, { fileMustExist: true });
     db.exec('BEGIN IMMEDIATE');
     parentPort.postMessage('locked');
     Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, workerData.holdMs);
     db.exec('COMMIT');
     db.close();`,
    { eval: true, workerData: { driver: createRequire(import.meta.url).resolve('better-sqlite3'), path, holdMs } },
  );
  const released = new Promise<void>((r) => w.once('exit', () => r()));
  return new Promise((resolve, reject) => {
    w.once('error', reject);
    w.once('message', () => resolve({ released }));
  });
}

describe('writer and a held write lock (SQLITE_BUSY)', () => {
  it('a tick that meets the lock past busy_timeout (held 3 s) is retried, not refused: 32 requests all granted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-busy-'));
    dirs.push(dir);
    const path = join(dir, 'portd.sqlite');
    const metrics = createMetrics();
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void warnings.push(l) });
    const table = createLeaseTable({
      database: { path, checkpointIntervalMs: 0 },
      dataplane: createMemoryDataplane(),
      policy: createPolicy(testPolicy({ maxLeasesPerClient: 1000 })),
      clock: createFixedClock(),
      log,
      metrics,
      externalAddress: '203.0.113.1',
    });
    try {
      const { released } = await holdWriteLock(path, 3000);
      const t0 = Date.now();
      const results = await Promise.all(
        Array.from({ length: 32 }, (_, i) =>
          table.request({
            source: 'pcp',
            identity: 'external',
            protocol: 'udp',
            owner: '192.168.77.11',
            internalAddress: '192.168.77.11',
            internalPort: 30000 + i,
            externalPort: 30000 + i,
            allowOtherPort: false,
            lifetime: 3600,
            description: 'busy',
          }),
        ),
      );
      await released;
      const refused = results.filter((r) => !r.ok);
      assert.deepEqual(refused, [], 'no request refused while the lock was held');
      assert.ok(Date.now() - t0 >= 2500, 'they did wait for the lock');
      const rows = table.store.db.prepare('SELECT count(*) AS n FROM leases').get() as { n: number };
      assert.equal(rows.n, 32, 'every granted lease has its row');
      const retries = (await metrics.writerBusyRetries.get()).values[0]?.value ?? 0;
      assert.ok(retries >= 1, `portd_writer_busy_retries_total counted the wait (${retries})`);
      assert.ok(
        warnings.some((w) => w.includes('write lock held by another connection')),
        'a warning says the writer waited on the lock',
      );
    } finally {
      await table.close();
    }
  });
});
