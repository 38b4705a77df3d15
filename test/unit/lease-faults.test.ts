/**
 * The lease table when the database cannot be written (disk full, read-only): regression tests for
 * what the lab's fault suite (test/lab/faults.test.ts) found.
 *   - The batch reaches the dataplane before the commit: a failed commit must take it back before
 *     anyone is answered (no open port for a refused request; a refused renewal keeps the lease).
 *   - An expiry the database refuses is retried with back-off, not in a busy loop.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pcpRequest, tablesForFile } from '../helpers/leases.js';

const pcp = pcpRequest;

const newTable = tablesForFile();

/** a table whose COMMITs fail while `full` is set, as SQLite's do when the disk is full */
async function fullDiskTable() {
  const t = await newTable();
  const commit = t.table.store.tx.commit;
  const run = commit.run.bind(commit);
  const state = { full: false, commits: 0, refusedCommits: 0 };
  commit.run = ((...args: unknown[]) => {
    state.commits++;
    if (state.full) {
      state.refusedCommits++;
      throw new Error('SQLITE_FULL: database or disk is full');
    }
    return run(...args);
  }) as typeof commit.run;
  return { ...t, state };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

describe('lease table: database refuses the commit', () => {
  it('a refused grant leaves nothing in the dataplane and answers unavailable', async () => {
    const { table, dataplane, state } = await fullDiskTable();
    state.full = true;
    const r = await table.request(pcp());
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.reason, 'unavailable');
    assert.equal(dataplane.entries.size, 0, 'the kernel change was taken back before the answer');
    assert.equal(table.countActive().total, 0);
    state.full = false;
    const ok = await table.request(pcp());
    assert.ok(ok.ok);
    assert.equal(dataplane.entries.size, 1);
  });

  it('a refused renewal keeps the lease in the dataplane with its old timeout', async () => {
    const { table, dataplane, state, clock } = await fullDiskTable();
    const g = await table.request(pcp());
    assert.ok(g.ok);
    const before = [...dataplane.entries.values()][0]!;
    clock.advance(60_000);
    state.full = true;
    const r = await table.request(pcp({ lifetime: 7200 }));
    assert.equal(r.ok, false);
    const after = [...dataplane.entries.values()];
    assert.equal(after.length, 1, 'the lease still forwards');
    assert.equal(after[0]!.id, before.id);
    assert.equal(after[0]!.internalPort, 4000);
    // the timeout is what the table still holds: the old expiry, 60 s later
    assert.equal(after[0]!.timeoutSeconds, 3600 - 60 + 5);
    assert.equal(table.get(g.lease.id)!.expiresAt, g.lease.expiresAt);
  });

  it('a refused release keeps the lease in the dataplane (the table still holds it)', async () => {
    const { table, dataplane, state } = await fullDiskTable();
    const g = await table.request(pcp());
    assert.ok(g.ok);
    state.full = true;
    const r = await table.release({
      source: 'pcp',
      identity: 'internal',
      protocol: 'tcp',
      owner: '192.168.77.11',
      internalAddress: '192.168.77.11',
      internalPort: 4000,
      nonce: 'aa'.repeat(12),
    });
    assert.equal(r.ok, false);
    assert.equal(dataplane.entries.size, 1);
    assert.equal(table.get(g.lease.id)!.state, 'active');
  });

  it('an expiry the database refuses is retried with back-off, then done when space returns', async () => {
    const { table, dataplane, state, clock } = await fullDiskTable();
    const g = await table.request(pcp({ lifetime: 200 })); // clamped to the policy minimum, 120 s
    assert.ok(g.ok);
    state.full = true;
    const commitsBefore = state.commits;
    // 20 s past the expiry, in 100 ms steps: a busy retry would try ~200 times
    clock.advance(g.lease.expiresAt! - clock.now());
    for (let i = 0; i < 200; i++) {
      await settle();
      clock.advance(100);
      if (i % 20 === 0) await settle();
    }
    await settle();
    const attempts = state.commits - commitsBefore;
    assert.ok(attempts >= 2 && attempts <= 8, `${attempts} expiry attempts in 20 s`);
    assert.equal(dataplane.entries.size, 0, 'the expired lease is out of the dataplane (closed is the safe side)');
    assert.equal(table.get(g.lease.id)!.state, 'active', 'the row could not be written');
    state.full = false;
    // the next write that goes through shows the database is back: the held-back expiry runs at once,
    // not after its back-off (by now several seconds)
    assert.ok((await table.request(pcp({ internalPort: 4001, externalPort: 4001 }))).ok);
    await settle();
    clock.advance(10); // fires the re-armed 0 ms timer (the fixed clock runs timers on advance)
    for (let i = 0; i < 5; i++) await settle();
    assert.equal(table.get(g.lease.id)!.state, 'ended', 'expired once the database accepts writes again');
    assert.equal(table.get(g.lease.id)!.endReason, 'expired');
  });
});
