/**
 * What the writer tick skips for speed (docs/benchmarks.md, "Session 7: cold start") must not change what it
 * does: a lone job without a savepoint is still taken back whole when it throws; the next-expiry query skipped
 * after grants that expire later still leaves every lease expiring on time; the revocation lookup skipped
 * while no admin revoke holds still refuses when one does, also after a restart.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { LeaseRequest } from '../../src/leases/types.js';
import { makeTableOn, testBackend, type TableOptions } from '../helpers/leases.js';

const pcp = (over: Partial<LeaseRequest> = {}): LeaseRequest => ({
  source: 'pcp',
  identity: 'internal',
  protocol: 'tcp',
  owner: '192.168.77.11',
  internalAddress: '192.168.77.11',
  internalPort: 4000,
  externalPort: 4000,
  allowOtherPort: true,
  lifetime: 3600,
  nonce: 'aa'.repeat(12),
  ...over,
});

const toDispose: { dispose(): Promise<void> }[] = [];
after(async () => {
  for (const t of toDispose) await t.dispose();
});
async function table(opts?: TableOptions) {
  const t = await makeTableOn(testBackend(), opts);
  toDispose.push(t);
  return t;
}
const settle = () => new Promise((r) => setTimeout(r, 20));

describe('lease table: the writer tick shortcuts', () => {
  it('a lone job that throws inside the writer is taken back whole and refused; the next request is served', async () => {
    const { table: t, dataplane } = await table();
    // the lease row goes in, its history row cannot: the job throws after its first write
    t.store.db.exec(`CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.lease_id IN
      (SELECT id FROM leases WHERE internal_port = 6667) BEGIN SELECT RAISE(ABORT, 'boom'); END`);
    const r = await t.request(pcp({ internalPort: 6667, externalPort: 6667 }));
    assert.ok(!r.ok && r.reason === 'unavailable', JSON.stringify(r));
    assert.match(r.detail, /boom/);
    const rows = t.store.db.prepare('SELECT count(*) AS n FROM leases WHERE internal_port = 6667').get() as {
      n: number;
    };
    assert.equal(rows.n, 0, 'the lease row of the failed job was rolled back');
    assert.equal(t.findByInternal('tcp', '192.168.77.11', 6667), null, 'and the caches know it');
    assert.equal(dataplane.entries.size, 0, 'nothing reached the dataplane');
    assert.equal(t.activeCount(), 0);
    const ok = await t.request(pcp({ internalPort: 4001, externalPort: 4001 }));
    assert.ok(ok.ok);
    assert.equal(ok.lease.externalPort, 4001);
    assert.equal(t.activeCount(), 1);
    // the same port again is free: the failed job's port was not left taken in memory
    const again = await t.request(pcp({ internalPort: 6668, externalPort: 6667 }));
    assert.ok(again.ok);
    assert.equal(again.lease.externalPort, 6667);
  });

  it('a lease granted after a longer one moves the expiry timer earlier', async () => {
    const { table: t, dataplane, clock } = await table();
    await t.request(pcp({ lifetime: 3000 }));
    await t.request(pcp({ internalPort: 4001, externalPort: 4001, lifetime: 3600 }));
    const short = await t.request(pcp({ internalPort: 4002, externalPort: 4002, lifetime: 200 }));
    assert.ok(short.ok);
    clock.advance(199_000);
    await settle();
    assert.equal(dataplane.entries.size, 3);
    clock.advance(1_000);
    await settle();
    assert.equal(t.get(short.lease.id)!.state, 'ended', 'the short lease expired on time');
    assert.equal(t.get(short.lease.id)!.endReason, 'expired');
    assert.equal(dataplane.entries.size, 2);
  });

  it('renewing the earliest lease to later: not expired at its old time, expired at its new one', async () => {
    const { table: t, dataplane, clock } = await table();
    const a = await t.request(pcp({ lifetime: 200 }));
    const b = await t.request(pcp({ internalPort: 4001, externalPort: 4001, lifetime: 1000 }));
    assert.ok(a.ok && b.ok);
    clock.advance(100_000);
    const renewed = await t.request(pcp({ lifetime: 500 }));
    assert.ok(renewed.ok && !renewed.created);
    clock.advance(150_000); // past a's first expiry (200 s), before its new one (600 s)
    await settle();
    assert.equal(t.get(a.lease.id)!.state, 'active');
    assert.equal(dataplane.entries.size, 2);
    clock.advance(350_000); // 600 s
    await settle();
    assert.equal(t.get(a.lease.id)!.state, 'ended');
    assert.equal(t.get(b.lease.id)!.state, 'active');
    clock.advance(400_000); // 1000 s
    await settle();
    assert.equal(t.get(b.lease.id)!.state, 'ended');
    assert.equal(dataplane.entries.size, 0);
  });

  it('a revoke read back after a restart still refuses the holder until its term ends', async () => {
    const first = await makeTableOn(testBackend());
    const a = await first.table.request(pcp({ lifetime: 600 }));
    assert.ok(a.ok);
    assert.ok((await first.table.revoke(a.lease.id, 'admin:ops')).ok);
    await first.close();
    const second = await table({ dir: first.dir, clock: first.clock });
    toDispose.push(first);
    const again = await second.table.request(pcp({ lifetime: 600 }));
    assert.ok(!again.ok && again.reason === 'not_authorized', JSON.stringify(again));
    assert.match(again.detail, /revoked by the admin/);
    second.clock.advance(600_000);
    assert.ok((await second.table.request(pcp({ lifetime: 600 }))).ok, 'past the term it may be asked for again');
  });
});
