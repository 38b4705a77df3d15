/**
 * Per-client token buckets and a "say it once per interval" gate for log lines.
 * Time comes from the injected clock (ms), so tests can drive it.
 */

export interface RateLimiter {
  /** take one token for `key`; false when the client is over its rate */
  take(key: string): boolean;
  /** number of tracked clients (for tests and status) */
  size(): number;
}

/**
 * `rate` requests per second sustained, bursts up to `burst` (default: one second's worth).
 * Idle buckets are forgotten lazily so a scan of spoofed sources cannot grow memory forever.
 */
export function createRateLimiter(opts: { rate: number; burst?: number; now: () => number; maxClients?: number }): RateLimiter {
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

  return {
    take(key) {
      if (rate === 0) return true; // 0 = no limit
      const now = opts.now();
      if (buckets.size >= maxClients || now - lastSweep > 60_000) sweep(now);
      let b = buckets.get(key);
      if (!b) {
        if (buckets.size >= maxClients) return false; // table full of active clients: refuse newcomers, keep serving the known
        b = { tokens: burst, at: now };
        buckets.set(key, b);
      } else {
        b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
        b.at = now;
      }
      if (b.tokens < 1) return false;
      b.tokens -= 1;
      return true;
    },
    size: () => buckets.size,
  };
}

/** Lets one log line per key through per interval, and counts what it held back. */
export function createLogGate(opts: { intervalMs: number; now: () => number; maxKeys?: number }) {
  const seen = new Map<string, { at: number; suppressed: number }>();
  const maxKeys = opts.maxKeys ?? 4096;
  return {
    /** null: stay quiet; a number: log now, mentioning how many were suppressed since the last line */
    pass(key: string): number | null {
      const now = opts.now();
      const e = seen.get(key);
      if (e && now - e.at < opts.intervalMs) {
        e.suppressed++;
        return null;
      }
      if (seen.size >= maxKeys) {
        for (const [k, v] of seen) if (now - v.at >= opts.intervalMs) seen.delete(k);
        if (seen.size >= maxKeys) seen.clear();
      }
      const suppressed = e?.suppressed ?? 0;
      seen.set(key, { at: now, suppressed: 0 });
      return suppressed;
    },
  };
}
