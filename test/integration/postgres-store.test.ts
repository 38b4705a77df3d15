// The PostgreSQL lease store (src/leases/pg/) against a throwaway cluster (test/helpers/postgres.ts): migrations
// applied once and idempotent, lease rows and meta written through the store and read back with plain SQL.
// Under CI=true a machine that cannot start PostgreSQL fails this file instead of skipping it.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { PG_MIGRATIONS } from '../../src/leases/pg/migrations.js';
import { type LeaseInsert, openPostgresStore } from '../../src/leases/pg/store.js';
import { MIGRATIONS } from '../../src/leases/store.js';
import { postgresOrSkip } from '../helpers/postgres.js';

const { cluster, skip } = postgresOrSkip();
after(() => cluster?.stop());

function row(id: string, over: Partial<LeaseInsert> = {}): LeaseInsert {
  return {
    id,
    source: 'pcp',
    protocol: 'tcp',
    external_address: '203.0.113.1',
    external_port: 40000,
    external_port_end: 40000,
    internal_address: '192.168.77.10',
    internal_port: 8080,
    remote_address: null,
    remote_prefix: null,
    remote_port: null,
    owner: '192.168.77.10',
    description: 'test',
    nonce: 'aabbccddeeff001122334455',
    // past 2^31: epoch ms must survive as numbers (int8 parsed, not strings)
    created_at: 1_765_000_000_000,
    updated_at: 1_765_000_000_000,
    expires_at: 1_765_000_120_000,
    requested_lifetime: 120,
    read_only: 0,
    rule: null,
    family: 4,
    ...over,
  };
}

