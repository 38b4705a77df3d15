import dgram from 'node:dgram';
import type { Logger } from 'pino';
import {
  Nts,
  SSDP_MULTICAST_ADDRESS,
  SSDP_MULTICAST_IPV6,
  SSDP_PORT,
  SsdpDecodeError,
  decodeSearch,
  encodeNotify,
  encodeSearchResponse,
  httpDate,
  matchSearch,
  type SsdpTarget,
} from '../../../protocols/ssdp/index.js';
import { isIPv6 } from 'node:net';
import { ipv6InPrefix, splitZone } from '../../common/ipv6.js';
import { inPrefix, unmapIPv4 } from '../../common/net.js';
import type { Metrics } from '../../metrics.js';
import type { LogGate } from '../../common/log-gate.js';
import { createGlobalLimitReport, createPerClientCounter, type RateLimiter } from '../rate-limit.js';

export interface LanInterface {
  readonly address: string;
  readonly prefix: number;
  /** the interface name: an IPv6 address needs it to join the groups and reach link-local peers */
  readonly scope?: string | null;
}

const v6 = (i: LanInterface) => isIPv6(i.address);

export interface SsdpOptions {
  readonly interfaces: readonly LanInterface[];
  /** UDP port to listen on (1900; 0 = ephemeral, for tests) */
  readonly port?: number;
  readonly multicastAddress?: string;
  /** join the multicast group on each interface (off in loopback tests: lo has no multicast) */
  readonly joinMulticast?: boolean;
  /** where NOTIFYs go (default: multicastAddress:1900); tests point it at a unicast receiver */
  readonly notifyTarget?: { readonly address: string; readonly port: number };
  readonly targetsFor: (iface: LanInterface) => readonly SsdpTarget[];
  readonly isLanClient: (address: string) => boolean;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
  readonly random?: () => number;
  /**
   * delay each search answer randomly within the search's MX (UDA 1.1 §1.3.3), default false: answer at once. The
   * delay spreads the answers of many devices to one multicast search; a gateway is one device answering a few
   * searches, and probing clients wait only 250 ms (config upnp.ssdpMxDelay, docs/upnp.md)
   */
  readonly mxDelay?: boolean;
  /** cap on the random response delay when mxDelay (MX seconds at most); tests lower it */
  readonly maxDelayMs?: number;
  /** CACHE-CONTROL max-age; NOTIFY alive is repeated every maxAge/2 */
  readonly maxAge: number;
  readonly server: string;
  readonly bootId: number;
  readonly configId: number;
  /** bound on responses waiting for their delay, against floods of searches */
  readonly maxPending?: number;
  /** bound on one source's responses waiting for their delay (default maxPending / 8) */
  readonly maxPendingPerSource?: number;
  /** searches per source address; over it a search is ignored and counted (default: no limit) */
  readonly searchLimiter?: RateLimiter;
  /**
   * searches answered from all sources together (limits.ssdpSearchesPerSecond): taken after the
   * per-source limit, so one flooding source does not use up everyone's share; over it: ignored
   */
  readonly globalSearchLimiter?: { readonly limiter: RateLimiter; readonly rate: number };
  /** "once per source per interval" for log lines of ignored searches (default: every line at debug) */
  readonly gate?: LogGate;
}

interface Bound {
  readonly iface: LanInterface | null;
  readonly socket: dgram.Socket;
  /** a multicast socket: the IPv6 interface name it listens on (null for the IPv4 group) */
  readonly groupScope?: string | null;
  /** the IPv4 group socket: the LAN addresses it joined 239.255.255.250 on */
  joined?: Set<string>;
}

/**
 * SSDP on the LAN interfaces (UDA 1.1 §1): one socket per LAN address (unicast searches, our
 * NOTIFYs, our responses) and one socket on the multicast group joined on those interfaces only.
 * A search is answered only when its source is a LAN client inside one of our subnets.
 */
