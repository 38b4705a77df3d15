/**
 * The standby's follower (src/ha/follower.ts) on a throwaway PostgreSQL cluster and the memory dataplane: a
 * lease another node writes (grant, renewal, end) shows in this node's dataplane as the lease table's own
 * entry; a change made while the follower's connection is down is there after its reconnect (full resync).
 * ≈ 3 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { createMemoryDataplane } from '../../src/dataplane/memory.js';
import { createFollower, type Follower } from '../../src/ha/follower.js';
import { leaseEntry } from '../../src/leases/entry.js';
import { openPostgresStore, type LeaseInsert, type PostgresStore } from '../../src/leases/pg/store.js';
import { type PostgresCluster, postgresOrSkip } from '../helpers/postgres.js';

const pgc = postgresOrSkip();
const NOW = Date.now();

function row(id: string, externalPort: number, expiresAt: number | null): LeaseInsert {
  return {
    id,
    source: 'pcp',
    protocol: 'tcp',
    external_address: '203.0.113.1',
    external_port: externalPort,
    external_port_end: externalPort,
    internal_address: '192.168.77.11',
    internal_port: 9000 + (externalPort % 1000),
    remote_address: null,
    remote_prefix: null,
    remote_port: null,
    owner: '192.168.77.11',
    description: '',
    nonce: null,
    created_at: NOW,
    updated_at: NOW,
    expires_at: expiresAt,
    requested_lifetime: 600,
    read_only: 0,
    rule: null,
    family: 4,
  };
}

/** polls (bounded) until cond holds */
async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('HA standby follower', { skip: pgc.skip, timeout: 60_000 }, () => {
  const cluster = pgc.cluster as PostgresCluster;
  let store: PostgresStore;
  let follower: Follower;
  const dp = createMemoryDataplane();
  const now = () => NOW;

  before(async () => {
    store = await openPostgresStore({ url: cluster.url });
    await store.insertLease(row('before-start', 8001, NOW + 600_000));
    follower = createFollower({
      client: () => new pg.Client({ connectionString: cluster.url, application_name: 'portd-follower' }),
      dataplane: dp,
      now,
      log: pino({ level: 'silent' }),
      retryMinMs: 300,
    });
    const synced = follower.synced();
    follower.start();
    await synced;
  });
  after(async () => {
    await follower?.stop();
    await store?.close();
    cluster?.stop();
  });

  test('the full sync at start puts the active leases in, as the lease table would', async () => {
    const lease = await store.lease('before-start');
    assert.deepEqual([...dp.entries.values()], [leaseEntry(lease!, NOW, 5)]);
  });

  test('a grant, a renewal and an end by the writer are followed', async () => {
    await store.transaction(async (tx) => {
      await tx.insertLease(row('g1', 8002, NOW + 600_000));
      await tx.insertLease(row('g2', 8003, NOW + 600_000));
    });
    await until(() => dp.entries.size === 3, 'the two grants');
    const g1 = [...dp.entries.values()].find((e) => e.id === 'g1')!;
    assert.equal(g1.externalPort, 8002);
    assert.equal(g1.timeoutSeconds, 605);

    await store.renewLease({
      id: 'g1',
      updated_at: NOW,
      expires_at: NOW + 3_600_000,
      requested_lifetime: 3600,
      description: '',
      nonce: null,
      internal_port: 9002,
      remote_address: null,
      remote_prefix: null,
      remote_port: null,
      actor: null,
    });
    await until(() => [...dp.entries.values()].some((e) => e.id === 'g1' && e.timeoutSeconds === 3605), 'renewal');
    assert.equal(dp.entries.size, 3);

    await store.endLease({ id: 'g2', at: NOW, reason: 'released' });
    await until(() => dp.entries.size === 2, 'the end');
    assert.ok(![...dp.entries.values()].some((e) => e.id === 'g2'));
  });

  test('a rolled-back transaction changes nothing', async () => {
    const batches = dp.batches;
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.insertLease(row('rb', 8004, NOW + 600_000));
        throw new Error('tick failed');
      }),
    );
    await new Promise((r) => setTimeout(r, 200));
    await follower.drain();
    assert.equal(dp.batches, batches);
    assert.ok(![...dp.entries.values()].some((e) => e.id === 'rb'));
  });

  test('the connection is lost, a lease is granted meanwhile: after the reconnect it is in', async () => {
    const resyncs = follower.status().resyncs;
    const synced = follower.synced();
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    const ended = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'portd-follower'`,
    );
    await admin.end();
    assert.equal(ended.rowCount, 1);
    // written while the follower waits its 300 ms before reconnecting: no notification reaches it
    await store.insertLease(row('while-away', 8005, NOW + 600_000));
    await synced;
    assert.ok(follower.status().resyncs > resyncs);
    await until(() => [...dp.entries.values()].some((e) => e.id === 'while-away'), 'the lease granted while away');
    const expected = (await Promise.all(['before-start', 'g1', 'while-away'].map((id) => store.lease(id)))).map((l) =>
      leaseEntry(l!, NOW, 5),
    );
    const got = [...dp.entries.values()].sort((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(
      got,
      expected.sort((a, b) => a.id.localeCompare(b.id)),
    );
  });
});
