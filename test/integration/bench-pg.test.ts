// bench/pg.ts, small: the shape of its output (every backend, mode and concurrency; the ratio to SQLite; the
// load average) and that its grants are real: the rows of the last (durable) mode are in the cluster, one
// lease and one `granted` event per grant, and the round trips per tick are what each tick shape says.
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
  const out = await run({ ops, warmup, concurrency: [1, 8], cluster: cluster! });
  assert.equal(out.bench, 'pg');
  assert.equal(out.anchor, 'sqlite-store');
  assert.equal(out.results.length, 2 * 4 * 2, 'modes x backends x concurrencies');
  for (const r of out.results) {
    assert.equal(r.n, ops, `${r.backend} ${r.mode} ${r.concurrency}: every grant answered`);
    assert.ok((r.perSecond as number) > 0);
    assert.match(String(r.load), /^\d+\.\d\d \d+\.\d\d \d+\.\d\d$/);
    assert.ok(typeof r.cpuUsPerGrant === 'number' && r.cpuUsPerGrant > 0);
    if (r.backend === 'sqlite-store') assert.equal(r.vsSqlite, 1);
    else assert.ok(typeof r.vsSqlite === 'number' && r.vsSqlite > 0);
  }
  const cell = (backend: string, concurrency: number) =>
    out.results.find((r) => r.backend === backend && r.mode === 'durable' && r.concurrency === concurrency)!;
  // a lone job: BEGIN, SAVEPOINT, 2 statements, RELEASE, COMMIT; set-based: BEGIN, 2, COMMIT; one statement
  assert.equal(cell('pg-literal', 1).roundTripsPerTick, 6);
  assert.equal(cell('pg-set', 1).roundTripsPerTick, 4);
  assert.equal(cell('pg-one', 1).roundTripsPerTick, 1);
  // 8 in flight: ticks carry several jobs; literal statements grow with them, set-based ones do not
  assert.ok((cell('pg-literal', 8).jobsPerTick as number) > 1);
  assert.ok((cell('pg-literal', 8).roundTripsPerTick as number) > 6);
  assert.equal(cell('pg-set', 8).roundTripsPerTick, 4);
  assert.equal(cell('pg-one', 8).roundTripsPerTick, 1);

  // the durable mode's grants are in the cluster (the mode switch truncated the fast mode's)
  const c = new pg.Client({ connectionString: cluster!.url });
  await c.connect();
  try {
    const n = async (sql: string) => Number((await c.query(sql)).rows[0].n);
    const expected = 3 * 2 * (ops + warmup); // 3 PostgreSQL backends x 2 concurrencies
    assert.equal(await n(`SELECT count(*) AS n FROM leases WHERE state = 'active'`), expected);
    assert.equal(await n(`SELECT count(*) AS n FROM events WHERE type = 'granted'`), expected);
    assert.equal((await c.query('SHOW synchronous_commit')).rows[0].synchronous_commit, 'on');
  } finally {
    await c.end();
  }
});