export function createSsdp(opts: SsdpOptions) {
  const { log, metrics } = opts;
  const globalLimitHit = createGlobalLimitReport({ metrics, log, gate: opts.gate });
  const port = opts.port ?? SSDP_PORT;
  const group = opts.multicastAddress ?? SSDP_MULTICAST_ADDRESS;
  const random = opts.random ?? Math.random;
  const maxDelayMs = opts.maxDelayMs ?? 5000;
  const mxDelay = opts.mxDelay ?? false;
  const maxPending = opts.maxPending ?? 512;
  const perSource = createPerClientCounter(opts.maxPendingPerSource ?? Math.max(1, Math.floor(maxPending / 8)));
  const logOnce = (key: string, fields: Record<string, unknown>, msg: string) => {
    if (!opts.gate) {
      log.debug(fields, msg);
      return;
    }
    const n = opts.gate.pass(key);
    if (n !== null) log.info({ ...fields, suppressed: n }, msg);
  };
  const bound: Bound[] = [];
  /** the LAN addresses served now: the options' at start, then as setInterfaces() says (addresses added later) */
  const ifaces: LanInterface[] = [...opts.interfaces];
  const timers = new Set<NodeJS.Timeout>();
  let notifyTimer: NodeJS.Timeout | null = null;
  let pending = 0;
  let closing = false;

  function ifaceFor(src: string, via: LanInterface | null, groupScope: string | null): LanInterface | null {
    let best: LanInterface | null = null;
    const { address, zone } = splitZone(src);
    const six = isIPv6(address);
    for (const i of ifaces) {
      const inside = six ? v6(i) && ipv6InPrefix(address, i.address, i.prefix) : inPrefix(address, i.address, i.prefix);
      // a tie (two addresses of one subnet) goes to the one the search was sent to
      if (inside && (!best || i.prefix > best.prefix || (i.prefix === best.prefix && i === via))) best = i;
    }
    // an IPv6 searcher usually sends from its link-local address (RFC 6724 picks it for ff02::c): the
    // interface it came in on answers, with its global or unique-local address in LOCATION
    if (!best && six && zone !== null) best = ifaces.find((i) => v6(i) && i.scope === zone) ?? null;
    if (!best && six && groupScope) best = ifaces.find((i) => v6(i) && i.scope === groupScope) ?? null;
    // a unicast search to one of our addresses: that address answers (loopback tests, /32 configs)
    return best ?? via;
  }

  function socketFor(iface: LanInterface): dgram.Socket | null {
    return bound.find((b) => b.iface?.address === iface.address)?.socket ?? null;
  }

  function onMessage(msg: Buffer, rinfo: dgram.RemoteInfo, via: LanInterface | null, groupScope: string | null = null) {
    if (closing) return;
    const src = unmapIPv4(rinfo.address);
    let search;
    try {
      search = decodeSearch(msg);
    } catch (e) {
      if (e instanceof SsdpDecodeError) {
        // other devices' NOTIFYs are normal multicast chatter, not bad input
        if (e.kind !== 'not_search') {
          metrics.badInput.inc({ frontend: 'ssdp', kind: e.kind });
          logOnce(`ssdp-bad:${src}`, { src, kind: e.kind, err: e.message }, 'ssdp ignored bad datagram');
        }
        return;
      }
      log.error({ src, err: (e as Error).message }, 'ssdp decoder failed unexpectedly');
      return;
    }
    metrics.ssdp.inc({ kind: 'search' });
    const iface = opts.isLanClient(src) ? ifaceFor(src, via, groupScope) : null;
    if (!iface) {
      metrics.badInput.inc({ frontend: 'ssdp', kind: 'not_lan' });
      logOnce(`ssdp-wan:${src}`, { src }, 'ssdp ignored search from outside the LAN');
      return;
    }
    if (opts.searchLimiter && !opts.searchLimiter.take(src)) {
      metrics.rateLimited.inc({ frontend: 'ssdp' });
      logOnce(`ssdp-rate:${src}`, { src }, 'ssdp source over its search rate; searches ignored');
      return;
    }
    const sock = socketFor(iface);
    if (!sock) return;
    const matches = matchSearch(search.st, opts.targetsFor(iface));
    if (matches.length === 0) return;
    const global = opts.globalSearchLimiter;
    if (global && !global.limiter.take('all')) {
      globalLimitHit('ssdpSearchesPerSecond', global.rate, 'searches ignored');
      return;
    }
    log.debug({ src: `${src}:${rinfo.port}`, st: search.st, answers: matches.length }, 'ssdp search');
    for (const m of matches) {
      // bounded overall and per source, so one host's searches cannot crowd out another's answers
      if (pending >= maxPending || !perSource.take(src)) {
        metrics.rateLimited.inc({ frontend: 'ssdp' });
        return;
      }
      // at once by default; with mxDelay, UDA 1.1 §1.3.3: a random delay within MX (no MX, a unicast search: at once)
      const delay = !mxDelay || search.mx === null ? 0 : Math.floor(random() * Math.min(search.mx * 1000, maxDelayMs));
      const respond = () => {
        // closing, or this address's socket closed meanwhile (the address went away): nothing to send from
        if (closing || !bound.some((b) => b.socket === sock)) return;
        let bytes: Uint8Array;
        try {
          bytes = encodeSearchResponse({
            st: m.st,
            usn: m.target.usn,
            location: m.target.location,
            maxAge: opts.maxAge,
            date: httpDate(opts.now()),
            server: opts.server,
            bootId: opts.bootId,
            configId: opts.configId,
          });
        } catch (e) {
          log.warn({ src, err: (e as Error).message }, 'ssdp response not built');
          return;
        }
        sock.send(bytes, rinfo.port, rinfo.address, (err) => {
          if (err) log.debug({ err: err.message, dst: src }, 'ssdp response not sent');
          else metrics.ssdp.inc({ kind: 'response' });
        });
      };
      if (delay === 0) {
        // in this turn of the event loop: a timer of 0 ms waits behind whatever else the loop has queued (under
        // load, tens of ms)
        perSource.give(src);
        respond();
        continue;
      }
      pending++;
      const t = setTimeout(() => {
        timers.delete(t);
        pending--;
        perSource.give(src);
        respond();
      }, delay);
      timers.add(t);
    }
  }

  /** where an interface's NOTIFYs go, with the HOST header they carry (UDA 1.1 Annex A: `[FF02::C]:1900`) */
  function notifyDestinations(iface: LanInterface): { address: string; port: number; host: string }[] {
    const t = opts.notifyTarget;
    if (!v6(iface)) {
      if (t && !isIPv6(t.address)) return [{ ...t, host: `${group}:${SSDP_PORT}` }];
      return t ? [] : [{ address: group, port: SSDP_PORT, host: `${group}:${SSDP_PORT}` }];
    }
    if (t)
      return isIPv6(t.address) ? [{ ...t, host: `[${SSDP_MULTICAST_IPV6.linkLocal.toUpperCase()}]:${SSDP_PORT}` }] : [];
    if (!iface.scope) return [];
    return [SSDP_MULTICAST_IPV6.linkLocal, SSDP_MULTICAST_IPV6.siteLocal].map((g) => ({
      address: `${g}%${iface.scope}`,
      port: SSDP_PORT,
      host: `[${g.toUpperCase()}]:${SSDP_PORT}`,
    }));
  }

  function sendAll(nts: typeof Nts.ALIVE | typeof Nts.BYEBYE, only: readonly Bound[] = bound): Promise<void> {
    const sends: Promise<void>[] = [];
    for (const b of only) {
      if (!b.iface) continue;
      for (const dst of notifyDestinations(b.iface))
        for (const t of opts.targetsFor(b.iface)) {
          const bytes =
            nts === Nts.ALIVE
              ? encodeNotify({
                  nts,
                  nt: t.nt,
                  usn: t.usn,
                  location: t.location,
                  maxAge: opts.maxAge,
                  server: opts.server,
                  bootId: opts.bootId,
                  configId: opts.configId,
                  host: dst.host,
                })
              : encodeNotify({
                  nts,
                  nt: t.nt,
                  usn: t.usn,
                  bootId: opts.bootId,
                  configId: opts.configId,
                  host: dst.host,
                });
          sends.push(
            new Promise((resolve) =>
              b.socket.send(bytes, dst.port, dst.address, (err) => {
                if (err) log.debug({ err: err.message }, 'ssdp notify not sent');
                else metrics.ssdp.inc({ kind: 'notify' });
                resolve();
              }),
            ),
          );
        }
    }
    return Promise.all(sends).then(() => undefined);
  }

  function bind(socket: dgram.Socket, address: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      socket.once('error', onError);
      socket.bind({ port, address, exclusive: false }, () => {
        socket.off('error', onError);
        // a larger receive queue absorbs a burst of searches, so fewer of other hosts' are lost before
        // the per-source limit sees them (the kernel caps it at net.core.rmem_max)
        try {
          socket.setRecvBufferSize(1 << 20);
        } catch {
          /* keep the default */
        }
        socket.on('error', (e) => log.warn({ err: e.message }, 'ssdp socket error'));
        resolve();
      });
    });
  }

  /** the unicast socket of one LAN address (searches to it, our NOTIFYs and responses from it) */
  async function bindUnicast(iface: LanInterface): Promise<Bound> {
    const six = v6(iface);
    const socket = dgram.createSocket({ type: six ? 'udp6' : 'udp4', reuseAddr: true });
    socket.on('message', (m, r) => onMessage(m, r, iface));
    await bind(socket, iface.address);
    try {
      // IPv6 names the outgoing interface by its scope (`::%lan0`), IPv4 by its address
      socket.setMulticastInterface(six ? `::%${iface.scope ?? ''}` : iface.address);
      socket.setMulticastTTL(2); // UDA 1.1 §1.1.2: TTL default 2 (the IPv6 hop limit likewise)
    } catch (e) {
      log.debug({ err: (e as Error).message, address: iface.address }, 'ssdp: no multicast options on this address');
    }
    const b = { iface, socket };
    bound.push(b);
    return b;
  }

  /** the group sockets the current addresses need: 239.255.255.250 joined on each IPv4 one, ff02::c/ff05::c per link */
  async function bindGroups(): Promise<void> {
    if (opts.joinMulticast === false) return;
    const v4 = ifaces.filter((i) => !v6(i));
    let g4 = bound.find((b) => b.iface === null && b.groupScope === undefined);
    if (v4.length > 0 && !g4) {
      const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
      socket.on('message', (m, r) => onMessage(m, r, null));
      // bound to the group address: unicast datagrams to other addresses of the host never arrive here
      await bind(socket, group);
      g4 = { iface: null, socket, joined: new Set() };
      bound.push(g4);
    }
    if (g4) {
      // a membership is per interface: a second address of a joined interface gets EADDRINUSE and is not
      // recorded, so removing it never drops the interface's one membership; drops first, then joins, so an
      // interface whose recorded address went away joins again through another of its addresses
      if (!g4.joined) g4.joined = new Set();
      const joined = g4.joined;
      for (const a of [...joined])
        if (!v4.some((i) => i.address === a)) {
          joined.delete(a);
          try {
            g4.socket.dropMembership(group, a);
          } catch {
            /* the address is gone already, and with it the membership */
          }
        }
      for (const iface of v4)
        if (!joined.has(iface.address)) {
          try {
            g4.socket.addMembership(group, iface.address);
            joined.add(iface.address);
          } catch (e) {
            if ((e as { code?: string }).code !== 'EADDRINUSE') throw e;
          }
        }
    }
    // IPv6: one socket per group and interface, bound to the scoped group, so the interface is known
    const scopes = [...new Set(ifaces.filter(v6).map((i) => i.scope ?? ''))].filter((x) => x !== '');
    for (const scope of scopes) {
      if (bound.some((b) => b.groupScope === scope)) continue;
      for (const g of [SSDP_MULTICAST_IPV6.linkLocal, SSDP_MULTICAST_IPV6.siteLocal]) {
        const socket = dgram.createSocket({ type: 'udp6', reuseAddr: true });
        socket.on('message', (m, r) => onMessage(m, r, null, scope));
        await bind(socket, `${g}%${scope}`);
        socket.addMembership(g, `::%${scope}`);
        bound.push({ iface: null, socket, groupScope: scope });
      }
    }
    for (const b of [...bound])
      if (typeof b.groupScope === 'string' && !scopes.includes(b.groupScope)) await closeBound(b);
  }

  function closeBound(b: Bound): Promise<void> {
    bound.splice(bound.indexOf(b), 1);
    return new Promise<void>((r) => {
      try {
        b.socket.close(() => r());
      } catch {
        r();
      }
    });
  }

  /**
   * The LAN addresses now (after start): a new one gets its socket (and its groups) and announces itself,
   * a gone one's socket closes. A line per change.
   */
  async function setInterfaces(next: readonly LanInterface[]): Promise<void> {
    if (closing) return;
    const gone = ifaces.filter((i) => !next.some((n) => n.address === i.address));
    const added = next.filter((n) => !ifaces.some((i) => i.address === n.address));
    ifaces.splice(0, ifaces.length, ...next);
    for (const i of gone) {
      const b = bound.find((x) => x.iface?.address === i.address);
      if (b) await closeBound(b);
      log.info({ address: i.address }, 'ssdp stopped listening on a LAN address that went away');
    }
    const fresh: Bound[] = [];
    for (const i of added) {
      try {
        fresh.push(await bindUnicast(i));
        log.info({ address: i.address, port: addresses().at(-1)?.port ?? port }, 'ssdp listening on a new LAN address');
      } catch (e) {
        ifaces.splice(ifaces.indexOf(i), 1);
        log.warn({ address: i.address, err: (e as Error).message }, 'ssdp cannot listen on a LAN address');
      }
    }
    try {
      await bindGroups();
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'ssdp cannot join its groups on a new LAN address');
    }
    if (fresh.length > 0) await sendAll(Nts.ALIVE, fresh);
  }

  async function start() {
    for (const iface of ifaces) await bindUnicast(iface);
    await bindGroups();
    await sendAll(Nts.ALIVE);
    notifyTimer = setInterval(
      () => {
        void sendAll(Nts.ALIVE);
      },
      Math.max(1, opts.maxAge / 2) * 1000,
    );
    notifyTimer.unref();
    log.info(
      {
        interfaces: ifaces.map((i) => `${i.address}/${i.prefix}`),
        port: addresses()[0]?.port ?? port,
        multicast: opts.joinMulticast !== false,
      },
      'ssdp listening',
    );
  }

  function addresses(): { address: string; port: number }[] {
    return bound
      .filter((b) => b.iface)
      .map((b) => {
        const a = b.socket.address();
        return { address: a.address, port: a.port };
      });
  }

  async function close() {
    if (closing) return;
    if (notifyTimer) clearInterval(notifyTimer);
    try {
      await sendAll(Nts.BYEBYE);
    } catch {
      /* best effort */
    }
    closing = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    await Promise.all(
      bound.map(
        (b) =>
          new Promise<void>((r) => {
            try {
              b.socket.close(() => r());
            } catch {
              r();
            }
          }),
      ),
    );
    bound.length = 0;
  }

  return { start, close, addresses, setInterfaces };
}
export type Ssdp = ReturnType<typeof createSsdp>;
