/**
 * The LAN and WAN IPv6 prefixes, watched (issue 15, item 6, the detection half). A delegated prefix
 * that is renumbered (DHCPv6-PD gives the router another /56, RFC 8415 §6.3) takes the LAN's /64s with
 * it: pinholes for addresses no longer on the LAN must end, PCP must reset its epoch and announce
 * (RFC 6887 §14.1.1), UPnP must send its events. This module notices the change and says which prefixes
 * came and went; the wiring decides what follows.
 *
 * Read with `ip -j -6 addr show dev X`, watched through address-monitor.ts. A prefix counts from its
 * global-scope addresses (global and unique-local; link-local says nothing about the prefix), while
 * they are not tentative (DAD still running) and DAD has not failed. A deprecated address (preferred
 * lifetime 0, RFC 4862 §5.5.4: the old prefix during a graceful renumbering) still counts: it is valid
 * and its flows still run; it leaves when the address is removed.
 */
import type { Logger } from 'pino';
import { canonicalIPv6, formatIPv6, maskIPv6, parseIPv6 } from '../common/ipv6.js';
import { monitorAddresses } from './address-monitor.js';
import { run } from './nftables-runner.js';

export interface IPv6Prefix {
  readonly interface: string;
  /** canonical network text, host bits zero */
  readonly network: string;
  readonly prefixLength: number;
}

export interface PrefixChange {
  readonly side: 'lan' | 'wan';
  readonly added: readonly IPv6Prefix[];
  readonly removed: readonly IPv6Prefix[];
  /** the side's prefixes after the change */
  readonly current: readonly IPv6Prefix[];
}

interface AddrInfo {
  readonly family?: string;
  readonly local?: string;
  readonly prefixlen?: number;
  readonly scope?: string;
  readonly tentative?: boolean;
  readonly dadfailed?: boolean;
}

/** the prefixes of `ip -j -6 addr show` output, each once, sorted (pure); `{}` entries (ip's quirk) are skipped */
export function parseIPv6Prefixes(json: string): IPv6Prefix[] {
  const doc = JSON.parse(json || '[]') as { ifname?: string; addr_info?: AddrInfo[] }[];
  const out = new Map<string, IPv6Prefix>();
  for (const link of Array.isArray(doc) ? doc : []) {
    for (const a of link.addr_info ?? []) {
      if (a.family !== 'inet6' || !a.local || a.scope !== 'global' || a.tentative || a.dadfailed) continue;
      const b = parseIPv6(a.local);
      const len = a.prefixlen;
      if (!b || typeof len !== 'number' || len < 0 || len > 128) continue;
      const p = { interface: link.ifname ?? '', network: formatIPv6(maskIPv6(b, len)), prefixLength: len };
      out.set(prefixKey(p), p);
    }
  }
  return [...out.values()].sort((x, y) => (prefixKey(x) < prefixKey(y) ? -1 : 1));
}

const prefixKey = (p: IPv6Prefix) => `${p.interface} ${p.network}/${p.prefixLength}`;

/** what `next` has that `prev` had not, and the other way round (pure) */
export function diffPrefixes(
  prev: readonly IPv6Prefix[],
  next: readonly IPv6Prefix[],
): { added: IPv6Prefix[]; removed: IPv6Prefix[] } {
  const p = new Set(prev.map(prefixKey));
  const n = new Set(next.map(prefixKey));
  return { added: next.filter((x) => !p.has(prefixKey(x))), removed: prev.filter((x) => !n.has(prefixKey(x))) };
}

/** is an address inside one of these prefixes? (the test a pinhole's internal address takes after a change) */
export function inPrefixes(address: string, prefixes: readonly IPv6Prefix[]): boolean {
  const c = canonicalIPv6(address);
  if (!c) return false;
  const b = parseIPv6(c)!;
  return prefixes.some((p) => formatIPv6(maskIPv6(b, p.prefixLength)) === p.network);
}

export interface PrefixWatchOptions {
  readonly lan: readonly string[];
  /** the WAN interface; null: LAN only */
  readonly wan: string | null;
  readonly log: Logger;
  readonly ipPath?: string;
  readonly netns?: string;
  /** fallback poll period in seconds (default 30) */
  readonly pollSeconds?: number;
  /** debounce after a monitor line, ms (default 200) */
  readonly debounceMs?: number;
}

export interface PrefixWatcher {
  current(): { readonly lan: readonly IPv6Prefix[]; readonly wan: readonly IPv6Prefix[] };
  stop(): void;
}

async function readPrefixes(opts: PrefixWatchOptions, interfaces: readonly string[]): Promise<IPv6Prefix[]> {
  const ns = opts.netns ? ['-n', opts.netns] : [];
  const out: IPv6Prefix[] = [];
  for (const dev of interfaces) {
    const r = await run({}, opts.ipPath ?? 'ip', [...ns, '-j', '-6', 'addr', 'show', 'dev', dev], {
      timeoutMs: 10_000,
    });
    if (r.code !== 0) throw new Error(`ip -6 addr show dev ${dev}: ${r.stderr.trim()}`);
    out.push(...parseIPv6Prefixes(r.stdout));
  }
  return out;
}

/**
 * Reads both sides once (resolves after that; rejects when an interface cannot be read), then calls
 * `onChange` once per side whose prefixes changed, with what came and went. No call for the first read.
 */
export async function watchPrefixes(
  opts: PrefixWatchOptions,
  onChange: (change: PrefixChange) => void,
): Promise<PrefixWatcher> {
  const log = opts.log.child({ component: 'prefix-watch' });
  const sides = { lan: opts.lan, wan: opts.wan ? [opts.wan] : [] } as const;
  const state = {
    lan: await readPrefixes(opts, sides.lan),
    wan: await readPrefixes(opts, sides.wan),
  };
  log.info({ lan: state.lan.map(text), wan: state.wan.map(text) }, 'IPv6 prefixes read');
  let stopped = false;
  let reading = false;
  let again = false;

  async function reread(): Promise<void> {
    if (stopped) return;
    if (reading) {
      again = true; // a change while reading: read once more after this one
      return;
    }
    reading = true;
    try {
      for (const side of ['lan', 'wan'] as const) {
        const next = await readPrefixes(opts, sides[side]);
        if (stopped) return;
        const d = diffPrefixes(state[side], next);
        if (d.added.length === 0 && d.removed.length === 0) continue;
        state[side] = next;
        log.warn({ side, added: d.added.map(text), removed: d.removed.map(text) }, 'IPv6 prefixes changed');
        onChange({ side, ...d, current: next });
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot read IPv6 prefixes');
    } finally {
      reading = false;
      if (again && !stopped) {
        again = false;
        void reread();
      }
    }
  }

  const monitor = monitorAddresses({ ...opts, interfaces: [...sides.lan, ...sides.wan], log }, () => void reread());
  return {
    current: () => state,
    stop() {
      stopped = true;
      monitor.stop();
    },
  };
}

const text = (p: IPv6Prefix) => `${p.network}/${p.prefixLength}@${p.interface}`;
