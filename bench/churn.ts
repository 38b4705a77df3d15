// Churn soak: one LAN host at its rate limits (PCP 100/s + UPnP 50/s, the defaults) creating, renewing and
// releasing mappings, with a fast clock (each of its requests moves time by 1/150 s), while an unrelated client
// renews its own PCP mapping every millisecond of real time. Every 50 requests the churning host also lists
// (UPnP PortMappingNumberOfEntries and GetGenericPortMappingEntry, as its GENA subscription and a client
// checking its mappings do). Printed: the database size (file + WAL), rows in leases and events, and the
// unrelated client's p99, at the start and at the end of the soak. Flat is the goal: the anchor is the
// start, the figure is end ÷ start.
//
//   node --import tsx bench/churn.ts [--ops 300000] [--max-seconds 90] [--json out.json]
// Lease table driven directly (memory dataplane, file database with the WAL checkpointer), router defaults
// for the policy and limits (maxLeasesPerClient 128, historyRetention 1 day, limits.* defaults).
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { DEFAULTS } from '../src/config/defaults.js';
import { createMemoryDataplane } from '../src/dataplane/memory.js';
import { createFixedClock } from '../src/leases/clock.js';
import { createLeaseTable } from '../src/leases/table.js';
import type { LeaseRequest, ReleaseRequest } from '../src/leases/types.js';
import { createPolicy } from '../src/policy/policy.js';
import { testPolicy } from '../test/helpers/leases.js';
import { percentile, printTable, round } from './lib.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const HOST = '192.168.77.50';
const OTHER = '192.168.77.200';
/** mappings the churning host keeps in rotation (well under its quota of 128) */
const SLOTS = 64;
/** per mapping: create, 4 renewals, release */
const PHASES = 6;
const PER_SECOND = DEFAULTS.pcp.rateLimit + DEFAULTS.upnp.rateLimit;

function churnRequest(slot: number): LeaseRequest {
  const port = 20000 + slot;
  return slot % 2 === 0
    ? {
        source: 'pcp',
        identity: 'internal',
        protocol: 'udp',
        owner: HOST,
        internalAddress: HOST,
        internalPort: port,
        externalPort: port,
        allowOtherPort: true,
        lifetime: 120,
        nonce: 'cd'.repeat(12),
        actor: `pcp:${HOST}`,
      }
    : {
        source: 'upnp',
        identity: 'external',
        protocol: 'tcp',
        owner: HOST,
        internalAddress: HOST,
        internalPort: port,
        externalPort: port,
        allowOtherPort: false,
        lifetime: 3600,
        description: 'churn',
        actor: `upnp:${HOST}`,
      };
}
function churnRelease(slot: number): ReleaseRequest {
  const port = 20000 + slot;
  return slot % 2 === 0
    ? {
        source: 'pcp',
        identity: 'internal',
        protocol: 'udp',
        owner: HOST,
        internalAddress: HOST,
        internalPort: port,
        nonce: 'cd'.repeat(12),
      }
    : { source: 'upnp', identity: 'external', protocol: 'tcp', owner: HOST, externalPort: port, remoteAddress: null };
}
const other: LeaseRequest = {
  source: 'pcp',
  identity: 'internal',
  protocol: 'tcp',
  owner: OTHER,
  internalAddress: OTHER,
  internalPort: 5000,
  externalPort: 5000,
  allowOtherPort: true,
  lifetime: 3600,
  nonce: 'ef'.repeat(12),
  actor: `pcp:${OTHER}`,
};

