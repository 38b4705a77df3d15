// UPnP front-end throughput on loopback: AddPortMapping and DeletePortMapping at concurrency 1 and 8,
// over keep-alive HTTP (node http.Agent keepAlive) and one connection per request, through the real
// lease table (memory dataplane unless one is passed in), next to the front-end alone (a stub lease
// table) and the ceiling of a trivial HTTP echo server, all measured with the same load generator.
// The generator runs in a worker thread (its own core). Columns besides rate and latency: loopMs =
// portd's main thread busy per request (event-loop utilisation, includes time descheduled in syscalls),
// perTick = requests per writer tick (group commit), batchMs = mean dataplane batch time.
// Pinholes (issue 15): WANIPv6FirewallControl:1 AddPinhole and DeletePinhole (keep-alive, the same concurrencies
// and ports) for 2001:db8:77::10, which the loopback client owns as far as secure mode is told; pinholeRatio is
// pinhole ÷ mapping.
//   node --import tsx bench/upnp.ts [--count 2000] [--preload 0] [--subscribe]   (--subscribe: one GENA subscriber)
// In the lab with the nftables driver (root): node --import tsx test/lab/upnp-bench.ts [count] [preload]
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance as perfHooks } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import pino, { type Logger } from 'pino';
import { validateConfig } from '../src/config/index.js';
import type { Config } from '../src/config/types.js';
import { createMemoryDataplane } from '../src/dataplane/memory.js';
import type { Dataplane } from '../src/dataplane/types.js';
import { createUpnpServer, generateUuids } from '../src/frontends/upnp/index.js';
import { createPinholeDirectory } from '../src/frontends/upnp/pinhole-directory.js';
import { createSystemClock } from '../src/leases/clock.js';
import { createLeaseTable } from '../src/leases/table.js';
import type { LeaseTableApi } from '../src/leases/table-api.js';
import type { Lease, LeaseRequest } from '../src/leases/types.js';
import { createMetrics } from '../src/metrics.js';
import { createPolicy } from '../src/policy/policy.js';
import { mainThreadCpuNs, printTable, round } from './lib.js';
import { testPolicy } from '../test/helpers/leases.js';

