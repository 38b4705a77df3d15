import { createConnector, createUpstreamManager, type UpstreamManager } from './upstream/index.js';
import { isIPv6 } from 'node:net';
import { readFileSync } from 'node:fs';
import { ipv6InPrefix } from './common/ipv6.js';
import { networkInterfaces } from 'node:os';
import { performance as nodePerformance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { checkNetAdmin, readCapabilities } from './capabilities.js';
import type { Config } from './config/types.js';
import { ErrorCode, PortdError } from './errors.js';
import { createMemoryDataplane } from './dataplane/memory.js';
import { createMemoryTriggerKernel } from './dataplane/memory-triggers.js';
import type { FlowSource, TriggerKernel } from './dataplane/trigger-kernel.js';
import type { Dataplane } from './dataplane/types.js';
// the admin app (fastify routes, typebox/ajv schemas, dashboard) is imported at its first connection
import { startAdmin } from './admin/start.js';
import { startTriggers, type TriggerManager } from './triggers/index.js';
import { createConntrackCli, createPcpServer } from './frontends/pcp/index.js';
import { createUpnpServer, generateUuids, isUpnpUuids, type UpnpUuids } from './frontends/upnp/index.js';
import { parseListen } from './common/listen.js';
import { createSystemClock, type Clock } from './leases/clock.js';
import { createLeaseTable, type LeaseTable } from './leases/table.js';
import type { Lease } from './leases/types.js';
import type { LeaseStorage } from './leases/storage.js';
import { createLocalPorts } from './dataplane/local-ports.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createIdleGc, eventLoopBusy } from './common/idle-gc.js';
import { loadMallocTrim } from './common/malloc-trim.js';
import { loadDropFilePages } from './common/file-pages.js';
import { createPolicy, type PolicyDeps } from './policy/policy.js';
import { sameHost } from './policy/same-host.js';
import { createLanClients } from './policy/lan-clients.js';
import { warmUp } from './warmup.js';
import { createWanStatus, type WanStatus } from './dataplane/wan-status.js';

export const VERSION = '0.1.0';

/** a part of the running daemon that can be stopped */
interface Part {
  readonly name: string;
  close(): Promise<void>;
}

export interface Portd {
  readonly config: Config;
  readonly leases: LeaseTable;
  readonly dataplane: Dataplane;
  readonly metrics: Metrics;
  readonly triggers: TriggerManager;
  /** the WAN side: address kind, STUN, double NAT, the address clients are told (docs/double-nat.md) */
  readonly wan: WanStatus;
  /** where the admin API listens (admin.listen may ask for port 0) */
  readonly admin: { readonly address: string; readonly port: number };
  readonly startedAt: number;
  /** apply a new configuration: policy, static forwards and triggers change atomically */
  reload(next: Config): Promise<void>;
  close(): Promise<void>;
}

/** the LAN networks front-ends serve, as address/prefix: configured listen addresses, or the LAN interfaces' IPv4 */
export function lanNetworks(config: Config): { address: string; cidr: string }[] {
  const ifs = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined);
  if (config.listenAddresses && config.listenAddresses.length > 0) {
    return config.listenAddresses.map((address) => {
      const found = ifs.find((a) => a.address === address);
      return { address, cidr: found?.cidr ?? `${address}/${address.startsWith('127.') ? 8 : 32}` };
    });
  }
  const named = networkInterfaces();
  const out: { address: string; cidr: string }[] = [];
  for (const name of config.interfaces.lan) {
    for (const a of named[name] ?? [])
      if (a.family === 'IPv4' && a.cidr) out.push({ address: a.address, cidr: a.cidr });
  }
  return out;
}

/** the LAN interfaces' global and unique-local IPv6 addresses as `address%interface/prefix` (UPnP over IPv6) */
export function lanIPv6Cidrs(config: Config): string[] {
  if (config.listenAddresses) return [];
  const named = networkInterfaces();
  return config.interfaces.lan.flatMap((name) =>
    (named[name] ?? [])
      .filter((a) => a.family === 'IPv6' && !a.internal && !/^fe[89ab]/i.test(a.address) && a.cidr)
      .map((a) => `${a.address}%${name}/${a.cidr!.split('/')[1]}`),
  );
}