export async function run(opts: { ops?: number; maxSeconds?: number } = {}) {
  const ops = opts.ops ?? 300_000;
  const maxMs = (opts.maxSeconds ?? 90) * 1000;
  const dir = mkdtempSync(join(tmpdir(), 'portd-churn-'));
  const path = join(dir, 'churn.sqlite');
  const clock = createFixedClock(Date.now());
  const table = createLeaseTable({
    database: { path },
    dataplane: createMemoryDataplane(),
    clock,
    log: pino({ level: 'silent' }),
    externalAddress: '203.0.113.1',
    policy: createPolicy(testPolicy({ reservedPorts: [] })),
    historyRetention: DEFAULTS.policy.historyRetention,
    maxActiveLeases: DEFAULTS.limits.maxActiveLeases,
    maxEndedLeases: DEFAULTS.limits.maxEndedLeases,
    historyPerLease: DEFAULTS.limits.historyPerLease,
  });
  const size = () => {
    const f = (p: string) => {
      try {
        return statSync(p).size;
      } catch {
        return 0;
      }
    };
    return f(path) + f(`${path}-wal`);
  };
  const count = (t: string) => (table.store.reader.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n;
  // the unrelated client: renews its mapping every millisecond of real time; its latencies by churn position
  let done = 0;
  let stop = false;
  const lat: [number, number][] = [];
  const first = await table.request(other);
  if (!first.ok) throw new Error(`unrelated client refused: ${first.reason}`);
  const unrelated = (async () => {
    while (!stop) {
      const t0 = performance.now();
      const r = await table.request(other);
      if (!r.ok) throw new Error(`unrelated client refused: ${r.reason}`);
      lat.push([done, performance.now() - t0]);
      await new Promise((res) => setTimeout(res, 1));
    }
  })();
  const points: Record<string, unknown>[] = [];
  const marks = [0.25, 0.5, 0.75, 1].map((f) => Math.round(ops * f));
  let lastMark = 0;
  const t0 = performance.now();
  let refused = 0;
  for (let i = 0; i < ops; i++) {
    if (performance.now() - t0 > maxMs) break;
    const slot = i % SLOTS;
    const phase = Math.floor(i / SLOTS) % PHASES;
    if (phase === PHASES - 1) await table.release(churnRelease(slot));
    else if (!(await table.request(churnRequest(slot))).ok) refused++;
    // its client keeps looking at the list (GENA's entry count, GetGenericPortMappingEntry)
    if (i % 50 === 0) {
      table.list({ state: 'active', source: 'upnp', limit: 1 });
      table.list({ state: 'active', source: 'upnp', sort: 'createdAt', order: 'asc', offset: 0, limit: 1 });
    }
    clock.advance(1000 / PER_SECOND);
    done = i + 1;
    if (marks.includes(done)) {
      const window = lat
        .filter(([at]) => at > lastMark && at <= done)
        .map(([, ms]) => ms)
        .sort((a, b) => a - b);
      points.push({
        churnOps: done,
        simulatedHours: round(done / PER_SECOND / 3600, 2),
        dbMiB: round(size() / 2 ** 20, 2),
        leaseRows: count('leases'),
        eventRows: count('events'),
        otherP50ms: round(percentile(window, 50)),
        otherP99ms: round(percentile(window, 99)),
        otherN: window.length,
      });
      lastMark = done;
    }
  }
  stop = true;
  await unrelated;
  const wallS = round((performance.now() - t0) / 1000, 1);
  await table.close();
  rmSync(dir, { recursive: true, force: true });
  const start = points[0]!,
    end = points[points.length - 1]!;
  const ratio = (k: string) => round((end[k] as number) / (start[k] as number), 2);
  return {
    bench: 'churn',
    ops: done,
    wallSeconds: wallS,
    refused,
    perSecondSimulated: PER_SECOND,
    slots: SLOTS,
    limits: DEFAULTS.limits,
    historyRetention: DEFAULTS.policy.historyRetention,
    endOverStart: {
      dbSize: ratio('dbMiB'),
      leaseRows: ratio('leaseRows'),
      eventRows: ratio('eventRows'),
      otherP99: ratio('otherP99ms'),
    },
    points,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const out = await run({ ops: arg('ops', 300_000), maxSeconds: arg('max-seconds', 90) });
  const i = process.argv.indexOf('--json');
  if (i > 0) writeFileSync(process.argv[i + 1]!, JSON.stringify(out, null, 2));
  console.log(JSON.stringify(out));
  const start = out.points[0]!;
  printTable(
    `churn soak: one host at its rate limits (${out.perSecondSimulated}/s simulated), ${out.ops} requests in ` +
      `${out.wallSeconds} s; vsStart = ratio to the first point`,
    out.points.map((p) => ({
      ...p,
      dbVsStart: round((p.dbMiB as number) / (start.dbMiB as number), 2),
      p99VsStart: round((p.otherP99ms as number) / (start.otherP99ms as number), 2),
    })),
  );
}
