// Grants on PostgreSQL beside SQLite (issue 18 item 5): grants/s, p50/p99, CPU µs per grant (this process and,
// for PostgreSQL, the server's backends) and round trips per tick, at 1 and 32 requests in flight, on a
// throwaway cluster (test/helpers/postgres.ts, Unix socket). Anchor: SQLite doing the same rows the same way.
//
// `--level store` (the default, what exists before the storage interface lands): a group-commit loop of the
// writer's shape (the jobs queued when a tick starts, at most 1024, in one transaction) writes what a grant
// writes (a lease row and its `granted` event) through
//   sqlite-store   better-sqlite3 with src/leases/store.ts's statements: BEGIN IMMEDIATE, per job SAVEPOINT,
//                  INSERT lease, INSERT event, RELEASE, COMMIT (the writer's tick today)
//   pg-literal     src/leases/pg/store.ts `transaction` with a `tx.job` per job: the same statements, each a
//                  round trip (4 per job + BEGIN and COMMIT)
//   pg-set         one transaction, the tick's rows as two set-based statements
//                  (`INSERT … SELECT FROM unnest($1::text[], …)`): BEGIN, 2 statements, COMMIT, whatever the tick
//   pg-one         the tick's rows as one autocommit statement (a data-modifying CTE): 1 round trip per tick,
//                  possible because the writer already undoes the kernel batch when a commit fails
// each in two durability modes: `fast` (SQLite synchronous=NORMAL; PostgreSQL fsync and synchronous_commit off,
// the cluster as the tests start it) and `durable` (SQLite synchronous=FULL; PostgreSQL fsync=on,
// synchronous_commit=on, set by ALTER SYSTEM and a reload).
// `--rtt 2,10`: the three PostgreSQL tick shapes again (fast mode) with the store that many ms away: a TCP delay
// proxy on 127.0.0.1 in a child process holds each chunk rtt/2 each way (`npm run bench` passes 2 and 10).
// `--level table`: the whole lease table (createLeaseTable, memory dataplane) on each driver; PostgreSQL there
// needs the storage interface (issue 18 item 2) and is reported as not available until it exists.
//
// The machine has 2 shared cores: every figure comes with the load average, and the CPU time per grant is the
// figure to compare across runs; wall rates are for the ratio within one run.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { createMemoryDataplane } from '../src/dataplane/memory.js';
import { createSystemClock } from '../src/leases/clock.js';
import { openPostgresStorage } from '../src/leases/pg/storage.js';
import { openPostgresStore, type LeaseInsert } from '../src/leases/pg/store.js';
import { openStore } from '../src/leases/store.js';
import { createLeaseTable } from '../src/leases/table.js';
import type { LeaseRequest } from '../src/leases/types.js';
import { createPolicy } from '../src/policy/policy.js';
import { testPolicy } from '../test/helpers/leases.js';
import { type PostgresCluster, startPostgres } from '../test/helpers/postgres.js';
import { load, printTable, round } from './lib.js';

type Mode = 'fast' | 'durable';
type Backend = 'sqlite-store' | 'pg-literal' | 'pg-set' | 'pg-one' | 'sqlite-table' | 'pg-table';

/** what a bench cell drives: one grant, and how many round trips and ticks it took so far */
interface Target {
  grant(i: number): Promise<unknown>;
  counters(): { roundTrips: number; ticks: number };
  /** CPU µs of the database server's processes so far (0 for an embedded store) */
  serverCpuUs(): number;
  close(): Promise<void>;
}

const la = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

/** the columns of one grant's lease row, as table.ts writes them */
function row(prefix: string, i: number): LeaseInsert {
  const host = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const now = Date.now();
  return {
    id: `${prefix}${i}`,
    source: 'pcp',
    protocol: i % 2 ? 'udp' : 'tcp',
    external_address: '203.0.113.1',
    external_port: 1024 + (i % 64000),
    external_port_end: 1024 + (i % 64000),
    internal_address: host,
    internal_port: 1024 + (i % 60000),
    remote_address: null,
    remote_prefix: null,
    remote_port: null,
    owner: host,
    description: '',
    nonce: 'ab'.repeat(12),
    created_at: now,
    updated_at: now,
    expires_at: now + 3_600_000,
    requested_lifetime: 3600,
    read_only: 0,
    rule: null,
    family: 4,
  };
}

