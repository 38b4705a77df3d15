/**
 * Which side of the HA pair this node is on, following keepalived (issue 18 item 3). keepalived decides
 * (VRRP, not a home-made election); portd follows its state and the database fence keeps it honest:
 *
 *   keepalived MASTER  → active:  stop the follower, take the fence (a new generation), start the active side
 *                                  (the writer guarded by that generation, the front-ends, PCP with a new epoch
 *                                  and ANNOUNCE) — `activate(token)`
 *   keepalived BACKUP  → standby: stop the active side (front-ends stop answering, the writer stops), follow
 *   FAULT / STOP       → fault:   as standby (the follower keeps the kernel in step for when it comes back)
 *   writer fenced      → standby, whatever keepalived says: another node holds a newer generation
 *
 * Transitions run one at a time; a state that arrives during one is kept and applied after it (only the latest
 * counts). Until keepalived has said anything the node is a standby: it never writes on a guess.
 */
import type { Logger } from 'pino';
import type { VrrpState } from './keepalived.js';

export type HaRole = 'standby' | 'active' | 'fault';

export interface ActiveSide {
  /** stops answering and writing; resolves when nothing of the active side runs */
  stop(): Promise<void>;
}

export interface HaRoleOptions {
  readonly follower: { start(): void; stop(): Promise<void> };
  /** raises the fence's generation and returns it (src/ha/fence.ts `take`) */
  readonly takeFence: () => Promise<number>;
  /** starts the active side with that generation as the writer's token */
  readonly activate: (token: number) => Promise<ActiveSide>;
  readonly log: Logger;
  /** wait before trying the takeover again while keepalived still says MASTER (default 500 ms) */
  readonly retryMs?: number;
  /** told after every completed transition (metrics, the admin API, tests) */
  readonly onRole?: (role: HaRole, token: number | null) => void;
}

const roleOf = (s: VrrpState): HaRole => (s === 'MASTER' ? 'active' : s === 'BACKUP' ? 'standby' : 'fault');

export function createHaRole(opts: HaRoleOptions) {
  const log = opts.log;
  let role: HaRole = 'standby';
  let token: number | null = null;
  let side: ActiveSide | null = null;
  let wanted: HaRole = 'standby';
  let running: Promise<void> | null = null;
  let retry: NodeJS.Timeout | null = null;
  let stopped = false;

  async function toActive(): Promise<void> {
    await opts.follower.stop();
    try {
      const t = await opts.takeFence();
      side = await opts.activate(t);
      token = t;
      role = 'active';
      log.info({ generation: t }, 'ha: active (keepalived MASTER): took the writer fence');
    } catch (e) {
      log.error({ err: (e as Error).message }, 'ha: could not become active; following as the standby meanwhile');
      side = null;
      opts.follower.start();
      if (!stopped) retry = setTimeout(() => settle(), opts.retryMs ?? 500);
    }
  }

  async function toPassive(next: HaRole): Promise<void> {
    if (side) {
      const s = side;
      side = null;
      token = null;
      await s.stop();
      opts.follower.start();
    }
    role = next;
    log.info({ role: next }, `ha: ${next} (following the shared table)`);
  }

  function settle(): void {
    retry = null;
    if (running || stopped) return;
    running = (async () => {
      while (!stopped && (wanted !== role || (wanted === 'active' && !side))) {
        if (wanted === 'active') {
          await toActive();
          if (!side) break; // retried by the timer
        } else await toPassive(wanted);
      }
      opts.onRole?.(role, token);
    })().finally(() => {
      running = null;
      if (!stopped && wanted !== role && !retry) settle();
    });
  }

  return {
    /** starts as the standby (the follower runs) until keepalived says otherwise */
    start(): void {
      opts.follower.start();
      opts.onRole?.(role, null);
    },
    /** keepalived's state for our instance (src/ha/keepalived.ts) */
    vrrp(state: VrrpState): void {
      wanted = roleOf(state);
      log.info({ vrrp: state }, 'ha: keepalived state');
      settle();
    },
    /** the writer's guard refused our generation: someone else writes now */
    fenced(): void {
      if (role !== 'active') return;
      log.error(
        { generation: token },
        'ha: fenced — another node took the writer fence while keepalived still says MASTER here; standing by',
      );
      wanted = 'standby';
      settle();
    },
    role: () => role,
    token: () => token,
    /** resolves when no transition is running */
    async idle(): Promise<void> {
      while (running) await running;
    },
    async stop(): Promise<void> {
      stopped = true;
      if (retry) clearTimeout(retry);
      while (running) await running;
      if (side) await side.stop();
      side = null;
      await opts.follower.stop();
    },
  };
}
export type HaRoleController = ReturnType<typeof createHaRole>;
