import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import type { PolicyConfig } from '../../src/config/types.js';
import { createMemoryDataplane, type MemoryDataplaneOptions } from '../../src/dataplane/memory.js';
import { createFixedClock } from '../../src/leases/clock.js';
import { createLeaseTable, type LeaseTableOptions } from '../../src/leases/table.js';
import { openPostgresStorage, type PostgresStorage } from '../../src/leases/pg/storage.js';
import { openPostgresStore } from '../../src/leases/pg/store.js';
import { startPostgres, type PostgresCluster } from './postgres.js';
import type { LeaseRequest } from '../../src/leases/types.js';
import { createMetrics } from '../../src/metrics.js';
import { createPolicy, type PolicyDeps } from '../../src/policy/policy.js';

export function testPolicy(over: Partial<PolicyConfig> = {}): PolicyConfig {
  return {
    secureMode: true,
    ipv6Pinholes: true,
    maxLeasesPerClient: 128,
    reservedPorts: [22, 53, 80, 443],
    lifetime: {
      pcp: { min: 120, max: 86400 },
      natpmp: { min: 120, max: 86400 },
      upnp: { min: 1, max: 604800 },
      trigger: { min: 1, max: 86400 },
    },
    rules: [],
    historyRetention: 86400,
    ...over,
  };
}

export type TableOptions = {
  policy?: Partial<PolicyConfig>;
  /** the policy's injected checks (secure mode's sameHost for IPv6 pinholes) */
  policyDeps?: PolicyDeps;
  dataplane?: MemoryDataplaneOptions;
  /** the table's home: a second table on the same dir is a restart on the same database (both backends) */
  dir?: string;
  clock?: ReturnType<typeof createFixedClock>;
} & Omit<Partial<LeaseTableOptions>, 'policy' | 'dataplane' | 'clock'>;

/**
 * The storage backend the lease-table suites run on: SQLite unless PORTD_TEST_BACKEND=postgres (set by the
 * PostgreSQL runs of the same suites, test/integration/postgres-lease-suites.test.ts)
 */
export type TestBackend = 'sqlite' | 'postgres';
export const testBackend = (): TestBackend => (process.env.PORTD_TEST_BACKEND === 'postgres' ? 'postgres' : 'sqlite');

