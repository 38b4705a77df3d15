// Lease table throughput through the single writer (memory dataplane): grant, renew, release with
// 1k, 10k and 100k leases already held, at 1 and 64 requests in flight; RSS at 100k.
// Anchor: the 1k figure (the 100k figure must stay within 1.5x of it); target >= 20,000 grants/s.
// Each cell also gives this process's CPU µs per operation (process.cpuUsage: the machine may be shared).
// Options: --driver sqlite|postgres|both (postgres: a throwaway cluster, test/helpers/postgres.ts, with fsync and
// synchronous_commit off, so no durable wait: a round trip per tick, the server's CPU not counted), --sizes 1000,
// --ops 20000, --concurrency 1,64.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { createMemoryDataplane } from '../src/dataplane/memory.js';
import { createSystemClock } from '../src/leases/clock.js';
import { createLeaseTable } from '../src/leases/table.js';
import { openPostgresStorage } from '../src/leases/pg/storage.js';
import { startPostgres, type PostgresCluster } from '../test/helpers/postgres.js';
import pg from 'pg';
import type { LeaseRequest } from '../src/leases/types.js';
import { createPolicy } from '../src/policy/policy.js';
import { load, printTable, round } from './lib.js';
import { testPolicy } from '../test/helpers/leases.js';