/** a conntrack timeout of the gateway, seconds (GetOutboundPinholeTimeout); the kernel's default when unreadable */
function conntrackTimeout(name: string, dflt: number): number {
  try {
    const n = Number(readFileSync(`/proc/sys/net/netfilter/${name}`, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : dflt;
  } catch {
    return dflt;
  }
}

/** what UPnP's WANIPv6FirewallControl needs besides the lease table (issue 15; docs/upnp.md) */
function upnpPinholes(
  config: () => Config,
  dataplane: Dataplane,
  neighbours: import('./dataplane/neighbours.js').NeighbourTable | null,
) {
  return {
    status: () => ({ firewallEnabled: true, inboundPinholeAllowed: config().policy.ipv6Pinholes }),
    packets: async (l: Lease) => (await dataplane.packets?.({ ...l, family: 6, timeoutSeconds: null })) ?? null,
    // an outbound flow's state lives as long as conntrack keeps it: UDP streams, established TCP
    outboundTimeout: (p: 'tcp' | 'udp') =>
      p === 'udp'
        ? conntrackTimeout('nf_conntrack_udp_timeout_stream', 120)
        : conntrackTimeout('nf_conntrack_tcp_timeout_established', 432000),
    sameHost: (a: string, b: string) => sameHost(a, b, (x) => neighbours?.lookup(x)).same,
    // the neighbour table is read (and an unknown address probed) before a request for another of the
    // client's addresses, so a privacy address is recognised on the first try
    prepare: async (a: string, b: string) => {
      await neighbours?.ensure([a, b]);
    },
  };
}

/** the dataplane driver and, beside it, the kernel side of port triggering that goes with it */
interface Kernel {
  readonly dataplane: Dataplane;
  readonly triggerKernel: TriggerKernel;
  /** where kernel trigger firings come from; null: firings only through the API */
  readonly triggerFlows: FlowSource | null;
}

async function createDataplane(
  config: Config,
  log: Logger,
  metrics: Metrics,
  clock: Clock,
  onRepaired: (why: string) => void,
): Promise<Kernel> {
  if (config.dataplane.driver === 'memory') {
    return {
      dataplane: createMemoryDataplane(),
      triggerKernel: createMemoryTriggerKernel(() => clock.now()),
      triggerFlows: null,
    };
  }
  // first, before anything touches the kernel or the database: without CAP_NET_ADMIN (effective, and ambient
  // for a non-root user, so nft and conntrack inherit it) nothing would work; say so and stop at once
  const cap = checkNetAdmin(readCapabilities());
  if (!cap.ok) throw new PortdError(ErrorCode.NO_CAP_NET_ADMIN, cap.message, cap.hint);
  const { preflight } = await import('./dataplane/preflight.js');
  const pre = await preflight({
    nftPath: config.dataplane.nftPath,
    conntrackPath: config.dataplane.conntrackPath,
    table: config.dataplane.table,
  });
  for (const w of pre.warnings) log.warn({ nft: pre.nftVersion }, w);
  const [{ createNftablesDataplane }, { nftablesTriggerKernel }, { createConntrackFlowSource }] = await Promise.all([
    import('./dataplane/nftables.js'),
    import('./dataplane/nftables-trigger-kernel.js'),
    import('./dataplane/conntrack-flows.js'),
  ]);
  const dataplane = createNftablesDataplane({
    table: config.dataplane.table,
    wan: config.interfaces.wan,
    lan: [...config.interfaces.lan],
    hairpin: config.dataplane.hairpin,
    grace: config.dataplane.grace,
    nftPath: config.dataplane.nftPath,
    netlink: config.dataplane.netlink,
    conntrackPath: config.dataplane.conntrackPath,
    frontendPorts: {
      tcp: [config.upnp.httpPort, ...(adminPort(config) ? [adminPort(config)!] : [])],
      udp: [1900, config.pcp.port],
    },
    log,
    metrics,
    onRepaired,
  });
  return {
    dataplane,
    triggerKernel: nftablesTriggerKernel(dataplane),
    triggerFlows: createConntrackFlowSource({ conntrackPath: config.dataplane.conntrackPath, log }),
  };
}

function adminPort(config: Config): number | null {
  return parseListen(config.admin.listen)?.port || null;
}

async function resolveExternalAddress(config: Config, log: Logger): Promise<string> {
  if (config.externalAddress !== 'auto') return config.externalAddress;
  const { readInterfaceAddress } = await import('./dataplane/external-address.js');
  const a = await readInterfaceAddress(config.interfaces.wan);
  if (!a) {
    log.warn({ wan: config.interfaces.wan }, 'WAN interface has no IPv4 address yet; using 0.0.0.0 until it gets one');
    return '0.0.0.0';
  }
  return a;
}

export async function startPortd(
  config: Config,
  log: Logger,
  given: {
    readonly storage?: LeaseStorage;
    readonly kernel?: Kernel;
    /** HA: the node's dataplane (made once, above) reports a rebuild here: PCP resets its epoch */
    readonly onRepaired?: (fn: (why: string) => void) => void;
  } = {},
): Promise<Portd> {
  // issue 18 items 3-4: ha.enabled: one node of the HA pair (src/ha/portd.ts, docs/ha.md). This node's dataplane
  // is made here, once: the follower fills it while standby, and on keepalived MASTER the active side (this very
  // function, given the dataplane and a PostgreSQL storage whose writes carry the fence's generation) finds every
  // lease already in it; `init`/`close` are the HA node's, not the active side's, so a takeover never empties it
  if (config.ha?.enabled && !given.kernel) {
    const haMetrics = createMetrics();
    let repaired: ((why: string) => void) | null = null;
    const kernel = await createDataplane(
      config,
      log.child({ component: 'dataplane' }),
      haMetrics,
      createSystemClock(),
      (why) => {
        log.warn({ why }, 'ha: dataplane rebuilt');
        if (ha.active()) repaired?.(why);
      },
    );
    await kernel.dataplane.init();
    await kernel.dataplane.setExternalAddresses([await resolveExternalAddress(config, log)]);
    const shared: Kernel = {
      ...kernel,
      dataplane: { ...kernel.dataplane, init: async () => {}, close: async () => {} },
    };
    const ha = await (await import('./ha/portd.js')).startHaPortd<Portd>({
      config,
      log,
      dataplane: kernel.dataplane,
      startActive: (c, storage) =>
        startPortd(c, log, {
          storage,
          kernel: shared,
          onRepaired: (fn) => {
            repaired = fn;
          },
        }),
    });
    const standbyLeases = { countActive: () => ({ total: ha.node.follower.status().entries }) };
    const none = { address: '', port: 0 };
    return {
      get config() {
        return ha.active()?.config ?? config;
      },
      // a standby has no lease table of its own (the follower reads PostgreSQL): only the count is offered
      get leases() {
        return ha.active()?.leases ?? (standbyLeases as unknown as LeaseTable);
      },
      dataplane: kernel.dataplane,
      get metrics() {
        return ha.active()?.metrics ?? haMetrics;
      },
      get triggers() {
        return ha.active()!.triggers;
      },
      get wan() {
        return ha.active()!.wan;
      },
      get admin() {
        return ha.active()?.admin ?? none;
      },
      startedAt: Date.now(),
      reload: (next) => ha.reload(next),
      async close() {
        await ha.close();
        await kernel.dataplane.close();
      },
    };
  }
  // issue 18 item 2: database.driver postgres: the lease table's storage on PostgreSQL (src/leases/pg/storage.ts),
  // opened first, before any kernel work: its writer lock (an advisory lock, pg/fence.ts) refuses a second portd
  const storage =
    given.storage ??
    (config.database.driver === 'postgres'
      ? await (await import('./leases/pg/storage.js')).openPostgresStorage({
          url: config.database.url ?? '',
          onWarning: (m) => log.warn({ component: 'database' }, m),
          onFenceLost: (e) =>
            log.error(
              { component: 'database', err: e.message },
              'PostgreSQL writer lock lost: another portd may write the lease table now; restart portd',
            ),
        })
      : undefined);
  const startedAt = Date.now();
  // the process metrics start with the admin app (built at its first connection): nothing can scrape them before
  const metrics = createMetrics({ defaultMetrics: 'on-demand' });
  const parts: Part[] = [];
  const timers: NodeJS.Timeout[] = [];
  // one full GC once a burst of requests is over (V8 keeps the pages it grew to): common/idle-gc.ts, --expose-gc;
  // the start is the first burst. After it malloc's freed pages go back (malloc_trim) and so do the file pages
  // the start read once (common/file-pages.ts: ≈ 30 of the idle 63 MiB), both through koffi (the nftables
  // driver's FFI; docs/benchmarks.md, "Footprint")
  const mallocTrim = loadMallocTrim();
  const dropFilePages = loadDropFilePages();
  const idleGc = createIdleGc({
    gc: (globalThis as { gc?: () => void }).gc,
    afterStart: true,
    trim: () => {
      mallocTrim?.();
      dropFilePages?.();
    },
    rss: () => process.memoryUsage.rss(),
    busy: eventLoopBusy(nodePerformance.eventLoopUtilization),
    onCollect: (before, after) => log.debug({ rssMiB: [before, after].map((b) => Math.round(b / 2 ** 20)) }, 'idle GC'),
  });
  parts.push({ name: 'idle-gc', close: async () => idleGc.stop() });
  const clock = createSystemClock();
  // secure mode and IPv6 privacy addresses: a host's stable and temporary addresses are one host when the
  // gateway's neighbour table gives them one link-layer address (policy/same-host.ts, docs/pcp.md). The check
  // runs inside a tick and reads the cache; an unknown address is probed then, so the client's retry finds it
  let neighbours: import('./dataplane/neighbours.js').NeighbourTable | null = null;
  if (config.dataplane.driver === 'nftables' && !config.listenAddresses && config.interfaces.lan.length > 0) {
    const { createNeighbourTable } = await import('./dataplane/neighbours.js');
    const table = createNeighbourTable({ interfaces: config.interfaces.lan, log });
    neighbours = table;
    parts.push({ name: 'neighbours', close: async () => table.close() });
  }
  const policyDeps: PolicyDeps = {
    sameHost: (requester, target) => {
      if (!isIPv6(requester) || !isIPv6(target)) return null; // IPv4 secure mode compares the addresses
      const a = sameHost(requester, target, (x) => neighbours?.lookup(x));
      if (!a.same && a.verdict === 'unknown') void neighbours?.ensure([requester, target]);
      return a;
    },
  };
  let policy = createPolicy(config.policy, policyDeps);
  let current = config;
  /** called when kernel state may have been lost (table rebuilt): PCP resets its epoch */
  const onStateLost: ((why: string) => void)[] = [];
  given.onRepaired?.((why) => {
    for (const fn of onStateLost) fn(why);
  });
  /** called after a configuration reload took effect (UPnP: the IPv6 firewall status is evented) */
  const onReloaded: (() => void)[] = [];
  /** called after the external address changed (UPnP ExternalIPAddress event) */
  const onExternalAddress: ((addr: string) => void)[] = [];

  // the driver rewrote kernel state that was lost or altered from outside: PCP clients must re-map (new epoch)
  const { dataplane, triggerKernel, triggerFlows } =
    given.kernel ??
    (await createDataplane(config, log.child({ component: 'dataplane' }), metrics, clock, (why) => {
      for (const fn of onStateLost) fn(why);
    }));
  await dataplane.init();
  const externalAddress = await resolveExternalAddress(config, log);
  await dataplane.setExternalAddresses([externalAddress]);

  // the table reads the policy through this indirection, so SIGHUP swaps it atomically between ticks
  const policyRef = new Proxy({} as ReturnType<typeof createPolicy>, {
    get: (_t, k) => (policy as unknown as Record<string | symbol, unknown>)[k],
  });
  // the gateway's own listening ports (policy.checkPortInUse, read at grant time): /proc/net is the namespace
  // of this process, which is where the nftables driver's rules divert traffic (portd runs in the gateway's
  // namespace). The memory driver diverts nothing: no check
  const localPorts =
    config.dataplane.driver === 'nftables'
      ? createLocalPorts({
          externalAddresses: () => [leases.externalAddress()],
          log: log.child({ component: 'local-ports' }),
        })
      : null;
  // trigger rules are known once the manager runs (after the table): until then no port is a trigger's
  let triggerPort: (protocol: 'tcp' | 'udp', port: number) => string | null = () => null;
  const leases = createLeaseTable({
    // the WAL checkpointer's worker leaves its arena behind (≈ 2 MiB): docs/benchmarks.md, "Session 8: footprint"
    database: { ...config.database, onCheckpointerStopped: () => idleGc.released() },
    ...(storage ? { storage } : {}),
    dataplane,
    policy: policyRef,
    clock,
    log,
    metrics,
    externalAddress,
    grace: config.dataplane.grace,
    historyRetention: config.policy.historyRetention,
    ...(localPorts ? { portInUse: (protocol: 'tcp' | 'udp', port: number) => localPorts.inUse(protocol, port) } : {}),
    triggerPort: (protocol, port) => triggerPort(protocol, port),
    maxActiveLeases: config.limits.maxActiveLeases,
    maxEndedLeases: config.limits.maxEndedLeases,
    historyPerLease: config.limits.historyPerLease,
  });
  parts.push({ name: 'leases', close: () => leases.close() });

  // reconcile on start: the kernel gets exactly the table; then leases that expired while we were down end
  const t0 = performance.now();
  const r = await leases.reconcile('start');
  log.info(
    { drift: r.drift, ms: Math.round(performance.now() - t0), active: leases.countActive().total },
    'dataplane reconciled on start',
  );
  await leases.expireDue();
  const st = await leases.syncStatic(config.staticForwards);
  if (st.added || st.removed) log.info(st, 'static forwards from the configuration applied');

  // port triggering: kernel rules + conntrack firings (nftables), API firings only (memory)
  const triggers = await startTriggers({
    config,
    leases,
    kernel: triggerKernel,
    flows: triggerFlows,
    log,
    metrics,
    clock,
  });
  triggerPort = (protocol, port) => triggers.portRule(protocol, port);
  parts.push({ name: 'triggers', close: () => triggers.close() });

  // periodic, cheap reconcile (count compare; full compare when the counts differ), then the element audit
  // when it is due (at most 1 % of the time: every period on a home router, every few minutes at 100k leases)
  if (config.dataplane.reconcileInterval > 0) {
    timers.push(
      setInterval(() => {
        void leases
          .reconcile('periodic', false)
          .then(() => dataplane.audit?.())
          .catch((e) => log.error({ err: (e as Error).message }, 'periodic dataplane audit failed'));
      }, config.dataplane.reconcileInterval * 1000),
    );
  }
  // a table deleted or altered from outside is noticed within min(10 s, reconcileInterval) and rebuilt;
  // the driver reports the rebuild through onRepaired (kernel state was lost: PCP resets its epoch)
  if (dataplane.check) {
    const every = config.dataplane.reconcileInterval > 0 ? Math.min(10, config.dataplane.reconcileInterval) : 10;
    timers.push(
      setInterval(() => {
        void dataplane.check!()
          .then((r) => {
            if (r.rebuilt) log.warn({ reason: r.reason }, 'dataplane state was lost or altered and rebuilt');
          })
          .catch((e) => log.error({ err: (e as Error).message }, 'dataplane check failed'));
      }, every * 1000),
    );
  }
  // an NTP step after boot must neither expire nor extend leases
  timers.push(
    setInterval(() => {
      void leases.checkWallClock();
    }, 5000),
  );
  // ended leases leave the history after policy.historyRetention even when nothing expires
  timers.push(
    setInterval(() => {
      void leases.prune();
    }, 3600_000),
  );
  for (const t of timers) t.unref();

  const lan = lanNetworks(config);
  const listen = lan.map((n) => n.address);
  // IPv4: the LAN networks; IPv6: the LAN interfaces' prefixes, link-local only with a LAN zone (policy/lan-clients)
  const lanClients = createLanClients({
    ipv4: lan.map((n) => n.cidr),
    interfaces: config.listenAddresses ? [] : config.interfaces.lan,
    read: networkInterfaces,
  });
  const isLanClient = (a: string) => lanClients.isLanClient(a);
  if (listen.length === 0)
    log.warn({ lan: config.interfaces.lan }, 'no LAN address found: front-ends are not listening');
  const frontends: { name: string; listening: string[] }[] = [];

  // double NAT (issue 16 part 3, docs/double-nat.md): the WAN address's kind, STUN when configured, and the one
  // address the front-ends report (the WAN's, or the upstream's once upstream chaining calls setUpstreamAddress)
  const stunConfig = config.stun ?? { servers: [], interval: 300, rto: 500, transmissions: 7 };
  const wan = createWanStatus({
    clock,
    log,
    stunEnabled: stunConfig.servers.length > 0,
    // an answer counts for 3 intervals, plus the time one check may take with every server silent
    stunMaxAgeMs:
      3 * stunConfig.interval * 1000 +
      stunConfig.servers.length * (2 ** stunConfig.transmissions + 16) * stunConfig.rto,
  });
  wan.onChange((s) => metrics.wanDoubleNat.set(s.doubleNat === 'yes' ? 1 : s.doubleNat === 'no' ? 0 : -1));
  wan.setWanAddress(leases.externalAddress());
  onExternalAddress.push((a) => wan.setWanAddress(a));
  if (stunConfig.servers.length > 0) {
    const [{ createStunClient }, { startStunChecks }] = await Promise.all([
      import('./dataplane/stun-client.js'),
      import('./dataplane/stun-checks.js'),
    ]);
    // sent from the WAN address when it is one of this host's (auto); a fixed externalAddress may be anybody's
    const ownWan = config.externalAddress === 'auto' && config.dataplane.driver === 'nftables';
    const client = createStunClient({
      servers: stunConfig.servers,
      rtoMs: stunConfig.rto,
      transmissions: stunConfig.transmissions,
      log,
      metrics,
      bindAddress: () => {
        const a = leases.externalAddress();
        return ownWan && a !== '0.0.0.0' ? a : undefined;
      },
    });
    const checks = startStunChecks({ client, status: wan, intervalSeconds: stunConfig.interval, log });
    onExternalAddress.push(() => void checks.recheck('WAN address changed'));
    parts.push({ name: 'stun', close: async () => checks.stop() });
  }
  let pcpEpoch: () => number | null = () => null;
  let upnpDescriptionUrls: () => string[] = () => [];
  /** the front-ends that follow the LAN addresses after start (the LAN address watch below) */
  const lanAddressSinks: ((list: readonly import('./dataplane/address-monitor.js').LanAddress[]) => Promise<void>)[] =
    [];

  // the request paths run against scratch state before the front-ends open, so the first clients meet compiled
  // code (src/warmup.ts; docs/benchmarks.md, "Cold start")
  if (config.warmup > 0)
    log.info(await warmUp({ config, requests: config.warmup, budgetMs: 2000 }), 'request paths warmed up');

  // behind another NAT (issue 16): each IPv4 lease is also requested from the upstream NAT, outside the writer's
  // transaction; the front-ends answer with the public endpoint it gave (docs/double-nat.md, "Chaining upstream")
  let upstream: UpstreamManager | null = null;
  if (config.upstream && config.upstream.mode !== 'off') {
    const u = config.upstream;
    upstream = createUpstreamManager({
      config: u,
      table: leases,
      connect: createConnector({
        config: u,
        wanInterface: config.interfaces.wan,
        wanAddress: () => leases.externalAddress(),
        log,
      }),
      log,
      metrics,
      // what UPnP GetExternalIPAddress and NAT-PMP report from then on (docs/double-nat.md, "What clients are told")
      onPublicAddress: (a) => wan.setUpstreamAddress(a),
    });
    await upstream.start();
    const up = upstream;
    parts.push({ name: 'upstream', close: () => up.close() });
    onExternalAddress.push(() => void up.wanAddressChanged());
  }
  const upstreamHook = upstream ? { upstream } : {};

  if (config.pcp.enabled || config.natpmp.enabled) {
    // PCP also answers on the LAN interfaces' IPv6 addresses when pcp.ipv6: global, ULA, and link-local with
    // the interface as its zone (`fe80::1%br-lan`: a link-local address means nothing without its link)
    const ipv6 =
      config.pcp.ipv6 && !config.listenAddresses
        ? config.interfaces.lan.flatMap((name) =>
            (networkInterfaces()[name] ?? [])
              .filter((a) => a.family === 'IPv6' && !a.internal)
              .map((a) => (/^fe[89ab]/i.test(a.address) ? `${a.address}%${name}` : a.address)),
          )
        : [];
    const conntrack =
      config.pcp.peer && config.dataplane.driver === 'nftables'
        ? createConntrackCli({ path: config.dataplane.conntrackPath })
        : null;
    if (conntrack) parts.push({ name: 'pcp-peer-holds', close: async () => conntrack.close() });
    const pcp = createPcpServer({
      config,
      leases,
      log,
      metrics,
      clock,
      listen: [...listen, ...ipv6],
      isLanClient,
      conntrack,
      ipv6Pinholes: () => current.policy.ipv6Pinholes,
      reportedAddress: () => wan.reportedAddress(),
      ...upstreamHook,
      // no multicast on loopback: announcements only when listening on real LAN addresses
      ...(listen.every((a) => a.startsWith('127.') || a === '::1') ? { announce: null } : {}),
    });
    await pcp.start();
    parts.push({ name: 'pcp', close: () => pcp.close() });
    frontends.push({ name: 'pcp', listening: pcp.addresses().map((a) => `${a.address}:${a.port}`) });
    pcpEpoch = () => pcp.epoch();
    onStateLost.push((why) => pcp.resetEpoch(why));
    lanAddressSinks.push((l) => pcp.setAddresses(l.map((a) => a.address)));
  }

  if (config.upnp.enabled) {
    let uuids: unknown = null;
    try {
      uuids = JSON.parse(leases.meta.get('upnp.uuids') ?? 'null');
    } catch {
      /* regenerate */
    }
    if (!isUpnpUuids(uuids)) {
      uuids = generateUuids();
      await leases.meta.set('upnp.uuids', JSON.stringify(uuids));
    }
    const adminHost = config.admin.listen.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    const adminOnLan = !['127.0.0.1', '::1', 'localhost'].includes(adminHost);
    const upnp = createUpnpServer({
      config,
      leases,
      log,
      metrics,
      clock,
      uuids: uuids as UpnpUuids,
      isLanClient,
      reportedAddress: () => wan.reportedAddress(),
      // IPv6: the LAN interfaces' global and unique-local addresses, with the interface for SSDP's groups
      listen: {
        addresses: [...lan.map((n) => n.cidr), ...(config.upnp.ipv6 ? lanIPv6Cidrs(config) : [])],
        httpPort: config.upnp.httpPort,
      },
      // policy.ipv6Pinholes follows a reload (the policy does), and subscribers hear of it
      ...(config.upnp.ipv6 ? { pinholes: upnpPinholes(() => current, dataplane, neighbours) } : {}),
      limits: { requestsPerSecond: config.upnp.rateLimit, requestBurst: config.upnp.rateLimit * 4 },
      ...upstreamHook,
      presentationUrl: adminOnLan
        ? `http://${adminHost === '0.0.0.0' ? (listen[0] ?? adminHost) : adminHost}:` +
          `${config.admin.listen.replace(/^.*:/, '')}/`
        : null,
    });
    await upnp.listen();
    parts.push({ name: 'upnp', close: () => upnp.close() });
    frontends.push({ name: 'upnp', listening: upnp.httpAddresses().map((a) => `${a.address}:${a.port}`) });
    upnpDescriptionUrls = () => upnp.descriptionUrls().flatMap((d) => [d.v1, d.v2]);
    onExternalAddress.push(() => upnp.stateChanged());
    onReloaded.push(() => upnp.stateChanged());
    lanAddressSinks.push((l) =>
      upnp.setAddresses(
        l
          .filter((a) => a.family === 4 || config.upnp.ipv6)
          .map((a) =>
            a.family === 4
              ? `${a.address}/${a.prefixLength}`
              : `${a.address.split('%')[0]}%${a.interface}/${a.prefixLength}`,
          ),
      ),
    );
  }

  // a WAN address read from the interface follows the interface (PCP notices leases.externalAddress() itself)
  if (config.externalAddress === 'auto' && config.dataplane.driver === 'nftables') {
    const { watchExternalAddress } = await import('./dataplane/external-address.js');
    const watcher = await watchExternalAddress({ interface: config.interfaces.wan, log }, (addrs) => {
      const next = addrs[0];
      if (!next || next === leases.externalAddress()) return;
      void leases.setExternalAddress(next).then(() => {
        for (const fn of onExternalAddress) fn(next);
      });
    });
    parts.push({ name: 'wan-address', close: async () => watcher.stop() });
  }

  /**
   * A LAN prefix went away (renumbering): the dynamic pinholes to addresses outside the LAN's prefixes now
   * end (a static one is the admin's to change), and PCP starts a new epoch and announces it (RFC 6887
   * §8.5, §14.1.1), so clients map again from their new addresses; UPnP's events follow the revocations.
   */
  async function endPinholesOutside(
    current: readonly { network: string; prefixLength: number }[],
    removed: readonly { network: string; prefixLength: number }[],
  ) {
    const inside = (a: string) => current.some((p) => ipv6InPrefix(a, p.network, p.prefixLength));
    const gone: Lease[] = [];
    for (let offset = 0; ; offset += 1000) {
      const page = leases.list({ family: 6, state: 'active', limit: 1000, offset }).leases;
      gone.push(...page.filter((l) => l.source !== 'static' && !inside(l.internalAddress)));
      if (page.length < 1000) break;
    }
    for (const l of gone) await leases.revoke(l.id, 'system:prefix', 'its LAN prefix was removed');
    log.info(
      { removed: removed.map((p) => `${p.network}/${p.prefixLength}`), pinholesEnded: gone.length },
      'LAN IPv6 prefix removed: pinholes outside the LAN ended, PCP epoch reset',
    );
    for (const fn of onStateLost) fn('LAN IPv6 prefix removed');
  }

  // IPv6 prefixes followed (issue 15, item 6): a renumbered LAN changes who is a LAN client at once. Ending the
  // pinholes outside the new prefixes and a PCP epoch reset hang on the same event (prefix-watch.ts's PrefixChange)
  if (config.pcp.ipv6 && config.dataplane.driver === 'nftables' && !config.listenAddresses) {
    const { watchPrefixes } = await import('./dataplane/prefix-watch.js');
    const prefixes = await watchPrefixes({ lan: config.interfaces.lan, wan: config.interfaces.wan, log }, (c) => {
      if (c.side !== 'lan') return;
      lanClients.refresh();
      if (c.removed.length > 0) void endPinholesOutside(c.current, c.removed);
    });
    parts.push({ name: 'prefix-watch', close: async () => prefixes.stop() });
  }

  // LAN addresses that appear after start (or finish DAD) are served, and those removed are closed (issue 15,
  // item 5): the same address monitor as the prefix watch, the whole list each time (address-monitor.ts)
  if (lanAddressSinks.length > 0 && config.dataplane.driver === 'nftables' && !config.listenAddresses) {
    const { watchLanAddresses } = await import('./dataplane/address-monitor.js');
    const lanWatch = watchLanAddresses(
      { lan: config.interfaces.lan, log: log.child({ component: 'lan-addresses' }) },
      (l) => {
        for (const sink of lanAddressSinks)
          void sink(l).catch((e) => log.error({ err: (e as Error).message }, 'LAN address change not followed'));
      },
    );
    parts.push({ name: 'lan-addresses', close: async () => lanWatch.stop() });
  }

  // the admin server starts last, so it is closed first
  const admin = await startAdmin({
    config,
    leases,
    dataplane,
    metrics,
    log,
    clock,
    startedAt,
    version: VERSION,
    env: process.env,
    pcpEpoch: () => pcpEpoch(),
    ...upstreamHook,
    frontends: () => frontends,
    upnpDescriptionUrls: () => upnpDescriptionUrls(),
    wan: () => wan.snapshot(),
    lazy: true,
    loadRoutes: async () => [(await import('./admin/triggers-routes.js')).triggerRoutes(triggers)],
  });
  parts.push({ name: 'admin', close: () => admin.close() });
  log.info(
    {
      url: `http://${admin.address.includes(':') ? `[${admin.address}]` : admin.address}:${admin.port}/`,
      auth: admin.authRequired,
    },
    'admin API and dashboard listening',
  );

  const portd: Portd = {
    get config() {
      return current;
    },
    leases,
    dataplane,
    metrics,
    triggers,
    wan,
    startedAt,
    admin: { address: admin.address, port: admin.port },
    reload(next: Config) {
      // one reload at a time, in the order the signals came
      reloading = reloading.then(
        () => applyReload(next),
        () => applyReload(next),
      );
      return reloading;
    },
    async close() {
      for (const t of timers) clearInterval(t);
      for (const p of [...parts].reverse()) {
        try {
          await p.close();
        } catch (e) {
          log.error({ part: p.name, err: (e as Error).message }, 'error while stopping');
        }
      }
      await dataplane.close();
    },
  };
  let reloading: Promise<void> = Promise.resolve();
  async function applyReload(next: Config): Promise<void> {
    const changed: string[] = [];
    for (const k of [
      'interfaces',
      'database',
      'dataplane',
      'upnp',
      'pcp',
      'natpmp',
      'admin',
      'listenAddresses',
      'stateDir',
      'stun',
    ] as const) {
      if (JSON.stringify(next[k]) !== JSON.stringify(current[k])) changed.push(k);
    }
    if (changed.length) log.warn({ keys: changed }, 'these settings change only on restart; kept the running values');
    policy = createPolicy(next.policy, policyDeps);
    current = next;
    for (const fn of onReloaded) fn();
    const res = await leases.syncStatic(next.staticForwards);
    const tr = await triggers.reload(next);
    log.info(
      {
        staticAdded: res.added,
        staticRemoved: res.removed,
        refused: res.refused.length,
        triggers: tr.rules,
        triggersNotInForce: tr.broken,
      },
      'configuration reloaded',
    );
  }
  // the start's garbage goes once the loop is quiet (common/idle-gc.ts)
  idleGc.started();
  return portd;
}
