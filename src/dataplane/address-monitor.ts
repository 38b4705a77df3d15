/**
 * Watching interface addresses: `ip monitor address` (any line means "something changed: read again",
 * debounced, since one change prints several lines), a slow poll as the safety net when the monitor dies
 * or misses something, and a restart of the monitor 5 s after it exits. The WAN IPv4 address
 * (external-address.ts) and the LAN/WAN IPv6 prefixes (prefix-watch.ts) are both read this way; what to
 * read and compare is theirs.
 */
import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { spawnTied } from '../child.js';
import { run } from './nftables-runner.js';

export interface AddressMonitorOptions {
  /** one interface: `ip monitor address dev X`; several: every address event (one child either way) */
  readonly interfaces: readonly string[];
  readonly log: Logger;
  readonly ipPath?: string;
  /** watch inside this network namespace (`ip -n NAME`) */
  readonly netns?: string;
  /** fallback poll period in seconds (default 30) */
  readonly pollSeconds?: number;
  /** debounce after a monitor line, ms (default 200) */
  readonly debounceMs?: number;
}

export interface AddressMonitor {
  stop(): void;
}

/** calls `changed` after monitor output (debounced) and every poll period, until stop() */
export function monitorAddresses(opts: AddressMonitorOptions, changed: () => void): AddressMonitor {
  let stopped = false;
  let monitor: ChildProcess | null = null;
  let debounce: NodeJS.Timeout | null = null;
  let restart: NodeJS.Timeout | null = null;

  function startMonitor(): void {
    if (stopped) return;
    const ns = opts.netns ? ['-n', opts.netns] : [];
    const dev = opts.interfaces.length === 1 ? ['dev', opts.interfaces[0]!] : [];
    const child = spawnTied(opts.ipPath ?? 'ip', [...ns, 'monitor', 'address', ...dev], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }); // dies with portd
    monitor = child;
    child.stdout?.on('data', () => {
      if (debounce) clearTimeout(debounce);
      debounce = setTimeout(() => {
        debounce = null;
        if (!stopped) changed();
      }, opts.debounceMs ?? 200);
    });
    child.on('error', (err) => opts.log.warn({ err: err.message }, 'ip monitor not runnable; polling only'));
    child.on('close', () => {
      if (monitor === child) monitor = null;
      if (!stopped) restart = setTimeout(startMonitor, 5000);
    });
  }
  startMonitor();
  const poll = setInterval(
    () => {
      if (!stopped) changed();
    },
    (opts.pollSeconds ?? 30) * 1000,
  );
  poll.unref();

  return {
    stop() {
      stopped = true;
      clearInterval(poll);
      if (debounce) clearTimeout(debounce);
      if (restart) clearTimeout(restart);
      monitor?.kill('SIGTERM');
      monitor = null;
    },
  };
}

/**
 * The LAN interfaces' own addresses, as the front-ends bind them (issue 15, item 5): IPv4 (global scope)
 * and IPv6 global, unique-local and link-local, the link-local ones with their interface as the zone
 * (`fe80::1%br-lan`: a link-local address means nothing without its link). An address still in
 * duplicate address detection (tentative, RFC 4862 §5.4) cannot be bound yet and one whose DAD failed
 * never can: both are left out until the kernel says otherwise, so an address that finishes DAD after
 * `portd ready` shows up as added then.
 */
export interface LanAddress {
  readonly interface: string;
  /** the bindable text: IPv4 dotted quad, IPv6 as `ip` prints it, link-local with `%interface` */
  readonly address: string;
  readonly family: 4 | 6;
  readonly prefixLength: number;
}

interface IpAddrInfo {
  readonly family?: string;
  readonly local?: string;
  readonly prefixlen?: number;
  readonly scope?: string;
  readonly tentative?: boolean;
  readonly dadfailed?: boolean;
}

/** the bindable addresses in `ip -j addr show` output (pure); `{}` entries (ip's quirk) are skipped */
export function parseLanAddresses(json: string): LanAddress[] {
  const doc = JSON.parse(json || '[]') as { ifname?: string; addr_info?: IpAddrInfo[] }[];
  const out: LanAddress[] = [];
  for (const link of Array.isArray(doc) ? doc : []) {
    const dev = link.ifname ?? '';
    for (const a of link.addr_info ?? []) {
      if (!a.local || typeof a.prefixlen !== 'number' || a.tentative || a.dadfailed) continue;
      if (a.family === 'inet' && a.scope === 'global')
        out.push({ interface: dev, address: a.local, family: 4, prefixLength: a.prefixlen });
      else if (a.family === 'inet6' && (a.scope === 'global' || a.scope === 'link'))
        out.push({
          interface: dev,
          address: a.scope === 'link' ? `${a.local}%${dev}` : a.local,
          family: 6,
          prefixLength: a.prefixlen,
        });
    }
  }
  return out;
}

export interface LanAddressWatchOptions extends Omit<AddressMonitorOptions, 'interfaces'> {
  readonly lan: readonly string[];
  /** reads `ip -j addr show dev X` (tests pass a fixed table); default: runs `ip` */
  readonly read?: (dev: string) => Promise<string>;
}

/**
 * Reads the LAN interfaces' addresses now and after every change the monitor reports (and every poll),
 * calling `onChange` with the whole current list whenever the set of addresses differs from the last one
 * (the front-ends bind what is new and close what is gone). The first read is passed too, so an address
 * that was tentative at start is caught up with.
 */
export function watchLanAddresses(
  opts: LanAddressWatchOptions,
  onChange: (current: readonly LanAddress[]) => void,
): AddressMonitor {
  const ns = opts.netns ? ['-n', opts.netns] : [];
  const read =
    opts.read ??
    (async (dev: string) => {
      const r = await run({}, opts.ipPath ?? 'ip', [...ns, '-j', 'addr', 'show', 'dev', dev], { timeoutMs: 10_000 });
      if (r.code !== 0) throw new Error(`ip addr show dev ${dev}: ${r.stderr.trim()}`);
      return r.stdout;
    });
  let last: string | null = null;
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
      const list: LanAddress[] = [];
      for (const dev of opts.lan) list.push(...parseLanAddresses(await read(dev)));
      const key = list
        .map((a) => a.address)
        .sort()
        .join(' ');
      if (!stopped && key !== last) {
        last = key;
        onChange(list);
      }
    } catch (err) {
      opts.log.warn({ err: (err as Error).message }, 'cannot read the LAN addresses');
    } finally {
      reading = false;
      if (again && !stopped) {
        again = false;
        void reread();
      }
    }
  }
  const monitor = monitorAddresses({ ...opts, interfaces: opts.lan }, () => void reread());
  void reread();
  return {
    stop() {
      stopped = true;
      monitor.stop();
    },
  };
}
