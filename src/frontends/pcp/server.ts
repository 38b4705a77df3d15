/**
 * The PCP / NAT-PMP server: UDP sockets on the LAN addresses (never WAN), a per-client rate
 * limit in front of the handler, the epoch (RFC 6887 §8.5, RFC 6886 §3.6) and the unsolicited
 * announcements sent on start, on epoch reset and when the external address changes.
 */
import type { UpstreamChain } from '../../leases/upstream.js';
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import type { Clock } from '../../leases/clock.js';
import type { LeaseTableApi } from '../../leases/table-api.js';
import type { Metrics } from '../../metrics.js';
import { ErrorCode, PortdError } from '../../errors.js';
import {
  ANNOUNCE_GROUP,
  encodeNatPmpResponse,
  encodePcpResponse,
  NatPmpOpcode,
  NatPmpResultCode,
  Opcode,
  Port,
  ResultCode,
  Version,
} from '../../../protocols/pcp/index.js';
import type { ConntrackApi } from './conntrack.js';
import { createPcpHandler, type PcpFrontendConfig } from './handler.js';
import { createLogGate } from '../../common/log-gate.js';
import { canonicalIPv6, splitZone } from '../../common/ipv6.js';
import { createGlobalLimitReport, createRateLimiter } from '../rate-limit.js';

export interface PcpServerOptions {
  readonly config: PcpFrontendConfig;
  readonly leases: LeaseTableApi;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Pick<Clock, 'now' | 'setTimeout' | 'clearTimeout'>;
  /** LAN addresses to listen on (IPv6 ones only used when config.pcp.ipv6) */
  readonly listen: readonly string[];
  /** PEER support; null/absent = PEER answered with UNSUPP_OPCODE */
  readonly conntrack?: ConntrackApi | null;
  /**
   * Where unsolicited announcements go. Default: 224.0.0.1:5350 (and [ff02::1]:5350 from IPv6
   * sockets). Tests point this at a loopback socket; null disables announcements.
   */
  readonly announce?: { readonly address: string; readonly port: number } | null;
  /** how many times each announcement is sent, 250 ms apart and doubling (RFC 6886 §3.2.1: up to 10) */
  readonly announceRepeats?: number;
  /** clock.now() value at which the epoch began, e.g. restored across restarts; default: start() */
  readonly epochStart?: number;
  /** interval for "once per client" log lines of refusals and drops, ms (default 60 s) */
  readonly logIntervalMs?: number;
  /** how often to look for a changed external address, ms (default 5 s; 0 = only on requests) */
  readonly addressCheckMs?: number;
  /**
   * Is this source a LAN client we answer? Others are dropped silently (no answer at all: a
   * WAN scanner learns nothing), counted in portd_bad_input_total{frontend="pcp",kind="not_lan"}
   * and logged once per source per interval. Checked before the rate limiter, so spoofed WAN
   * sources take no bucket. Default: every source (the sockets are bound to LAN addresses only).
   */
  readonly isLanClient?: (address: string) => boolean;
  /** MAP for an IPv6 internal address opens a pinhole (issue 15); default off: NOT_AUTHORIZED */
  readonly ipv6Pinholes?: boolean | (() => boolean);
  /**
   * the external address NAT-PMP reports and announces, whose change starts a new epoch (dataplane/wan-status.ts,
   * docs/double-nat.md); default leases.externalAddress()
   */
  readonly reportedAddress?: () => string;
  /** behind another NAT: IPv4 grants are chained upstream (src/upstream/) */
  readonly upstream?: UpstreamChain;
}

