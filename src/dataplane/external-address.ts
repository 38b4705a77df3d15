/**
 * The WAN interface's IPv4 address(es): read with `ip -j addr show dev X`, watched with
 * `ip monitor address dev X` through address-monitor.ts (any line triggers a re-read, debounced, plus a
 * slow poll as a safety net when the monitor dies). The callback gets the new list only when it changed.
 */
import type { Logger } from 'pino';
import { run } from './nftables-runner.js';
import { monitorAddresses } from './address-monitor.js';

export interface AddressInfo {
  readonly family?: string;
  readonly local?: string;
  readonly scope?: string;
  readonly secondary?: boolean;
  readonly deprecated?: boolean;
}

/** global-scope IPv4 addresses from `ip -j addr show` output, primary first (pure) */
export function parseIpAddrJson(json: string): string[] {
  const doc = JSON.parse(json) as { addr_info?: AddressInfo[] }[];
  const primary: string[] = [];
  const secondary: string[] = [];
  for (const link of doc) {
    for (const a of link.addr_info ?? []) {
      if (a.family !== 'inet' || !a.local || (a.scope !== undefined && a.scope !== 'global')) continue;
      (a.secondary ? secondary : primary).push(a.local);
    }
  }
  return [...primary, ...secondary];
}

export interface ExternalAddressOptions {
  readonly interface: string;
  readonly log: Logger;
  readonly ipPath?: string;
  /** read inside this network namespace (`ip -n NAME`) */
  readonly netns?: string;
  /** fallback poll period in seconds (default 30) */
  readonly pollSeconds?: number;
  /** debounce after a monitor line, ms (default 200) */
  readonly debounceMs?: number;
}

export async function readInterfaceAddresses(
  opts: Pick<ExternalAddressOptions, 'interface' | 'ipPath' | 'netns'>,
): Promise<string[]> {
  const ns = opts.netns ? ['-n', opts.netns] : [];
  const r = await run({}, opts.ipPath ?? 'ip', [...ns, '-j', '-4', 'addr', 'show', 'dev', opts.interface], {
    timeoutMs: 10_000,
  });
  if (r.code !== 0) throw new Error(`ip addr show dev ${opts.interface}: ${r.stderr.trim()}`);
  return parseIpAddrJson(r.stdout || '[]');
}

/** the WAN interface's first global IPv4 address, or null when it has none */
export async function readInterfaceAddress(
  ifname: string,
  opts: Pick<ExternalAddressOptions, 'ipPath' | 'netns'> = {},
): Promise<string | null> {
  return (await readInterfaceAddresses({ ...opts, interface: ifname }))[0] ?? null;
}

export interface ExternalAddressWatcher {
  /** the addresses last read */
  current(): readonly string[];
  stop(): void;
}

/**
 * Reads once, calls onChange with the first result, then on every change.
 * Resolves after the first read (rejects when the interface cannot be read at all).
 */
export async function watchExternalAddress(
  opts: ExternalAddressOptions,
  onChange: (addresses: readonly string[], previous: readonly string[]) => void,
): Promise<ExternalAddressWatcher> {
  const log = opts.log.child({ component: 'wan-address', interface: opts.interface });
  let current: readonly string[] = await readInterfaceAddresses(opts);
  let stopped = false;
  let reading = false;

  log.info({ addresses: current }, current.length > 0 ? 'WAN address read' : 'WAN interface has no IPv4 address yet');
  onChange(current, []);

  async function reread(): Promise<void> {
    if (stopped || reading) return;
    reading = true;
    try {
      const next = await readInterfaceAddresses(opts);
      if (stopped) return;
      if (next.join(',') !== current.join(',')) {
        const prev = current;
        current = next;
        log.warn({ addresses: next, previous: prev }, 'WAN address changed');
        onChange(next, prev);
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot read WAN address');
    } finally {
      reading = false;
    }
  }

  const monitor = monitorAddresses({ ...opts, interfaces: [opts.interface], log }, () => void reread());
  return {
    current: () => current,
    stop() {
      stopped = true;
      monitor.stop();
    },
  };
}
