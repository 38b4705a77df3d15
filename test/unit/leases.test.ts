import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LeaseRequest } from '../../src/leases/types.js';
import { pcpRequest, tablesForFile, upnpRequest } from '../helpers/leases.js';

const pcp = pcpRequest;
const upnp = (over: Partial<LeaseRequest> = {}) => upnpRequest({ lifetime: 0, ...over });

const table = tablesForFile();

describe('lease table: grants and renewals', () => {
  it('grants a lease, writes it to the dataplane and renews it by internal key', async () => {
    const { table: t, dataplane, clock } = await table();
    const r = await t.request(pcp());
    assert.ok(r.ok);
    assert.equal(r.lease.externalPort, 4000);
    assert.equal(r.created, true);
    assert.equal(dataplane.entries.size, 1);
    assert.equal([...dataplane.entries.values()][0]!.timeoutSeconds, 3600 + 5);
    clock.advance(1000_000);
    const again = await t.request(pcp({ externalPort: 0 })); // a renewal may suggest no port (RFC 6887 §11.3)
    assert.ok(again.ok);
    assert.equal(again.created, false);
    assert.equal(again.lease.id, r.lease.id);
    assert.equal(again.lease.externalPort, 4000);
    assert.equal(again.lease.expiresAt, clock.now() + 3600_000);
    assert.equal(dataplane.entries.size, 1);
    assert.deepEqual(
      t.history(r.lease.id).map((h) => h.type),
      ['granted', 'renewed'],
    );
  });

  it('clamps lifetimes per source and caps UPnP permanent (0)', async () => {
    const { table: t } = await table();
    const a = await t.request(pcp({ lifetime: 3_600_000 })); // milliseconds sent as seconds
    assert.ok(a.ok);
    assert.equal(a.lifetime, 86400);
    const b = await t.request(pcp({ internalPort: 4001, externalPort: 4001, lifetime: 5 }));
    assert.ok(b.ok);
    assert.equal(b.lifetime, 120);
    const c = await t.request(upnp({ lifetime: 0 }));
    assert.ok(c.ok);
    assert.equal(c.lifetime, 604800);
    assert.equal(c.lease.requestedLifetime, 0);
  });

  it('identical UPnP repeats are renewals, not conflicts', async () => {
    const { table: t } = await table();
    const a = await t.request(upnp());
    const b = await t.request(upnp());
    assert.ok(a.ok && b.ok);
    assert.equal(b.created, false);
    assert.equal(a.lease.id, b.lease.id);
  });

  it('another owner gets a typed conflict naming the holder source', async () => {
    const { table: t } = await table();
    const a = await t.request(pcp({ externalPort: 6000, allowOtherPort: false }));
    assert.ok(a.ok);
    const b = await t.request(upnp({ owner: '192.168.77.12', internalAddress: '192.168.77.12', externalPort: 6000 }));
    assert.equal(b.ok, false);
    assert.ok(!b.ok && b.reason === 'conflict');
    assert.equal(b.holder.source, 'pcp');
    assert.equal(b.holder.id, a.lease.id);
  });

  it('ranges conflict on overlap, not only on their first port', async () => {
    const { table: t } = await table();
    const s = await t.request({
      source: 'static',
      identity: 'external',
      protocol: 'udp',
      owner: '192.168.77.20',
      internalAddress: '192.168.77.20',
      internalPort: 7000,
      externalPort: 7000,
      externalPortEnd: 7010,
      allowOtherPort: false,
      lifetime: null,
      thirdPartyAllowed: true,
    });
    assert.ok(s.ok);
    assert.equal(s.lease.expiresAt, null);
    const inside = await t.request(upnp({ protocol: 'udp', externalPort: 7005, internalPort: 7005 }));
    assert.ok(!inside.ok && inside.reason === 'conflict' && inside.holder.source === 'static');
    const otherProto = await t.request(upnp({ protocol: 'tcp', externalPort: 7005, internalPort: 7005 }));
    assert.ok(otherProto.ok);
    const after = await t.request(upnp({ protocol: 'udp', externalPort: 7011, internalPort: 7011 }));
    assert.ok(after.ok);
  });

  it('allocates another port when allowed, and refuses with PREFER_FAILURE semantics otherwise', async () => {
    const { table: t } = await table();
    await t.request(upnp({ externalPort: 9000 }));
    const other = await t.request(
      pcp({ owner: '192.168.77.12', internalAddress: '192.168.77.12', externalPort: 9000 }),
    );
    assert.ok(other.ok);
    assert.notEqual(other.lease.externalPort, 9000);
    const strict = await t.request(
      pcp({ owner: '192.168.77.13', internalAddress: '192.168.77.13', externalPort: 9000, allowOtherPort: false }),
    );
    assert.ok(!strict.ok && strict.reason === 'conflict');
  });

  it('finds the last free port quickly when the range is almost full', async () => {
    const { table: t } = await table({
      allocationRange: { start: 20000, end: 20999 },
      policy: { maxLeasesPerClient: 5000 },
    });
    for (let p = 20000; p <= 20999; p++)
      if (p !== 20777) {
        const r = await t.request(upnp({ externalPort: p, internalPort: p, lifetime: 3600 }));
        assert.ok(r.ok, `port ${p}`);
      }
    const r = await t.request(pcp({ internalPort: 1234, externalPort: 0 }));
    assert.ok(r.ok);
    assert.equal(r.lease.externalPort, 20777);
    const none = await t.request(pcp({ internalPort: 1235, externalPort: 0 }));
    assert.ok(!none.ok && none.reason === 'no_port');
  });

  it('PCP adopts a NAT-PMP lease for the same internal key, then enforces its nonce', async () => {
    const { table: t } = await table();
    const pmp = await t.request(pcp({ source: 'natpmp', nonce: null }));
    assert.ok(pmp.ok);
    const adopt = await t.request(pcp({ nonce: 'bb'.repeat(12) }));
    assert.ok(adopt.ok);
    assert.equal(adopt.lease.id, pmp.lease.id);
    assert.equal(adopt.lease.source, 'natpmp');
    assert.equal(adopt.lease.nonce, 'bb'.repeat(12));
    const wrong = await t.request(pcp({ nonce: 'cc'.repeat(12) }));
    assert.ok(!wrong.ok && wrong.reason === 'not_authorized');
    // after adoption NAT-PMP, which has no nonce to show, may not renew it (RFC 6887 §11.2, Appendix A)
    const pmpAgain = await t.request(pcp({ source: 'natpmp', nonce: null }));
    assert.ok(!pmpAgain.ok && pmpAgain.reason === 'not_authorized');
  });
});

