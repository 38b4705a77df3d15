/**
 * One full garbage collection once a burst of work is over (issue 17, footprint).
 *
 * After 10,000 requests V8 keeps the pages its heap grew to, and its memory reducer gives them back
 * late or not at all: 20 MiB of RSS that holds no live object (docs/benchmarks.md, "footprint": 102 →
 * 79 MiB with 10,000 leases after one full GC). So every `intervalMs` this looks at the RSS and at how
 * busy the event loop was: grown by `growthBytes` since the last collection and the loop under
 * `maxUtilization` meanwhile (the burst is over) → one full GC (≈ 10–30 ms of a quiet main thread). The
 * RSS after it is the new base, so memory that no GC frees (SQLite's page cache) never triggers another.
 * `gc` is V8's, present when node runs with `--expose-gc` (config/node-options); without it this does nothing.
 *
 * Starting is a burst too (`afterStart`): importing and compiling some 300 modules, the reconcile and the
 * front-ends' setup leave garbage behind, and nothing else would collect it on a router nobody talks to.
 * `trim` (glibc's malloc_trim(0)) then gives the freed malloc memory back to the kernel: glibc returns only
 * the top of its heaps by itself, the holes the start leaves in the middle stay resident (≈ 2 MiB idle).
 * It also drops the file pages the start read once (src/common/file-pages.ts); those a quiet daemon still
 * uses come back within seconds, so the base is the RSS at the next look after a collection, not the one
 * right after it: else their return (≈ 10 MiB) counts as growth and every look collects again.
 */
import type { EventLoopUtilityFunction } from 'node:perf_hooks';

export interface IdleGcOptions {
  /** V8's full collection: globalThis.gc under --expose-gc */
  readonly gc: (() => void) | undefined;
  /** resident set size in bytes (process.memoryUsage.rss) */
  readonly rss: () => number;
  /** the event loop's utilization since the previous call, 0..1 (from performance.eventLoopUtilization) */
  readonly busy: () => number;
  /** default 10 s */
  readonly intervalMs?: number;
  /** default 8 MiB */
  readonly growthBytes?: number;
  /** default 0.05 */
  readonly maxUtilization?: number;
  /** the first quiet check collects whatever the RSS: starting was the first burst */
  readonly afterStart?: boolean;
  /** after each collection: give freed native memory back (malloc_trim(0)); see the file's comment */
  readonly trim?: () => void;
  /** tells how much one collection gave back */
  readonly onCollect?: (before: number, after: number) => void;
}

export interface IdleGc {
  /** one look (what the timer does); true when it collected */
  check(): boolean;
  /**
   * the daemon is up: look again in `delayMs` (default 3 s) rather than at the next period, with the loop's
   * business measured from now (the start itself was busy)
   */
  started(delayMs?: number): void;
  /**
   * memory outside this heap was just given up (the WAL checkpointer's worker exited: its isolate and malloc
   * arena, leases/checkpointer.ts): the next quiet look, in `delayMs` (default 1 s) or later, collects and
   * trims whatever the RSS — the RSS fell rather than grew, so the growth rule would never look again
   */
  released(delayMs?: number): void;
  stop(): void;
}

export function createIdleGc(o: IdleGcOptions): IdleGc {
  const growth = o.growthBytes ?? 8 * 1024 * 1024;
  const maxBusy = o.maxUtilization ?? 0.05;
  let base = o.afterStart ? 0 : o.rss();
  /** a collection was the last thing done: the next look sets the base (the file pages back) */
  let settling = false;
  const check = (): boolean => {
    const busy = o.busy();
    if (!o.gc) return false;
    const rss = o.rss();
    if (settling) {
      settling = false;
      base = rss;
      return false;
    }
    // a smaller RSS (V8 gave pages back by itself) is the new base too
    if (rss < base) base = rss;
    if (rss < base + growth || busy >= maxBusy) return false;
    o.gc();
    o.trim?.();
    base = o.rss();
    settling = true;
    o.onCollect?.(rss, base);
    return true;
  };
  const timer = o.gc ? setInterval(check, o.intervalMs ?? 10_000) : null;
  timer?.unref();
  let soon: NodeJS.Timeout | null = null;
  return {
    check,
    started: (delayMs = 3000) => {
      if (!o.gc) return;
      o.busy();
      soon = setTimeout(check, delayMs);
      soon.unref();
    },
    released: (delayMs = 1000) => {
      if (!o.gc) return;
      base = 0;
      settling = false;
      if (soon) clearTimeout(soon);
      soon = setTimeout(check, delayMs);
      soon.unref();
    },
    stop: () => {
      if (timer) clearInterval(timer);
      if (soon) clearTimeout(soon);
    },
  };
}

/** the busy() of IdleGcOptions from perf_hooks: the loop's utilization since the previous call */
export function eventLoopBusy(elu: EventLoopUtilityFunction): () => number {
  let last = elu();
  return () => {
    const u = elu(last).utilization;
    last = elu();
    return u;
  };
}
