import type { UpstreamChain } from '../../leases/upstream.js';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net, { isIPv6, type AddressInfo, type Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { SsdpTarget } from '../../../protocols/ssdp/index.js';
import {
  ServiceType,
  SoapDecodeError,
  UpnpErrorCode,
  decodeSoapRequest,
  defaultConnectionService,
  encodeSoapFault,
  encodeSoapResponse,
  formatTimeoutHeader,
  SOAP_MAX_BODY_BYTES,
} from '../../../protocols/upnp/index.js';
import type { Config } from '../../config/types.js';
import type { LeaseTableApi } from '../../leases/table-api.js';
import type { Metrics } from '../../metrics.js';
import { canonicalIPv6, ipv6InPrefix, splitZone } from '../../common/ipv6.js';
import { unmapIPv4 } from '../../common/net.js';
import { createLogGate } from '../../common/log-gate.js';
import { createGlobalLimitReport, createPerClientCounter, createRateLimiter } from '../rate-limit.js';
import { createActionHandler, type WanStats } from './actions.js';
import { checkOrigin, checkSoapHeaders, type GuardRefusal } from './request-guard.js';
import { buildDeviceSet, type Endpoint } from './devices.js';
import { createPinholeActionHandler, type PinholeDeps } from './pinhole-actions.js';
import { createPinholeDirectory } from './pinhole-directory.js';
import { createGena, type EventVars } from './gena.js';
import { createLazyFastify } from './lazy-app.js';
import { createSsdp, type LanInterface, type Ssdp } from './ssdp.js';
import type { UpnpUuids } from './uuids.js';

export interface UpnpServerOptions {
  /** behind another NAT: IPv4 grants are chained upstream (src/upstream/) */
  readonly upstream?: UpstreamChain;
  readonly config: Config;
  readonly leases: LeaseTableApi;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: { now(): number };
  /** persisted device UUIDs (generateUuids() once, then store) */
  readonly uuids: UpnpUuids;
  readonly listen: {
    /** LAN addresses, "192.168.1.1/24" (the prefix drives the SSDP source-subnet check) or bare "127.0.0.1" (/32) */
    readonly addresses: readonly string[];
    /** 0 = ephemeral (tests); otherwise config.upnp.httpPort */
    readonly httpPort: number;
  };
  /** is this peer a LAN client we answer? (HTTP connections and SSDP searches) */
  readonly isLanClient: (address: string) => boolean;
  /** dashboard URL for presentationURL; null when the admin server listens on loopback only */
  readonly presentationUrl: string | null;
  /** BOOTID.UPNP.ORG; default: seconds since the epoch at creation (increases across restarts) */
  readonly bootId?: number;
  /** CONFIGID.UPNP.ORG (0..16777215) */
  readonly configId?: number;
  readonly ssdp?: {
    /** default config.upnp.ssdp */
    readonly enabled?: boolean;
    readonly port?: number;
    readonly multicastAddress?: string;
    readonly joinMulticast?: boolean;
    readonly notifyTarget?: { readonly address: string; readonly port: number };
    readonly maxDelayMs?: number;
    readonly random?: () => number;
  };
  readonly gena?: {
    readonly notifyTimeoutMs?: number;
    readonly coalesceMs?: number;
    readonly defaultTimeout?: number;
    readonly maxConcurrentNotifies?: number;
    readonly maxUnprovenNotifies?: number;
    readonly maxNotifiesPerSubscriber?: number;
    /**
     * least time between two mapping-change events (default 1000 ms): each one counts the visible
     * leases in the table, ≈ 17 ms at 100,000 leases, so under churn they must not follow every tick
     */
    readonly minIntervalMs?: number;
  };
  /** WAN counters; default: /sys/class/net/<interfaces.wan>/statistics */
  readonly wanStats?: () => WanStats | Promise<WanStats>;
  readonly connectionStatus?: () => 'Connected' | 'Disconnected';
  /** the external address told to clients (dataplane/wan-status.ts, docs/double-nat.md); default the WAN's */
  readonly reportedAddress?: () => string;
  readonly linkBitRates?: { readonly up: number; readonly down: number };
  /**
   * HTTP timeouts in ms. `check` is how often Node looks for connections past the request and
   * headers timeouts (its default, 30 s, let a slowloris connection live 30 s with a 5 s limit).
   */
  readonly timeouts?: {
    readonly request?: number;
    readonly headers?: number;
    readonly keepAlive?: number;
    readonly idle?: number;
    readonly check?: number;
  };
  /** per-client limits, so one LAN host cannot starve the others (0 = no limit) */
  readonly limits?: UpnpLimits;
  /** interval for "once per client" log lines of refusals and bad input, ms (default 60 s) */
  readonly logIntervalMs?: number;
  /**
   * IPv6 pinholes (WANIPv6FirewallControl:1 on the IGD:2 root, issue 15): the parts the handler needs
   * besides the lease table; absent = the service is not offered
   */
  readonly pinholes?: Omit<PinholeDeps, 'leases' | 'log' | 'secureMode' | 'directory'> & {
    /** default: UniqueIDs derived from the lease ids (pinhole-directory.ts) */
    readonly directory?: PinholeDeps['directory'];
  };
}

export interface UpnpLimits {
  /** open HTTP connections per client address (default 16); more are closed at once */
  readonly connectionsPerClient?: number;
  /**
   * HTTP requests per second per client address (default 50, bursts of `requestBurst`, default 200); over it a request
   * waits for its turn (503 past 2 s)
   */
  readonly requestsPerSecond?: number;
  readonly requestBurst?: number;
  /** GENA subscriptions per client address (default 16, never above config.upnp.maxSubscriptions) */
  readonly subscriptionsPerClient?: number;
  /** SSDP searches per second per source address (default 10, bursts of 30); over it: ignored */
  readonly searchesPerSecond?: number;
  /**
   * global: SOAP control + GENA requests per second from all clients (default config.limits.soapRequestsPerSecond,
   * bursts of 2x); over it: 503
   */
  readonly soapRequestsPerSecond?: number;
  /**
   * global: SSDP searches answered per second from all sources (default config.limits.ssdpSearchesPerSecond, bursts of
   * 2x); over it: ignored
   */
  readonly ssdpSearchesPerSecond?: number;
  /**
   * the time source of the limiters and log gates, ms. Default: the monotonic clock, because a
   * rate is about real elapsed time even when the injected service clock is fixed (tests).
   */
  readonly now?: () => number;
}

export interface UpnpServer {
  listen(): Promise<void>;
  close(): Promise<void>;
  /**
   * the LAN addresses now, in the listen options' form (the address monitor's list, after listen()): HTTP
   * and SSDP bind the new ones and close the gone ones
   */
  setAddresses(addresses: readonly string[]): Promise<void>;
  /** bound HTTP endpoints, one per LAN address */
  httpAddresses(): { address: string; port: number }[];
  ssdpAddresses(): { address: string; port: number }[];
  /** description URLs per LAN address: v1 = IGD:1 root, v2 = IGD:2 root */
  descriptionUrls(): { address: string; v1: string; v2: string }[];
  /**
   * re-read external address / connection status and the IPv6 firewall status, and tell GENA subscribers what
   * changed (call when the WAN address changes, and after a configuration reload)
   */
  stateChanged(): void;
  /** the fastify app, undefined until the first HTTP request has had it built (lazy-app.ts) */
  readonly app: FastifyInstance | undefined;
}

const SERVER_PRODUCT = 'portd/0.1';
/**
 * SERVER (HTTP and SSDP): UDA 1.1 §1.1.2 wants "OS/version UPnP/1.1 product/version". The OS token
 * is fixed and carries no kernel release: a LAN host has no use for it, an attacker does.
 */
export const SERVER_HEADER = `Linux UPnP/1.1 ${SERVER_PRODUCT}`;
/** longest a request over its client's rate is held before it is refused with 503 */
const MAX_RATE_WAIT_MS = 2000;

/** a LAN address as the listen options give it: `192.168.1.1/24`, or bare for /32 */
/**
 * `192.168.1.1/24`, `127.0.0.1` (/32), `2001:db8:77::1%lan0/64` (an IPv6 address with the name of
 * its interface, which SSDP needs to join ff02::c and ff05::c there). IPv6 addresses are kept in
 * their canonical text: they appear in LOCATION and must match the Host header check.
 */
export function lanInterface(a: string): LanInterface {
  const [left, p] = a.split('/');
  const { address, zone } = splitZone(left!);
  const six = isIPv6(address);
  return {
    address: six ? (canonicalIPv6(address) ?? address) : address,
    prefix: p === undefined ? (six ? 128 : 32) : Number(p),
    scope: zone,
  };
}

/** the host part of a URL for a LAN address: IPv6 in brackets (RFC 3986 §3.2.2) */
const urlHost = (address: string) => (isIPv6(address) ? `[${address}]` : address);

async function readWanStats(iface: string): Promise<WanStats> {
  const read = async (n: string) => {
    try {
      return Number((await readFile(`/sys/class/net/${iface}/statistics/${n}`, 'utf8')).trim()) || 0;
    } catch {
      return 0;
    }
  };
  const [bytesSent, bytesReceived, packetsSent, packetsReceived] = await Promise.all([
    read('tx_bytes'),
    read('rx_bytes'),
    read('tx_packets'),
    read('rx_packets'),
  ]);
  return { bytesSent, bytesReceived, packetsSent, packetsReceived };
}

/**
 * UPnP IGD front-end: SSDP, descriptions, SOAP control, GENA eventing, for both IGD:1 and IGD:2.
 * Translates requests into lease requests; never touches the dataplane or the database.
 */
export function createUpnpServer(opts: UpnpServerOptions): UpnpServer {
  const { config, leases, metrics } = opts;
  const log = opts.log.child({ component: 'upnp' });
  const now = () => opts.clock.now();
  const realNow = opts.limits?.now ?? (() => performance.now());
  const gate = createLogGate({ intervalMs: opts.logIntervalMs ?? 60_000, now: realNow });
  const requestLimiter = createRateLimiter({
    rate: opts.limits?.requestsPerSecond ?? 50,
    burst: opts.limits?.requestBurst ?? 200,
    now: realNow,
  });
  const connections = createPerClientCounter(opts.limits?.connectionsPerClient ?? 16);
  /** one line per client and kind of refusal per interval: a flood cannot flood the log */
  const logOnce = (level: 'info' | 'warn', key: string, fields: Record<string, unknown>, msg: string) => {
    const n = gate.pass(key);
    if (n !== null) log[level]({ ...fields, suppressed: n }, msg);
  };
  const startedAt = now();
  // a link-local address is left out: a LOCATION URL would need its zone (RFC 6874), which clients do not
  // take; IPv6 clients reach the service on the LAN's global or unique-local address (docs/upnp.md)
  const interfaces = opts.listen.addresses
    .map(lanInterface)
    .filter((i) => !(isIPv6(i.address) && ipv6InPrefix(i.address, 'fe80::', 10)));
  const bootId = opts.bootId ?? Math.floor(Date.now() / 1000) % 2 ** 31;
  const serverHeader = SERVER_HEADER;
  const connectionStatus = opts.connectionStatus ?? (() => 'Connected' as const);
  const reportedAddress = opts.reportedAddress ?? (() => leases.externalAddress());
  const descriptionInfo = {
    friendlyName: config.upnp.friendlyName,
    manufacturer: config.upnp.manufacturer,
    modelName: config.upnp.modelName,
    modelDescription: 'portd Internet Gateway Device',
    modelNumber: '0.1',
    manufacturerURL: 'https://github.com/',
    modelURL: 'https://github.com/',
    serialNumber: opts.uuids.v2.igd.slice(0, 8),
    presentationURL: opts.presentationUrl,
  };
  // CONFIGID.UPNP.ORG changes exactly when the descriptions do (UDA 2.0 §1.1.2: control points may cache
  // them by it): a 24-bit digest of what goes into them, this build's product string included
  const configId =
    opts.configId ??
    createHash('sha256')
      .update(JSON.stringify([descriptionInfo, opts.uuids, SERVER_PRODUCT]))
      .digest()
      .readUIntBE(0, 3);
  const devices = buildDeviceSet(opts.uuids, descriptionInfo, configId, { ipv6Firewall: opts.pinholes !== undefined });
  const pinholeIds = opts.pinholes && !opts.pinholes.directory ? createPinholeDirectory(leases) : null;
  const pinholes = opts.pinholes
    ? createPinholeActionHandler({
        ...opts.pinholes,
        directory: opts.pinholes.directory ?? pinholeIds!,
        leases,
        log,
        secureMode: config.policy.secureMode,
      })
    : undefined;

  const actions = createActionHandler({
    config,
    leases,
    log,
    now,
    startedAt,
    connectionStatus,
    reportedAddress,
    wanStats: opts.wanStats ?? (() => readWanStats(config.interfaces.wan)),
    linkBitRates: opts.linkBitRates ?? { up: 1_000_000_000, down: 1_000_000_000 },
    ...(pinholes ? { pinholes } : {}),
    ...(opts.upstream ? { upstream: opts.upstream } : {}),
  });

  let systemUpdateId = 1;
  function stateOf(path: string): EventVars {
    const ep = devices.events.get(path);
    if (!ep) return [];
    switch (ep.service.type) {
      case ServiceType.WAN_IP_CONNECTION: {
        const vars: [string, string | number][] = [
          ['PossibleConnectionTypes', 'IP_Routed'],
          ['ConnectionStatus', connectionStatus()],
          ['ExternalIPAddress', reportedAddress()],
          ['PortMappingNumberOfEntries', actions.numberOfEntries()],
        ];
        if (ep.service.version >= 2) vars.push(['SystemUpdateID', systemUpdateId]);
        return vars;
      }
      case ServiceType.WAN_COMMON_INTERFACE_CONFIG:
        return [['PhysicalLinkStatus', connectionStatus() === 'Connected' ? 'Up' : 'Down']];
      case ServiceType.LAYER3_FORWARDING:
        return [['DefaultConnectionService', defaultConnectionService(ep.root)]];
      case ServiceType.WAN_IPV6_FIREWALL_CONTROL:
        return pinholes?.eventVars() ?? [];
    }
  }

  const gena = createGena({
    log,
    metrics,
    now,
    maxSubscriptions: config.upnp.maxSubscriptions,
    stateOf,
    gate,
    maxPerSubscriber: opts.limits?.subscriptionsPerClient ?? 16,
    notifyTimeoutMs: opts.gena?.notifyTimeoutMs,
    defaultTimeout: opts.gena?.defaultTimeout,
    maxConcurrentNotifies: opts.gena?.maxConcurrentNotifies,
    maxUnprovenNotifies: opts.gena?.maxUnprovenNotifies,
    maxNotifiesPerSubscriber: opts.gena?.maxNotifiesPerSubscriber,
  });

  // what subscribers last heard, to send only changes
  const ipConnPaths = [...devices.events.entries()].filter(([, e]) => e.service.type === ServiceType.WAN_IP_CONNECTION);
  let last = { entries: -1, ext: '', status: '' };
  let coalesceTimer: NodeJS.Timeout | null = null;
  let lastMappingEvent = -Infinity;
  function publish(mappingsChanged: boolean) {
    const cur = { entries: actions.numberOfEntries(), ext: reportedAddress(), status: connectionStatus() };
    const changed: [string, string | number][] = [];
    if (cur.entries !== last.entries || mappingsChanged) changed.push(['PortMappingNumberOfEntries', cur.entries]);
    if (cur.ext !== last.ext) changed.push(['ExternalIPAddress', cur.ext]);
    if (cur.status !== last.status) changed.push(['ConnectionStatus', cur.status]);
    last = cur;
    if (changed.length === 0) return;
    if (mappingsChanged) systemUpdateId = systemUpdateId >= 0xffffffff ? 1 : systemUpdateId + 1;
    for (const [path, ep] of ipConnPaths)
      gena.changed(
        path,
        ep.service.version >= 2 && mappingsChanged ? [...changed, ['SystemUpdateID', systemUpdateId]] : changed,
      );
  }
  // WANIPv6FirewallControl's evented variables (§2.2.1-2): sent to its subscribers when they change
  let lastFirewall = pinholes ? JSON.stringify(pinholes.eventVars()) : '';
  function publishFirewall() {
    if (!pinholes) return;
    const vars = pinholes.eventVars();
    if (JSON.stringify(vars) === lastFirewall) return;
    lastFirewall = JSON.stringify(vars);
    for (const [path, ep] of devices.events)
      if (ep.service.type === ServiceType.WAN_IPV6_FIREWALL_CONTROL) gena.changed(path, vars);
  }
  function schedulePublish() {
    // nobody listening: nothing to compute (the count is read again when someone subscribes)
    if (coalesceTimer || gena.count() === 0) {
      if (!coalesceTimer) last = { entries: -1, ext: '', status: '' };
      return;
    }
    const wait = Math.max(
      opts.gena?.coalesceMs ?? 50,
      lastMappingEvent + (opts.gena?.minIntervalMs ?? 1000) - realNow(),
    );
    coalesceTimer = setTimeout(() => {
      coalesceTimer = null;
      lastMappingEvent = realNow();
      publish(true);
    }, wait);
    coalesceTimer.unref();
  }
  let unsubscribeLeases: (() => void) | null = null;

  // ---- HTTP ----
  const timeouts = { request: 10_000, headers: 5_000, keepAlive: 5_000, idle: 30_000, check: 1_000, ...opts.timeouts };
  const app = createLazyFastify({ logger: false, bodyLimit: SOAP_MAX_BODY_BYTES, return503OnClosing: true });
  app.addHttpMethod('SUBSCRIBE');
  app.addHttpMethod('UNSUBSCRIBE');
  app.removeAllContentTypeParsers();
  // text/xml with any charset, application/xml, or no content type at all: the body is XML text
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: SOAP_MAX_BODY_BYTES }, (_req, body, done) =>
    done(null, body),
  );

  const xml = (reply: FastifyReply, status: number, body: string) =>
    reply
      .code(status)
      .header('content-type', 'text/xml; charset="utf-8"')
      .header('server', serverHeader)
      .header('ext', '')
      .send(body);

  app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, req, reply) => {
    const client = unmapIPv4(req.socket.remoteAddress ?? '');
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      metrics.badInput.inc({ frontend: 'upnp', kind: 'too_large' });
      logOnce('warn', `large:${client}`, { client, url: req.url }, 'upnp refused oversize body');
      return reply.code(413).header('connection', 'close').send();
    }
    metrics.badInput.inc({ frontend: 'upnp', kind: 'http' });
    logOnce('info', `http:${client}`, { client, err: err.message }, 'upnp bad HTTP request');
    return reply.code(err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500).send();
  });
  app.setNotFoundHandler((req, reply) => {
    const client = unmapIPv4(req.socket.remoteAddress ?? '');
    metrics.badInput.inc({ frontend: 'upnp', kind: 'not_found' });
    logOnce(
      'info',
      `404:${client}`,
      { client, method: req.method, url: req.url.slice(0, 200) },
      'upnp request for an unknown path',
    );
    return reply.code(404).send();
  });

  // per-client request rate: a host over it is slowed to it (each connection has one request in
  // flight, and connections per host are capped, so few wait); only a wait over 2 s is a 503
  app.addHook('onRequest', async (req, reply) => {
    reply.header('server', serverHeader);
    const client = unmapIPv4(req.socket.remoteAddress ?? '');
    const wait = requestLimiter.wait(client, MAX_RATE_WAIT_MS);
    if (wait !== 0) {
      metrics.rateLimited.inc({ frontend: 'upnp' });
      logOnce(
        'warn',
        `rate:${client}`,
        { client, rate: opts.limits?.requestsPerSecond ?? 50 },
        'upnp client over its request rate; slowed down',
      );
      // the connection stays open: making the client reconnect would cost us more than the 503
      if (wait < 0) return reply.code(503).header('retry-after', '1').send();
      await new Promise((r) => setTimeout(r, wait));
    }
    // Host and Origin on every request, descriptions included: a rebinding page reads nothing
    const refused = checkOrigin(
      { host: req.headers.host, origin: req.headers.origin },
      { address: req.socket.localAddress ?? '', port: req.socket.localPort ?? 0 },
    );
    if (refused) return guardRefuse(req, reply, refused);
  });

  function guardRefuse(req: FastifyRequest, reply: FastifyReply, r: GuardRefusal) {
    const client = unmapIPv4(req.socket.remoteAddress ?? '');
    metrics.badInput.inc({ frontend: 'upnp', kind: r.kind });
    logOnce(
      'warn',
      `guard:${r.kind}:${client}`,
      { client, method: req.method, url: req.url.slice(0, 200), status: r.status, why: r.why },
      'upnp refused a request a web page could have made',
    );
    // the body (if any) is not read: close rather than drain it
    return reply.code(r.status).header('connection', 'close').send();
  }

  /**
   * limits.soapRequestsPerSecond: SOAP control and GENA requests from all clients together, so
   * many (spoofed or real) LAN addresses, each under its own rate, cannot add up to a flood. Over
   * it the request gets 503 at once (UDA 1.1 §3.2.2 lets a busy device say so; every client seen
   * treats it as a failed call and tries again later): holding it, as the per-client limit does,
   * would keep a connection per waiting request open.
   */
  const soapLimit = opts.limits?.soapRequestsPerSecond ?? config.limits.soapRequestsPerSecond;
  const soapLimiter = createRateLimiter({ rate: soapLimit, burst: 2 * soapLimit, now: realNow, maxClients: 1 });
  const globalLimitHit = createGlobalLimitReport({ metrics, log, gate });
  async function globalSoapLimit(req: FastifyRequest, reply: FastifyReply) {
    if (soapLimiter.take('all')) return;
    globalLimitHit('soapRequestsPerSecond', soapLimit, 'answering 503', { url: req.url.slice(0, 200) });
    return reply.code(503).header('retry-after', '1').send();
  }
  async function soapGuard(req: FastifyRequest, reply: FastifyReply) {
    const refused = checkSoapHeaders({
      soapaction: req.headers['soapaction'],
      'content-type': req.headers['content-type'],
    });
    if (refused) return guardRefuse(req, reply, refused);
    return globalSoapLimit(req, reply);
  }

  for (const r of devices.roots) app.get(r.descriptionPath, (_req, reply) => xml(reply, 200, r.descriptionXml));
  for (const [path, body] of devices.scpds) app.get(path, (_req, reply) => xml(reply, 200, body));

  async function control(ep: Endpoint, req: FastifyRequest, reply: FastifyReply) {
    const started = performance.now();
    const client = unmapIPv4(req.socket.remoteAddress ?? '');
    const answer = (status: number, body: string, result: string) => {
      metrics.requests.inc({ frontend: 'upnp', result });
      metrics.requestSeconds.observe({ frontend: 'upnp' }, (performance.now() - started) / 1000);
      return xml(reply, status, body);
    };
    const soapAction = req.headers['soapaction'];
    let call;
    try {
      call = decodeSoapRequest(
        typeof req.body === 'string' ? req.body : '',
        typeof soapAction === 'string' ? soapAction : null,
      );
    } catch (e) {
      if (!(e instanceof SoapDecodeError)) throw e;
      metrics.badInput.inc({ frontend: 'upnp', kind: e.kind });
      logOnce('warn', `soap:${client}`, { client, kind: e.kind, err: e.message }, 'upnp bad SOAP request');
      return answer(500, encodeSoapFault(e.upnpCode), String(e.upnpCode));
    }
    // a client may speak any version up to ours: v1 SOAPActions reach the v2 control URL (QUIRKS.md)
    if (call.serviceType !== ep.service.type || call.version > ep.service.version || call.version < 1) {
      logOnce(
        'info',
        `svc:${client}`,
        { client, action: call.action, serviceUrn: call.serviceUrn, endpoint: req.url },
        'upnp action for another service',
      );
      return answer(500, encodeSoapFault(UpnpErrorCode.INVALID_ACTION), String(UpnpErrorCode.INVALID_ACTION));
    }
    const res = await actions.handle({
      endpoint: ep,
      version: call.version,
      action: call.action,
      args: call.args,
      client,
    });
    if (!res.ok) {
      logOnce(
        'info',
        `refused:${client}:${res.code}`,
        { client, action: call.action, code: res.code, why: res.detail },
        'upnp action refused',
      );
      return answer(500, encodeSoapFault(res.code), String(res.code));
    }
    log.debug({ client, action: call.action }, 'upnp action');
    return answer(200, encodeSoapResponse(call.serviceUrn, call.action, res.out), 'ok');
  }
  for (const [path, ep] of devices.control)
    app.post(path, { onRequest: soapGuard }, (req, reply) => control(ep, req, reply));

  for (const [path] of devices.events) {
    app.route({
      method: ['SUBSCRIBE', 'UNSUBSCRIBE'],
      url: path,
      onRequest: globalSoapLimit,
      handler: (req, reply) => {
        const client = unmapIPv4(req.socket.remoteAddress ?? '');
        const h = req.headers;
        const sid = typeof h['sid'] === 'string' ? h['sid'] : undefined;
        const nt = typeof h['nt'] === 'string' ? h['nt'] : undefined;
        const callback = typeof h['callback'] === 'string' ? h['callback'] : undefined;
        const timeout = typeof h['timeout'] === 'string' ? h['timeout'] : undefined;
        reply.header('server', serverHeader);
        /** a refused (UN)SUBSCRIBE: counted, logged once per client and kind */
        const refuse = (status: number, kind: string, why: string) => {
          metrics.badInput.inc({ frontend: 'upnp', kind });
          logOnce(
            'info',
            `${kind}:${client}`,
            { client, method: req.method, path, status, why },
            'gena request refused',
          );
          return reply.code(status).send();
        };
        if (req.method === 'UNSUBSCRIBE') {
          if (!sid) return refuse(412, 'gena_headers', 'no SID');
          // UDA 1.1 §4.1.4: incompatible headers
          if (nt || callback) return refuse(400, 'gena_headers', 'SID with NT or CALLBACK');
          return gena.unsubscribe(path, sid, client) ? reply.code(200).send() : refuse(412, 'gena_sid', 'unknown SID');
        }
        if (sid) {
          if (nt || callback) return refuse(400, 'gena_headers', 'SID with NT or CALLBACK'); // UDA 1.1 §4.1.3
          const r = gena.renew(path, sid, client, timeout);
          if (!r.ok) return refuse(r.status, 'gena_sid', r.reason);
          return reply
            .code(200)
            .header('sid', r.sid)
            .header('timeout', formatTimeoutHeader(r.timeout))
            .header('content-length', '0')
            .send();
        }
        // UDA 1.1 §4.1.2
        if (nt !== 'upnp:event') return refuse(412, 'gena_headers', `NT ${JSON.stringify(nt ?? null)}`);
        const r = gena.subscribe(path, client, callback, timeout);
        if (!r.ok) return reply.code(r.status).send();
        // the initial event goes out only after the client has the SID (UDA 1.1 §4.2.1)
        reply.raw.once('finish', () => gena.sendInitial(r.sid));
        return reply
          .code(200)
          .header('sid', r.sid)
          .header('timeout', formatTimeoutHeader(r.timeout))
          .header('content-length', '0')
          .send();
      },
    });
  }

  const servers: { iface: LanInterface; server: http.Server; gate: net.Server }[] = [];
  /** the bound address: the gate's until the handover, then the http.Server's (the same socket) */
  const addressOf = (s: (typeof servers)[number]) => (s.server.listening ? s.server : s.gate).address() as AddressInfo;
  let ssdp: Ssdp | null = null;
  const sockets = new Set<Socket>();

  function httpPortOf(iface: LanInterface): number {
    const s = servers.find((x) => x.iface.address === iface.address);
    return s ? addressOf(s).port : opts.listen.httpPort;
  }
  function targetsFor(iface: LanInterface): SsdpTarget[] {
    const base = `http://${urlHost(iface.address)}:${httpPortOf(iface)}`;
    // IGD:1 predates IPv6: on an IPv6 address only the IGD:2 root is announced, so an IGD:1 search there
    // is answered by the IGD:2 root (its WANIPConnection:2 takes v1 actions) and a client finds the
    // IPv6 firewall service (miniupnpc searches IGD:1 first and takes the first root that answers)
    const roots = isIPv6(iface.address)
      ? devices.advertisements.filter((a) => a.descriptionPath === '/igd2/desc.xml')
      : devices.advertisements;
    return roots.map((a) => ({ nt: a.nt, usn: a.usn, location: `${base}${a.descriptionPath}` }));
  }

  /**
   * Until the first connection has had the app built (lazy-app.ts), each address is bound by a plain
   * net.Server that holds its connections paused (so nothing is read, not even a client's half-close);
   * once the app is ready the bound socket moves to the address's http.Server (server.listen(handle))
   * and the held connections are given to it. LAN check first: a WAN peer builds nothing. A failed
   * build closes the held connections and is tried again at the next one.
   */
  /** only LAN clients are answered: others see the connection closed, nothing else */
  function droppedNotLan(sock: Socket, peer: string): boolean {
    if (opts.isLanClient(peer)) return false;
    metrics.badInput.inc({ frontend: 'upnp', kind: 'not_lan' });
    logOnce('warn', `wan:${peer}`, { peer }, 'upnp dropped connection from outside the LAN');
    sock.destroy();
    return true;
  }
  const held: [Socket, http.Server][] = [];
  let handedOver = false;
  let closing = false;
  function hold(sock: Socket, server: http.Server) {
    if (handedOver) {
      // a connection accepted just before the handover
      server.emit('connection', sock);
      sock.resume();
      return;
    }
    if (droppedNotLan(sock, unmapIPv4(sock.remoteAddress ?? ''))) return;
    // bounded: a flood of connections during the build is refused, not queued without end
    if (held.length >= 256) {
      sock.destroy();
      return;
    }
    held.push([sock, server]);
    sock.once('close', () => {
      const i = held.findIndex(([x]) => x === sock);
      if (i >= 0) held.splice(i, 1);
    });
    if (held.length > 1) return;
    app.build().then(
      async () => {
        if (handedOver || closing) return;
        for (const s of servers)
          await new Promise<void>((resolve, reject) => {
            s.server.once('error', reject);
            s.server.listen(s.gate, () => {
              s.server.off('error', reject);
              resolve();
            });
          });
        handedOver = true;
        log.debug('upnp HTTP app built at the first connection');
        for (const [sock, server] of held.splice(0)) {
          server.emit('connection', sock);
          sock.resume();
        }
      },
      (e: Error) => {
        log.error({ err: e.message }, 'upnp HTTP app could not be built; closing the waiting connections');
        for (const [sock] of held.splice(0)) sock.destroy();
      },
    );
  }

  /** an HTTP listener on one LAN address; false when an IPv6 address is not bindable yet (tentative) */
  async function bindHttp(iface: LanInterface): Promise<boolean> {
    const server = http.createServer({ maxHeaderSize: 8192, connectionsCheckingInterval: timeouts.check }, (req, res) =>
      app.built()!.routing(req, res),
    );
    server.requestTimeout = timeouts.request;
    server.headersTimeout = timeouts.headers;
    server.keepAliveTimeout = timeouts.keepAlive;
    server.timeout = timeouts.idle;
    server.maxHeadersCount = 64;
    server.on('connection', (sock: Socket) => {
      const peer = unmapIPv4(sock.remoteAddress ?? '');
      if (droppedNotLan(sock, peer)) return;
      if (!connections.take(peer)) {
        metrics.rateLimited.inc({ frontend: 'upnp' });
        logOnce(
          'warn',
          `conns:${peer}`,
          { peer, max: opts.limits?.connectionsPerClient ?? 16 },
          'upnp client holds too many connections; new one closed',
        );
        sock.destroy();
        return;
      }
      sockets.add(sock);
      sock.once('close', () => {
        sockets.delete(sock);
        connections.give(peer);
      });
    });
    const gate = net.createServer({ pauseOnConnect: true }, (sock) => hold(sock, server));
    try {
      await new Promise<void>((resolve, reject) => {
        gate.once('error', reject);
        gate.listen({ host: iface.address, port: opts.listen.httpPort }, () => {
          gate.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      // an IPv6 address still in duplicate address detection (tentative) or gone: UPnP serves the others
      if (!isIPv6(iface.address) || (e as { code?: string }).code !== 'EADDRNOTAVAIL') throw e;
      log.warn({ address: iface.address }, 'upnp cannot listen on an IPv6 address not ready yet; skipped');
      return false;
    }
    // after the handover (the app is built) a new address's server takes its socket at once
    if (handedOver)
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(gate, () => {
          server.off('error', reject);
          resolve();
        });
      });
    servers.push({ iface, server, gate });
    return true;
  }

  /**
   * The LAN addresses now (`192.168.1.1/24`, `2001:db8::1%lan0/64`, as the listen options), after listen():
   * HTTP and SSDP start answering on an address added after start (or one that finished DAD) and stop on
   * one that went away, its connections closed. A line per change.
   */
  async function setAddresses(list: readonly string[]): Promise<void> {
    if (closing) return;
    const next = list.map(lanInterface).filter((i) => !(isIPv6(i.address) && ipv6InPrefix(i.address, 'fe80::', 10)));
    for (const s of [...servers]) {
      if (next.some((i) => i.address === s.iface.address)) continue;
      servers.splice(servers.indexOf(s), 1);
      const done = new Promise<void>((r) => (s.server.listening ? s.server : s.gate).close(() => r()));
      for (const sock of sockets) if (unmapIPv4(sock.localAddress ?? '') === s.iface.address) sock.destroy();
      s.server.closeIdleConnections();
      await done;
      log.info({ address: s.iface.address }, 'upnp stopped listening on a LAN address that went away');
    }
    for (const i of next) {
      if (servers.some((s) => s.iface.address === i.address)) continue;
      try {
        if (await bindHttp(i))
          log.info({ address: i.address, port: httpPortOf(i) }, 'upnp listening on a new LAN address');
      } catch (e) {
        log.warn({ address: i.address, err: (e as Error).message }, 'upnp cannot listen on a LAN address');
      }
    }
    // SSDP serves the addresses HTTP listens on: a LOCATION must lead somewhere
    await ssdp?.setInterfaces(servers.map((s) => s.iface));
  }

  async function listen() {
    for (const iface of interfaces) await bindHttp(iface);
    publish(false);
    unsubscribeLeases = leases.on((e) => {
      if (e.type !== 'refused') schedulePublish();
    });
    if (opts.ssdp?.enabled ?? config.upnp.ssdp) {
      const ssdpLimit = opts.limits?.ssdpSearchesPerSecond ?? config.limits.ssdpSearchesPerSecond;
      ssdp = createSsdp({
        // the addresses HTTP listens on: a LOCATION must lead somewhere
        interfaces: servers.map((x) => x.iface),
        port: opts.ssdp?.port,
        multicastAddress: opts.ssdp?.multicastAddress,
        joinMulticast: opts.ssdp?.joinMulticast,
        notifyTarget: opts.ssdp?.notifyTarget,
        mxDelay: config.upnp.ssdpMxDelay,
        maxDelayMs: opts.ssdp?.maxDelayMs,
        random: opts.ssdp?.random,
        targetsFor,
        isLanClient: opts.isLanClient,
        log: log.child({ component: 'ssdp' }),
        metrics,
        now,
        gate,
        searchLimiter: createRateLimiter({
          rate: opts.limits?.searchesPerSecond ?? 10,
          burst: 3 * (opts.limits?.searchesPerSecond ?? 10),
          now: realNow,
        }),
        globalSearchLimiter: {
          limiter: createRateLimiter({ rate: ssdpLimit, burst: 2 * ssdpLimit, now: realNow, maxClients: 1 }),
          rate: ssdpLimit,
        },
        maxAge: Math.max(1800, config.upnp.notifyInterval * 2),
        server: serverHeader,
        bootId,
        configId,
      });
      await ssdp.start();
    }
    log.info(
      { http: httpAddresses(), ssdp: ssdp?.addresses() ?? null, descriptions: descriptionUrls() },
      'upnp listening',
    );
  }

  function httpAddresses() {
    return servers.map((s) => {
      const a = addressOf(s);
      return { address: a.address, port: a.port };
    });
  }
  function descriptionUrls() {
    return servers.map((s) => {
      const base = `http://${urlHost(s.iface.address)}:${addressOf(s).port}`;
      return { address: s.iface.address, v1: `${base}/igd1/desc.xml`, v2: `${base}/igd2/desc.xml` };
    });
  }

  async function close() {
    unsubscribeLeases?.();
    unsubscribeLeases = null;
    pinholeIds?.close();
    if (coalesceTimer) clearTimeout(coalesceTimer);
    await ssdp?.close();
    gena.close();
    closing = true;
    for (const [sock] of held.splice(0)) sock.destroy();
    const closed = servers.map(
      (s) => new Promise<void>((r) => (s.server.listening ? s.server : s.gate).close(() => r())),
    );
    for (const s of servers) s.server.closeIdleConnections();
    for (const sock of sockets) sock.destroy();
    await Promise.all(closed);
    servers.length = 0;
    await app.close();
  }

  let syncing: Promise<void> = Promise.resolve();
  return {
    listen,
    close: async () => {
      await syncing;
      await close();
    },
    setAddresses(list: readonly string[]) {
      // one change after the other: a quick add and remove must end as the last list says
      syncing = syncing.then(() => setAddresses(list));
      return syncing;
    },
    httpAddresses,
    ssdpAddresses: () => ssdp?.addresses() ?? [],
    descriptionUrls,
    stateChanged: () => {
      publish(false);
      publishFirewall();
    },
    get app() {
      return app.built();
    },
  };
}