describe('lease table: policy', () => {
  it('secure mode: a client may only map to itself', async () => {
    const { table: t } = await table();
    const r = await t.request(upnp({ internalAddress: '192.168.77.99' }));
    assert.ok(!r.ok && r.reason === 'not_authorized');
  });
  it('reserved ports are refused', async () => {
    const { table: t } = await table();
    const r = await t.request(upnp({ externalPort: 22 }));
    assert.ok(!r.ok && r.reason === 'reserved');
  });
  it('rules: first match wins', async () => {
    const rules = [
      {
        action: 'deny' as const,
        extStart: 5000,
        extEnd: 5000,
        address: '192.168.77.0',
        prefix: 24,
        intStart: 1,
        intEnd: 65535,
        text: 'deny 5000 192.168.77.0/24 1-65535',
      },
      {
        action: 'allow' as const,
        extStart: 1024,
        extEnd: 65535,
        address: '192.168.77.0',
        prefix: 24,
        intStart: 1024,
        intEnd: 65535,
        text: 'allow 1024-65535 192.168.77.0/24 1024-65535',
      },
      {
        action: 'deny' as const,
        extStart: 0,
        extEnd: 65535,
        address: '0.0.0.0',
        prefix: 0,
        intStart: 0,
        intEnd: 65535,
        text: 'deny 0-65535 0.0.0.0/0 0-65535',
      },
    ];
    const { table: t } = await table({ policy: { rules } });
    const denied = await t.request(upnp({ externalPort: 5000 }));
    assert.ok(!denied.ok && denied.reason === 'denied');
    assert.match(denied.detail, /deny 5000/);
    assert.ok((await t.request(upnp({ externalPort: 5001 }))).ok);
    const lowInternal = await t.request(upnp({ externalPort: 5002, internalPort: 80 }));
    assert.ok(!lowInternal.ok && lowInternal.reason === 'denied');
    const otherNet = await t.request(upnp({ owner: '10.0.0.5', internalAddress: '10.0.0.5', externalPort: 5003 }));
    assert.ok(!otherNet.ok && otherNet.reason === 'denied');
  });
  it('allocation searches only the ports the rules leave open: a client confined to a full block gets no_port, others still get ports', async () => {
    const rules = [
      {
        action: 'allow' as const,
        extStart: 40000,
        extEnd: 40003,
        address: '192.168.77.11',
        prefix: 32,
        intStart: 1,
        intEnd: 65535,
        text: 'allow 40000-40003 192.168.77.11/32 1-65535',
      },
      {
        action: 'deny' as const,
        extStart: 0,
        extEnd: 65535,
        address: '192.168.77.11',
        prefix: 32,
        intStart: 0,
        intEnd: 65535,
        text: 'deny 0-65535 192.168.77.11/32 0-65535',
      },
    ];
    const { table: t } = await table({ policy: { rules } });
    const got: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await t.request(pcp({ internalPort: 5000 + i, externalPort: 0 }));
      assert.ok(r.ok, `grant ${i}`);
      got.push(r.lease.externalPort);
    }
    assert.deepEqual(got.sort(), [40000, 40001, 40002, 40003]);
    const full = await t.request(pcp({ internalPort: 5100, externalPort: 0 }));
    assert.ok(!full.ok && full.reason === 'no_port');
    const other = await t.request(
      pcp({ owner: '192.168.77.12', internalAddress: '192.168.77.12', internalPort: 5100, externalPort: 40001 }),
    );
    assert.ok(
      other.ok && other.lease.externalPort !== 40001,
      'another client is moved off the taken port, not refused',
    );
  });

  it('per-client quota', async () => {
    const { table: t } = await table({ policy: { maxLeasesPerClient: 3 } });
    for (let i = 0; i < 3; i++) assert.ok((await t.request(upnp({ externalPort: 30000 + i }))).ok);
    const r = await t.request(upnp({ externalPort: 30010 }));
    assert.ok(!r.ok && r.reason === 'quota');
    assert.ok((await t.request(upnp({ externalPort: 30000 }))).ok, 'a renewal is not a new lease');
    assert.ok(
      (await t.request(upnp({ owner: '192.168.77.12', internalAddress: '192.168.77.12', externalPort: 30011 }))).ok,
    );
  });
});

