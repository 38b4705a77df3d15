/**
 * Bounded storage (issue 14): renewals update their lease instead of adding history rows, history per
 * lease, ended leases and revocations are capped, a global cap on active dynamic leases, and every
 * listing and count the front-ends and the API serve comes from memory or an index walk.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import type { LeaseEvent, LeaseRequest } from '../../src/leases/types.js';
import { MIGRATIONS } from '../../src/leases/store.js';
import { pcpRequest, tablesForFile, upnpRequest, testBackend, type TestTable } from '../helpers/leases.js';

const pcp = (over: Partial<LeaseRequest> = {}) => pcpRequest({ actor: 'pcp:192.168.77.11', ...over });
const upnp = upnpRequest;
const releasePcp = (port: number, owner = '192.168.77.11') => ({
  source: 'pcp' as const,
  identity: 'internal' as const,
  protocol: 'tcp' as const,
  owner,
  internalAddress: owner,
  internalPort: port,
  nonce: 'aa'.repeat(12),
});

const table = tablesForFile();
const rows = (t: TestTable, sql: string, ...args: unknown[]) =>
  (t.table.store.db.prepare(sql).get(...args) as { n: number }).n;
/** lets queued prune batches (they follow commits) run */
async function settle(t: TestTable) {
  for (let i = 0; i < 1000 && t.table.pending() > 0; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
}

describe('renewals update the lease, not the history', () => {
  it('300 renewals: one lease row with its count and last time, no history row each, a renewed event each', async () => {
    const t = await table();
    const events: LeaseEvent[] = [];
    t.table.on((e) => events.push(e));
    const g = await t.table.request(pcp());
    assert.ok(g.ok);
    for (let i = 0; i < 300; i++) {
      t.clock.advance(20_000);
      const r = await t.table.request(pcp({ externalPort: 0 }));
      assert.ok(r.ok && !r.created);
    }
    const u = await t.table.request(upnp());
    for (let i = 0; i < 50; i++) {
      t.clock.advance(1000);
      assert.ok((await t.table.request(upnp())).ok);
    }
    assert.ok(u.ok);
    assert.equal(
      rows(t, `SELECT count(*) AS n FROM events WHERE lease_id = ?`, g.lease.id),
      1,
      'only the grant is stored',
    );
    assert.equal(rows(t, `SELECT count(*) AS n FROM events WHERE lease_id = ?`, u.lease.id), 1);
    assert.equal(rows(t, `SELECT count(*) AS n FROM leases`), 2);
    const l = t.table.get(g.lease.id)!;
    assert.equal(l.renewCount, 300);
    assert.equal(l.lastRenewedAt, t.clock.now() - 50_000);
    assert.equal(t.table.get(u.lease.id)!.renewCount, 50);
    // the stream still says every renewal (SSE, GENA, metrics listen here)
    assert.equal(events.filter((e) => e.type === 'renewed' && e.leaseId === g.lease.id).length, 300);
    assert.equal(events.filter((e) => e.type === 'renewed' && e.leaseId === u.lease.id).length, 50);
    // the history shows the renewals as one entry at the last, with who renewed
    const h = t.table.history(g.lease.id);
    assert.deepEqual(
      h.map((x) => x.type),
      ['granted', 'renewed'],
    );
    assert.equal(h[1]!.at, l.lastRenewedAt);
    assert.equal(h[1]!.actor, 'pcp:192.168.77.11');
    assert.match(h[1]!.reason ?? '', /300 times/);
    const rel = await t.table.release(releasePcp(4000));
    assert.ok(rel.ok);
    assert.deepEqual(
      t.table.history(g.lease.id).map((x) => x.type),
      ['granted', 'renewed', 'released'],
    );
  });

  it('history per lease keeps its first entry and the latest ones (limits.historyPerLease)', async () => {
    const t = await table({ historyPerLease: 4 });
    const g = await t.table.request(pcp());
    assert.ok(g.ok);
    // entries another writer left (e.g. a database from before the cap)
    const ins = t.table.store.db.prepare(
      `INSERT INTO events (lease_id, type, at, actor, reason) VALUES (?, 'refused', ?, 'x', ?)`,
    );
    for (let i = 0; i < 10; i++) ins.run(g.lease.id, t.clock.now() + i, `old ${i}`);
    t.clock.advance(60_000);
    assert.ok((await t.table.release(releasePcp(4000))).ok);
    const h = t.table.history(g.lease.id);
    assert.deepEqual(
      h.map((x) => x.reason ?? x.type),
      ['granted', 'old 8', 'old 9', 'released'],
    );
  });
});

describe('ended leases and revocations are bounded', () => {
  it('limits.maxEndedLeases: the oldest ended leases go first, with their history, in bounded batches per tick', async () => {
    const t = await table({ maxEndedLeases: 50, pruneBatch: 16, historyRetention: 0 });
    // measure what each commit deletes
    const perCommit: number[] = [];
    const commit = t.table.store.tx.commit;
    const countEnded = t.table.store.db.prepare(`SELECT count(*) AS n FROM leases WHERE state = 'ended'`);
    let before = 0;
    const begin = t.table.store.tx.begin;
    t.table.store.tx.begin = {
      run: () => {
        const r = begin.run();
        before = (countEnded.get() as { n: number }).n;
        return r;
      },
    } as typeof begin;
    t.table.store.tx.commit = {
      run: () => {
        perCommit.push(before - (countEnded.get() as { n: number }).n);
        return commit.run();
      },
    } as typeof commit;
    const ids: string[] = [];
    // one host churning: create and release, 200 times
    for (let i = 0; i < 200; i++) {
      t.clock.advance(1000);
      const g = await t.table.request(pcp({ internalPort: 4000 + (i % 50), externalPort: 0 }));
      assert.ok(g.ok);
      ids.push(g.lease.id);
      assert.ok((await t.table.release(releasePcp(4000 + (i % 50)))).ok);
    }
    await settle(t);
    assert.equal(rows(t, `SELECT count(*) AS n FROM leases WHERE state = 'ended'`), 50);
    // the newest 50 are kept; no history of a deleted lease is left behind
    const kept = (t.table.store.db.prepare(`SELECT id FROM leases ORDER BY id`).all() as { id: string }[]).map(
      (r) => r.id,
    );
    assert.deepEqual(kept, ids.slice(-50));
    assert.equal(rows(t, `SELECT count(*) AS n FROM events WHERE lease_id NOT IN (SELECT id FROM leases)`), 0);
    assert.ok(Math.max(...perCommit) <= 16, `a tick deleted ${Math.max(...perCommit)}`);
    assert.equal(t.table.list({ state: 'ended' }).total, 50);
  });

  it('a backlog from before the cap drains in batches; policy.historyRetention still ends the rest by age', async () => {
    const first = await table({ maxEndedLeases: 0, historyRetention: 0 });
    for (let i = 0; i < 300; i++) {
      assert.ok((await first.table.request(pcp({ internalPort: 5000 + (i % 100), externalPort: 0 }))).ok);
      assert.ok((await first.table.release(releasePcp(5000 + (i % 100)))).ok);
    }
    assert.equal(rows(first, `SELECT count(*) AS n FROM leases WHERE state = 'ended'`), 300);
    await first.close();
    const t = await table({
      dir: first.dir,
      clock: first.clock,
      maxEndedLeases: 100,
      pruneBatch: 32,
      historyRetention: 3600,
    });
    const n = await t.table.prune();
    await settle(t);
    assert.ok(n > 0 && n <= 200);
    assert.equal(rows(t, `SELECT count(*) AS n FROM leases WHERE state = 'ended'`), 100);
    // past the retention: the rest goes too (with the next commit, or the periodic prune)
    t.clock.advance(3601_000);
    assert.ok((await t.table.request(pcp({ internalPort: 6000, externalPort: 0 }))).ok);
    await settle(t);
    assert.equal(rows(t, `SELECT count(*) AS n FROM leases WHERE state = 'ended'`), 0);
    assert.equal(rows(t, `SELECT count(*) AS n FROM events WHERE lease_id NOT IN (SELECT id FROM leases)`), 0);
  });

  it('revocations are capped by count too (the ones ending first go)', async () => {
    const t = await table({ maxEndedLeases: 5, policy: { maxLeasesPerClient: 1000 } });
    for (let i = 0; i < 20; i++) {
      const g = await t.table.request(pcp({ internalPort: 7000 + i, externalPort: 0, lifetime: 3600 + i * 60 }));
      assert.ok(g.ok);
      assert.ok((await t.table.revoke(g.lease.id, 'admin:test')).ok);
    }
    assert.equal(rows(t, `SELECT count(*) AS n FROM revocations`), 5);
    // the latest revocations still hold
    const again = await t.table.request(pcp({ internalPort: 7019, externalPort: 0 }));
    assert.ok(!again.ok && again.reason === 'not_authorized');
  });
});

describe('limits.maxActiveLeases', () => {
  it('refuses new dynamic leases over the cap with capacity (metric, one warn line naming the key); renewals and static forwards pass', async () => {
    const lines: string[] = [];
    const log = pino(
      { level: 'warn' },
      new Writable({
        write(c, _e, cb) {
          lines.push(String(c));
          cb();
        },
      }),
    );
    const t = await table({ maxActiveLeases: 3, log, policy: { maxLeasesPerClient: 1000 } });
    assert.ok((await t.table.request(pcp({ internalPort: 4000 }))).ok);
    assert.ok((await t.table.request(upnp({ externalPort: 5000 }))).ok);
    assert.ok(
      (
        await t.table.request({
          ...upnp({ externalPort: 5001 }),
          source: 'trigger',
          owner: '192.168.77.12',
          internalAddress: '192.168.77.12',
          thirdPartyAllowed: true,
        })
      ).ok,
    );
    for (let i = 0; i < 3; i++) {
      const r = await t.table.request(
        pcp({ internalPort: 4100 + i, owner: `192.168.77.${20 + i}`, internalAddress: `192.168.77.${20 + i}` }),
      );
      assert.ok(!r.ok && r.reason === 'capacity', JSON.stringify(r));
      assert.match(r.detail, /limits\.maxActiveLeases 3/);
    }
    const nat = await t.table.request(pcp({ source: 'natpmp', internalPort: 4200, nonce: null }));
    assert.ok(!nat.ok && nat.reason === 'capacity');
    // renewals of what is held are never refused by it
    const renew = await t.table.request(pcp({ internalPort: 4000, externalPort: 0 }));
    assert.ok(renew.ok && !renew.created);
    assert.ok((await t.table.request(upnp({ externalPort: 5000 }))).ok);
    // static forwards are the admin's: not counted, not refused
    const st = await t.table.request({
      ...upnp({ externalPort: 8443, internalPort: 443 }),
      source: 'static',
      thirdPartyAllowed: true,
      lifetime: null,
    });
    assert.ok(st.ok);
    const m = await t.metrics.globalLimit.get();
    assert.equal(m.values.find((v) => v.labels.limit === 'maxActiveLeases')?.value, 4);
    const warns = lines.filter((l) => l.includes('limits.maxActiveLeases'));
    assert.equal(warns.length, 1, warns.join(''));
    // a lease ends: room again
    assert.ok((await t.table.release(releasePcp(4000))).ok);
    assert.ok((await t.table.request(pcp({ internalPort: 4300 }))).ok);
  });
});

describe('listings and counts come from memory or an index walk', () => {
  it('the statements behind UPnP, PCP, trigger and admin listings walk indexes; counts read no table', async () => {
    const first = await table({ policy: { maxLeasesPerClient: 100_000 }, maxEndedLeases: 0 });
    // a table worth planning over: active leases of every source, many more ended ones
    for (let i = 0; i < 400; i++) {
      const host = `192.168.77.${10 + (i % 100)}`;
      const src = i % 4;
      const req =
        src === 0
          ? pcp({ owner: host, internalAddress: host, internalPort: 2000 + i, externalPort: 40_000 + i })
          : src === 1
            ? upnp({ owner: host, internalAddress: host, internalPort: 3000 + i, externalPort: 10_000 + i })
            : src === 2
              ? {
                  ...upnp({ owner: host, internalAddress: host, internalPort: 3000 + i, externalPort: 20_000 + i }),
                  source: 'trigger' as const,
                  thirdPartyAllowed: true,
                  rule: 'game',
                }
              : {
                  ...upnp({ owner: host, internalAddress: host, internalPort: 3000 + i, externalPort: 30_000 + i }),
                  source: 'static' as const,
                  thirdPartyAllowed: true,
                  lifetime: null,
                };
      assert.ok((await first.table.request(req)).ok);
    }
    const ins = first.table.store.db.prepare(`INSERT INTO leases (id, source, protocol, external_address, external_port,
      external_port_end, internal_address, internal_port, owner, created_at, updated_at, expires_at, state, ended_at,
      end_reason) VALUES (?, 'upnp', 'udp', '203.0.113.1', ?, ?, '192.168.77.9', ?, '192.168.77.9', ?, ?, ?, 'ended', ?,
      'released')`);
    first.table.store.db.transaction(() => {
      for (let i = 0; i < 5000; i++)
        ins.run(
          `e${String(i).padStart(8, '0')}`,
          1024 + (i % 60000),
          1024 + (i % 60000),
          1024 + (i % 60000),
          i,
          i,
          i + 1,
          i + 1,
        );
    })();
    await first.close();
    // no ANALYZE: portd never runs it, so the plans are the planner's defaults
    const t = await table({
      dir: first.dir,
      clock: first.clock,
      policy: { maxLeasesPerClient: 100_000 },
      maxEndedLeases: 0,
    });
    // every statement the listings prepare from here on
    const sqls: string[] = [];
    const reader = t.table.store.reader;
    const prepare = reader.prepare.bind(reader);
    (reader as { prepare: typeof reader.prepare }).prepare = ((sql: string) => {
      sqls.push(sql);
      return prepare(sql);
    }) as typeof reader.prepare;
    // UPnP: PortMappingNumberOfEntries, GetGenericPortMappingEntry (v1 listing of upnp leases, or all with
    // listAllLeases), GetListOfPortMappings
    assert.equal(t.table.activeCount('upnp'), 100);
    assert.equal(t.table.activeCount(), 400);
    const g = t.table.list({ state: 'active', source: 'upnp', sort: 'createdAt', order: 'asc', offset: 42, limit: 1 });
    assert.equal(g.total, 100);
    assert.equal(g.leases[0]!.externalPort, 10_000 + 42 * 4 + 1);
    assert.equal(
      t.table.list({ state: 'active', sort: 'createdAt', order: 'asc', offset: 7, limit: 1 }).leases[0]!.internalPort,
      3007,
    );
    const range = t.table.listExternalRange('tcp', 10_100, 10_200, { source: 'upnp' });
    assert.deepEqual(
      range.map((l) => l.externalPort),
      Array.from({ length: 25 }, (_, k) => 10_101 + k * 4),
    );
    assert.deepEqual(
      t.table
        .listExternalRange('tcp', 10_000, 11_000, { source: 'upnp', owner: '192.168.77.11' })
        .map((l) => l.externalPort),
      [10_001, 10_101, 10_201, 10_301],
    );
    // PCP: every mapping of one client (internal port 0 + lifetime 0)
    const mine = t.table.list({ owner: '192.168.77.10', protocol: 'tcp', state: 'active', limit: 10000 });
    assert.equal(mine.total, 4);
    // triggers on start, admin API: default listing, ended, all, by source, newest first
    t.table.list({ source: 'trigger', state: 'active', limit: 10_000, offset: 0 });
    assert.equal(t.table.list().total, 400);
    assert.equal(t.table.list({ state: 'ended' }).total, 5000);
    const all = t.table.list({ state: 'all', offset: 4998, limit: 4 });
    assert.equal(all.total, 5400);
    assert.deepEqual(
      all.leases.map((l) => l.state),
      ['ended', 'ended', 'active', 'active'],
    );
    t.table.list({ state: 'ended', source: 'upnp', order: 'desc', limit: 50 });
    t.table.list({ state: 'active', order: 'desc' });
    // status
    const c = t.table.countActive();
    assert.equal(c.total, 400);
    assert.equal(c.bySource['static'], 100);
    assert.equal(c.byOwner['192.168.77.10'], 4);
    // the plans: no full scan of the leases table and no sort, for these and the reader's own statements
    const stored = Object.values(t.table.store.r).map((st) => (st as { source: string }).source);
    assert.ok(sqls.length >= 5, `${sqls.length} listing statements`);
    for (const sql of [...new Set([...sqls, ...stored])]) {
      const plan = (
        reader
          .prepare(`EXPLAIN QUERY PLAN ${sql}`)
          .all(...Array.from({ length: (sql.match(/\?/g) ?? []).length }, () => 1)) as { detail: string }[]
      ).map((p) => p.detail);
      if (process.env.SHOW_PLANS) console.log(`${sql}\n  ${plan.join('\n  ')}`);
      assert.ok(!plan.some((d) => /^SCAN leases$/.test(d) || /TEMP B-TREE/.test(d)), `${sql}\n  ${plan.join('\n  ')}`);
    }
  });
});

// a hand-made SQLite file of schema 4: SQLite's upgrade path (PostgreSQL's schema starts at SQLite's version 8)
describe('migration to schema 5', { skip: testBackend() === 'postgres' && 'SQLite only' }, () => {
  it('a schema-4 database migrates: leases survive, renewal rows fold into the counts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-v4-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const db = new Database(join(dir, 'portd.sqlite'));
    db.pragma('journal_mode = WAL');
    for (const m of MIGRATIONS.slice(0, 4)) db.exec(m);
    db.pragma('user_version = 4');
    const now = Date.UTC(2026, 0, 1);
    db.prepare(`INSERT INTO leases (id, source, protocol, external_address, external_port, external_port_end,
      internal_address, internal_port, owner, nonce, created_at, updated_at, expires_at, state)
      VALUES ('000000000001', 'pcp', 'tcp', '203.0.113.1', 4000, 4000, '192.168.77.11', 4000,
      '192.168.77.11', ?, ?, ?, ?, 'active')`).run('aa'.repeat(12), now - 60_000, now - 1000, now + 3_000_000);
    const ev = db.prepare(
      `INSERT INTO events (lease_id, type, at, actor, reason) VALUES ('000000000001', ?, ?, ?, NULL)`,
    );
    ev.run('granted', now - 60_000, 'pcp:192.168.77.11');
    for (let i = 3; i >= 1; i--) ev.run('renewed', now - i * 1000, `pcp:r${i}`);
    db.close();
    const t = await table({ dir });
    assert.equal(t.table.store.db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    const l = t.table.get('000000000001')!;
    assert.equal(l.state, 'active');
    assert.equal(l.renewCount, 3);
    assert.equal(l.lastRenewedAt, now - 1000);
    assert.equal(rows(t, `SELECT count(*) AS n FROM events WHERE type = 'renewed'`), 0);
    assert.deepEqual(
      t.table.history(l.id).map((h) => [h.type, h.actor]),
      [
        ['granted', 'pcp:192.168.77.11'],
        ['renewed', 'pcp:r1'],
      ],
    );
    // and it is held: its renewal renews it, its port is taken
    const r = await t.table.request(pcp({ externalPort: 0 }));
    assert.ok(r.ok && !r.created && r.lease.id === l.id && r.lease.renewCount === 4);
    assert.equal(t.table.findByExternal('tcp', 4000)?.id, l.id);
  });
});
