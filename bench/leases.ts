// Lease table throughput through the single writer (memory dataplane): grant, renew, release with
// 1k, 10k and 100k leases already held, at 1 and 64 requests in flight; RSS at 100k.
// Anchor: the 1k figure (the 100k figure must stay within 1.5x of it); target >= 20,000 grants/s.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { createMemoryDataplane } from '../src/dataplane/memory.js';
import { createSystemClock } from '../src/leases/clock.js';
import { createLeaseTable } from '../src/leases/table.js';
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

export async function run(opts: { sizes?: number[]; ops?: number } = {}) {
  const sizes = opts.sizes ?? [1000, 10_000, 100_000];
  const ops = opts.ops ?? 20_000;
  const results: Record<string, unknown>[] = [];
  let rss100k = 0;
  // warm-up on a throwaway table, so the first measured cell (the 1k anchor) does not pay for JIT compilation
  {
    const dir = mkdtempSync(join(tmpdir(), 'portd-bench-'));
    const table = createLeaseTable({
      database: { path: join(dir, 'w.sqlite') },
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
    for (const concurrency of [1, 64]) {
      const first = base;
      const grant = await load(ops, concurrency, (i) => table.request({ ...req(first + i), externalPort: 0 }));
      const renew = await load(ops, concurrency, (i) => table.request({ ...req(first + i), externalPort: 0 }));
      const release = await load(ops, concurrency, (i) => {
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
        results.push({ held: size, concurrency, op, perSecond: s.perSecond, p50ms: s.p50ms, p99ms: s.p99ms });
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
  return {
    bench: 'leases',
    driver: 'memory',
    opsPerCell: ops,
    rssMiBAt100k: rss100k || null,
    target: { grantsPerSecond: 20000, flatWithin: 1.5 },
    results,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const out = await run();
  console.log(JSON.stringify(out));
  printTable(
    'lease table through the writer (memory dataplane); vsSmallest = ratio to the 1k-held anchor',
    out.results,
  );
  console.log(`\nRSS with 100k leases: ${out.rssMiBAt100k} MiB`);
}
