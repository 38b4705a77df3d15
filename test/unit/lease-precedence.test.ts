/**
 * Admin-defined openings outrank dynamic ones, and the gateway's own ports and trigger ports are not
 * handed to dynamic clients (issue 14, items 6 and 7), at the lease table.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DataplaneBatch, DataplaneEntry } from '../../src/dataplane/types.js';
import type { LeaseEvent, LeaseRequest } from '../../src/leases/types.js';
import { pcpRequest, tablesForFile, upnpRequest } from '../helpers/leases.js';

const HOST = '192.168.77.11';
const upnp = upnpRequest;
const pcp = (over: Partial<LeaseRequest> = {}) => pcpRequest({ protocol: 'udp', ...over });
const natpmp = (over: Partial<LeaseRequest> = {}): LeaseRequest => ({
  source: 'natpmp',
  identity: 'internal',
  protocol: 'udp',
  owner: HOST,
  internalAddress: HOST,
  internalPort: 4100,
  externalPort: 4100,
  allowOtherPort: true,
  lifetime: 3600,
  ...over,
});
const statik = (port: number, over: Partial<LeaseRequest> = {}): LeaseRequest => ({
  source: 'static',
  identity: 'external',
  protocol: 'tcp',
  owner: '192.168.77.20',
  internalAddress: '192.168.77.20',
  internalPort: 443,
  externalPort: port,
  allowOtherPort: false,
  lifetime: null,
  description: 'nas',
  thirdPartyAllowed: true,
  actor: 'admin:ops',
  ...over,
});
const trigger = (start: number, end: number, over: Partial<LeaseRequest> = {}): LeaseRequest => ({
  source: 'trigger',
  identity: 'external',
  protocol: 'tcp',
  owner: '192.168.77.12',
  internalAddress: '192.168.77.12',
  internalPort: start,
  externalPort: start,
  externalPortEnd: end,
  allowOtherPort: false,
  lifetime: 600,
  description: 'trigger game',
  rule: 'game',
  thirdPartyAllowed: true,
  actor: 'trigger:game',
  ...over,
});

const newTable = tablesForFile();
async function table(opts?: Parameters<typeof newTable>[0]) {
  const t = await newTable(opts);
  const batches: DataplaneBatch[] = [];
  const ended: DataplaneEntry[][] = [];
  const dp = t.dataplane as unknown as {
    apply(b: DataplaneBatch): Promise<void>;
    endFlows(e: readonly DataplaneEntry[]): Promise<void>;
  };
  const apply = dp.apply.bind(dp);
  dp.apply = async (b) => {
    batches.push({ add: [...b.add], remove: [...b.remove] });
    return apply(b);
  };
  dp.endFlows = async (e) => {
    ended.push([...e]);
  };
  const events: LeaseEvent[] = [];
  t.table.on((e) => events.push(e));
  return { ...t, batches, ended, events };
}

describe('admin-defined openings replace dynamic leases', () => {
  it('a static forward on a UPnP-held port ends that lease as replaced, in one kernel batch, and ends its flows', async () => {
    const { table: t, batches, ended, events, dataplane } = await table();
    const u = await t.request(upnp());
    assert.ok(u.ok);
    batches.length = 0;
    const s = await t.request(statik(5000));
    assert.ok(s.ok, JSON.stringify(s));
    const old = t.get(u.lease.id)!;
    assert.equal(old.state, 'ended');
    assert.equal(old.endReason, 'replaced');
    assert.deepEqual(
      t.history(u.lease.id).map((h) => h.type),
      ['granted', 'replaced'],
    );
    assert.match(t.history(u.lease.id).at(-1)!.reason ?? '', new RegExp(`replaced by static lease ${s.lease.id}`));
    assert.deepEqual(
      events.filter((e) => e.leaseId === u.lease.id).map((e) => e.type),
      ['granted', 'replaced'],
    );
    assert.equal(batches.length, 1, 'one batch');
    assert.deepEqual(
      batches[0]!.remove.map((e) => e.id),
      [u.lease.id],
    );
    assert.deepEqual(
      batches[0]!.add.map((e) => e.id),
      [s.lease.id],
    );
    assert.deepEqual(
      [...dataplane.entries.values()].map((e) => `${e.internalAddress}:${e.internalPort}`),
      ['192.168.77.20:443'],
    );
    assert.deepEqual(
      ended.flat().map((e) => e.id),
      [u.lease.id],
    );
  });

  it('replaced is sticky: the UPnP renewal gets a conflict, also after the static forward is gone', async () => {
    const { table: t, clock } = await table();
    const u = await t.request(upnp());
    assert.ok(u.ok);
    const s = await t.request(statik(5000, { readOnly: false }));
    assert.ok(s.ok);
    const again = await t.request(upnp());
    assert.ok(!again.ok && again.reason === 'conflict', JSON.stringify(again));
    assert.equal(again.holder.source, 'static');
    // the admin removes the forward: the port is still not the replaced client's for its term
    assert.ok((await t.revoke(s.lease.id, 'admin:ops')).ok);
    const still = await t.request(upnp());
    assert.ok(!still.ok && still.reason === 'conflict', JSON.stringify(still));
    assert.equal(still.holder.id, s.lease.id);
    const other = await t.request(upnp({ owner: '192.168.77.13', internalAddress: '192.168.77.13' }));
    assert.ok(other.ok, 'another host may have it');
    assert.ok(
      (
        await t.release({
          source: 'upnp',
          identity: 'external',
          protocol: 'tcp',
          owner: '192.168.77.13',
          externalPort: 5000,
        })
      ).ok,
    );
    clock.advance(3600_000 + 1);
    const later = await t.request(upnp());
    assert.ok(later.ok, 'after the replaced lease would have ended');
  });

  it('PCP: the renewal of a replaced mapping gets another port; with PREFER_FAILURE a conflict', async () => {
    const { table: t } = await table();
    const p = await t.request(pcp());
    assert.ok(p.ok);
    const s = await t.request(statik(4000, { protocol: 'udp' }));
    assert.ok(s.ok);
    assert.equal(t.get(p.lease.id)!.endReason, 'replaced');
    const strict = await t.request(pcp({ allowOtherPort: false }));
    assert.ok(!strict.ok && strict.reason === 'conflict');
    const again = await t.request(pcp());
    assert.ok(again.ok);
    assert.notEqual(again.lease.externalPort, 4000);
    assert.equal(again.created, true);
  });

  it('PCP and NAT-PMP keep off the replaced port after the forward is gone, for the term', async () => {
    const { table: t } = await table();
    const n = await t.request(natpmp());
    assert.ok(n.ok);
    const s = await t.request(statik(4100, { protocol: 'udp', readOnly: false }));
    assert.ok(s.ok);
    assert.ok((await t.revoke(s.lease.id, 'admin:ops')).ok);
    const again = await t.request(natpmp());
    assert.ok(again.ok);
    assert.notEqual(again.lease.externalPort, 4100);
    const strict = await t.request(pcp({ internalPort: 4101, externalPort: 4100, allowOtherPort: false }));
    assert.ok(!strict.ok && strict.reason === 'conflict');
  });

  it('a trigger replaces every dynamic lease in its range; a static one in it refuses the trigger', async () => {
    const { table: t } = await table();
    const a = await t.request(upnp({ externalPort: 6113, internalPort: 6113 }));
    const b = await t.request(
      upnp({ externalPort: 6115, internalPort: 6115, owner: '192.168.77.13', internalAddress: '192.168.77.13' }),
    );
    assert.ok(a.ok && b.ok);
    const tr = await t.request(trigger(6113, 6119));
    assert.ok(tr.ok, JSON.stringify(tr));
    assert.equal(t.get(a.lease.id)!.endReason, 'replaced');
    assert.equal(t.get(b.lease.id)!.endReason, 'replaced');
    const s = await t.request(statik(7000));
    assert.ok(s.ok);
    const refused = await t.request(trigger(6999, 7001, { rule: 'other' }));
    assert.ok(!refused.ok && refused.reason === 'conflict');
    assert.equal(refused.holder.source, 'static');
  });

  it('a replacement that is then refused changes nothing', async () => {
    const { table: t } = await table();
    const u = await t.request(upnp());
    assert.ok(u.ok);
    // secure mode: a forward asked by one host for another, without thirdPartyAllowed, is not authorized
    const s = await t.request(statik(5000, { thirdPartyAllowed: false, owner: '192.168.77.99' }));
    assert.ok(!s.ok && s.reason === 'not_authorized', JSON.stringify(s));
    assert.deepEqual(
      t.history(u.lease.id).map((h) => h.type),
      ['granted'],
    );
    assert.equal(t.get(u.lease.id)!.state, 'active');
  });

  it('syncStatic replaces the UPnP lease instead of skipping the forward', async () => {
    const { table: t } = await table();
    const u = await t.request(upnp({ externalPort: 8443 }));
    assert.ok(u.ok);
    const r = await t.syncStatic([
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
    assert.deepEqual(r, { added: 1, removed: 0, refused: [] });
    assert.equal(t.get(u.lease.id)!.endReason, 'replaced');
    assert.equal(t.findByExternal('tcp', 8443)!.source, 'static');
  });

  it('sticky holds survive a restart', async () => {
    const first = await table();
    const u = await first.table.request(upnp());
    assert.ok(u.ok);
    const s = await first.table.request(statik(5000, { readOnly: false }));
    assert.ok(s.ok);
    assert.ok((await first.table.revoke(s.lease.id, 'admin:ops')).ok);
    await first.close();
    const second = await table({ dir: first.dir, clock: first.clock });
    const again = await second.table.request(upnp());
    assert.ok(!again.ok && again.reason === 'conflict');
  });
});

describe('ports dynamic clients never get', () => {
  const inUse = new Set(['tcp/2222', 'udp/51820']);
  const portInUse = (protocol: 'tcp' | 'udp', port: number) => inUse.has(`${protocol}/${port}`);
  const triggerPort = (protocol: 'tcp' | 'udp', port: number) =>
    protocol === 'tcp' && port >= 6113 && port <= 6119 ? 'game' : null;

  it("the gateway's own port: in_use for an explicit request, skipped when another port may do", async () => {
    const { table: t } = await table({ policy: { checkPortInUse: true }, portInUse });
    const a = await t.request(upnp({ externalPort: 2222 }));
    assert.ok(!a.ok && a.reason === 'in_use', JSON.stringify(a));
    const b = await t.request(upnp({ externalPort: 2222, allowOtherPort: true }));
    assert.ok(b.ok);
    assert.notEqual(b.lease.externalPort, 2222);
    const c = await t.request(pcp({ internalPort: 51820, externalPort: 51820 }));
    assert.ok(c.ok);
    assert.notEqual(c.lease.externalPort, 51820);
    const d = await t.request(pcp({ internalPort: 51821, externalPort: 51820, allowOtherPort: false }));
    assert.ok(!d.ok && d.reason === 'in_use');
    assert.equal((await t.request(upnp({ protocol: 'udp', externalPort: 2222 }))).ok, true, 'the protocol matters');
  });

  it('allocation walks past in-use ports', async () => {
    const busy = (_p: 'tcp' | 'udp', port: number) => port >= 30000 && port < 30010;
    const { table: t } = await table({
      policy: { checkPortInUse: true },
      portInUse: busy,
      allocationRange: { start: 30000, end: 30010 },
    });
    const a = await t.request(pcp({ internalPort: 30000, externalPort: 30000 }));
    assert.ok(a.ok);
    assert.equal(a.lease.externalPort, 30010);
    const b = await t.request(pcp({ internalPort: 30001, externalPort: 30001 }));
    assert.ok(!b.ok && b.reason === 'no_port');
  });

  it('policy.checkPortInUse off (or absent): the checker is not asked', async () => {
    const { table: t } = await table({ portInUse });
    const a = await t.request(upnp({ externalPort: 2222 }));
    assert.ok(a.ok);
  });

  it("a static forward onto the gateway's own port is granted", async () => {
    const { table: t } = await table({ policy: { checkPortInUse: true }, portInUse });
    const s = await t.request(statik(2222));
    assert.ok(s.ok);
  });

  it("a trigger's ports: a conflict for an explicit request even while no host holds the trigger, skipped otherwise", async () => {
    const { table: t } = await table({ triggerPort });
    const a = await t.request(upnp({ externalPort: 6115 }));
    assert.ok(!a.ok && a.reason === 'conflict', JSON.stringify(a));
    assert.equal(a.holder.source, 'trigger');
    const b = await t.request(pcp({ protocol: 'tcp', internalPort: 6113, externalPort: 6113 }));
    assert.ok(b.ok);
    assert.ok(b.lease.externalPort < 6113 || b.lease.externalPort > 6119);
    assert.ok((await t.request(upnp({ protocol: 'udp', externalPort: 6115 }))).ok, "udp 6115 is no trigger's");
    // the trigger itself gets them
    assert.ok((await t.request(trigger(6113, 6119))).ok);
  });
});
