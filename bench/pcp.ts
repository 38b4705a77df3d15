// PCP front-end throughput on loopback: MAP creates at 1 and 32 requests in flight (fresh ports),
// renewals and deletes, through the real lease table (memory dataplane unless one is passed in),
// next to the ceiling of a trivial UDP echo server measured with the same load generator.
// Pinholes (issue 15): MAP for an IPv6 internal address (2001:db8:77::/64, named in a THIRD_PARTY option by
// the loopback clients, which pcp.thirdParty trusts here) creates and deletes IPv6 pinholes at the same
// concurrency and in the same order as the IPv4 phases (c1 create first: both families are measured warm); the
// ratios pinhole / mapping are printed, with the server's CPU time per request (cpuUs, main thread) and the load.
// The generator runs in a worker thread (its own core), the server in this thread.
//   node --import tsx bench/pcp.ts [--count 2000] [--preload 0] [--clients 32]
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { createMemoryDataplane } from '../src/dataplane/memory.js';
import type { Dataplane } from '../src/dataplane/types.js';
import { createPcpServer } from '../src/frontends/pcp/index.js';
import { createSystemClock } from '../src/leases/clock.js';
import { createLeaseTable } from '../src/leases/table.js';
import type { LeaseRequest } from '../src/leases/types.js';
import { createMetrics } from '../src/metrics.js';
import { createPolicy } from '../src/policy/policy.js';
import { encodePcpRequest } from '../protocols/pcp/index.js';
import { mainThreadCpuNs, percentile, printTable, round } from './lib.js';
import { testPolicy } from '../test/helpers/leases.js';

/** The load generator (plain JS, run with eval in a worker): `concurrency` sockets, one request in flight on each. */
const GENERATOR = `
const { parentPort, workerData } = require('node:worker_threads');
const dgram = require('node:dgram');
const { port, server, slots, timeoutMs, retries, giveUpAfter } = workerData;
const lat = [];
const codes = {};
let timeouts = 0;
// a server that answers nothing (a request that throws in it is logged and left unanswered) would make every
// request wait out all its retries: thousands of seconds a phase. Stop once losses pass giveUpAfter and outnumber
// the answers
let gaveUp = false;
const t0 = performance.now();
function key(b) { return Buffer.from(b.buffer, b.byteOffset + 24, 18).toString('hex'); }
function slot({ host, packets }) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    let next = 0, k = '', started = 0, timer = null, tries = 0, busy = false;
    const fire = () => {
      if (next >= packets.length || gaveUp) { s.close(); resolve(); return; }
      tries = 0; send(packets[next++]);
    };
    const send = (p) => {
      k = key(p); started = performance.now(); busy = true;
      timer = setTimeout(() => {
        timeouts++;
        if (timeouts >= giveUpAfter && timeouts > lat.length) gaveUp = true;
        if (gaveUp || ++tries > retries) { busy = false; fire(); } else send(p);
      }, timeoutMs);
      s.send(p, port, server);
    };
    s.on('message', (m) => {
      if (!busy || m.length < 42 || Buffer.from(m.buffer, m.byteOffset + 24, 18).toString('hex') !== k) return;
      busy = false;
      clearTimeout(timer);
      lat.push(performance.now() - started);
      const c = m[3]; codes[c] = (codes[c] || 0) + 1;
      fire();
    });
    s.bind(0, host, fire);
  });
}
Promise.all(slots.map(slot)).then(() => {
  parentPort.postMessage({ lat, codes, timeouts, gaveUp, wallMs: performance.now() - t0 });
});
`;

interface PhaseResult {
  phase: string;
  concurrency: number;
  clients: number;
  n: number;
  perSecond: number;
  p50ms: number;
  p99ms: number;
  timeouts: number;
  failed: number;
  /** the server's CPU time per request in µs (main thread; the generator is a worker), null off Linux */
  cpuUs: number | null;
}

/** the LAN host whose allowed block is full in the last phase */
const FULL_HOST = '127.0.200.1';

/** LAN client i of `clients`, as a loopback source address (Linux answers all of 127/8) */
const clientHost = (i: number): string => `127.0.${1 + (i >> 8)}.${1 + (i & 255)}`;

