/**
 * Wall-clock steps. portd time runs on the monotonic clock. When the wall clock *steps* (NTP after boot on a
 * router with no clock chip), rows written in this run's frame are moved onto the wall clock with the clock
 * itself, so no remaining lifetime changes; rows from before a restart are in the true frame already and stay.
 * A wall clock that is merely behind at start (no step yet) changes nothing: portd then starts from the last
 * time it saw (meta `clock.lastSeen`, the clock mark), never before it.
 *
 * The mark and the re-base are writer jobs (writer.ts), run between ticks: no tick can roll them back, and
 * the clock moves only after the commit.
 */
import type { Logger } from 'pino';
import type { MetaStore } from './meta-store.js';
import type { Writer } from './writer.js';

export const CLOCK_META = 'clock.lastSeen';

export interface ClockRebaseOptions {
  readonly clock: { now(): number; wall(): number; rebase?(deltaMs: number): void };
  readonly log: Logger;
  readonly meta: MetaStore;
  readonly writer: Pick<Writer, 'exclusive' | 'closed'>;
  /**
   * in one transaction: active rows written since `since` move by `shift` ms, and the clock mark becomes `mark`
   * (runs inside the writer's exclusive job)
   */
  readonly rebaseRows: (shift: number, since: number, mark: number) => void;
  /** after a step was written and the clock moved: expiry timer and kernel timeouts follow */
  readonly afterStep: () => Promise<void>;
}

/** at creation: a clock behind the mark starts from the mark; returns the periodic check */
export function createClockRebase(opts: ClockRebaseOptions) {
  const { clock, log, meta, writer } = opts;
  let runStart = clock.now();
  {
    const lastSeen = Number(meta.get(CLOCK_META) ?? NaN);
    if (clock.rebase && Number.isFinite(lastSeen) && lastSeen - clock.now() > 2000) {
      const behind = lastSeen - clock.now();
      clock.rebase(behind);
      runStart = clock.now();
      log.warn(
        { behindMs: behind },
        'wall clock is behind the last time portd ran; lease times start from then until the clock is set',
      );
    }
  }
  let lastOffset = clock.wall() - clock.now();
  return async function checkWallClock(): Promise<number> {
    if (!clock.rebase) return 0;
    const offset = clock.wall() - clock.now();
    const stepped = Math.abs(offset - lastOffset) >= 2000;
    lastOffset = offset;
    if (!stepped || Math.abs(offset) < 2000) {
      // remember how far time has come, so a restart with a clock behind never goes back before it
      await meta.set(CLOCK_META, String(clock.now())).catch((e) => {
        // closed: nothing to mark (as any job after close)
        if (!writer.closed()) log.error({ job: 'clock-mark', err: (e as Error).message }, 'exclusive job failed');
      });
      return 0;
    }
    const shift = offset;
    const moved = await writer.exclusive(
      'wall-clock',
      async () => {
        // inside the writer, between ticks: no tick can roll this back, and the clock moves only after the commit
        opts.rebaseRows(shift, runStart, clock.now() + shift);
        clock.rebase!(shift);
        runStart += shift;
        lastOffset = clock.wall() - clock.now();
        return shift;
      },
      () => 0,
    );
    if (moved === 0) return 0;
    log.warn({ stepMs: shift }, 'wall clock stepped; lease times re-based, lifetimes unchanged');
    await opts.afterStep();
    return shift;
  };
}
