/**
 * Per-client token buckets, per-client counters and the global-limit report, shared by the
 * PCP/NAT-PMP, UPnP (HTTP, SSDP, GENA) front-ends (the log gate they use is src/common/log-gate.ts).
 * Time comes from the injected clock (ms), so tests can drive it.
 */
import type { LogGate } from '../common/log-gate.js';

export interface RateLimiter {
  /** take one token for `key`; false when the client is over its rate */
  take(key: string): boolean;
  /**
   * reserve one token for `key`: 0 = go now, n > 0 = go after n ms (the client is over its rate and
   * is slowed to it), -1 = the wait would exceed `maxWaitMs` (refuse). For connection-oriented
   * front-ends, where a client has few requests in flight, slowing is kinder than refusing.
   */
  wait(key: string, maxWaitMs: number): number;
  /** number of tracked clients (for tests and status) */
  size(): number;
}

/**
 * `rate` requests per second sustained, bursts up to `burst` (default: one second's worth).
 * Idle buckets are forgotten lazily so a scan of spoofed sources cannot grow memory forever.
 */
export function createRateLimiter(opts: {
  rate: number;
  burst?: number;
  now: () => number;
  maxClients?: number;
}): RateLimiter {
  const rate = Math.max(0, opts.rate);
  const burst = Math.max(1, opts.burst ?? Math.ceil(rate));
  const maxClients = opts.maxClients ?? 65536;
  const buckets = new Map<string, { tokens: number; at: number }>();
  let lastSweep = opts.now();

  function sweep(now: number): void {
    // a bucket that has been idle long enough to refill completely carries no information
    const full = rate > 0 ? (burst / rate) * 1000 : Infinity;
    for (const [k, b] of buckets) if (now - b.at >= full) buckets.delete(k);
    lastSweep = now;
  }

  /** the client's bucket, refilled to now; null when the table is full of active clients */
  function bucket(key: string, now: number): { tokens: number; at: number } | null {
    if (buckets.size >= maxClients || now - lastSweep > 60_000) sweep(now);
    let b = buckets.get(key);
    if (!b) {
      if (buckets.size >= maxClients) return null; // refuse newcomers, keep serving the known
      b = { tokens: burst, at: now };
      buckets.set(key, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
      b.at = now;
    }
    return b;
  }

  return {
    take(key) {
      if (rate === 0) return true; // 0 = no limit
      const b = bucket(key, opts.now());
      if (!b || b.tokens < 1) return false;
      b.tokens -= 1;
      return true;
    },
    wait(key, maxWaitMs) {
      if (rate === 0) return 0;
      const b = bucket(key, opts.now());
      if (!b) return -1;
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return 0;
      }
      // tokens go below zero for requests already waiting: each waits for its own token
      const ms = ((1 - b.tokens) / rate) * 1000;
      if (ms > maxWaitMs) return -1;
      b.tokens -= 1;
      return ms;
    },
    size: () => buckets.size,
  };
}

/** the `limits.*` keys a front-end enforces */
export type GlobalLimitKey =
  | 'pcpRequestsPerSecond'
  | 'peerLookupsPerSecond'
  | 'soapRequestsPerSecond'
  | 'ssdpSearchesPerSecond';

/**
 * What every front-end does when a global limit (config `limits.*`) is hit: count it in
 * `portd_global_limit_total{limit}` (a label child bound once per key: the PCP drop path runs per
 * datagram) and log one warn line per interval naming the key, its value and what happens now.
 * Without a gate every hit is logged.
 */
export function createGlobalLimitReport(deps: {
  metrics: { globalLimit: { labels(l: { limit: string }): { inc(): void } } };
  log: { warn(fields: Record<string, unknown>, msg: string): void };
  gate?: LogGate;
}) {
  const counters = new Map<GlobalLimitKey, { inc(): void }>();
  return (key: GlobalLimitKey, rate: number, outcome: string, fields: Record<string, unknown> = {}): void => {
    let c = counters.get(key);
    if (!c) {
      c = deps.metrics.globalLimit.labels({ limit: key });
      counters.set(key, c);
    }
    c.inc();
    const n = deps.gate ? deps.gate.pass(`global:${key}`) : 0;
    if (n !== null)
      deps.log.warn(
        { ...fields, limit: `limits.${key}`, rate, suppressed: n },
        `global limit reached (limits.${key} ${rate}); ${outcome}`,
      );
  };
}
export type GlobalLimitReport = ReturnType<typeof createGlobalLimitReport>;

/**
 * How many of something (open connections, pending answers) each client holds, with a cap.
 * Keys at zero are removed, so the map holds only clients that hold something.
 */
export function createPerClientCounter(max: number) {
  const counts = new Map<string, number>();
  return {
    /** false (and nothing taken) when the client already holds `max` */
    take(key: string): boolean {
      const n = counts.get(key) ?? 0;
      if (max > 0 && n >= max) return false;
      counts.set(key, n + 1);
      return true;
    },
    give(key: string): void {
      const n = (counts.get(key) ?? 0) - 1;
      if (n <= 0) counts.delete(key);
      else counts.set(key, n);
    },
    get: (key: string) => counts.get(key) ?? 0,
    size: () => counts.size,
  };
}
export type PerClientCounter = ReturnType<typeof createPerClientCounter>;
