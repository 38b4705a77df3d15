/**
 * The lease model's address family (issue 15 item 2): an IPv6 pinhole is a lease without translation in
 * the same table, with its own uniqueness rule (protocol, internal endpoint, remote), the same quotas,
 * secure mode, history, events, metrics and listings; and a database from before the family column opens
 * with every lease kept.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { LeaseEvent, LeaseRequest } from '../../src/leases/types.js';
import { MIGRATIONS } from '../../src/leases/store.js';
import { makeTable, makeTableOn, tablesForFile, testBackend, upnpRequest, type TestTable } from '../helpers/leases.js';

const H1 = '2001:db8:77::10';
const H2 = '2001:db8:77::11';
const pinhole = (over: Partial<LeaseRequest> = {}): LeaseRequest => ({
  family: 6,
  source: 'upnp',
  identity: 'internal',
  protocol: 'tcp',
  owner: H1,
  internalAddress: H1,
  internalPort: 5000,
  allowOtherPort: false,
  lifetime: 3600,
  description: 'game',
  ...over,
});
const mapping = upnpRequest;

const table = tablesForFile();
const row = (t: TestTable, id: string) =>
  t.table.store.db.prepare('SELECT * FROM leases WHERE id = ?').get(id) as Record<string, unknown>;

describe('an IPv6 pinhole is a lease without translation', () => {
  it('is stored with family 6, canonical addresses and external endpoint = internal endpoint', async () => {
    const t = await table();
    const g = await t.table.request(
      pinhole({ internalAddress: '2001:DB8:77:0:0::10', owner: '2001:db8:77:0::10', remoteAddress: '2001:DB8:113::7' }),
    );
    assert.ok(g.ok, JSON.stringify(g));
    assert.equal(g.lease.family, 6);
    assert.equal(g.lease.internalAddress, H1);
    assert.equal(g.lease.externalAddress, H1);
    assert.equal(g.lease.owner, H1);
    assert.equal(g.lease.remoteAddress, '2001:db8:113::7');
    assert.deepEqual([g.lease.externalPort, g.lease.externalPortEnd, g.lease.internalPort], [5000, 5000, 5000]);
    const r = row(t, g.lease.id);
    assert.equal(r['family'], 6);
    assert.equal(r['internal_address'], H1);
    assert.equal(r['external_address'], H1);
    assert.equal(t.table.get(g.lease.id)?.family, 6);
    // the dataplane gets a family-6 entry
    const entries = [...t.dataplane.entries.values()];
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.family, 6);
    assert.equal(entries[0]!.internalAddress, H1);
    assert.equal(entries[0]!.externalAddress, H1);
    // an IPv4 lease carries family 4
    const m = await t.table.request(mapping());
    assert.ok(m.ok && m.lease.family === 4);
    assert.equal(row(t, m.lease.id)['family'], 4);
  });

  it('allocates no external port: a reserved or taken IPv4 port number is no obstacle', async () => {
    const t = await table();
    const m = await t.table.request(mapping({ internalPort: 443, externalPort: 8443 }));
    assert.ok(m.ok);
    // 443 is in policy.reservedPorts (the gateway's own): a pinhole opens the LAN host's port, not the gateway's
    const p = await t.table.request(pinhole({ internalPort: 443, allowOtherPort: true }));
    assert.ok(p.ok, JSON.stringify(p));
    assert.equal(p.lease.externalPort, 443);
    // the IPv4 port 8443 is still taken by the mapping, and the pinhole did not take 443 from IPv4
    assert.equal(t.table.findByExternal('tcp', 443), null);
    assert.equal(t.table.findByExternal('tcp', 8443)?.id, m.lease.id);
  });

  it('refuses an external port other than the internal one (no translation)', async () => {
    const t = await table();
    const r = await t.table.request(pinhole({ externalPort: 6000, allowOtherPort: true }));
    assert.ok(!r.ok && r.reason === 'invalid', JSON.stringify(r));
    assert.match(r.detail, /no translation/);
    assert.equal(t.table.activeCount(), 0);
  });

  it('refuses targets a WAN peer cannot reach, saying why', async () => {
    const t = await table({ policy: { secureMode: false } });
    for (const bad of ['fe80::10', 'ff02::1', '::1', '::ffff:192.168.77.11', 'not-an-address', '192.168.77.11']) {
      const r = await t.table.request(pinhole({ internalAddress: bad }));
      assert.ok(!r.ok && r.reason === 'invalid', `${bad}: ${JSON.stringify(r)}`);
    }
    const ula = await t.table.request(pinhole({ internalAddress: 'fd00:77::10' }));
    assert.ok(ula.ok, 'a unique-local target is a pinhole target');
  });
});

describe('uniqueness: protocol, internal endpoint, remote', () => {
  it('a pinhole and an IPv4 mapping on the same port number coexist', async () => {
    const t = await table();
    assert.ok((await t.table.request(mapping())).ok);
    const p = await t.table.request(pinhole());
    assert.ok(p.ok && p.created, JSON.stringify(p));
    assert.equal(t.dataplane.entries.size, 2);
  });

  it('two hosts on the same port, and one host for two remotes, do not conflict (also within one tick)', async () => {
    const t = await table();
    const [a, b, c] = await Promise.all([
      t.table.request(pinhole()),
      t.table.request(pinhole({ owner: H2, internalAddress: H2 })),
      t.table.request(pinhole({ remoteAddress: '2001:db8:113::7' })),
    ]);
    assert.ok(a.ok && b.ok && c.ok, JSON.stringify([a, b, c]));
    assert.equal(new Set([a.lease.id, b.lease.id, c.lease.id]).size, 3);
    assert.equal(t.dataplane.entries.size, 3);
  });

  it('the same owner asking again renews; another owner (secure mode off) gets a conflict', async () => {
    const t = await table({ policy: { secureMode: false } });
    const a = await t.table.request(pinhole());
    assert.ok(a.ok);
    // any spelling of the address is one key
    const again = await t.table.request(pinhole({ internalAddress: '2001:db8:77:0:0:0:0:10', lifetime: 7200 }));
    assert.ok(again.ok && !again.created && again.lease.id === a.lease.id, JSON.stringify(again));
    assert.equal(again.lease.renewCount, 1);
    const other = await t.table.request(pinhole({ owner: H2 }));
    assert.ok(!other.ok && other.reason === 'conflict', JSON.stringify(other));
    assert.equal(other.holder.id, a.lease.id);
    // an overlapping range is the same door too
    const range = await t.table.request(
      pinhole({ owner: H2, internalPort: 4990, externalPort: 4990, externalPortEnd: 5010 }),
    );
    assert.ok(!range.ok && range.reason === 'conflict');
    assert.equal(t.table.activeCount(), 1);
  });

  it('a static pinhole replaces a dynamic one on the same door', async () => {
    const t = await table();
    const a = await t.table.request(pinhole());
    assert.ok(a.ok);
    const s = await t.table.request(
      pinhole({ source: 'static', identity: 'external', owner: H1, lifetime: null, thirdPartyAllowed: true }),
    );
    assert.ok(s.ok && s.created, JSON.stringify(s));
    assert.equal(t.table.get(a.lease.id)?.endReason, 'replaced');
    assert.equal(t.dataplane.entries.size, 1);
    assert.equal([...t.dataplane.entries.values()][0]!.id, s.lease.id);
  });
});

describe('quotas, secure mode', () => {
  it("an owner's pinholes count in policy.maxLeasesPerClient", async () => {
    const t = await table({ policy: { maxLeasesPerClient: 2 } });
    assert.ok((await t.table.request(pinhole({ internalPort: 5000 }))).ok);
    assert.ok((await t.table.request(pinhole({ internalPort: 5001 }))).ok);
    const r = await t.table.request(pinhole({ internalPort: 5002 }));
    assert.ok(!r.ok && r.reason === 'quota', JSON.stringify(r));
  });

  it('secure mode: only to the owner itself (any spelling), unless sameHost says it is the same host', async () => {
    const t = await table();
    const r = await t.table.request(pinhole({ owner: H2 }));
    assert.ok(!r.ok && r.reason === 'not_authorized', JSON.stringify(r));
    assert.match(r.detail, /secure mode/);
    const own = await t.table.request(pinhole({ owner: '2001:DB8:77::10' }));
    assert.ok(own.ok, JSON.stringify(own));

    const seen: [string, string][] = [];
    const u = await table({
      policyDeps: {
        sameHost: (owner, target) => {
          seen.push([owner, target]);
          return { same: owner === H2 && target === H1, reason: 'test' };
        },
      },
    });
    const priv = await u.table.request(pinhole({ owner: '2001:db8:77:0::11', internalAddress: '2001:DB8:77::10' }));
    assert.ok(priv.ok, JSON.stringify(priv));
    assert.equal(priv.lease.owner, H2);
    // the seam is asked in canonical text
    assert.deepEqual(seen, [[H2, H1]]);
    const stranger = await u.table.request(pinhole({ owner: '2001:db8:77::99', internalPort: 6000 }));
    assert.ok(!stranger.ok && stranger.reason === 'not_authorized');
  });
});

describe('release, revoke, history, events, metrics, listings', () => {
  it('release by internal endpoint, revoke, history rows and events carry the family', async () => {
    const t = await table();
    const events: LeaseEvent[] = [];
    t.table.on((e) => events.push(e));
    const a = await t.table.request(pinhole());
    const b = await t.table.request(pinhole({ internalPort: 5001 }));
    assert.ok(a.ok && b.ok);
    const rel = await t.table.release({
      family: 6,
      source: 'upnp',
      identity: 'internal',
      protocol: 'tcp',
      owner: H1,
      internalAddress: '2001:db8:77:0::10',
      internalPort: 5000,
    });
    assert.ok(rel.ok && rel.lease?.id === a.lease.id, JSON.stringify(rel));
    assert.equal(t.dataplane.entries.size, 1);
    const rv = await t.table.revoke(b.lease.id, 'admin:test', 'test');
    assert.ok(rv.ok && rv.lease?.id === b.lease.id);
    assert.equal(t.dataplane.entries.size, 0);
    assert.deepEqual(
      t.table.history(b.lease.id).map((h) => h.type),
      ['granted', 'revoked'],
    );
    assert.equal(t.table.get(b.lease.id)?.family, 6);
    assert.deepEqual(
      events.map((e) => [e.type, e.lease?.family]),
      [
        ['granted', 6],
        ['granted', 6],
        ['released', 6],
        ['revoked', 6],
      ],
    );
    // the revoke holds: the holder's new request for that pinhole is refused for the rest of its term
    const back = await t.table.request(pinhole({ internalPort: 5001 }));
    assert.ok(!back.ok && back.reason === 'not_authorized', JSON.stringify(back));
  });

  it('findByInternal finds a pinhole by its endpoint and remote', async () => {
    const t = await table();
    const any = await t.table.request(pinhole());
    const peer = await t.table.request(pinhole({ remoteAddress: '2001:db8:113::7' }));
    assert.ok(any.ok && peer.ok);
    assert.equal(t.table.findByInternal('tcp', '2001:DB8:77::10', 5000)?.id, any.lease.id);
    assert.equal(t.table.findByInternal('tcp', H1, 5000, '2001:db8:113:0::7')?.id, peer.lease.id);
    assert.equal(t.table.findByInternal('udp', H1, 5000), null);
  });

  it('list filters by family; the port filter finds pinholes too; portd_pinholes_active counts them', async () => {
    const t = await table();
    const m = await t.table.request(mapping());
    const p = await t.table.request(pinhole());
    const q = await t.table.request(pinhole({ source: 'pcp', internalPort: 7000, nonce: 'ab'.repeat(12) }));
    assert.ok(m.ok && p.ok && q.ok);
    const six = t.table.list({ family: 6 });
    assert.deepEqual(
      six.leases.map((l) => l.id),
      [p.lease.id, q.lease.id],
    );
    assert.equal(six.total, 2);
    const four = t.table.list({ family: 4, state: 'all' });
    assert.deepEqual(
      four.leases.map((l) => l.id),
      [m.lease.id],
    );
    assert.equal(four.total, 1);
    assert.equal(t.table.list().total, 3);
    assert.deepEqual(
      t.table
        .list({ externalPort: 5000 })
        .leases.map((l) => l.id)
        .sort(),
      [m.lease.id, p.lease.id].sort(),
    );
    assert.deepEqual(
      t.table.list({ externalPort: 5000, family: 6 }).leases.map((l) => l.id),
      [p.lease.id],
    );
    assert.deepEqual(
      t.table.list({ owner: H1, family: 6 }).leases.map((l) => l.id),
      [p.lease.id, q.lease.id],
    );
    const text = await t.metrics.registry.metrics();
    assert.match(text, /portd_pinholes_active\{source="upnp"\} 1\n/);
    assert.match(text, /portd_pinholes_active\{source="pcp"\} 1\n/);
    assert.match(text, /portd_leases_active\{source="upnp"\} 2\n/);
  });

  it('a new WAN address moves IPv4 mappings only', async () => {
    const t = await table();
    const m = await t.table.request(mapping());
    const p = await t.table.request(pinhole());
    assert.ok(m.ok && p.ok);
    await t.table.setExternalAddress('203.0.113.9');
    assert.equal(t.table.get(m.lease.id)?.externalAddress, '203.0.113.9');
    assert.equal(t.table.get(p.lease.id)?.externalAddress, H1);
  });

  it('a dataplane that refuses a pinhole refuses the grant, and nothing is stored', async () => {
    const t = await table({ dataplane: { failIf: (b) => b.add.some((e) => e.family === 6) } });
    const r = await t.table.request(pinhole());
    assert.ok(!r.ok && r.reason === 'unavailable', JSON.stringify(r));
    assert.equal(t.table.activeCount(), 0);
    assert.equal((t.table.store.db.prepare('SELECT count(*) AS n FROM leases').get() as { n: number }).n, 0);
    // the same tick's IPv4 request still goes through (solo retry)
    const [a, b] = await Promise.all([t.table.request(mapping()), t.table.request(pinhole({ internalPort: 5001 }))]);
    assert.ok(a.ok && !b.ok);
  });
});

describe('storage', () => {
  it('pinholes survive a restart: the cache is rebuilt, conflicts and reconcile see them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-family-'));
    try {
      const t1 = await makeTableOn(testBackend(), { dir, policy: { secureMode: false } });
      const p = await t1.table.request(pinhole());
      assert.ok(p.ok);
      await t1.close();
      const t2 = await makeTableOn(testBackend(), { dir, policy: { secureMode: false } });
      try {
        const other = await t2.table.request(pinhole({ owner: H2 }));
        assert.ok(!other.ok && other.reason === 'conflict', JSON.stringify(other));
        await t2.table.reconcile('test');
        const entries = [...t2.dataplane.entries.values()];
        assert.deepEqual(
          entries.map((e) => [e.id, e.family, e.internalAddress]),
          [[p.lease.id, 6, H1]],
        );
      } finally {
        await t2.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a database of the schema before the family column opens with every lease kept as family 4', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-family-'));
    try {
      // schema 6: what portd wrote before this migration, with an active and an ended lease and their history
      const db = new Database(join(dir, 'portd.sqlite'));
      db.pragma('journal_mode = WAL');
      for (const m of MIGRATIONS.slice(0, 6)) db.exec(m);
      db.pragma('user_version = 6');
      const now = Date.now();
      const ins = db.prepare(`INSERT INTO leases (id, source, protocol, external_address, external_port,
        external_port_end, internal_address, internal_port, owner, created_at, updated_at, expires_at, state,
        ended_at, end_reason) VALUES (?, 'upnp', 'tcp', '203.0.113.1', ?, ?, '192.168.77.11', ?, '192.168.77.11',
        ?, ?, ?, ?, ?, ?)`);
      ins.run('000000000001', 5000, 5000, 5000, now - 60_000, now - 60_000, now + 3_600_000, 'active', null, null);
      ins.run(
        '000000000002',
        6000,
        6000,
        6000,
        now - 90_000,
        now - 30_000,
        now - 30_000,
        'ended',
        now - 30_000,
        'expired',
      );
      const ev = db.prepare('INSERT INTO events (lease_id, type, at, actor, reason) VALUES (?, ?, ?, NULL, NULL)');
      ev.run('000000000001', 'granted', now - 60_000);
      ev.run('000000000002', 'granted', now - 90_000);
      ev.run('000000000002', 'expired', now - 30_000);
      db.close();

      const t = makeTable({ dir });
      try {
        assert.equal(t.table.store.db.pragma('user_version', { simple: true }), MIGRATIONS.length);
        const all = t.table.list({ state: 'all' });
        assert.deepEqual(all.leases.map((l) => [l.id, l.state, l.family]).sort(), [
          ['000000000001', 'active', 4],
          ['000000000002', 'ended', 4],
        ]);
        assert.deepEqual(
          t.table.history('000000000002').map((h) => h.type),
          ['granted', 'expired'],
        );
        // the active one is still held (its port taken) and listed under family 4
        assert.equal(t.table.findByExternal('tcp', 5000)?.id, '000000000001');
        assert.equal(t.table.list({ family: 4 }).total, 1);
        assert.equal(t.table.list({ family: 6, state: 'all' }).total, 0);
      } finally {
        await t.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
