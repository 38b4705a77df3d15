/**
 * The gateway's IPv6 neighbour table on the LAN interfaces (`ip -j -6 neigh show dev X`), for secure
 * mode's "a host's own addresses" (src/policy/same-host.ts).
 *
 * - Cached: `lookup` is synchronous (the lease table's policy check runs inside a tick and cannot
 *   wait); the cache is read again when older than `maxAgeMs` by `ensure`, which a front-end awaits
 *   before it submits a request whose owner and target differ.
 * - Probed: a target the kernel has no usable entry for (never talked to the gateway, or the entry
 *   aged out) is sent one UDP datagram to the discard port (9); sending it makes the kernel resolve the
 *   address (a neighbour solicitation, RFC 4861 §7.2.2), so after `probeWaitMs` the table is read
 *   again. A host that does not answer stays unknown, and unknown is a refusal. Probes are bounded
 *   per second; no external tool (ping, ndisc6) is needed.
 * - Bounded: at most `maxEntries` entries are kept (a /64 can hold more hosts than memory).
 */
import { createSocket } from 'node:dgram';
import type { Logger } from 'pino';
import { canonicalIPv6 } from '../common/ipv6.js';
import { run } from './nftables-runner.js';

export interface Neighbour {
  /** canonical IPv6 text */
  readonly address: string;
  readonly dev: string;
  /** lower-case link-layer address; null for INCOMPLETE / FAILED entries */
  readonly lladdr: string | null;
  readonly state: readonly string[];
}

/** `ip -j -6 neigh show dev X` output → entries (pure); `dev` names the interface when the output omits it */
export function parseNeighJson(json: string, dev: string): Neighbour[] {
  const doc = JSON.parse(json || '[]') as { dst?: string; dev?: string; lladdr?: string; state?: string[] }[];
  const out: Neighbour[] = [];
  for (const e of Array.isArray(doc) ? doc : []) {
    const address = typeof e.dst === 'string' ? canonicalIPv6(e.dst) : null;
    if (!address) continue;
    out.push({
      address,
      dev: e.dev ?? dev,
      lladdr: typeof e.lladdr === 'string' ? e.lladdr.toLowerCase() : null,
      state: Array.isArray(e.state) ? e.state.map(String) : [],
    });
  }
  return out;
}

export interface NeighbourTableOptions {
  /** the LAN interfaces */
  readonly interfaces: readonly string[];
  readonly log: Logger;
  readonly ipPath?: string;
  /** read inside this network namespace (`ip -n NAME`) */
  readonly netns?: string;
  /** a cache older than this is read again by ensure() (default 5000 ms) */
  readonly maxAgeMs?: number;
  /** entries kept at most (default 4096) */
  readonly maxEntries?: number;
  /** wait after probing before the second read (default 300 ms: a LAN host answers in well under that) */
  readonly probeWaitMs?: number;
  /** probes sent per second at most (default 20) */
  readonly probesPerSecond?: number;
  /** how to make the kernel resolve an address (default: one UDP datagram to its discard port) */
  readonly probe?: (address: string) => void;
  /** how to read one interface's table (default `ip -j -6 neigh show dev X`) */
  readonly read?: (dev: string) => Promise<Neighbour[]>;
  readonly now?: () => number;
}

export interface NeighbourTable {
  /** the cached entry for an IPv6 address (any spelling), or null */
  lookup(address: string): Neighbour | null;
  /** make the cache fit to answer for these addresses: read it when stale, probe the unknown ones, read again */
  ensure(addresses: readonly string[]): Promise<void>;
  /** read the kernel's table now */
  refresh(): Promise<void>;
  /** the cached entries (diagnostics) */
  entries(): readonly Neighbour[];
  close(): void;
}

const UNUSABLE = new Set(['FAILED', 'INCOMPLETE', 'NONE']);
const usable = (n: Neighbour | null | undefined) => !!n && !!n.lladdr && !n.state.some((s) => UNUSABLE.has(s));