describe('PostgreSQL lease store', { skip, timeout: 20_000 }, () => {
  const url = cluster?.url ?? '';

  test('migrations run once and are idempotent; the schema version is recorded', async () => {
    const a = await openPostgresStore({ url });
    assert.equal(a.schemaVersion, PG_MIGRATIONS.length);
    await a.close();
    // a second open (a restart, or the standby node) finds the schema current and changes nothing
    const b = await openPostgresStore({ url });
    assert.equal(b.schemaVersion, PG_MIGRATIONS.length);
    await b.close();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const v = await c.query('SELECT version FROM schema_version');
      assert.deepEqual(v.rows, [{ version: PG_MIGRATIONS.length }]);
      const tables = await c.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
      );
      assert.deepEqual(tables.rows.map((r) => r.table_name).sort(), [
        'events',
        'ha_fence', // migration v2: the HA pair's writer fence (src/ha/fence.ts), PostgreSQL only
        'leases',
        'meta',
        'revocations',
        'schema_version',
        'trigger_rules',
        'trigger_stats',
        'upstream_mappings',
      ]);
    } finally {
      await c.end();
    }
  });

  test('the PostgreSQL schema has the columns of the SQLite schema, table by table', async () => {
    const lite = new Database(':memory:');
    for (const m of MIGRATIONS) lite.exec(m);
    const liteTables = (
      lite.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as { name: string }[]
    ).map((t) => t.name);
    const liteColumns = Object.fromEntries(
      liteTables.map((t) => [
        t,
        (lite.prepare(`SELECT name FROM pragma_table_info(?) ORDER BY name`).all(t) as { name: string }[]).map(
          (c) => c.name,
        ),
      ]),
    );
    lite.close();
    // SQLite's implicit rowid is a column of its own on PostgreSQL where a statement needs it
    liteColumns.revocations = [...(liteColumns.revocations ?? []), 'id'].sort();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const cols = await c.query<{ table_name: string; column_name: string }>(
        `SELECT table_name, column_name FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name NOT IN ('schema_version', 'ha_fence')
         ORDER BY table_name, column_name`,
      );
      const pgColumns: Record<string, string[]> = {};
      for (const r of cols.rows) pgColumns[r.table_name] = [...(pgColumns[r.table_name] ?? []), r.column_name];
      // sorted here: the cluster's collation (from the environment's locale) need not order as bytes do
      for (const k of Object.keys(pgColumns)) pgColumns[k]!.sort();
      assert.deepEqual(pgColumns, liteColumns);
    } finally {
      await c.end();
    }
  });

  test('a schema newer than this portd knows is refused, naming the version', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('UPDATE schema_version SET version = $1', [PG_MIGRATIONS.length + 1]);
      await assert.rejects(openPostgresStore({ url }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'PORTD_DATABASE_SCHEMA');
        assert.match(e.message, new RegExp(`schema version ${PG_MIGRATIONS.length + 1}, newer`));
        return true;
      });
    } finally {
      await c.query('UPDATE schema_version SET version = $1', [PG_MIGRATIONS.length]);
      await c.end();
    }
  });

  test('lease rows: insert, renew, end, list; meta get/set; rows checked with plain SQL', async () => {
    const store = await openPostgresStore({ url });
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await store.insertLease(row('L1'));
      await store.insertLease(row('L2', { external_port: 40001, internal_port: 8081, created_at: 1_765_000_000_001 }));
      const l1 = await store.lease('L1');
      assert.equal(l1?.externalPort, 40000);
      assert.equal(l1?.createdAt, 1_765_000_000_000);
      assert.equal(typeof l1?.expiresAt, 'number');
      assert.equal(l1?.state, 'active');

      assert.equal(
        await store.renewLease({
          id: 'L1',
          updated_at: 1_765_000_060_000,
          expires_at: 1_765_000_180_000,
          requested_lifetime: 120,
          description: 'renewed',
          nonce: 'aabbccddeeff001122334455',
          internal_port: 8080,
          remote_address: null,
          remote_prefix: null,
          remote_port: null,
          actor: '192.168.77.10',
        }),
        true,
      );
      assert.equal(await store.endLease({ id: 'L2', at: 1_765_000_070_000, reason: 'released' }), true);
      assert.equal(await store.endLease({ id: 'L2', at: 1_765_000_071_000, reason: 'released' }), false);
      const active = await store.listActive({ limit: 10 });
      assert.deepEqual(
        active.map((l) => l.id),
        ['L1'],
      );

      const rows = await c.query(
        `SELECT id, state, expires_at, renew_count, renewed_at, renewed_by, description, ended_at, end_reason
         FROM leases ORDER BY id`,
      );
      assert.deepEqual(rows.rows, [
        {
          id: 'L1',
          state: 'active',
          expires_at: '1765000180000',
          renew_count: 1,
          renewed_at: '1765000060000',
          renewed_by: '192.168.77.10',
          description: 'renewed',
          ended_at: null,
          end_reason: null,
        },
        {
          id: 'L2',
          state: 'ended',
          expires_at: '1765000120000',
          renew_count: 0,
          renewed_at: null,
          renewed_by: null,
          description: 'test',
          ended_at: '1765000070000',
          end_reason: 'released',
        },
      ]);

      assert.equal(await store.meta('clock.lastSeen'), null);
      await store.setMeta('clock.lastSeen', '1765000000000');
      await store.setMeta('clock.lastSeen', '1765000099999');
      assert.equal(await store.meta('clock.lastSeen'), '1765000099999');
      const meta = await c.query(`SELECT key, value FROM meta`);
      assert.deepEqual(meta.rows, [{ key: 'clock.lastSeen', value: '1765000099999' }]);
    } finally {
      await c.end();
      await store.close();
    }
  });

  test('a tick: one transaction, a savepoint per job; the job that throws alone is taken back', async () => {
    const store = await openPostgresStore({ url });
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await store.transaction(async (tx) => {
        await tx.job(() => tx.insertLease(row('T1', { external_port: 41000 })));
        // a duplicate id: the primary key refuses it inside its savepoint, the tick goes on
        await assert.rejects(tx.job(() => tx.insertLease(row('T1', { external_port: 41001 }))));
        await tx.job(() => tx.insertLease(row('T2', { external_port: 41002 })));
        // not visible outside before the commit
        const outside = await c.query(`SELECT id FROM leases WHERE id IN ('T1', 'T2')`);
        assert.equal(outside.rowCount, 0);
      });
      const after = await c.query(`SELECT id, external_port FROM leases WHERE id LIKE 'T%' ORDER BY id`);
      assert.deepEqual(after.rows, [
        { id: 'T1', external_port: 41000 },
        { id: 'T2', external_port: 41002 },
      ]);
      // a tick that throws commits nothing
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx.insertLease(row('T3', { external_port: 41003 }));
          throw new Error('kernel refused the batch');
        }),
        /kernel refused/,
      );
      assert.equal((await c.query(`SELECT 1 FROM leases WHERE id = 'T3'`)).rowCount, 0);
    } finally {
      await c.end();
      await store.close();
    }
  });
  test('a tick whose connection the server ends is refused; the store goes on with a fresh connection', async () => {
    const warnings: string[] = [];
    const store = await openPostgresStore({ url, poolSize: 1, onWarning: (m) => warnings.push(m) });
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx.insertLease(row('K1', { external_port: 42000 }));
          // an administrator (or a failover) ends the tick's backend: its statements and its rollback fail
          await c.query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND datname = current_database()`,
          );
          await tx.insertLease(row('K2', { external_port: 42001 }));
        }),
      );
      assert.equal((await c.query(`SELECT 1 FROM leases WHERE id IN ('K1', 'K2')`)).rowCount, 0);
      // the one pooled connection was the dead one: the pool must not lend it again
      await store.setMeta('after.kill', 'ok');
      assert.equal(await store.meta('after.kill'), 'ok');
      // said once, not thrown into the process (an uncaught client error would end portd)
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /^PostgreSQL connection lost in a transaction: /);
    } finally {
      await c.end();
      await store.close();
    }
  });
});