// the router defaults, without a quota: the bench's hosts hold thousands each
const policy = testPolicy({ maxLeasesPerClient: 1_000_000 });
/** 256 LAN hosts x 2 protocols x ~64k ports: room for 100k+ distinct leases */
function req(i: number, source: 'pcp' | 'upnp' = 'pcp'): LeaseRequest {
  const host = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${(i & 255) + 0}`;
  return {
    source,
    identity: source === 'pcp' ? 'internal' : 'external',
    protocol: i % 2 ? 'udp' : 'tcp',
    owner: host,
    internalAddress: host,
    internalPort: 1024 + (i % 60000),
    externalPort: 1024 + ((i >> 1) % 64000),
    allowOtherPort: true,
    lifetime: 3600,
    nonce: 'ab'.repeat(12),
  };
}

/** load() and this process's CPU µs per operation over it */
async function cpuLoad(count: number, concurrency: number, fn: (i: number) => Promise<unknown>) {
  const c0 = process.cpuUsage();
  const s = await load(count, concurrency, fn);
  const c = process.cpuUsage(c0);
  return { ...s, cpuUsPerOp: round((c.user + c.system) / Math.max(1, s.n), 1) };
}

export async function run(
  opts: { sizes?: number[]; ops?: number; driver?: 'sqlite' | 'postgres'; concurrency?: number[] } = {},
) {
  const sizes = opts.sizes ?? [1000, 10_000, 100_000];
  const ops = opts.ops ?? 20_000;
  const driver = opts.driver ?? 'sqlite';
  const concurrencies = opts.concurrency ?? [1, 64];
  let cluster: PostgresCluster | null = null;
  let dbs = 0;
  /** a fresh storage for one table: SQLite in dir, or a new database on the bench's cluster */
  async function storageFor(dir: string) {
    if (driver === 'sqlite') return {};
    cluster ??= startPostgres();
    const db = `b${++dbs}`;
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${db}`);
    await admin.end();
    return { storage: await openPostgresStorage({ url: cluster.url.replace(/\/postgres$/, `/${db}`), imageDir: dir }) };
  }
  const results: Record<string, unknown>[] = [];
  let rss100k = 0;
  // warm-up on a throwaway table, so the first measured cell (the 1k anchor) does not pay for JIT compilation
  {
    const dir = mkdtempSync(join(tmpdir(), 'portd-bench-'));
    const table = createLeaseTable({
      database: { path: join(dir, 'w.sqlite') },
      ...(await storageFor(dir)),
      dataplane: createMemoryDataplane(),
      policy: createPolicy(policy),
      clock: createSystemClock(),
      log: pino({ level: 'silent' }),
      externalAddress: '203.0.113.1',
    });
    for (const concurrency of [64, 1]) {
      await load(ops, concurrency, (i) => table.request({ ...req(10_000_000 + i), externalPort: 0 }));
      await load(ops, concurrency, (i) => table.request({ ...req(10_000_000 + i), externalPort: 0 }));
      await load(ops, concurrency, (i) => {
        const r = req(10_000_000 + i);
        return table.release({
          source: 'pcp',
          identity: 'internal',
          protocol: r.protocol,
          owner: r.owner,
          internalAddress: r.internalAddress,
          internalPort: r.internalPort,
          nonce: r.nonce,
        });
      });
    }
    await table.close();
    rmSync(dir, { recursive: true, force: true });
  }
  for (const size of sizes) {
    const dir = mkdtempSync(join(tmpdir(), 'portd-bench-'));
    const table = createLeaseTable({
      database: { path: join(dir, 'b.sqlite') },
      ...(await storageFor(dir)),
      dataplane: createMemoryDataplane(),
      policy: createPolicy(policy),
      clock: createSystemClock(),
      log: pino({ level: 'silent' }),
      externalAddress: '203.0.113.1',
    });
    // preload (ports via allocation so they never collide)
    await load(size, 256, (i) => table.request({ ...req(i), externalPort: 0 }), 300_000);
    if (size === 100_000) {
      global.gc?.();
      rss100k = Math.round(process.memoryUsage().rss / 2 ** 20);
    }
    let base = size;
    for (const concurrency of concurrencies) {
      const first = base;
      const grant = await cpuLoad(ops, concurrency, (i) => table.request({ ...req(first + i), externalPort: 0 }));
      const renew = await cpuLoad(ops, concurrency, (i) => table.request({ ...req(first + i), externalPort: 0 }));
      const release = await cpuLoad(ops, concurrency, (i) => {
        const r = req(first + i);
        return table.release({
          source: 'pcp',
          identity: 'internal',
          protocol: r.protocol,
          owner: r.owner,
          internalAddress: r.internalAddress,
          internalPort: r.internalPort,
          nonce: r.nonce,
        });
      });
      base += ops;
      for (const [op, s] of [
        ['grant', grant],
        ['renew', renew],
        ['release', release],
      ] as const) {
        results.push({
          held: size,
          concurrency,
          op,
          perSecond: s.perSecond,
          p50ms: s.p50ms,
          p99ms: s.p99ms,
          cpuUsPerOp: s.cpuUsPerOp,
        });
      }
    }
    await table.close();
    rmSync(dir, { recursive: true, force: true });
  }
  // anchor: the same op and concurrency at the smallest size
  for (const r of results) {
    const anchor = results.find((a) => a.held === sizes[0] && a.op === r.op && a.concurrency === r.concurrency)!;
    r.vsSmallest = round((r.perSecond as number) / (anchor.perSecond as number), 2);
  }
  (cluster as PostgresCluster | null)?.stop();
  return {
    bench: 'leases',
    driver: 'memory',
    storage: driver,
    load: (await import('node:os')).loadavg().map((l) => round(l, 2)),
    opsPerCell: ops,
    rssMiBAt100k: rss100k || null,
    target: { grantsPerSecond: 20000, flatWithin: 1.5 },
    results,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const list = (v: string | undefined) => v?.split(',').map(Number);
  const which = arg('driver') ?? 'sqlite';
  const drivers = which === 'both' ? (['sqlite', 'postgres'] as const) : [which as 'sqlite' | 'postgres'];
  for (const driver of drivers) {
    const out = await run({
      driver,
      ...(list(arg('sizes')) ? { sizes: list(arg('sizes'))! } : {}),
      ...(arg('ops') ? { ops: Number(arg('ops')) } : {}),
      ...(list(arg('concurrency')) ? { concurrency: list(arg('concurrency'))! } : {}),
    });
    console.log(JSON.stringify(out));
    printTable(
      `lease table through the writer on ${driver} (memory dataplane, load ${out.load.join(' ')}); ` +
        'vsSmallest = ratio to the 1k-held anchor',
      out.results,
    );
    if (out.rssMiBAt100k) console.log(`\nRSS with 100k leases: ${out.rssMiBAt100k} MiB`);
  }
}
