/**
 * When STUN asks: at start, every `interval` seconds, and at once when the WAN address changes. One check at a
 * time; a request for another while one runs makes one more run after it (a burst of WAN changes is one re-check).
 */
import type { Logger } from 'pino';
import type { StunClient } from './stun-client.js';
import type { WanStatus } from './wan-status.js';

export interface StunChecks {
  /** check now (or right after the running check) */
  recheck(why: string): Promise<void>;
  stop(): void;
}

export function startStunChecks(opts: {
  readonly client: StunClient;
  readonly status: WanStatus;
  readonly intervalSeconds: number;
  readonly log: Logger;
}): StunChecks {
  const log = opts.log.child({ component: 'stun' });
  let running: Promise<void> | null = null;
  let again: string | null = null;
  let stopped = false;

  async function run(why: string): Promise<void> {
    const o = await opts.client.check();
    if (stopped) return;
    if (o.ok) {
      log.debug(
        { why, server: o.server, address: o.mapped.address, port: o.mapped.port, rttMs: o.rttMs },
        'STUN check',
      );
      opts.status.stunLearned({ server: o.server, address: o.mapped.address, port: o.mapped.port });
    } else {
      log.warn({ why, err: o.error }, 'STUN check learned no public address');
      opts.status.stunFailed(o.error);
    }
  }

  function recheck(why: string): Promise<void> {
    if (stopped) return Promise.resolve();
    if (running) {
      again = why;
      return running;
    }
    running = run(why)
      .catch((e) => log.error({ err: (e as Error).message }, 'STUN check failed'))
      .finally(() => {
        running = null;
        if (again !== null && !stopped) {
          const next = again;
          again = null;
          void recheck(next);
        }
      });
    return running;
  }

  const timer = setInterval(() => void recheck('interval'), opts.intervalSeconds * 1000);
  timer.unref();
  void recheck('start');
  return {
    recheck,
    stop() {
      stopped = true;
      clearInterval(timer);
      opts.client.close();
    },
  };
}