/**
 * The writer's batching, without its kernel step: a job waits in the queue; a tick takes every queued job (at
 * most 1024, as writer.ts) into one `runTick`; each job is answered after its tick's commit.
 */
function groupCommit(runTick: (jobs: number[]) => Promise<void>) {
  let queue: { i: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  let running = false;
  let ticks = 0;
  async function pump() {
    if (running) return;
    running = true;
    while (queue.length > 0) {
      const batch = queue.slice(0, 1024);
      queue = queue.slice(1024);
      ticks++;
      try {
        await runTick(batch.map((j) => j.i));
        for (const j of batch) j.resolve();
      } catch (e) {
        for (const j of batch) j.reject(e);
      }
    }
    running = false;
  }
  return {
    submit: (i: number) =>
      new Promise<void>((resolve, reject) => {
        queue.push({ i, resolve, reject });
        queueMicrotask(() => void pump());
      }),
    ticks: () => ticks,
  };
}

/** utime+stime (µs) of the postmaster's children: the backends, the WAL writer, the checkpointer */
function postgresCpuUs(cluster: PostgresCluster): number {
  const pm = Number(readFileSync(join(cluster.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields after the command: state(0) ppid(1) … utime(11) stime(12)
      if (Number(p) === pm || Number(f[1]) === pm) total += ((Number(f[11]) + Number(f[12])) * 1e6) / tick;
    } catch {
      /* exited */
    }
  }
  return total;
}

async function sqliteStore(mode: Mode): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'portd-bench-pg-'));
  const store = openStore({ path: join(dir, 'b.sqlite'), synchronous: mode === 'durable' ? 'full' : 'normal' });
  const { s, tx } = store;
  const gc = groupCommit(async (jobs) => {
    tx.begin.run();
    for (const i of jobs) {
      tx.savepoint.run();
      const r = row('s', i);
      s.insert.run(r);
      s.event.run(r.id, 'granted', r.created_at, null, null);
      tx.release.run();
    }
    // the writer awaits the dataplane here (kernel before commit)
    await Promise.resolve();
    tx.commit.run();
  });
  return {
    grant: gc.submit,
    counters: () => ({ roundTrips: 0, ticks: gc.ticks() }), // embedded: no round trip at all
    serverCpuUs: () => 0,
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const COLUMNS = [
  ['id', 'text'],
  ['source', 'text'],
  ['protocol', 'text'],
  ['external_address', 'text'],
  ['external_port', 'int'],
  ['external_port_end', 'int'],
  ['internal_address', 'text'],
  ['internal_port', 'int'],
  ['owner', 'text'],
  ['description', 'text'],
  ['nonce', 'text'],
  ['created_at', 'int8'],
  ['updated_at', 'int8'],
  ['expires_at', 'int8'],
  ['requested_lifetime', 'int8'],
  ['read_only', 'int'],
  ['family', 'int'],
] as const;
const NAMES = COLUMNS.map(([c]) => c).join(', ');
const UNNEST = `unnest(${COLUMNS.map(([, t], k) => `$${k + 1}::${t}[]`).join(', ')}) AS r(${NAMES})`;
const INSERT_LEASES = `INSERT INTO leases (${NAMES}, state) SELECT ${NAMES}, 'active' FROM ${UNNEST}`;
const INSERT_EVENTS = `INSERT INTO events (lease_id, type, at) SELECT id, 'granted', created_at FROM ${UNNEST}`;
const INSERT_BOTH = `WITH l AS (${INSERT_LEASES} RETURNING id, created_at)
  INSERT INTO events (lease_id, type, at) SELECT id, 'granted', created_at FROM l`;

function columns(rows: LeaseInsert[]): unknown[][] {
  return COLUMNS.map(([c]) => rows.map((r) => r[c as keyof LeaseInsert]));
}

async function pgStore(
  cluster: PostgresCluster,
  backend: 'pg-literal' | 'pg-set' | 'pg-one',
  url = cluster.url,
): Promise<Target> {
  const store = await openPostgresStore({ url, poolSize: 2 });
  // a plain pool beside the store for the set-based statements (the store has none yet), counted the same way
  const pg = (await import('pg')).default;
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  let roundTrips = 0;
  const counted = <T>(p: Promise<T>) => {
    roundTrips++;
    return p;
  };
  const runTick =
    backend === 'pg-literal'
      ? (jobs: number[]) =>
          store.transaction(async (tx) => {
            roundTrips += 2; // BEGIN, COMMIT
            for (const i of jobs) {
              await tx.job(async () => {
                roundTrips += 4; // SAVEPOINT, 2 statements, RELEASE
                const r = row('l', i);
                await tx.insertLease(r);
                await tx.addEvent(r.id, 'granted', r.created_at, null, null);
              });
            }
          })
      : backend === 'pg-set'
        ? async (jobs: number[]) => {
            const c = await pool.connect();
            try {
              await counted(c.query('BEGIN'));
              const cols = columns(jobs.map((i) => row('t', i)));
              await counted(c.query({ name: 'bench-leases', text: INSERT_LEASES, values: cols }));
              await counted(c.query({ name: 'bench-events', text: INSERT_EVENTS, values: cols }));
              await counted(c.query('COMMIT'));
            } catch (e) {
              await c.query('ROLLBACK').catch(() => {});
              throw e;
            } finally {
              c.release();
            }
          }
        : async (jobs: number[]) => {
            await counted(
              // named: parsed once per connection, as a prepared statement (the literal store's are not)
              pool.query({ name: 'bench-both', text: INSERT_BOTH, values: columns(jobs.map((i) => row('o', i))) }),
            );
          };
  const gc = groupCommit(runTick);
  return {
    grant: gc.submit,
    counters: () => ({ roundTrips, ticks: gc.ticks() }),
    serverCpuUs: () => postgresCpuUs(cluster),
    async close() {
      await pool.end();
      await store.close();
    },
  };
}

function tableRequest(i: number): LeaseRequest {
  const host = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return {
    source: 'pcp',
    identity: 'internal',
    protocol: i % 2 ? 'udp' : 'tcp',
    owner: host,
    internalAddress: host,
    internalPort: 1024 + (i % 60000),
    externalPort: 0,
    allowOtherPort: true,
    lifetime: 3600,
    nonce: 'ab'.repeat(12),
  };
}

/** The whole lease table on a driver: SQLite opened by the table itself, PostgreSQL through openPostgresStorage */
async function table(cluster: PostgresCluster | null, backend: 'sqlite-table' | 'pg-table', mode: Mode) {
  const dir = mkdtempSync(join(tmpdir(), 'portd-bench-pg-'));
  let t: ReturnType<typeof createLeaseTable>;
  try {
    const storage = backend === 'pg-table' ? await openPostgresStorage({ url: cluster!.url, imageDir: dir }) : null;
    t = createLeaseTable({
      database: { path: join(dir, 't.sqlite'), synchronous: mode === 'durable' ? 'full' : 'normal' },
      ...(storage ? { storage } : {}),
      dataplane: createMemoryDataplane(),
      policy: createPolicy(testPolicy({ maxLeasesPerClient: 1_000_000 })),
      clock: createSystemClock(),
      log: pino({ level: 'silent' }),
      externalAddress: '203.0.113.1',
    });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const target: Target = {
    grant: async (i) => {
      const r = await t.request(tableRequest(i));
      if (!r.ok) throw new Error(`grant ${i} refused: ${JSON.stringify(r)}`);
    },
    counters: () => ({ roundTrips: 0, ticks: 0 }),
    serverCpuUs: () => (cluster && backend === 'pg-table' ? postgresCpuUs(cluster) : 0),
    async close() {
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return target;
}

/**
 * A TCP port on 127.0.0.1 in front of the cluster's socket that holds every chunk `oneWayMs` in each direction:
 * a store `2 × oneWayMs` away. In a child process, so its CPU is not the bench's; order is kept (timers of one
 * duration fire in order).
 */
async function startDelayProxy(cluster: PostgresCluster, oneWayMs: number) {
  const code = `const net = require('net');
const d = Number(process.env.PROXY_DELAY);
const srv = net.createServer((c) => {
  const u = net.connect(process.env.PROXY_SOCK);
  c.setNoDelay(true);
  const end = () => { c.destroy(); u.destroy(); };
  for (const [a, b] of [[c, u], [u, c]]) {
    a.on('data', (x) => setTimeout(() => { if (!b.destroyed) b.write(x); }, d));
    a.on('close', end);
    a.on('error', end);
  }
});
srv.listen(0, '127.0.0.1', () => process.stdout.write(srv.address().port + '\\n'));`;
  const child = spawn(process.execPath, ['-e', code], {
    env: { ...process.env, PROXY_SOCK: join(cluster.dir, '.s.PGSQL.5432'), PROXY_DELAY: String(oneWayMs) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('delay proxy did not start in 5 s')), 5000);
    child.stdout.once('data', (b: Buffer) => {
      clearTimeout(timer);
      resolve(Number(b.toString().trim()));
    });
    child.once('exit', (c) => reject(new Error(`delay proxy exited (${c})`)));
  });
  return { url: `postgresql://portd@127.0.0.1:${port}/postgres`, stop: () => child.kill('SIGKILL') };
}

async function setPostgresMode(cluster: PostgresCluster, mode: Mode) {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: cluster.url });
  await c.connect();
  const on = mode === 'durable' ? 'on' : 'off';
  await c.query(`ALTER SYSTEM SET fsync = ${on}`);
  await c.query(`ALTER SYSTEM SET synchronous_commit = ${on}`);
  await c.query('SELECT pg_reload_conf()');
  // a reload is asynchronous: wait until a new session sees it
  for (let k = 0; k < 50; k++) {
    const probe = new pg.Client({ connectionString: cluster.url });
    await probe.connect();
    const v = (await probe.query('SHOW synchronous_commit')).rows[0].synchronous_commit;
    await probe.end();
    if (v === on) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await c.query('TRUNCATE leases, events CASCADE');
  await c.query('CHECKPOINT');
  await c.end();
}

export async function run(
  opts: {
    level?: 'store' | 'table';
    ops?: number;
    concurrency?: number[];
    /** grants before each cell, not measured (JIT, plans, the pool's connections) */
    warmup?: number;
    /** a cluster to use (and leave running: the caller stops it); default a throwaway one of our own */
    cluster?: PostgresCluster;
    /** round trips (ms) to simulate for the PostgreSQL tick shapes, fast mode, behind a delay proxy */
    rttMs?: number[];
  } = {},
) {
  const level = opts.level ?? 'store';
  const ops = opts.ops ?? 3000;
  const warmup = opts.warmup ?? 200;
  const concurrencies = opts.concurrency ?? [1, 32];
  const backends: Backend[] =
    level === 'store' ? ['sqlite-store', 'pg-literal', 'pg-set', 'pg-one'] : ['sqlite-table', 'pg-table'];
  const cluster = opts.cluster ?? startPostgres();
  // the schema, once (the migrations), before any mode change truncates it
  await (await openPostgresStore({ url: cluster.url, poolSize: 1 })).close();
  const results: Record<string, unknown>[] = [];
  const measure = async (
    mode: string,
    backend: Backend,
    concurrency: number,
    rttMs: number,
    make: () => Promise<Target>,
  ) => {
    let target: Target;
    try {
      target = await make();
    } catch (e) {
      results.push({ mode, backend, concurrency, rttMs, perSecond: null, note: (e as Error).message.slice(0, 80) });
      return;
    }
    // warm-up (JIT, prepared plans, the pool's connections), not measured
    const base = results.length * 1_000_000;
    await load(rttMs > 0 ? Math.min(warmup, 20) : warmup, concurrency, (i) => target.grant(base + 900_000 + i));
    const before = { ...target.counters() };
    const cpu0 = process.cpuUsage();
    const srv0 = target.serverCpuUs();
    const load0 = la();
    const s = await load(ops, concurrency, (i) => target.grant(base + i), rttMs > 0 ? 10_000 : 20_000);
    const cpu = process.cpuUsage(cpu0);
    const srv = target.serverCpuUs() - srv0;
    const after = target.counters();
    const ticks = after.ticks - before.ticks;
    await target.close();
    results.push({
      mode,
      backend,
      concurrency,
      rttMs,
      n: s.n,
      perSecond: s.perSecond,
      p50ms: s.p50ms,
      p99ms: s.p99ms,
      cpuUsPerGrant: round((cpu.user + cpu.system) / s.n, 1),
      serverCpuUsPerGrant: backend.startsWith('pg') ? round(srv / s.n, 1) : null,
      jobsPerTick: ticks > 0 ? round(s.n / ticks, 1) : null,
      roundTripsPerTick:
        ticks > 0 && backend.startsWith('pg') ? round((after.roundTrips - before.roundTrips) / ticks, 1) : null,
      load: load0,
    });
  };
  try {
    for (const mode of ['fast', 'durable'] as const) {
      await setPostgresMode(cluster, mode);
      for (const backend of backends) {
        for (const concurrency of concurrencies) {
          await measure(mode, backend, concurrency, 0, () =>
            backend === 'sqlite-store'
              ? sqliteStore(mode)
              : backend === 'sqlite-table' || backend === 'pg-table'
                ? table(cluster, backend, mode)
                : pgStore(cluster, backend),
          );
        }
      }
    }
    // the store a network away: the same ticks through the delay proxy (fast mode: the wait is the network's)
    if (level === 'store' && (opts.rttMs ?? []).length > 0) await setPostgresMode(cluster, 'fast');
    for (const rtt of level === 'store' ? (opts.rttMs ?? []) : []) {
      const proxy = await startDelayProxy(cluster, rtt / 2);
      try {
        for (const backend of ['pg-literal', 'pg-set', 'pg-one'] as const) {
          for (const concurrency of concurrencies) {
            await measure('fast', backend, concurrency, rtt, () => pgStore(cluster, backend, proxy.url));
          }
        }
      } finally {
        proxy.stop();
      }
    }
  } finally {
    if (!opts.cluster) cluster.stop();
  }
  const anchorName = level === 'store' ? 'sqlite-store' : 'sqlite-table';
  for (const r of results) {
    const a = results.find((x) => x.backend === anchorName && x.mode === r.mode && x.concurrency === r.concurrency);
    r.vsSqlite =
      a && typeof r.perSecond === 'number' && typeof a.perSecond === 'number'
        ? round(r.perSecond / a.perSecond, 3)
        : null;
  }
  return { bench: 'pg', level, opsPerCell: ops, warmupPerCell: warmup, anchor: anchorName, loadAtEnd: la(), results };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const args = process.argv.slice(2);
  const level = args.includes('--level') ? (args[args.indexOf('--level') + 1] as 'store' | 'table') : 'store';
  const ops = args.includes('--ops') ? Number(args[args.indexOf('--ops') + 1]) : undefined;
  const rttMs = args.includes('--rtt') ? args[args.indexOf('--rtt') + 1]!.split(',').map(Number) : undefined;
  const out = await run({ level, ops, ...(rttMs ? { rttMs } : {}) });
  console.log(JSON.stringify(out));
  printTable(
    `grants on PostgreSQL beside SQLite (${level} level, throwaway cluster on a Unix socket, 2 shared CPUs); ` +
      `vsSqlite = ratio to ${out.anchor} at the same mode and concurrency; load = 1/5/15-min load average at the start`,
    // the union of the columns, so a cell that could not run shows its note
    out.results.map((r) => ({
      ...Object.fromEntries(out.results.flatMap((x) => Object.keys(x)).map((k) => [k, ''])),
      ...r,
    })),
  );
}