/** a lease table on a temp-file SQLite database, memory dataplane and a fixed clock; dispose() removes it all */
export function makeTable(opts: TableOptions = {}, storage?: PostgresStorage) {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'portd-test-'));
  const clock = opts.clock ?? createFixedClock();
  const dataplane = createMemoryDataplane(opts.dataplane);
  const metrics = createMetrics();
  const { policy: _p, policyDeps, dataplane: _d, dir: _dir, clock: _c, ...rest } = opts;
  const table = createLeaseTable({
    database: { path: join(dir, 'portd.sqlite') },
    ...(storage ? { storage } : {}),
    dataplane,
    policy: createPolicy(testPolicy(opts.policy), policyDeps),
    clock,
    log: pino({ level: process.env.TEST_LOG ?? 'silent' }),
    metrics,
    externalAddress: '203.0.113.1',
    ...rest,
  });
  let closed = false;
  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    // PostgreSQL: every row the image holds must be in PostgreSQL, as the image holds it (checked per table)
    if (storage) {
      while (table.pending() > 0) await new Promise((r) => setTimeout(r, 2));
      await storage.settle();
      await sameRows(storage);
    }
    await table.close();
  }
  return {
    table,
    clock,
    dataplane,
    metrics,
    dir,
    backend: (storage ? 'postgres' : 'sqlite') as TestBackend,
    close,
    async dispose() {
      try {
        await close();
      } finally {
        if (!opts.dir) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
export type TestTable = ReturnType<typeof makeTable>;

/** the tables the image and PostgreSQL share, with the key each is ordered by */
const SHARED = [
  ['leases', 'id', 'id'],
  ['events', 'seq', 'seq'],
  ['revocations', 'rowid', 'id'],
  ['meta', 'key', 'key'],
  ['trigger_rules', 'name', 'name'],
  ['trigger_stats', 'name', 'name'],
  ['upstream_mappings', 'lease_id', 'lease_id'],
] as const;

/** throws naming the first table whose rows differ between the image and PostgreSQL */
async function sameRows(storage: PostgresStorage): Promise<void> {
  for (const [t, key, pgKey] of SHARED) {
    const cols = (storage.db.pragma(`table_info(${t})`) as { name: string }[]).map((c) => c.name);
    const sel = (k: string) => (k === 'rowid' ? `rowid AS id, ${cols.join(', ')}` : cols.join(', '));
    const image = storage.db.prepare(`SELECT ${sel(key)} FROM ${t} ORDER BY ${key}`).all();
    const there = (
      await storage.pg.query(`SELECT ${key === 'rowid' ? 'id, ' : ''}${cols.join(', ')} FROM ${t} ORDER BY ${pgKey}`)
    ).rows;
    const a = JSON.stringify(image);
    const b = JSON.stringify(there);
    if (a !== b)
      throw new Error(`PostgreSQL's ${t} differs from the image:\nimage ${a.slice(0, 600)}\npg    ${b.slice(0, 600)}`);
  }
}

/**
 * The throwaway cluster of this process (one per test file: started at the first PostgreSQL table), a
 * template database migrated once, and a fresh database per table home (`CREATE DATABASE … TEMPLATE`, ≈ 20 ms)
 */
interface PgHome {
  cluster: PostgresCluster;
  admin: pg.Client;
  dbs: Map<string, string>;
}
let pgHome: Promise<PgHome> | null = null;
function postgresHome(): Promise<PgHome> {
  pgHome ??= (async () => {
    const cluster = startPostgres();
    process.once('exit', () => cluster.stop());
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE portd_template');
    const s = await openPostgresStore({ url: urlOf(cluster, 'portd_template') });
    await s.close();
    return { cluster, admin, dbs: new Map() };
  })();
  return pgHome;
}
const urlOf = (c: PostgresCluster, db: string) => c.url.replace(/\/postgres$/, `/${db}`);

/** stops this process's cluster (the PostgreSQL suites' last `after`) */
export async function stopTestPostgres(): Promise<void> {
  if (!pgHome) return;
  const h = await pgHome;
  await h.admin.end().catch(() => {});
  h.cluster.stop();
}

/** a table on the given backend (PostgreSQL: the database of its dir, created on first use) */
export async function makeTableOn(backend: TestBackend, opts: TableOptions = {}): Promise<TestTable> {
  if (backend === 'sqlite') return makeTable(opts);
  const h = await postgresHome();
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'portd-test-'));
  let db = h.dbs.get(dir);
  if (!db) {
    db = `t${h.dbs.size + 1}`;
    await h.admin.query(`CREATE DATABASE ${db} TEMPLATE portd_template`);
    h.dbs.set(dir, db);
  }
  const storage = await openPostgresStorage({ url: urlOf(h.cluster, db), imageDir: dir, poolSize: 2 });
  const t = makeTable({ ...opts, dir }, storage);
  if (opts.dir) return t;
  // the dir was made here: removed with the table
  return {
    ...t,
    async dispose() {
      try {
        await t.dispose();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

const LAN_HOST = '192.168.77.11';

/** a PCP MAP as the PCP front-end asks it: internal identity, any external port will do */
export function pcpRequest(over: Partial<LeaseRequest> = {}): LeaseRequest {
  return {
    source: 'pcp',
    identity: 'internal',
    protocol: 'tcp',
    owner: LAN_HOST,
    internalAddress: LAN_HOST,
    internalPort: 4000,
    externalPort: 4000,
    allowOtherPort: true,
    lifetime: 3600,
    nonce: 'aa'.repeat(12),
    ...over,
  };
}

/** a UPnP AddPortMapping as the UPnP front-end asks it: external identity, that external port or nothing */
export function upnpRequest(over: Partial<LeaseRequest> = {}): LeaseRequest {
  return {
    source: 'upnp',
    identity: 'external',
    protocol: 'tcp',
    owner: LAN_HOST,
    internalAddress: LAN_HOST,
    internalPort: 5000,
    externalPort: 5000,
    allowOtherPort: false,
    lifetime: 3600,
    description: 'game',
    ...over,
  };
}

/**
 * makeTable for one test file, on the suites' backend (`testBackend()`): every table it makes is disposed after
 * the file's tests (call it once, at the file's top level, so the `after` hook is the file's own)
 */
export function tablesForFile(backend: TestBackend = testBackend()): (opts?: TableOptions) => Promise<TestTable> {
  const made: TestTable[] = [];
  after(async () => {
    for (const t of made.splice(0)) await t.dispose();
  });
  // PostgreSQL: a table holds three connections (pool and fence) and the cluster allows 20, so each test's
  // tables go when it ends (which also runs the rows check on the test that wrote them)
  if (backend === 'postgres')
    afterEach(async () => {
      for (const t of made.splice(0)) await t.dispose();
    });
  return async (opts) => {
    const t = await makeTableOn(backend, opts);
    made.push(t);
    return t;
  };
}
