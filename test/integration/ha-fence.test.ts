/**
 * The writers' fence of the HA pair (src/ha/fence.ts, migration v2) on a throwaway PostgreSQL cluster: two
 * nodes contend and exactly one writes; a stale writer is refused and its write is not in the table; a takeover
 * waits for the old writer's transaction in flight and no longer than the server's idle-in-transaction limit
 * when that writer has vanished mid-transaction (a partition). ≈ 3 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createFence, FencedError } from '../../src/ha/fence.js';
import { openPostgresStore } from '../../src/leases/pg/store.js';
import { PG_SCHEMA_VERSION } from '../../src/leases/pg/migrations.js';
import { type PostgresCluster, postgresOrSkip } from '../helpers/postgres.js';

const pgc = postgresOrSkip();

describe('HA fence on PostgreSQL', { skip: pgc.skip, timeout: 60_000 }, () => {
  const cluster = pgc.cluster as PostgresCluster;
  const clients: pg.Client[] = [];
  const connect = async () => {
    const c = new pg.Client({ connectionString: cluster.url });
    c.on('error', () => {}); // a session the server ends (idle in transaction) is expected in one test
    await c.connect();
    clients.push(c);
    return c;
  };
  /** one writer transaction as a writer tick runs it: guard first, then the write, then commit */
  const write = async (c: pg.Client, fence: ReturnType<typeof createFence>, token: number, key: string) => {
    await c.query('BEGIN');
    try {
      await fence.guard(c, token);
      await c.query(`INSERT INTO meta (key, value) VALUES ($1, 'x')`, [key]);
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    }
  };
  const keys = async (c: pg.Client) =>
    (await c.query<{ key: string }>(`SELECT key FROM meta WHERE key LIKE 'w%' ORDER BY key`)).rows.map((r) => r.key);

  before(async () => {
    const store = await openPostgresStore({ url: cluster.url });
    assert.equal(store.schemaVersion, PG_SCHEMA_VERSION);
    await store.close();
  });
  after(async () => {
    for (const c of clients) await c.end().catch(() => {});
    cluster?.stop();
  });

  test('two nodes take the fence at once: distinct generations, and only the later one writes', async () => {
    const [ca, cb] = [await connect(), await connect()];
    const a = createFence({ node: 'A', now: Date.now });
    const b = createFence({ node: 'B', now: Date.now });
    const [ta, tb] = await Promise.all([a.take(ca), b.take(cb)]);
    assert.notEqual(ta, tb);
    const results = await Promise.allSettled([write(ca, a, ta, 'w1-A'), write(cb, b, tb, 'w1-B')]);
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1, 'exactly one writer');
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.ok(lost.reason instanceof FencedError, String(lost.reason));
    const winner = ta > tb ? 'A' : 'B';
    assert.deepEqual(await keys(ca), [`w1-${winner}`]);
    const st = await a.state(ca);
    assert.equal(st.generation, Math.max(ta, tb));
    assert.equal(st.holder, winner);
  });

  test('a stale writer is refused after a takeover and its write is not in the table', async () => {
    const [ca, cb] = [await connect(), await connect()];
    const a = createFence({ node: 'A', now: Date.now });
    const b = createFence({ node: 'B', now: Date.now });
    const ta = await a.take(ca);
    await write(ca, a, ta, 'w2-A-before');
    await b.take(cb);
    await assert.rejects(write(ca, a, ta, 'w2-A-after'), (e: unknown) => {
      assert.ok(e instanceof FencedError);
      assert.equal(e.holder, 'B');
      assert.equal(e.code, 'PORTD_HA_FENCED');
      return true;
    });
    assert.ok((await keys(ca)).includes('w2-A-before'));
    assert.ok(!(await keys(ca)).includes('w2-A-after'));
  });

  test("a takeover waits for the old writer's transaction in flight, which commits first", async () => {
    const [ca, cb] = [await connect(), await connect()];
    const a = createFence({ node: 'A', now: Date.now });
    const b = createFence({ node: 'B', now: Date.now });
    const ta = await a.take(ca);
    await ca.query('BEGIN');
    await a.guard(ca, ta);
    let tookAt = 0;
    const taking = b.take(cb).then((g) => {
      tookAt = Date.now();
      return g;
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(tookAt, 0, 'the takeover waits for the guarded transaction');
    await ca.query(`INSERT INTO meta (key, value) VALUES ('w3-A-inflight', 'x')`);
    const committedAt = Date.now();
    await ca.query('COMMIT');
    await taking;
    assert.ok(tookAt >= committedAt);
    assert.ok((await keys(cb)).includes('w3-A-inflight'));
    await assert.rejects(write(ca, a, ta, 'w3-A-late'), FencedError);
  });

  test('an old writer gone silent inside its transaction (partition) holds a takeover off only until the server ends its session', async () => {
    const [ca, cb] = [await connect(), await connect()];
    const a = createFence({ node: 'A', now: Date.now, idleInTransactionMs: 500 });
    const b = createFence({ node: 'B', now: Date.now, lockTimeoutMs: 3000 });
    const ta = await a.take(ca);
    await ca.query('BEGIN');
    await a.guard(ca, ta);
    await ca.query(`INSERT INTO meta (key, value) VALUES ('w4-A-lost', 'x')`);
    // A says nothing more, as a node whose links went down mid-tick
    const t0 = Date.now();
    const tb = await b.take(cb);
    const waited = Date.now() - t0;
    assert.ok(waited >= 300 && waited < 2500, `waited ${waited} ms`);
    assert.equal(tb, ta + 1);
    assert.ok(!(await keys(cb)).includes('w4-A-lost'), 'the unacknowledged write was rolled back');
    await assert.rejects(ca.query('COMMIT'));
  });
});
