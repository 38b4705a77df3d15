/** small shared helpers for benchmarks: percentiles, a table printer */
import { readFileSync } from 'node:fs';
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(latenciesMs: number[], wallMs: number) {
  const s = [...latenciesMs].sort((a, b) => a - b);
  return {
    n: s.length,
    perSecond: Math.round((s.length / wallMs) * 1000),
    p50ms: round(percentile(s, 50)),
    p99ms: round(percentile(s, 99)),
  };
}

export const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

export function printTable(title: string, rows: Record<string, unknown>[]): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]!);
  const cells = rows.map((r) => cols.map((c) => String(r[c] ?? '')));
  const w = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (vals: string[]) => `| ${vals.map((v, i) => v.padEnd(w[i]!)).join(' | ')} |`;
  process.stdout.write(
    `\n### ${title}\n\n${line(cols)}\n|${w.map((x) => '-'.repeat(x + 2)).join('|')}|\n${cells.map(line).join('\n')}\n`,
  );
}

/** runs `fn` for `count` operations with `concurrency` in flight, bounded by `maxMs`; latencies in ms */
export async function load(count: number, concurrency: number, fn: (i: number) => Promise<unknown>, maxMs = 60_000) {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const deadline = t0 + maxMs;
  async function worker() {
    while (next < count && performance.now() < deadline) {
      const i = next++;
      const s = performance.now();
      await fn(i);
      lat.push(performance.now() - s);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return summarize(lat, performance.now() - t0);
}

/**
 * CPU time the main thread has run, in ns (Linux /proc/<pid>/task/<pid>/schedstat, first field), or null elsewhere.
 * The server of an in-process bench runs on the main thread and its load generator in a worker: this counts the
 * server alone, and unlike rates or event-loop utilisation it does not grow when other processes take the CPU.
 */
export function mainThreadCpuNs(): number | null {
  try {
    return Number(readFileSync(`/proc/${process.pid}/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return null;
  }
}