/**
 * Runs `n` requests, `concurrency` in flight, spread round-robin over `clients` source addresses.
 * `packet(i, host)` builds request i as sent from `host`.
 */
async function generate(
  name: string,
  port: number,
  n: number,
  concurrency: number,
  clients: number,
  packet: (i: number, host: string) => Uint8Array,
  hostOf: (slot: number) => string = (s) => clientHost(s % clients),
): Promise<PhaseResult> {
  const slots = Array.from({ length: concurrency }, (_, s) => ({ host: hostOf(s), packets: [] as Uint8Array[] }));
  for (let i = 0; i < n; i++) {
    const slot = slots[i % concurrency]!;
    slot.packets.push(packet(i, slot.host));
  }
  const cpu0 = mainThreadCpuNs();
  const w = new Worker(GENERATOR, {
    eval: true,
    workerData: {
      server: '127.0.0.1',
      port,
      slots,
      timeoutMs: 1000,
      retries: 2,
      giveUpAfter: Math.max(10, 3 * concurrency),
    },
  });
  const r = await new Promise<{
    lat: number[];
    codes: Record<string, number>;
    timeouts: number;
    gaveUp: boolean;
    wallMs: number;
  }>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  const cpu1 = mainThreadCpuNs();
  await w.terminate();
  if (r.gaveUp)
    throw new Error(
      `bench/pcp.ts phase "${name}": ${r.timeouts} requests unanswered, ${r.lat.length} answered; the server ` +
        'drops them (run it with a log level to see why)',
    );
  const ok = [...r.lat].sort((a, b) => a - b);
  const success = r.codes['0'] ?? 0;
  return {
    phase: name,
    concurrency,
    clients: Math.min(clients, concurrency),
    n,
    perSecond: Math.round((ok.length / r.wallMs) * 1000),
    p50ms: round(percentile(ok, 50)),
    p99ms: round(percentile(ok, 99)),
    timeouts: r.timeouts,
    failed: ok.length - success + (n - ok.length),
    cpuUs: cpu0 === null || cpu1 === null ? null : round((cpu1 - cpu0) / 1000 / Math.max(1, ok.length), 1),
  };
}

function mapPacket(internalPort: number, lifetime: number, host: string, pinholeTo?: string): Uint8Array {
  const nonce = new Uint8Array(12).fill(1);
  return encodePcpRequest({
    version: 2,
    opcode: 1,
    lifetime,
    clientAddress: host,
    // a pinhole: the IPv6 internal address in THIRD_PARTY (RFC 6887 §13.1), suggested external = internal
    options: pinholeTo ? [{ kind: 'third_party', address: pinholeTo }] : [],
    map: {
      nonce,
      protocol: 6,
      internalPort,
      externalPort: internalPort,
      externalAddress: pinholeTo ? '::' : '0.0.0.0',
    },
  });
}

/** the IPv6 LAN host of pinhole request i (the lab's LAN prefix: traffic never leaves a namespace or loopback) */
const pinholeHost = (i: number): string => `2001:db8:77::${(0x100 + (i % 256)).toString(16)}`;

/** pinhole ÷ mapping for the phases measured side by side (perSecond and p50) */
export function pinholeRatios(
  phases: readonly PhaseResult[],
): Record<string, { perSecond: number; p50: number; cpu: number | null }> {
  const out: Record<string, { perSecond: number; p50: number; cpu: number | null }> = {};
  for (const [key, op, concurrency] of [
    ['create', 'create', 32],
    ['renew', 'renew', 32],
    ['delete', 'delete', 32],
    ['create c1', 'create', 1],
    ['delete c1', 'delete', 1],
  ] as const) {
    const a = phases.find((p) => p.phase === `MAP ${op}` && p.concurrency === concurrency);
    const b = phases.find((p) => p.phase === `pinhole MAP ${op}` && p.concurrency === concurrency);
    if (a && b && a.perSecond > 0 && a.p50ms > 0)
      out[key] = {
        perSecond: round(b.perSecond / a.perSecond),
        p50: round(b.p50ms / a.p50ms),
        // CPU per request: the figure that holds while other processes share the machine
        cpu: a.cpuUs && b.cpuUs !== null ? round(b.cpuUs / a.cpuUs) : null,
      };
  }
  return out;
}

