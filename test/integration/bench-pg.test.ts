// bench/pg.ts, small: the shape of its output (every backend, mode and concurrency; the ratio to SQLite; the
// load average), that its grants are real (the last cells' rows are in the cluster, one lease and one `granted`
// event per grant), that the round trips per tick are what each tick shape says, and that the delay proxy
// delays (a lone grant 4 ms away waits at least one round trip, or six for the literal tick).
// Under CI=true a machine that cannot start PostgreSQL fails this file instead of skipping it.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import pg from 'pg';
import { run } from '../../bench/pg.js';
import { postgresOrSkip } from '../helpers/postgres.js';

const { cluster, skip } = postgresOrSkip();
after(() => cluster?.stop());

test('bench/pg.ts: every cell measured, grants committed, round trips per tick as designed', { skip }, async () => {
  const ops = 40;
  const warmup = 10;
  const out = await run({ ops, warmup, concurrency: [1, 8], cluster: cluster!, rttMs: [4] });
  assert.equal(out.bench, 'pg');
  assert.equal(out.anchor, 'sqlite-store');
  assert.equal(out.results.length, 2 * 4 * 2 + 3 * 2, 'modes x backends x concurrencies, + PostgreSQL 4 ms away');
  for (const r of out.results) {
    assert.equal(r.n, ops, `${r.backend} ${r.mode} ${r.concurrency}: every grant answered`);
    assert.ok((r.perSecond as number) > 0);
    assert.match(String(r.load), /^\d+\.\d\d \d+\.\d\d \d+\.\d\d$/);
    assert.ok(typeof r.cpuUsPerGrant === 'number' && r.cpuUsPerGrant > 0);
    if (r.backend === 'sqlite-store') assert.equal(r.vsSqlite, 1);
    else assert.ok(typeof r.vsSqlite === 'number' && r.vsSqlite > 0);
  }
  const cell = (backend: string, concurrency: number, rttMs = 0) =>
    out.results.find(
      (r) =>
        r.backend === backend &&
        r.mode === (rttMs ? 'fast' : 'durable') &&
        r.concurrency === concurrency &&
        r.rttMs === rttMs,
    )!;
  // a lone job: BEGIN, SAVEPOINT, 2 statements, RELEASE, COMMIT; set-based: BEGIN, 2, COMMIT; one statement
  assert.equal(cell('pg-literal', 1).roundTripsPerTick, 6);
  assert.equal(cell('pg-set', 1).roundTripsPerTick, 4);
  assert.equal(cell('pg-one', 1).roundTripsPerTick, 1);
  // 8 in flight: ticks carry several jobs; literal statements grow with them, set-based ones do not
  assert.ok((cell('pg-literal', 8).jobsPerTick as number) > 1);
  assert.ok((cell('pg-literal', 8).roundTripsPerTick as number) > 6);
  assert.equal(cell('pg-set', 8).roundTripsPerTick, 4);
  assert.equal(cell('pg-one', 8).roundTripsPerTick, 1);
  // behind the delay proxy every round trip costs at least its 4 ms: a lone grant waits 1 or 6 of them
  assert.ok((cell('pg-one', 1, 4).p50ms as number) >= 4, `pg-one 4 ms away: p50 ${cell('pg-one', 1, 4).p50ms}`);
  assert.ok((cell('pg-literal', 1, 4).p50ms as number) >= 24, `literal: p50 ${cell('pg-literal', 1, 4).p50ms}`);
  assert.equal(cell('pg-set', 8, 4).roundTripsPerTick, 4);

  // the last cells' grants (fast mode, 4 ms away) are rows in the cluster: each mode switch truncates the tables
  const c = new pg.Client({ connectionString: cluster!.url });
  await c.connect();
  try {
    const n = async (sql: string) => Number((await c.query(sql)).rows[0].n);
    const expected = 3 * 2 * (ops + warmup); // 3 PostgreSQL backends x 2 concurrencies, warm-up included
    assert.equal(await n(`SELECT count(*) AS n FROM leases WHERE state = 'active'`), expected);
    assert.equal(await n(`SELECT count(*) AS n FROM events WHERE type = 'granted'`), expected);
    assert.equal((await c.query('SHOW synchronous_commit')).rows[0].synchronous_commit, 'off');
  } finally {
    await c.end();
  }
});