export interface PcpServer {
  start(): Promise<void>;
  /** the bound addresses (port resolved when config.pcp.port is 0) */
  addresses(): { address: string; port: number }[];
  /** seconds since the epoch began */
  epoch(): number;
  /** state may have been lost (or the external address changed): new epoch + announcements */
  resetEpoch(reason: string): void;
  /**
   * the LAN addresses now (the address monitor's list, after start): binds those not bound yet (an address
   * added after start, or one that finished DAD) and closes the sockets of those gone; a line per change
   */
  setAddresses(addresses: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

const RECV_BUFFER_BYTES = 1 << 20;

/** a PCP ANNOUNCE (version 2, opcode 0) or a NAT-PMP external address request (version 0, opcode 0) */
/** one text per address: IPv6 canonical (RFC 5952), the zone kept */
function addressKey(a: string): string {
  if (!isIPv6(splitZone(a).address)) return a;
  const { address, zone } = splitZone(a);
  return `${canonicalIPv6(address) ?? address}${zone ? `%${zone}` : ''}`;
}

function isProbe(msg: Uint8Array): boolean {
  return msg.length >= 2 && msg[1] === 0 && (msg[0] === Version.PCP || msg[0] === Version.NAT_PMP);
}

export function createPcpServer(opts: PcpServerOptions): PcpServer {
  const { config, leases, metrics, clock } = opts;
  const log = opts.log.child({ component: 'pcp' });
  let epochStart = opts.epochStart ?? clock.now();
  const sockets: { socket: Socket; address: string; family: 4 | 6 }[] = [];
  const limiter = createRateLimiter({ rate: config.pcp.rateLimit, now: () => clock.now() });
  // the global cap (limits.pcpRequestsPerSecond, bursts of 2x) bounds what spoofed LAN sources can
  // make the lease table do, each under its own per-client bucket. Probes (PCP ANNOUNCE, NAT-PMP
  // external address) cost no lease-table work and clients send them first, racing 250 ms timers
  // (QUIRKS.md): they draw on a bucket of their own of the same size, so a MAP flood does not
  // make a gateway look absent to a client that is discovering it.
  const globalRate = config.limits.pcpRequestsPerSecond;
  const globalRequests = createRateLimiter({
    rate: globalRate,
    burst: 2 * globalRate,
    now: () => clock.now(),
    maxClients: 2,
  });
  // the drop path runs once per flooded datagram: label lookups done once, not per packet
  const rateLimitedPcp = metrics.rateLimited.labels({ frontend: 'pcp' });
  const notLanPcp = metrics.badInput.labels({ frontend: 'pcp', kind: 'not_lan' });
  const gate = createLogGate({ intervalMs: opts.logIntervalMs ?? 60_000, now: () => clock.now() });
  const globalLimitHit = createGlobalLimitReport({ metrics, log, gate });
  const announceRepeats = Math.max(1, Math.min(10, opts.announceRepeats ?? 10));
  let announceTimer: unknown = null;
  let addressTimer: unknown = null;
  const reportedAddress = opts.reportedAddress ?? (() => leases.externalAddress());
  let lastExternal = reportedAddress();
  let closed = false;
  let inFlight = 0;

  const epoch = (): number => Math.max(0, Math.floor((clock.now() - epochStart) / 1000)) >>> 0;
  const handler = createPcpHandler({
    config,
    leases,
    log,
    conntrack: opts.conntrack ?? null,
    ipv6Pinholes: opts.ipv6Pinholes ?? false,
    reportedAddress,
    ...(opts.upstream ? { upstream: opts.upstream } : {}),
    epoch,
    now: () => clock.now(),
  });

  function checkExternalAddress(): void {
    const now = reportedAddress();
    if (now !== lastExternal) {
      const from = lastExternal;
      lastExternal = now;
      resetEpoch(`external address changed from ${from} to ${now}`);
    }
  }

  function announcementPackets(): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (config.pcp.enabled) {
      // RFC 6887 §14.1.3: unsolicited ANNOUNCE response, lifetime 0, our current epoch
      out.push(
        encodePcpResponse({
          version: Version.PCP,
          opcode: Opcode.ANNOUNCE,
          resultCode: ResultCode.SUCCESS,
          lifetime: 0,
          epoch: epoch(),
          options: [],
        }),
      );
    }
    const ext = reportedAddress();
    if (config.natpmp.enabled && /^\d{1,3}(\.\d{1,3}){3}$/.test(ext) && ext !== '0.0.0.0') {
      // RFC 6886 §3.2.1: the external address response, sent unsolicited
      out.push(
        encodeNatPmpResponse({
          opcode: NatPmpOpcode.EXTERNAL_ADDRESS,
          resultCode: NatPmpResultCode.SUCCESS,
          epoch: epoch(),
          externalAddress: ext,
        }),
      );
    }
    return out;
  }

  function interfaceOf(address: string): string | null {
    for (const [name, list] of Object.entries(networkInterfaces())) {
      if (list?.some((i) => i.address === address)) return name;
    }
    return null;
  }

  /** the link an IPv6 socket is on: a link-local address's zone, else the interface that holds the address */
  function linkOf(address: string): string | null {
    const { zone } = splitZone(address);
    return zone ?? interfaceOf(address);
  }

  /**
   * Where each announcement goes, from which socket. IPv4: 224.0.0.1:5350 from every socket. IPv6 (RFC 6887
   * §14.1.1, §14.1.3): the all-nodes group ff02::1 port 5350, once on each LAN link, sent from that link's
   * link-local address (a client on the link can always reach it, whatever the global prefixes do); a link
   * with no link-local socket bound falls back to one of its other addresses. A configured target (tests):
   * every socket of its family.
   */
  function announceRoutes(): { socket: Socket; from: string; address: string; port: number }[] {
    const out: { socket: Socket; from: string; address: string; port: number }[] = [];
    const links = new Map<string, (typeof sockets)[number]>();
    for (const s of sockets) {
      if (opts.announce) {
        if (isIPv6(opts.announce.address) === (s.family === 6))
          out.push({ socket: s.socket, from: s.address, ...opts.announce });
      } else if (s.family === 4) {
        out.push({ socket: s.socket, from: s.address, address: ANNOUNCE_GROUP.ipv4, port: Port.CLIENT });
      } else {
        const link = linkOf(s.address);
        if (!link) continue;
        const had = links.get(link);
        if (!had || (splitZone(s.address).zone !== null && splitZone(had.address).zone === null)) links.set(link, s);
      }
    }
    for (const [link, s] of links)
      out.push({ socket: s.socket, from: s.address, address: `${ANNOUNCE_GROUP.ipv6}%${link}`, port: Port.CLIENT });
    return out;
  }

  function sendAnnouncements(): void {
    if (opts.announce === null || closed) return;
    const packets = announcementPackets();
    for (const r of announceRoutes()) {
      // NAT-PMP is IPv4 only (RFC 6886): its address announcement never goes out over IPv6
      const six = isIPv6(splitZone(r.from).address);
      for (const p of packets) {
        if (six && p[0] === Version.NAT_PMP) continue;
        r.socket.send(p, r.port, r.address, (err) => {
          if (err) log.debug({ err: err.message, from: r.from, to: `${r.address}:${r.port}` }, 'announcement not sent');
        });
      }
    }
  }

  /** first at once, then 250 ms, 500 ms, ... apart (RFC 6886 §3.2.1, RFC 6887 §14.1.3) */
  function announceSeries(): void {
    if (announceTimer !== null) clock.clearTimeout(announceTimer);
    announceTimer = null;
    let sent = 0;
    let gap = 250;
    const step = (): void => {
      announceTimer = null;
      if (closed) return;
      sendAnnouncements();
      sent++;
      if (sent < announceRepeats) {
        announceTimer = clock.setTimeout(step, gap);
        gap *= 2;
      }
    };
    step();
  }

  function resetEpoch(reason: string): void {
    epochStart = clock.now();
    lastExternal = reportedAddress();
    log.warn({ reason }, 'PCP/NAT-PMP epoch reset; announcing');
    announceSeries();
  }

  function onMessage(s: (typeof sockets)[number], msg: Buffer, rinfo: { address: string; port: number }): void {
    const client = rinfo.address;
    if (opts.isLanClient && !opts.isLanClient(client)) {
      notLanPcp.inc();
      const n = gate.pass(`wan:${client}`);
      if (n !== null) log.warn({ client, port: rinfo.port, suppressed: n }, 'request from outside the LAN dropped');
      return;
    }
    if (!limiter.take(client)) {
      rateLimitedPcp.inc();
      const n = gate.pass(`rate:${client}`);
      if (n !== null)
        log.warn(
          { client, suppressed: n, rateLimit: config.pcp.rateLimit },
          'client over rate limit; requests dropped',
        );
      return;
    }
    // over the global cap: silence, like the per-client limit. PCP and NAT-PMP clients retransmit
    // (RFC 6887 §8.1.1, RFC 6886 §3.1), and an error answer would cost the send the cap is there to
    // save, aimed at source addresses that may be spoofed
    if (!globalRequests.take(isProbe(msg) ? 'probe' : 'request')) {
      globalLimitHit('pcpRequestsPerSecond', globalRate, 'dropping');
      return;
    }
    const started = performance.now();
    if (opts.addressCheckMs === 0) checkExternalAddress();
    inFlight++;
    handler
      // a link-local source comes with its zone (`fe80::1%br-lan`); the PCP header carries the bare address
      .handle(msg, splitZone(client).address)
      .then((r) => {
        metrics.requests.inc({ frontend: r.frontend, result: r.result });
        metrics.requestSeconds.observe({ frontend: r.frontend }, (performance.now() - started) / 1000);
        if (r.limit) {
          globalLimitHit(r.limit, config.limits[r.limit], 'answering NO_RESOURCES', { client });
        } else if (r.bad) {
          metrics.badInput.inc({ frontend: r.frontend, kind: r.result });
          const n = gate.pass(`bad:${client}`);
          if (n !== null)
            log.info({ client, port: rinfo.port, result: r.result, detail: r.detail, suppressed: n }, 'bad request');
        } else if (r.result !== 'SUCCESS') {
          const n = gate.pass(`refused:${client}:${r.result}`);
          if (n !== null)
            log.info(
              { client, port: rinfo.port, frontend: r.frontend, result: r.result, detail: r.detail, suppressed: n },
              'request refused',
            );
        } else {
          log.debug({ client, port: rinfo.port, frontend: r.frontend, detail: r.detail }, 'request answered');
        }
        // the socket may have closed meanwhile (its address went away): the answer is dropped
        if (r.response && !closed && sockets.includes(s)) s.socket.send(r.response, rinfo.port, rinfo.address);
      })
      .catch((err: unknown) => {
        // a bug, not the client's fault: log it, never crash the daemon
        log.error({ client, err: err instanceof Error ? err.message : String(err) }, 'PCP request failed');
        metrics.requests.inc({ frontend: 'pcp', result: 'INTERNAL_ERROR' });
      })
      .finally(() => {
        inFlight--;
      });
  }

  async function bindOne(address: string): Promise<void> {
    const family = isIPv6(address) ? 6 : 4;
    const socket = createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      socket.once('error', onError);
      socket.bind({ address, port: config.pcp.port, exclusive: true }, () => {
        socket.off('error', onError);
        resolve();
      });
    }).catch((err: Error) => {
      socket.close();
      throw Object.assign(
        new PortdError(
          ErrorCode.LISTEN_FAILED,
          `PCP/NAT-PMP cannot listen on ${address}:${config.pcp.port}: ${err.message}`,
          'another NAT-PMP/PCP daemon (miniupnpd?) may hold the port, or the address is not on this host',
        ),
        { cause: err },
      );
    });
    if (family === 4 && opts.announce === undefined) {
      try {
        socket.setMulticastInterface(address);
      } catch {
        /* loopback or no multicast: announcements may fail, requests still work */
      }
    }
    // a larger receive queue absorbs a flood's bursts, so fewer of other clients' datagrams are lost
    // before the rate limiter sees them (the kernel caps it at net.core.rmem_max)
    try {
      socket.setRecvBufferSize(RECV_BUFFER_BYTES);
    } catch {
      /* keep the default */
    }
    const entry = { socket, address, family: family as 4 | 6 };
    socket.on('message', (msg, rinfo) => onMessage(entry, msg, rinfo));
    socket.on('error', (err) => log.error({ address, err: err.message }, 'PCP socket error'));
    sockets.push(entry);
  }

  let syncing: Promise<void> = Promise.resolve();
  async function setAddresses(list: readonly string[]): Promise<void> {
    const want = new Map(
      list.filter((a) => !isIPv6(splitZone(a).address) || config.pcp.ipv6).map((a) => [addressKey(a), a]),
    );
    for (const s of [...sockets]) {
      if (want.has(addressKey(s.address))) continue;
      sockets.splice(sockets.indexOf(s), 1);
      await new Promise<void>((r) => s.socket.close(() => r()));
      log.info({ address: s.address, port: config.pcp.port }, 'PCP stopped listening on a LAN address that went away');
    }
    for (const [key, a] of want) {
      if (closed || sockets.some((s) => addressKey(s.address) === key)) continue;
      try {
        await bindOne(a);
        log.info({ address: a, port: sockets.at(-1)!.socket.address().port }, 'PCP listening on a new LAN address');
      } catch (e) {
        log.warn(
          { address: a, port: config.pcp.port, err: (e as Error).message },
          'PCP cannot listen on a LAN address',
        );
      }
    }
  }

  return {
    async start() {
      if (!config.pcp.enabled && !config.natpmp.enabled) return;
      const addrs = opts.listen.filter((a) => !isIPv6(a) || config.pcp.ipv6);
      try {
        for (const a of addrs) {
          try {
            await bindOne(a);
          } catch (e) {
            // an IPv6 address still in duplicate address detection (tentative, RFC 4862 §5.4: a router's
            // link-local one right after boot) or gone: not bindable yet, and IPv6 is not what the LAN
            // needs to start; the other addresses serve
            const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as { code?: string }).code;
            if (!isIPv6(a) || cause !== 'EADDRNOTAVAIL') throw e;
            log.warn(
              { address: a, port: config.pcp.port },
              'PCP cannot listen on an IPv6 address not ready yet; skipped',
            );
          }
        }
      } catch (e) {
        for (const s of sockets.splice(0)) s.socket.close();
        throw e;
      }
      if (opts.epochStart === undefined) epochStart = clock.now();
      lastExternal = reportedAddress();
      log.info(
        {
          listen: sockets.map((s) => `${s.address}:${s.socket.address().port}`),
          pcp: config.pcp.enabled,
          natpmp: config.natpmp.enabled,
          peer: handler.opcodes.includes(Opcode.PEER),
        },
        'PCP/NAT-PMP listening',
      );
      announceSeries();
      const every = opts.addressCheckMs ?? 5000;
      if (every > 0) {
        const tick = (): void => {
          addressTimer = null;
          if (closed) return;
          checkExternalAddress();
          addressTimer = clock.setTimeout(tick, every);
        };
        addressTimer = clock.setTimeout(tick, every);
      }
    },
    addresses: () => sockets.map((s) => ({ address: s.address, port: s.socket.address().port })),
    epoch,
    resetEpoch,
    setAddresses(list) {
      // one change after the other: a quick add and remove must end as the last list says
      syncing = syncing.then(() => setAddresses(list));
      return syncing;
    },
    async close() {
      closed = true;
      if (announceTimer !== null) clock.clearTimeout(announceTimer);
      if (addressTimer !== null) clock.clearTimeout(addressTimer);
      announceTimer = addressTimer = null;
      // let answers in flight go out (bounded: the lease table answers or fails each request)
      for (let i = 0; i < 200 && inFlight > 0; i++) await new Promise((r) => setTimeout(r, 5));
      await syncing;
      await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.socket.close(() => r()))));
    },
  };
}