/** a trivial UDP echo server: the ceiling of what the generator can measure on this machine */
async function echoCeiling(count: number): Promise<PhaseResult[]> {
  const s = createSocket('udp4');
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  const p = (i: number, host: string) => mapPacket(20000 + (i % 40000), 3600, host);
  try {
    return [
      await generate('echo ceiling', port, count, 1, 1, p),
      await generate('echo ceiling', port, count, 32, 32, p),
    ];
  } finally {
    s.close();
  }
}

/**
 * The PCP front-end alone: decode, policy of the front-end, encode and the socket, with a lease table
 * stub that grants at once. Separates the front-end's cost from the lease table's and the kernel's.
 */
export async function frontendCeiling(count: number, clients: number): Promise<PhaseResult[]> {
  const now = Date.now();
  const stub = {
    async request(req: LeaseRequest) {
      const lease = {
        id: 'x',
        source: req.source,
        protocol: req.protocol,
        externalAddress: '203.0.113.1',
        externalPort: req.externalPort || req.internalPort,
        externalPortEnd: req.externalPort || req.internalPort,
        internalAddress: req.internalAddress,
        internalPort: req.internalPort,
        remoteAddress: null,
        remotePrefix: null,
        remotePort: null,
        owner: req.owner,
        description: '',
        nonce: req.nonce ?? null,
        createdAt: now,
        updatedAt: now,
        expiresAt: now + 3600_000,
        requestedLifetime: req.lifetime,
        readOnly: false,
        rule: null,
        state: 'active' as const,
        endedAt: null,
        endReason: null,
      };
      return { ok: true as const, lease, created: true, lifetime: req.lifetime };
    },
    async release() {
      return { ok: true as const, lease: null };
    },
    externalAddress: () => '203.0.113.1',
    // the handler looks up the client's existing lease before a MAP (a FILTER change, a pinhole): none here.
    // Without it every request threw inside the server, went unanswered, and the phase waited out the
    // retries of all 2000 requests (the "hang" of sessions 7 and before)
    findByInternal: () => null,
    list: () => ({ leases: [], total: 0 }),
  } as unknown as Parameters<typeof createPcpServer>[0]['leases'];
  const server = createPcpServer({
    config: {
      pcp: { enabled: true, port: 0, peer: false, thirdParty: [], allowAllProtocols: false, rateLimit: 0, ipv6: false },
      natpmp: { enabled: true },
      // the bench drives 10-17k requests/s: no global cap (limits.pcpRequestsPerSecond), like no per-client one
      limits: { pcpRequestsPerSecond: 0, peerLookupsPerSecond: 0 },
      policy: createPolicy({
        secureMode: true,
        ipv6Pinholes: true,
        maxLeasesPerClient: 1,
        reservedPorts: [],
        rules: [],
        historyRetention: 1,
        lifetime: {
          pcp: { min: 120, max: 86400 },
          natpmp: { min: 120, max: 86400 },
          upnp: { min: 1, max: 1 },
          trigger: { min: 1, max: 1 },
        },
      }).config,
    },
    leases: stub,
    log: pino({ level: 'silent' }),
    metrics: createMetrics(),
    clock: createSystemClock(),
    listen: ['127.0.0.1'],
    announce: null,
    addressCheckMs: 0,
  });
  await server.start();
  const port = server.addresses()[0]!.port;
  const p = (i: number, h: string) => mapPacket(10000 + (i % 50000), 3600, h);
  try {
    return [
      await generate('front-end only (stub table)', port, count, 1, clients, p),
      await generate('front-end only (stub table)', port, count, 32, clients, p),
    ];
  } finally {
    await server.close();
  }
}

export interface PcpBenchOptions {
  /** requests per phase (default 2000) */
  count?: number;
  /** leases held before measuring (default 0) */
  preload?: number;
  /** measure with this dataplane (e.g. the nftables driver in the lab); default: memory */
  dataplane?: Dataplane;
  /** skip the echo ceiling */
  noEcho?: boolean;
  /** distinct LAN clients (loopback source addresses 127.0.x.y) the requests come from (default 32) */
  clients?: number;
}

