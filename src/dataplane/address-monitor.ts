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
