/**
 * Bounded storage: ended leases by count (limits.maxEndedLeases) and age (policy.historyRetention), with their
 * history, and revocations by term and count. Keeps the count of ended rows and the oldest end among them
 * (the writer's view, recounted after every rollback), so whether a prune is due costs no query. Each batch is
 * a job of the writer (writer.ts), bounded, with requests between batches: a backlog (a database from before
 * the caps) never blocks one long tick.
 */
import type { Store } from './store.js';
import type { JobOutcome, Writer } from './writer.js';

export interface PrunerOptions {
  readonly s: Pick<
    Store['s'],
    'pruneRevocations' | 'countRevocations' | 'trimRevocations' | 'oldestEnded' | 'deleteEvents' | 'deleteLease'
  >;
  readonly prepare: (sql: string) => { get(): unknown };
  readonly clock: { now(): number };
  readonly writer: Pick<Writer, 'submit' | 'closing'>;
  /** ended leases kept; 0 = no limit */
  readonly maxEnded: number;
  /** ended leases older than this (ms) go; 0 = kept */
  readonly retentionMs: number;
  /** at most this many ended leases deleted per tick */
  readonly batch: number;
}

export function createPruner(opts: PrunerOptions) {
  const { s, clock, writer, maxEnded, retentionMs } = opts;
  const pruneBatch = opts.batch;
  let endedCount = 0;
  let oldestEndedAt: number | null = null;
  const countEndedRows = opts.prepare(`SELECT count(*) AS n, min(ended_at) AS t FROM leases WHERE state = 'ended'`);
  const oldestEndedRow = opts.prepare(`SELECT min(ended_at) AS t FROM leases WHERE state = 'ended'`);

  /** revocations past the cap (one per ended lease's remaining term at most): the ones ending first go */
  function trimRevocations(): void {
    if (maxEnded <= 0) return;
    const n = (s.countRevocations.get() as { n: number }).n;
    if (n > maxEnded) s.trimRevocations.run(n - maxEnded);
  }
  function pruneDue(now: number): boolean {
    if (maxEnded > 0 && endedCount > maxEnded) return true;
    return retentionMs > 0 && oldestEndedAt !== null && oldestEndedAt < now - retentionMs;
  }
  /**
   * One bounded batch, inside a writer tick: the oldest ended leases over limits.maxEndedLeases or past
   * policy.historyRetention, with their history. More batches follow in later ticks (schedule), with
   * requests between them, so a backlog (a database from before the caps) never blocks one long tick.
   */
  function doPrune(): JobOutcome<number> {
    const now = clock.now();
    const excess = maxEnded > 0 ? endedCount - maxEnded : 0;
    let n = 0;
    if (excess > 0 || pruneDue(now)) {
      for (const [id, endedAt] of s.oldestEnded.all(pruneBatch) as [string, number][]) {
        if (!(n < excess || (retentionMs > 0 && endedAt < now - retentionMs))) break;
        s.deleteEvents.run(id);
        n += s.deleteLease.run(id).changes;
      }
      endedCount -= n;
      oldestEndedAt = (oldestEndedRow.get() as { t: number | null }).t;
    }
    s.pruneRevocations.run(now);
    return { result: n, add: [], remove: [], events: [] };
  }
  let pruneQueued = false;
  /** after a commit: one prune batch queued when due (it rides in the next tick beside whatever requests come) */
  function schedulePrune(): void {
    if (pruneQueued || writer.closing() || !pruneDue(clock.now())) return;
    pruneQueued = true;
    void writer
      .submit('prune', doPrune, () => -1)
      .then((n) => {
        pruneQueued = false;
        if (n > 0) schedulePrune();
      });
  }

  return {
    /** from the rows (start, and after a rollback) */
    recount(): void {
      const e = countEndedRows.get() as { n: number; t: number | null };
      endedCount = e.n;
      oldestEndedAt = e.t;
    },
    /** a lease ended at `at` inside the running job */
    ended(at: number): void {
      endedCount++;
      if (oldestEndedAt === null || at < oldestEndedAt) oldestEndedAt = at;
    },
    endedCount: () => endedCount,
    trimRevocations,
    schedule: schedulePrune,
    /** batch after batch until none is due (or the writer closes) */
    async run(): Promise<number> {
      let total = 0;
      for (let i = 0; i < 100_000 && !writer.closing(); i++) {
        const n = await writer.submit('prune', doPrune, () => -1);
        if (n <= 0) break;
        total += n;
      }
      return total;
    },
  };
}
export type Pruner = ReturnType<typeof createPruner>;
