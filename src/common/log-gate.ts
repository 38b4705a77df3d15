/**
 * The one log gate: at most one line per key per interval, counting what it held back, so a flood
 * (bad datagrams, a refused global limit) cannot flood the log. Used by the front-ends, the admin
 * API and the lease table; the metric beside each line still counts every event.
 */
export interface LogGate {
  /** null: stay quiet; a number: log now, mentioning how many were suppressed since the last line */
  pass(key: string): number | null;
}

/** Lets one log line per key through per interval, and counts what it held back. */
export function createLogGate(opts: { intervalMs: number; now: () => number; maxKeys?: number }): LogGate {
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