export async function run(opts: PcpBenchOptions = {}) {
  const loadAtStart = loadavg().map((x) => round(x, 2));
  const count = opts.count ?? 2000;
  const preload = opts.preload ?? 0;
  const clients = Math.max(1, opts.clients ?? 32);
  const dir = mkdtempSync(join(tmpdir(), 'portd-bench-pcp-'));
  const dataplane = opts.dataplane ?? createMemoryDataplane();
  // one LAN host (FULL_HOST) may only map 50000-50255, and that block is taken before the last phase
  const policy = createPolicy(
    testPolicy({
      maxLeasesPerClient: 1_000_000,
      reservedPorts: [],
      rules: [
        {
          action: 'allow',
          extStart: 50000,
          extEnd: 50255,
          address: FULL_HOST,
          prefix: 32,
          intStart: 0,
          intEnd: 65535,
          text: `allow 50000-50255 ${FULL_HOST}/32 0-65535`,
        },
        {
          action: 'deny',
          extStart: 0,
          extEnd: 65535,
          address: FULL_HOST,
          prefix: 32,
          intStart: 0,
          intEnd: 65535,
          text: `deny 0-65535 ${FULL_HOST}/32 0-65535`,
        },
      ],
    }),
  );
  const clock = createSystemClock();
  const metrics = createMetrics();
  const log = pino({ level: 'silent' });
  const table = createLeaseTable({
    database: { path: join(dir, 'bench.sqlite') },
    dataplane,
    policy,
    clock,
    log,
    metrics,
    externalAddress: '203.0.113.1',
  });
  const server = createPcpServer({
    config: {
      pcp: {
        enabled: true,
        port: 0,
        peer: false,
        // the loopback clients name the pinholes' IPv6 hosts in THIRD_PARTY
        thirdParty: ['127.0.0.0/8'],
        allowAllProtocols: false,
        rateLimit: 0,
        ipv6: false,
      },
      natpmp: { enabled: true },
      // the bench drives 10-17k requests/s: no global cap (limits.pcpRequestsPerSecond), like no per-client one
      limits: { pcpRequestsPerSecond: 0, peerLookupsPerSecond: 0 },
      policy: policy.config,
    },
    leases: table,
    ipv6Pinholes: true,
    log,
    metrics,
    clock,
    listen: ['127.0.0.1'],
    announce: null,
    addressCheckMs: 0,
  });
  const results: PhaseResult[] = [];
  let preloaded = 0;
  try {
    await dataplane.init();
    // preload: other LAN hosts' leases, 64 in flight: udp first (60,000 ports), then tcp on ports the
    // measured phases do not use (there are only 64,512 of each protocol: 100k needs both)
    const measured = (p: number) =>
      (p >= 10000 && p < 12100) || (p >= 30000 && p < 32100) || (p >= 42000 && p < 44100) || (p >= 50000 && p < 50300);
    const tcpPorts: number[] = [];
    for (let p = 1024; p <= 65535 && tcpPorts.length < Math.max(0, preload - 60000); p++)
      if (!measured(p)) tcpPorts.push(p);
    let granted = 0;
    for (let i = 0; i < preload; ) {
      const batch: Promise<{ ok: boolean }>[] = [];
      for (let j = 0; j < 64 && i < preload; j++, i++) {
        const host = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
        const udp = i < 60000;
        const port = udp ? 1024 + i : (tcpPorts[i - 60000] ?? 0);
        const req: LeaseRequest = {
          source: 'pcp',
          identity: 'internal',
          protocol: udp ? 'udp' : 'tcp',
          owner: host,
          internalAddress: host,
          internalPort: port || 1024,
          externalPort: port,
          allowOtherPort: udp,
          lifetime: 3600,
          nonce: 'cd'.repeat(12),
        };
        batch.push(table.request(req));
      }
      granted += (await Promise.all(batch)).filter((r) => r.ok).length;
    }
    preloaded = granted;
    await server.start();
    const port = server.addresses()[0]!.port;
    // fresh internal ports for each create phase (external suggested = internal)
    const c = clients;
    results.push(await generate('MAP create', port, count, 1, c, (i, h) => mapPacket(10000 + i, 3600, h)));
    results.push(await generate('MAP create', port, count, 32, c, (i, h) => mapPacket(30000 + i, 3600, h)));
    results.push(await generate('MAP renew', port, count, 32, c, (i, h) => mapPacket(30000 + i, 7200, h)));
    results.push(await generate('MAP delete', port, count, 32, c, (i, h) => mapPacket(30000 + i, 0, h)));
    results.push(await generate('MAP delete', port, count, 1, c, (i, h) => mapPacket(10000 + i, 0, h)));
    // the same phases as IPv6 pinholes (fresh ports on 256 IPv6 hosts), in the same order: the concurrency-1
    // create comes first for the pinholes too, so the concurrency-32 creates compare warm code with warm code
    // (measured first, the pinhole c32 create paid the JIT's warm-up of every IPv6 path, and IPv4's did not)
    const pin = (base: number, i: number, h: string, lifetime: number) =>
      mapPacket(base + i, lifetime, h, pinholeHost(i));
    results.push(await generate('pinhole MAP create', port, count, 1, c, (i, h) => pin(10000, i, h, 3600)));
    results.push(await generate('pinhole MAP create', port, count, 32, c, (i, h) => pin(30000, i, h, 3600)));
    results.push(await generate('pinhole MAP renew', port, count, 32, c, (i, h) => pin(30000, i, h, 7200)));
    results.push(await generate('pinhole MAP delete', port, count, 32, c, (i, h) => pin(30000, i, h, 0)));
    results.push(await generate('pinhole MAP delete', port, count, 1, c, (i, h) => pin(10000, i, h, 0)));
    // a host asking for ports in its only allowed block, which is full (every answer NO_RESOURCES), at 16 in
    // flight, while 16 other clients create mappings: theirs should look like the concurrency-32 creates
    for (let p = 50000; p <= 50255; p++) {
      await table.request({
        source: 'pcp',
        identity: 'internal',
        protocol: 'tcp',
        owner: FULL_HOST,
        internalAddress: FULL_HOST,
        internalPort: p,
        externalPort: p,
        allowOtherPort: false,
        lifetime: 3600,
        nonce: 'ef'.repeat(12),
      });
    }
    const [full, others] = await Promise.all([
      generate(
        'MAP into a full block (all refused)',
        port,
        count,
        16,
        1,
        (i, h) => mapPacket(20000 + i, 3600, h),
        () => FULL_HOST,
      ),
      generate('MAP create beside it', port, count, 16, c, (i, h) => mapPacket(42000 + i, 3600, h)),
    ]);
    results.push(full, others);
  } finally {
    await server.close();
    await table.close();
    if (!opts.dataplane) await dataplane.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const frontend = opts.noEcho ? [] : await frontendCeiling(count, clients);
  const echo = opts.noEcho ? [] : await echoCeiling(count);
  return {
    name: 'pcp',
    driver: dataplane.driver,
    count,
    preload,
    preloaded,
    clients,
    cpus: (await import('node:os')).cpus().length,
    /** the load average at the start and at the end: rates are only comparable on a quiet machine */
    load: { start: loadAtStart, end: loadavg().map((x) => round(x, 2)) },
    phases: results,
    /** pinhole ÷ IPv4 mapping, phase by phase (32 in flight unless the key says c1): rate, median latency, CPU */
    pinholeRatio: pinholeRatios(results),
    frontend,
    echo,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string): number | undefined => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const res = await run({ count: arg('count') ?? 2000, preload: arg('preload') ?? 0, clients: arg('clients') ?? 32 });
  console.log(JSON.stringify(res, null, 2));
  printTable(
    `PCP on loopback, ${res.driver} dataplane, ${res.preload} leases preloaded, up to ${res.clients} clients ` +
      `(${res.cpus} CPUs, load ${res.load.start.join(' ')} at the start, ${res.load.end.join(' ')} at the end)`,
    [...res.phases, ...res.frontend, ...res.echo] as unknown as Record<string, unknown>[],
  );
  printTable(
    'pinhole ÷ IPv4 mapping (32 in flight; c1: one)',
    Object.entries(res.pinholeRatio).map(([op, r]) => ({ op, perSecond: r.perSecond, p50: r.p50, cpuUs: r.cpu })),
  );
}