export function createNeighbourTable(opts: NeighbourTableOptions): NeighbourTable {
  const log = opts.log.child({ component: 'neighbours' });
  const now = opts.now ?? (() => performance.now());
  const maxAgeMs = opts.maxAgeMs ?? 5000;
  const maxEntries = opts.maxEntries ?? 4096;
  const probeWaitMs = opts.probeWaitMs ?? 300;
  const probesPerSecond = opts.probesPerSecond ?? 20;
  let cache = new Map<string, Neighbour>();
  let readAt = Number.NEGATIVE_INFINITY;
  let inFlight: Promise<void> | null = null;
  let warnedFull = false;
  let closed = false;
  let probeWindow = { at: Number.NEGATIVE_INFINITY, sent: 0 };
  let socket: ReturnType<typeof createSocket> | null = null;

  const read =
    opts.read ??
    (async (dev: string) => {
      const ns = opts.netns ? ['-n', opts.netns] : [];
      const r = await run({}, opts.ipPath ?? 'ip', [...ns, '-j', '-6', 'neigh', 'show', 'dev', dev], {
        timeoutMs: 10_000,
      });
      if (r.code !== 0) throw new Error(`ip neigh show dev ${dev}: ${r.stderr.trim()}`);
      return parseNeighJson(r.stdout, dev);
    });

  const probe =
    opts.probe ??
    ((address: string) => {
      if (!socket) {
        socket = createSocket('udp6');
        socket.on('error', (err) => log.debug({ err: err.message }, 'neighbour probe socket error'));
        socket.unref();
      }
      // the discard port: nothing is expected back; the kernel's neighbour solicitation is the point
      socket.send(Buffer.alloc(0), 9, address, (err) => {
        if (err) log.debug({ address, err: err.message }, 'neighbour probe not sent');
      });
    });

  async function readAll(): Promise<void> {
    const next = new Map<string, Neighbour>();
    for (const dev of opts.interfaces) {
      let list: Neighbour[];
      try {
        list = await read(dev);
      } catch (err) {
        log.warn({ dev, err: (err as Error).message }, 'cannot read the neighbour table');
        continue;
      }
      for (const n of list) {
        if (next.size >= maxEntries) {
          if (!warnedFull) log.warn({ maxEntries }, 'neighbour table larger than the cache; the rest is not kept');
          warnedFull = true;
          break;
        }
        // a usable entry wins over a failed one for the same address on another LAN interface
        if (!next.has(n.address) || (!usable(next.get(n.address)) && usable(n))) next.set(n.address, n);
      }
    }
    cache = next;
    readAt = now();
  }

  function refresh(): Promise<void> {
    if (closed) return Promise.resolve();
    if (!inFlight)
      inFlight = readAll().finally(() => {
        inFlight = null;
      });
    return inFlight;
  }

  function mayProbe(): boolean {
    const t = now();
    if (t - probeWindow.at >= 1000) probeWindow = { at: t, sent: 0 };
    if (probeWindow.sent >= probesPerSecond) return false;
    probeWindow.sent++;
    return true;
  }

  const lookup = (address: string) => {
    const c = canonicalIPv6(address);
    return c ? (cache.get(c) ?? null) : null;
  };

  return {
    lookup,
    refresh,
    async ensure(addresses) {
      const wanted = addresses.map((a) => canonicalIPv6(a)).filter((a): a is string => a !== null);
      if (now() - readAt > maxAgeMs || wanted.some((a) => !usable(cache.get(a)))) await refresh();
      const missing = wanted.filter((a) => !usable(cache.get(a)));
      if (missing.length === 0 || closed) return;
      let sent = 0;
      for (const a of missing) {
        if (!mayProbe()) break;
        probe(a);
        sent++;
      }
      if (sent === 0) return;
      log.debug({ probed: missing.slice(0, sent) }, 'neighbours probed');
      await new Promise((r) => setTimeout(r, probeWaitMs));
      await refresh();
    },
    entries: () => [...cache.values()],
    close() {
      closed = true;
      socket?.close();
      socket = null;
    },
  };
}
