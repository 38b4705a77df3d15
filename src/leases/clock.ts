/**
 * Time for the lease core. `now()` is portd time in epoch ms: the wall clock read once at start,
 * then advanced by the monotonic clock, so an NTP jump while running neither expires nor extends
 * leases. `wall()` is the raw wall clock, used only to notice a jump and re-base stored times.
 */
export interface Clock {
  now(): number;
  wall(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export function createSystemClock(): Clock & { rebase(deltaMs: number): void } {
  let base = Date.now() - performance.now();
  return {
    now: () => Math.floor(base + performance.now()),
    wall: () => Date.now(),
    setTimeout: (fn, ms) => {
      const t = setTimeout(fn, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
      t.unref?.();
      return t;
    },
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
    rebase(deltaMs: number) {
      base += deltaMs;
    },
  };
}

/** A clock for tests: time moves only when told; timers fire on advance(). */
export function createFixedClock(start = Date.UTC(2026, 0, 1)) {
  let t = start;
  let wallOffset = 0;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const clock = {
    now: () => t,
    wall: () => t + wallOffset,
    setTimeout(fn: () => void, ms: number) {
      const id = ++seq;
      timers.set(id, { at: t + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(h: unknown) {
      timers.delete(h as number);
    },
    /** move time forward and fire due timers in order */
    advance(ms: number) {
      const target = t + ms;
      for (;;) {
        let next: [number, { at: number; fn: () => void }] | undefined;
        for (const e of timers) if (e[1].at <= target && (!next || e[1].at < next[1].at)) next = e;
        if (!next) break;
        timers.delete(next[0]);
        t = Math.max(t, next[1].at);
        next[1].fn();
      }
      t = target;
    },
    /** simulate an NTP step of the wall clock without monotonic time passing */
    jumpWall(ms: number) {
      wallOffset += ms;
    },
    rebase(deltaMs: number) {
      t += deltaMs;
      wallOffset -= deltaMs;
    },
    pendingTimers: () => timers.size,
  };
  return clock;
}
export type FixedClock = ReturnType<typeof createFixedClock>;