describe('lease table: release, revoke, expiry', () => {
  it('release checks the nonce; releasing nothing succeeds', async () => {
    const { table: t, dataplane } = await table();
    await t.request(pcp());
    const bad = await t.release({
      source: 'pcp',
      identity: 'internal',
      protocol: 'tcp',
      owner: '192.168.77.11',
      internalAddress: '192.168.77.11',
      internalPort: 4000,
      nonce: 'ff'.repeat(12),
    });
    assert.ok(!bad.ok && bad.reason === 'not_authorized');
    assert.equal(dataplane.entries.size, 1);
    const good = await t.release({
      source: 'pcp',
      identity: 'internal',
      protocol: 'tcp',
      owner: '192.168.77.11',
      internalAddress: '192.168.77.11',
      internalPort: 4000,
      nonce: 'aa'.repeat(12),
    });
    assert.ok(good.ok && good.lease?.endReason === 'released');
    assert.equal(dataplane.entries.size, 0);
    const none = await t.release({
      source: 'pcp',
      identity: 'internal',
      protocol: 'tcp',
      owner: '192.168.77.11',
      internalAddress: '192.168.77.11',
      internalPort: 4000,
      nonce: 'aa'.repeat(12),
    });
    assert.ok(none.ok && none.lease === null);
  });

  it('revoke ends a lease with the actor in its history; read-only leases refuse', async () => {
    const { table: t, dataplane } = await table();
    const a = await t.request(upnp());
    assert.ok(a.ok);
    const r = await t.revoke(a.lease.id, 'admin:ops', 'abuse');
    assert.ok(r.ok && r.lease?.state === 'ended');
    assert.equal(dataplane.entries.size, 0);
    const h = t.history(a.lease.id);
    assert.deepEqual(h.at(-1), {
      leaseId: a.lease.id,
      type: 'revoked',
      at: h.at(-1)!.at,
      actor: 'admin:ops',
      reason: 'abuse',
    });
    const st = await t.syncStatic([
      {
        protocol: 'tcp',
        externalPort: 8443,
        externalPortEnd: 8443,
        internalAddress: '192.168.77.20',
        internalPort: 443,
        remoteAddress: null,
        description: 'nas',
      },
    ]);
    assert.equal(st.added, 1);
    const ro = t.list({ source: 'static' }).leases[0]!;
    assert.equal(ro.readOnly, true);
    const refused = await t.revoke(ro.id, 'admin:ops');
    assert.ok(!refused.ok && refused.reason === 'not_authorized');
    const removed = await t.syncStatic([]);
    assert.equal(removed.removed, 1);
    assert.equal(t.list({ source: 'static' }).total, 0);
  });

  it('expires with one timer at the earliest expiry and removes from the dataplane', async () => {
    const { table: t, dataplane, clock } = await table();
    await t.request(pcp({ lifetime: 200 }));
    await t.request(pcp({ internalPort: 4001, externalPort: 4001, lifetime: 300 }));
    assert.equal(dataplane.entries.size, 2);
    const events: string[] = [];
    t.on((e) => events.push(e.type));
    clock.advance(199_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(dataplane.entries.size, 2);
    clock.advance(1_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(dataplane.entries.size, 1);
    assert.deepEqual(events, ['expired']);
    clock.advance(100_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(dataplane.entries.size, 0);
    assert.equal(t.list({ state: 'ended' }).total, 2);
    assert.equal(t.list({ state: 'ended' }).leases[0]!.endReason, 'expired');
  });

  it('a wall-clock jump of hours neither expires nor extends leases', async () => {
    const { table: t, dataplane, clock } = await table();
    const a = await t.request(pcp({ lifetime: 600 }));
    assert.ok(a.ok);
    clock.jumpWall(5 * 3600_000); // NTP sets the time after boot
    const drift = await t.checkWallClock();
    assert.equal(drift, 5 * 3600_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(dataplane.entries.size, 1, 'not expired by the jump');
    const l = t.get(a.lease.id)!;
    assert.equal(l.expiresAt! - clock.now(), 600_000, 'remaining lifetime unchanged');
    clock.advance(599_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(dataplane.entries.size, 1);
    clock.advance(1_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(dataplane.entries.size, 0, 'expired on time, not extended');
  });
});

describe('lease table: time across restarts, sticky revokes', () => {
  it('a restart with the wall clock hours behind neither extends leases nor moves them when NTP steps', async () => {
    const first = await table();
    const a = await first.table.request(pcp({ lifetime: 600 }));
    assert.ok(a.ok);
    first.clock.advance(60_000);
    await first.table.checkWallClock(); // records how far time has come
    const lastSeen = first.clock.now();
    await first.close();
    const { createFixedClock } = await import('../../src/leases/clock.js');
    const slow = createFixedClock(lastSeen - 3 * 3600_000); // router booted without a clock chip
    const second = await table({ dir: first.dir, clock: slow });
    assert.equal(slow.now(), lastSeen, 'portd time starts from the last time it saw, not from the slow wall clock');
    const l = second.table.get(a.lease.id)!;
    assert.equal(l.expiresAt! - slow.now(), 540_000, '540 s left, not 3 h more');
    await second.table.reconcile('start');
    assert.equal([...second.dataplane.entries.values()][0]!.timeoutSeconds, 540 + 5);
    slow.jumpWall(3 * 3600_000); // NTP sets the time
    assert.equal(await second.table.checkWallClock(), 0, 'nothing to move: portd time was right');
    assert.equal(second.table.get(a.lease.id)!.expiresAt! - slow.now(), 540_000);
  });

  it('a revoke sticks for the rest of the lease term: the holder cannot simply take it back', async () => {
    const { table: t, clock } = await table();
    const a = await t.request(pcp({ lifetime: 600 }));
    assert.ok(a.ok);
    assert.ok((await t.revoke(a.lease.id, 'admin:ops')).ok);
    const again = await t.request(pcp({ lifetime: 600 }));
    assert.ok(!again.ok && again.reason === 'not_authorized');
    assert.match(again.detail, /revoked by the admin/);
    const upnpSamePort = await t.request(upnp({ externalPort: a.lease.externalPort, internalPort: 4000 }));
    assert.ok(!upnpSamePort.ok && upnpSamePort.reason === 'not_authorized');
    const other = await t.request(pcp({ internalPort: 4001, externalPort: 4001 }));
    assert.ok(other.ok, 'other mappings of the same host are unaffected');
    clock.advance(600_000);
    const later = await t.request(pcp({ lifetime: 600 }));
    assert.ok(later.ok, 'after the revoked lease would have expired, it may be asked for again');
  });
});

describe('lease table: group commit and durability', () => {
  it('a failed batch is rolled back and retried one by one: only the culprit fails', async () => {
    const { table: t, dataplane } = await table({
      dataplane: { failIf: (b) => b.add.some((e) => e.internalPort === 6666) },
    });
    const reqs = [4100, 4101, 6666, 4102].map((p) => t.request(pcp({ internalPort: p, externalPort: p })));
    const res = await Promise.all(reqs);
    assert.deepEqual(
      res.map((r) => r.ok),
      [true, true, false, true],
    );
    assert.ok(!res[2]!.ok && res[2]!.reason === 'unavailable');
    assert.equal(dataplane.entries.size, 3);
    assert.equal(t.list().total, 3);
    assert.equal(t.findByInternal('tcp', '192.168.77.11', 6666), null);
  });

  it('many requests in flight share ticks', async () => {
    const { table: t, dataplane } = await table({ policy: { maxLeasesPerClient: 1000 } });
    const res = await Promise.all(
      Array.from({ length: 200 }, (_, i) => t.request(pcp({ internalPort: 10000 + i, externalPort: 10000 + i }))),
    );
    assert.ok(res.every((r) => r.ok));
    assert.ok(dataplane.batches < 50, `batches ${dataplane.batches}`);
    assert.equal(dataplane.entries.size, 200);
  });

  it('persists across reopen and reconcile restores the dataplane', async () => {
    const first = await table();
    const a = await first.table.request(pcp());
    assert.ok(a.ok);
    await first.close();
    const second = await table({ dir: first.dir, clock: first.clock });
    assert.equal(second.table.get(a.lease.id)?.externalPort, 4000);
    assert.equal(second.dataplane.entries.size, 0);
    const r = await second.table.reconcile('start');
    assert.equal(r.drift, 1);
    assert.equal(second.dataplane.entries.size, 1);
  });

  it('after a reopen, who holds a port or an internal endpoint is known again (from the rows, not an index)', async () => {
    const first = await table();
    const a = await first.table.request(pcp());
    const u = await first.table.request(
      upnp({ externalPort: 6000, externalPortEnd: 6009, source: 'static', identity: 'external', readOnly: true }),
    );
    assert.ok(a.ok && u.ok);
    await first.close();
    const second = await table({ dir: first.dir, clock: first.clock });
    const indexes = (
      second.table.store.db
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'leases'`)
        .all() as { name: string }[]
    ).map((r) => r.name);
    // none over random keys (port, internal endpoint, owner): only time-ordered ones, which append
    assert.deepEqual(indexes.filter((n) => !n.startsWith('sqlite_autoindex')).sort(), [
      'leases_active_created',
      'leases_active_expiry',
      'leases_active_src',
      'leases_ended',
      'leases_ended_created',
    ]);
    // renewal by internal key: the same lease, not a second one
    const renewed = await second.table.request(pcp({ lifetime: 7200 }));
    assert.ok(renewed.ok && !renewed.created && renewed.lease.id === a.lease.id);
    // another owner inside the static range: a conflict naming it
    const clash = await second.table.request(
      upnp({ owner: '192.168.77.12', internalAddress: '192.168.77.12', externalPort: 6005 }),
    );
    assert.ok(
      !clash.ok && clash.reason === 'conflict' && clash.holder.source === 'static' && clash.holder.id === u.lease.id,
    );
    assert.equal(second.table.findByInternal('tcp', '192.168.77.11', 4000)?.id, a.lease.id);
    assert.equal(second.table.findByExternal('tcp', 6009)?.id, u.lease.id);
    assert.equal(second.table.findByExternal('tcp', 6010), null);
    // released: gone from both
    const rel = await second.table.release({
      source: 'pcp',
      identity: 'internal',
      protocol: 'tcp',
      owner: '192.168.77.11',
      internalAddress: '192.168.77.11',
      internalPort: 4000,
      nonce: 'aa'.repeat(12),
    });
    assert.ok(rel.ok && rel.lease?.id === a.lease.id);
    assert.equal(second.table.findByInternal('tcp', '192.168.77.11', 4000), null);
    assert.equal(second.table.findByExternal('tcp', 4000), null);
  });

  it('a second table on the same database is refused', async () => {
    const first = await table();
    await assert.rejects(() => table({ dir: first.dir }), /PORTD_DATABASE_LOCKED|in use by another portd/);
  });
});

describe('lease table: NAT-PMP and PCP nonces (RFC 6887 §11.2, Appendix A)', () => {
  const natpmp = (over: Partial<LeaseRequest> = {}): LeaseRequest => ({
    source: 'natpmp',
    identity: 'internal',
    protocol: 'tcp',
    owner: '192.168.77.11',
    internalAddress: '192.168.77.11',
    internalPort: 4000,
    externalPort: 4000,
    allowOtherPort: true,
    lifetime: 600,
    ...over,
  });
  const natpmpRelease = {
    source: 'natpmp',
    identity: 'internal',
    protocol: 'tcp',
    owner: '192.168.77.11',
    internalAddress: '192.168.77.11',
    internalPort: 4000,
  } as const;

  it('NAT-PMP may neither renew nor release a lease that carries a PCP nonce; the lease is unchanged', async () => {
    const { table: t, dataplane, clock } = await table();
    const g = await t.request(pcp({ lifetime: 3600 }));
    assert.ok(g.ok);
    clock.advance(60_000);
    const renew = await t.request(natpmp({ lifetime: 7200 }));
    assert.ok(!renew.ok && renew.reason === 'not_authorized', 'a NAT-PMP renewal of a PCP-nonce lease is refused');
    // a request for the same internal port suggesting another external port names the same mapping: refused, no second
    // lease
    const other = await t.request(natpmp({ externalPort: 4100, lifetime: 7200 }));
    assert.ok(!other.ok && other.reason === 'not_authorized');
    const del = await t.release(natpmpRelease);
    assert.ok(!del.ok && del.reason === 'not_authorized', 'a NAT-PMP delete of a PCP-nonce lease is refused');
    const now = t.get(g.lease.id)!;
    assert.equal(now.state, 'active');
    assert.equal(now.expiresAt, g.lease.expiresAt, 'not renewed');
    assert.equal(now.nonce, g.lease.nonce);
    assert.equal(t.list({ owner: '192.168.77.11' }).total, 1);
    assert.equal(dataplane.entries.size, 1);
    assert.deepEqual(
      t.history(g.lease.id).map((h) => h.type),
      ['granted'],
    );
  });

  it('a NAT-PMP-created lease (no nonce) is still renewed by NAT-PMP, adopted by PCP, and then belongs to the nonce', async () => {
    const { table: t, clock } = await table();
    const a = await t.request(natpmp());
    assert.ok(a.ok && a.lease.nonce === null);
    clock.advance(10_000);
    const again = await t.request(natpmp({ externalPort: 0, lifetime: 900 }));
    assert.ok(again.ok && !again.created && again.lease.id === a.lease.id, 'NAT-PMP renews its own lease');
    const adopt = await t.request(pcp({ lifetime: 1200 }));
    assert.ok(
      adopt.ok && !adopt.created && adopt.lease.id === a.lease.id && adopt.lease.nonce === 'aa'.repeat(12),
      'PCP adopts it',
    );
    const after = await t.request(natpmp());
    assert.ok(!after.ok && after.reason === 'not_authorized', 'after adoption NAT-PMP has no proof');
    // a NAT-PMP lease without a nonce is released by NAT-PMP
    const b = await t.request(natpmp({ internalPort: 4001, externalPort: 4001 }));
    assert.ok(b.ok);
    const rel = await t.release({ ...natpmpRelease, internalPort: 4001 });
    assert.ok(rel.ok && rel.lease?.id === b.lease.id);
  });
});