/** HTTP load generator (plain JS, eval'd in a worker): `concurrency` requests in flight, bodies from a template. */
const GENERATOR = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const { url, template, headers, count, concurrency, keepAlive, maxMs, first, ids } = workerData;
const u = new URL(url);
const agent = keepAlive ? new http.Agent({ keepAlive: true, maxSockets: concurrency }) : false;
const lat = []; const codes = {};
let next = 0; const t0 = performance.now(); const deadline = t0 + maxMs;
function one(i) {
  return new Promise((resolve) => {
    const body = template.replace(/\\{PORT\\}/g, String(first + i)).replace(/\\{ID\\}/g, ids ? String(ids[i]) : '');
    const s = performance.now();
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent,
      headers: { ...headers, 'content-length': Buffer.byteLength(body), ...(keepAlive ? {} : { connection: 'close' }) },
    }, (res) => {
      let n = 0; res.on('data', (d) => { n += d.length; });
      res.on('end', () => {
        lat.push(performance.now() - s); codes[res.statusCode] = (codes[res.statusCode] || 0) + 1; resolve();
      });
    });
    req.on('error', (e) => { codes[e.code || 'error'] = (codes[e.code || 'error'] || 0) + 1; resolve(); });
    req.end(body);
  });
}
async function worker() { while (next < count && performance.now() < deadline) await one(next++); }
Promise.all(Array.from({ length: concurrency }, worker)).then(() => {
  if (agent) agent.destroy();
  parentPort.postMessage({ lat, codes, wallMs: performance.now() - t0 });
});
`;

interface Phase {
  phase: string;
  concurrency: number;
  keepAlive: boolean;
  n: number;
  perSecond: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  /** portd's main thread busy per request (event-loop utilisation), ms */
  loopMs?: number;
  /** portd's main-thread CPU time per request, µs (the generator is a worker); null off Linux */
  cpuUs?: number | null;
  /** requests per writer tick (group commit) and mean dataplane batch time, ms */
  perTick?: number;
  batchMs?: number;
  /** how long the gateway stayed busy after the phase (see UpnpBenchOptions.settle) */
  settleMs?: number;
}

function pct(sorted: number[], p: number) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function generate(
  phase: string,
  url: string,
  template: string,
  headers: Record<string, string>,
  count: number,
  concurrency: number,
  keepAlive: boolean,
  first: number,
  maxMs = 30_000,
  ids: readonly number[] | null = null,
): Promise<Phase> {
  const cpu0 = mainThreadCpuNs();
  const w = new Worker(GENERATOR, {
    eval: true,
    workerData: { url, template, headers, count, concurrency, keepAlive, maxMs, first, ids },
  });
  const r = await new Promise<{ lat: number[]; codes: Record<string, number>; wallMs: number }>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  const cpu1 = mainThreadCpuNs();
  await w.terminate();
  const s = [...r.lat].sort((a, b) => a - b);
  const errors = Object.entries(r.codes)
    .filter(([k]) => k !== '200')
    .reduce((a, [, v]) => a + v, 0);
  return {
    phase,
    concurrency,
    keepAlive,
    n: s.length,
    perSecond: Math.round((s.length / r.wallMs) * 1000),
    p50ms: round(pct(s, 50)),
    p99ms: round(pct(s, 99)),
    errors,
    cpuUs: cpu0 === null || cpu1 === null ? null : round((cpu1 - cpu0) / 1000 / Math.max(1, s.length), 1),
  };
}

const IPC2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';
const envelope = (action: string, args: string) =>
  '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
  `s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} ` +
  `xmlns:u="${IPC2}">${args}</u:${action}></s:Body></s:Envelope>`;
const ADD = envelope(
  'AddPortMapping',
  '<NewRemoteHost></NewRemoteHost><NewExternalPort>{PORT}</NewExternalPort><NewProtocol>TCP</NewProtocol>' +
    '<NewInternalPort>{PORT}</NewInternalPort><NewInternalClient>127.0.0.1</NewInternalClient>' +
    '<NewEnabled>1</NewEnabled><NewPortMappingDescription>bench</NewPortMappingDescription>' +
    '<NewLeaseDuration>3600</NewLeaseDuration>',
);
const DEL = envelope(
  'DeletePortMapping',
  '<NewRemoteHost></NewRemoteHost><NewExternalPort>{PORT}</NewExternalPort><NewProtocol>TCP</NewProtocol>',
);
const hdr = (action: string, service = IPC2) => ({
  'content-type': 'text/xml; charset="utf-8"',
  soapaction: `"${service}#${action}"`,
});

// IPv6 pinholes (issue 15 item 9): WANIPv6FirewallControl:1 AddPinhole and DeletePinhole (by UniqueID) beside
// AddPortMapping and DeletePortMapping, same ports, same concurrency; the ratios are printed
const FW6 = 'urn:schemas-upnp-org:service:WANIPv6FirewallControl:1';
const fw6Envelope = (action: string, args: string) =>
  envelope(action, args).replace(`xmlns:u="${IPC2}"`, `xmlns:u="${FW6}"`);
/** the LAN host the pinholes open to (the lab's LAN prefix; no IPv6 packet is sent) */
const PINHOLE_HOST = '2001:db8:77::10';
const ADD_PINHOLE = fw6Envelope(
  'AddPinhole',
  `<RemoteHost></RemoteHost><RemotePort>0</RemotePort><InternalClient>${PINHOLE_HOST}</InternalClient>` +
    '<InternalPort>{PORT}</InternalPort><Protocol>6</Protocol><LeaseTime>3600</LeaseTime>',
);
const DEL_PINHOLE = fw6Envelope('DeletePinhole', '<UniqueID>{ID}</UniqueID>');

/** pinhole ÷ IPv4 mapping, keep-alive, at each concurrency both were measured (perSecond and p50) */
export function pinholeRatios(
  phases: readonly Phase[],
): Record<string, { perSecond: number; p50: number; cpu: number | null }> {
  const out: Record<string, { perSecond: number; p50: number; cpu: number | null }> = {};
  for (const [op, v4, v6] of [
    ['add', 'AddPortMapping', 'AddPinhole'],
    ['delete', 'DeletePortMapping', 'DeletePinhole'],
  ] as const) {
    for (const b of phases.filter((p) => p.phase === v6 && p.keepAlive)) {
      const a = phases.find((p) => p.phase === v4 && p.keepAlive && p.concurrency === b.concurrency);
      if (a && a.perSecond > 0 && a.p50ms > 0)
        out[`${op} c${b.concurrency}`] = {
          perSecond: round(b.perSecond / a.perSecond),
          p50: round(b.p50ms / a.p50ms),
          // CPU per request: the figure that holds while other processes share the machine
          cpu: a.cpuUs && b.cpuUs != null ? round(b.cpuUs / a.cpuUs) : null,
        };
    }
  }
  return out;
}

/** a trivial HTTP server that reads the body and answers a fixed SOAP-sized reply: the ceiling of node http here */
async function echoCeiling(count: number): Promise<Phase[]> {
  const reply = envelope('AddPortMappingResponse', '');
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/xml' }).end(reply));
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const out: Phase[] = [];
  try {
    for (const keepAlive of [true, false])
      for (const c of [1, 8])
        out.push(await generate('HTTP echo', url, ADD, hdr('AddPortMapping'), count, c, keepAlive, 10000));
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
  return out;
}

/**
 * The UPnP front-end alone: HTTP, SOAP decode, the action's checks, encode, with a lease table stub
 * that grants and releases at once. Separates the front-end's cost from the lease table's and the kernel's.
 */
export async function frontendCeiling(count: number): Promise<Phase[]> {
  const now = Date.now();
  const held = new Map<string, Lease>();
  const lease = (req: LeaseRequest): Lease =>
    ({
      id: `x${req.externalPort}`,
      source: req.source,
      protocol: req.protocol,
      externalAddress: '203.0.113.1',
      externalPort: req.externalPort ?? req.internalPort,
      externalPortEnd: req.externalPort ?? req.internalPort,
      internalAddress: req.internalAddress,
      internalPort: req.internalPort,
      remoteAddress: null,
      remotePrefix: null,
      remotePort: null,
      owner: req.owner,
      description: req.description ?? '',
      nonce: null,
      createdAt: now,
      updatedAt: now,
      expiresAt: now + 3600_000,
      requestedLifetime: req.lifetime,
      readOnly: false,
      rule: null,
      state: 'active',
      endedAt: null,
      endReason: null,
    }) as Lease;
  const stub = {
    async request(req: LeaseRequest) {
      const l = lease(req);
      held.set(`${l.protocol}/${l.externalPort}`, l);
      return { ok: true as const, lease: l, created: true, lifetime: req.lifetime };
    },
    async release(req: { protocol: string; externalPort: number }) {
      const k = `${req.protocol}/${req.externalPort}`;
      const l = held.get(k) ?? null;
      held.delete(k);
      return { ok: true as const, lease: l };
    },
    findByExternal: (p: string, port: number) => held.get(`${p}/${port}`) ?? null,
    list: () => ({ leases: [], total: held.size }),
    activeCount: () => held.size,
    listExternalRange: () => [...held.values()],
    externalAddress: () => '203.0.113.1',
    on: () => () => {},
  } as unknown as LeaseTableApi;
  const log = pino({ level: 'silent' });
  const config: Config = {
    ...validateConfig({ upnp: { httpPort: 0, ssdp: false } }, 'bench'),
    policy: testPolicy({ maxLeasesPerClient: 1_000_000, reservedPorts: [] }),
  };
  const server = createUpnpServer({
    config,
    leases: stub,
    log,
    metrics: createMetrics(),
    clock: createSystemClock(),
    uuids: generateUuids(),
    listen: { addresses: ['127.0.0.1/8'], httpPort: 0 },
    isLanClient: (a) => a.startsWith('127.'),
    presentationUrl: null,
    wanStats: () => ({ bytesSent: 0, bytesReceived: 0, packetsSent: 0, packetsReceived: 0 }),
    limits: { requestsPerSecond: 0, connectionsPerClient: 0, soapRequestsPerSecond: 0 },
  });
  await server.listen();
  const url = server.descriptionUrls()[0]!.v2.replace('/igd2/desc.xml', '/igd2/ctl/IPConn');
  const out: Phase[] = [];
  try {
    for (const keepAlive of [true, false]) {
      for (const c of [1, 8]) {
        const elu0 = perfHooks.eventLoopUtilization();
        const r = await generate(
          'front-end only (stub table)',
          url,
          ADD,
          hdr('AddPortMapping'),
          count,
          c,
          keepAlive,
          30000,
        );
        out.push({ ...r, loopMs: round(perfHooks.eventLoopUtilization(elu0).active / Math.max(1, r.n)) });
        held.clear();
      }
    }
  } finally {
    await server.close();
  }
  return out;
}

export interface UpnpBenchOptions {
  readonly count?: number;
  /** leases held by other clients before measuring */
  readonly preload?: number;
  readonly dataplane?: Dataplane;
  readonly noEcho?: boolean;
  /** keep-alive first (default) or not */
  readonly order?: readonly boolean[];
  /** requests in flight per phase (default [1, 8]) */
  readonly concurrencies?: readonly number[];
  /**
   * called after each phase; waits until the gateway's background work of that phase is done (in the
   * lab: `conntrack` processes ending the deleted leases' flows) and returns the ms it waited, so one
   * phase's tail does not slow the next and the tail shows in the table (settleMs)
   */
  readonly settle?: () => Promise<number>;
  /** portd's logger (default silent): e.g. info to a file, to see what the log lines cost */
  readonly log?: Logger;
  /** one GENA subscriber on WANIPConnection (as many clients do right after discovery); counts its NOTIFYs */
  readonly subscribe?: boolean;
}

export async function run(opts: UpnpBenchOptions = {}) {
  const loadAtStart = os.loadavg().map((x) => round(x, 2));
  const count = opts.count ?? 2000;
  const preload = opts.preload ?? 0;
  const dir = mkdtempSync(join(tmpdir(), 'portd-bench-upnp-'));
  const dataplane = opts.dataplane ?? createMemoryDataplane();
  const policyConfig = testPolicy({ maxLeasesPerClient: 1_000_000, reservedPorts: [] });
  // secure mode stays on; the loopback client stands for the LAN host whose address PINHOLE_HOST is (in portd the
  // neighbour table says so, policy/same-host.ts): PCP's bench names its pinholes' hosts in a trusted THIRD_PARTY
  const ownsPinholeHost = (client: string, target: string) => client.startsWith('127.') && target === PINHOLE_HOST;
  const policy = createPolicy(policyConfig, {
    sameHost: (a, b) => ({ same: ownsPinholeHost(a, b), reason: 'the bench: the loopback client owns it' }),
  });
  const clock = createSystemClock();
  const metrics = createMetrics();
  const log = opts.log ?? pino({ level: 'silent' });
  const table = createLeaseTable({
    database: { path: join(dir, 'bench.sqlite') },
    dataplane,
    policy,
    clock,
    log,
    metrics,
    externalAddress: '203.0.113.1',
  });
  const config: Config = { ...validateConfig({ upnp: { httpPort: 0, ssdp: false } }, 'bench'), policy: policyConfig };
  // the server's UniqueIDs, so the DeletePinhole phase can name each pinhole the AddPinhole phase made
  const pinholeIds = createPinholeDirectory(table);
  const server = createUpnpServer({
    config,
    leases: table,
    log,
    metrics,
    clock,
    uuids: generateUuids(),
    listen: { addresses: ['127.0.0.1/8'], httpPort: 0 },
    isLanClient: (a) => a.startsWith('127.'),
    presentationUrl: null,
    wanStats: () => ({ bytesSent: 0, bytesReceived: 0, packetsSent: 0, packetsReceived: 0 }),
    // one load generator is one client: measure portd, not the per-client or global limits (upnp.rateLimit: 0,
    // limits.soapRequestsPerSecond: 0)
    limits: { requestsPerSecond: 0, connectionsPerClient: 0, soapRequestsPerSecond: 0 },
    pinholes: {
      directory: pinholeIds,
      status: () => ({ firewallEnabled: true, inboundPinholeAllowed: true }),
      packets: async () => null,
      outboundTimeout: () => 120,
      sameHost: ownsPinholeHost,
    },
  });
  const phases: Phase[] = [];
  let preloadMs = 0;
  let preloaded = 0;
  let callback: http.Server | null = null;
  let notifies = 0;
  try {
    await dataplane.init();
    const preloadStarted = performance.now();
    // every udp port first, then tcp ports above the ones the phases use (2000 .. 2000 + 4 * count)
    const UDP_PORTS = 65535 - 1024 + 1;
    const tcpFrom = 2000 + 4 * count;
    if (preload > UDP_PORTS + (65535 - tcpFrom + 1))
      throw new Error(
        `a preload of ${preload} does not fit on one external address beside ${4 * count} measured ports`,
      );
    for (let i = 0; i < preload; ) {
      const batch: Promise<{ ok: boolean }>[] = [];
      for (let j = 0; j < 64 && i < preload; j++, i++) {
        const host = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
        const [protocol, port] = i < UDP_PORTS ? ['udp' as const, 1024 + i] : ['tcp' as const, tcpFrom + i - UDP_PORTS];
        batch.push(
          table.request({
            source: 'upnp',
            identity: 'external',
            protocol,
            owner: host,
            internalAddress: host,
            internalPort: port,
            externalPort: port,
            allowOtherPort: false,
            lifetime: 3600,
          }),
        );
      }
      for (const r of await Promise.all(batch)) if (r.ok) preloaded++;
    }
    preloadMs = Math.round(performance.now() - preloadStarted);
    await server.listen();
    const url = server.descriptionUrls()[0]!.v2.replace('/igd2/desc.xml', '/igd2/ctl/IPConn');
    if (opts.subscribe) {
      callback = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          notifies++;
          res.end();
        });
      });
      await new Promise<void>((r) => callback!.listen(0, '127.0.0.1', r));
      const cb = `http://127.0.0.1:${(callback.address() as AddressInfo).port}/`;
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(
          url.replace('/ctl/', '/evt/'),
          { method: 'SUBSCRIBE', headers: { callback: `<${cb}>`, nt: 'upnp:event', timeout: 'Second-1800' } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
      if (status !== 200) throw new Error(`SUBSCRIBE answered ${status}`);
    }
    // distinct external ports per phase (tcp, below the preload's tcp ports)
    let base = 2000;
    /** one phase, with what portd's main thread and its writer did meanwhile */
    const measured = async (
      phase: string,
      template: string,
      c: number,
      keepAlive: boolean,
      ids: readonly number[] | null = null,
      target = url,
      service = IPC2,
    ): Promise<Phase> => {
      const sum = async () => {
        const h = await metrics.writerTickSize.get();
        const d = await metrics.dataplaneBatchSeconds.get();
        const v = (m: typeof h, name: string) => m.values.find((x) => x.metricName === name)?.value ?? 0;
        return {
          ticks: v(h, 'portd_writer_tick_requests_count'),
          batches: v(d, 'portd_dataplane_batch_duration_seconds_count'),
          batchS: v(d, 'portd_dataplane_batch_duration_seconds_sum'),
        };
      };
      const m0 = await sum();
      const elu0 = perfHooks.eventLoopUtilization();
      const r = await generate(phase, target, template, hdr(phase, service), count, c, keepAlive, base, 30_000, ids);
      const elu = perfHooks.eventLoopUtilization(elu0);
      const m1 = await sum();
      const batches = m1.batches - m0.batches;
      const settled = opts.settle ? { settleMs: await opts.settle() } : {};
      return {
        ...r,
        loopMs: round(elu.active / Math.max(1, r.n)),
        perTick: round(r.n / Math.max(1, m1.ticks - m0.ticks), 2),
        batchMs: batches > 0 ? round(((m1.batchS - m0.batchS) * 1000) / batches) : 0,
        ...settled,
      };
    };
    for (const keepAlive of opts.order ?? [true, false]) {
      for (const c of opts.concurrencies ?? [1, 8]) {
        phases.push(await measured('AddPortMapping', ADD, c, keepAlive));
        phases.push(await measured('DeletePortMapping', DEL, c, keepAlive));
        base += count;
      }
    }
    // pinholes on the same ports as the first (keep-alive) mapping phases, at the same concurrencies
    const fw6Url = url.replace('/ctl/IPConn', '/ctl/IP6FCtl');
    base = 2000;
    for (const c of opts.concurrencies ?? [1, 8]) {
      phases.push(await measured('AddPinhole', ADD_PINHOLE, c, true, null, fw6Url, FW6));
      const ids = Array.from({ length: count }, (_, i) => {
        const l = table.findByInternal('tcp', PINHOLE_HOST, base + i);
        return l ? (pinholeIds.idOf(l) ?? 0) : 0;
      });
      phases.push(await measured('DeletePinhole', DEL_PINHOLE, c, true, ids, fw6Url, FW6));
      base += count;
    }
  } finally {
    pinholeIds.close();
    await server.close();
    if (callback) {
      callback.closeAllConnections();
      await new Promise<void>((r) => callback!.close(() => r()));
    }
    await table.close();
    if (!opts.dataplane) await dataplane.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const frontend = opts.noEcho ? [] : await frontendCeiling(count);
  const echo = opts.noEcho ? [] : await echoCeiling(count);
  return {
    name: 'upnp',
    driver: dataplane.driver,
    count,
    preload,
    preloaded,
    preloadMs,
    subscriber: opts.subscribe ? { notifies } : null,
    cpus: os.cpus().length,
    /** the load average at the start and at the end: rates are only comparable on a quiet machine */
    load: { start: loadAtStart, end: os.loadavg().map((x) => round(x, 2)) },
    phases,
    /** pinhole ÷ IPv4 mapping, keep-alive, per concurrency: requests per second and median latency */
    pinholeRatio: pinholeRatios(phases),
    frontend,
    echo,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string): number | undefined => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const res = await run({
    count: arg('count') ?? 2000,
    preload: arg('preload') ?? 0,
    subscribe: process.argv.includes('--subscribe'),
  });
  console.log(JSON.stringify(res, null, 2));
  printTable(
    `UPnP on loopback, ${res.driver} dataplane, ${res.preloaded} leases preloaded (${res.cpus} CPUs, load ` +
      `${res.load.start.join(' ')} at the start, ${res.load.end.join(' ')} at the end)`,
    [...res.phases, ...res.frontend, ...res.echo] as unknown as Record<string, unknown>[],
  );
  printTable(
    'pinhole ÷ IPv4 mapping (keep-alive)',
    Object.entries(res.pinholeRatio).map(([op, r]) => ({ op, perSecond: r.perSecond, p50: r.p50, cpuUs: r.cpu })),
  );
}
