/**
 * Expiry: one timer at the earliest `expiresAt` of the active rows. When it fires, the due leases are ended
 * in batches, each batch a job of the writer (writer.ts), with waiting requests let through between batches.
 * A batch the database refuses is retried with back-off (the kernel closes the ports on its own meanwhile:
 * element timeouts).
 */
import type { Logger } from 'pino';
import type { JobOutcome, Writer } from './writer.js';

export interface ExpiryOptions {
  readonly clock: {
    now(): number;
    setTimeout(fn: () => void, ms: number): unknown;
    clearTimeout(t: unknown): void;
  };
  readonly log: Logger;
  readonly writer: Pick<Writer, 'submit' | 'queued' | 'closed'>;
  /** the earliest expiresAt of an active row, or null */
  readonly nextExpiry: () => number | null;
  /** the job that ends at most `limit` due leases; its result is how many */
  readonly expire: (limit: number) => JobOutcome<number>;
  /** at most this many leases expire per writer tick, so requests keep flowing during an expiry burst */
  readonly batch: number;
}

export function createExpiry(opts: ExpiryOptions) {
  const { clock, log, writer, nextExpiry, expire } = opts;
  const expiryBatch = opts.batch;
  let expiryTimer: unknown = null;
  let expiryAt: number | null = null;
  /** after an expiry the database refused: not again before this (portd ms), doubling up to 30 s */
  let expiryRetryAt = 0;
  let expiryBackoffMs = 0;
  /** the expiry loop in progress: one at a time, so a burst goes one batch per tick with requests between */
  let expiring: Promise<number> | null = null;
  /**
   * Can the expiry timer stay as it is after these outcomes? Yes when it is armed and every change was a grant
   * or renewal expiring no earlier than it: the earliest expiry can only have moved later (a renewal of the
   * earliest lease), and then the timer fires early, finds nothing due and is set again from the table. Saves
   * the next-expiry query after nearly every tick of new mappings.
   */
  function expiryUnchanged(outcomes: readonly JobOutcome<unknown>[]): boolean {
    if (expiryTimer === null || expiryAt === null || expiring) return false;
    for (const o of outcomes) {
      if (o.remove.length > 0) return false;
      for (const e of o.events) {
        if (e.type !== 'granted' && e.type !== 'renewed') return false;
        const t = e.lease?.expiresAt;
        if (t === null || t === undefined) continue;
        if (t < expiryAt) return false;
      }
    }
    return true;
  }
  function scheduleExpiry(): void {
    if (writer.closed()) return;
    if (expiring) return; // the loop re-arms the timer when it is done
    let next = nextExpiry();
    if (next !== null && next < expiryRetryAt) next = expiryRetryAt;
    if (next === expiryAt && expiryTimer !== null) return;
    if (expiryTimer !== null) clock.clearTimeout(expiryTimer);
    expiryTimer = null;
    expiryAt = next;
    if (next === null) return;
    expiryTimer = clock.setTimeout(
      () => {
        expiryTimer = null;
        expiryAt = null;
        void expireDue();
      },
      Math.max(0, next - clock.now()),
    );
  }
  function expireDue(): Promise<number> {
    expiring ??= expireLoop().finally(() => {
      expiring = null;
      scheduleExpiry();
    });
    return expiring;
  }
  const noop = (): JobOutcome<number> => ({ result: 0, add: [], remove: [], events: [] });
  async function expireLoop(): Promise<number> {
    let total = 0;
    for (;;) {
      // requests that queued during the last batch go first, in a tick without one (an empty job marks
      // when they are through), so none waits for more than the batch that was running when it came; and
      // while requests keep coming the batches are small (a tick of ≈ 10–20 ms instead of 40–100 at 100k)
      const busy = total > 0 && writer.queued() > 0;
      if (busy) await writer.submit('expire-yield', noop, () => 0);
      const limit = busy ? Math.min(expiryBatch, 64) : expiryBatch;
      const n = await writer.submit(
        'expire',
        () => expire(limit),
        () => -1,
      );
      if (n < 0) {
        // the database refused (disk full, not writable): the kernel closes the ports on its own (element
        // timeouts); retry with back-off instead of spinning on the same overdue lease
        expiryBackoffMs = Math.min(30_000, Math.max(1000, expiryBackoffMs * 2));
        expiryRetryAt = clock.now() + expiryBackoffMs;
        log.warn({ retryInMs: expiryBackoffMs }, 'expiry could not be written; retrying later');
        break;
      }
      expiryBackoffMs = 0;
      expiryRetryAt = 0;
      total += n;
      if (n < limit) break;
    }
    return total;
  }
  function clearTimer(): void {
    if (expiryTimer !== null) clock.clearTimeout(expiryTimer);
    expiryTimer = null;
  }

  return {
    schedule: scheduleExpiry,
    expireDue,
    /** after a committed tick: the timer is set again unless the tick cannot have moved the earliest expiry */
    afterCommit(ok: readonly JobOutcome<unknown>[]): void {
      let rearm = !expiryUnchanged(ok);
      // a write went through: the database takes writes again, so a held-back expiry need not wait out its back-off
      if (expiryRetryAt > 0 && ok.some((o) => o.events.length > 0)) {
        expiryRetryAt = 0;
        expiryBackoffMs = 0;
        rearm = true;
      }
      if (rearm) scheduleExpiry();
    },
    /** the clock moved under the timer (a wall-clock step): set it again from the table */
    reset(): void {
      clearTimer();
      expiryAt = null;
      scheduleExpiry();
    },
    stop: clearTimer,
  };
}
export type Expiry = ReturnType<typeof createExpiry>;
