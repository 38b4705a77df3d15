/**
 * One node of an HA pair, composed (issue 18 item 3, docs/ha.md): keepalived's notify_fifo → the role
 * controller; the fence on a connection of its own for each takeover; the follower on its own LISTEN
 * connection while standby. What "active" means — the writer guarded by the token, the front-ends, the PCP
 * server with a fresh epoch — is the caller's `activate(token, guard)`; `src/main.ts` passes portd's, the lab
 * (test/lab/ha-node.ts) a stand-in writer.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import type { HaConfig } from '../config/types.js';
import type { Dataplane } from '../dataplane/types.js';
import { createFence, type Fence } from './fence.js';
import { createFollower, type Follower } from './follower.js';
import { watchNotifyFifo } from './keepalived.js';
import { type ActiveSide, createHaRole, type HaRole, type HaRoleController } from './role.js';

export interface HaNodeOptions {
  readonly ha: Pick<HaConfig, 'keepalived' | 'lockTimeout' | 'idleInTransactionTimeout'> & { readonly node: string };
  /** database.url */
  readonly url: string;
  readonly dataplane: Dataplane;
  readonly log: Logger;
  readonly now?: () => number;
  /** kernel grace seconds, as the lease table's */
  readonly grace?: number;
  /**
   * starts the active side: `fence` is there for the writer, which runs `fence.guard(tx, token)` first in every
   * transaction and calls `fenced()` of the returned node when that throws FencedError
   */
  readonly activate: (token: number, fence: Fence) => Promise<ActiveSide>;
  readonly onRole?: (role: HaRole, token: number | null) => void;
  /** follower reconnect delay (default 200 ms) */
  readonly retryMinMs?: number;
}

export interface HaNode {
  readonly role: HaRoleController;
  readonly follower: Follower;
  readonly fence: Fence;
  stop(): Promise<void>;
}

export function startHaNode(opts: HaNodeOptions): HaNode {
  const log = opts.log.child({ component: 'ha', node: opts.ha.node });
  const now = opts.now ?? Date.now;
  const client = () => {
    const c = new pg.Client({ connectionString: opts.url, application_name: `portd-ha-${opts.ha.node}` });
    // a connection the server ends emits here; the follower and the takeover see it through their own paths
    c.on('error', (e) => log.debug({ err: e.message }, 'ha: database connection error'));
    return c;
  };
  const fence = createFence({
    node: opts.ha.node,
    now,
    lockTimeoutMs: opts.ha.lockTimeout,
    idleInTransactionMs: opts.ha.idleInTransactionTimeout,
  });
  const follower = createFollower({
    client,
    dataplane: opts.dataplane,
    now,
    ...(opts.grace !== undefined ? { grace: opts.grace } : {}),
    log,
    retryMinMs: opts.retryMinMs ?? 200,
  });
  const role = createHaRole({
    log,
    follower,
    takeFence: async () => {
      const c = client();
      await c.connect();
      try {
        return await fence.take(c);
      } finally {
        await c.end().catch(() => {});
      }
    },
    activate: (token) => opts.activate(token, fence),
    ...(opts.onRole ? { onRole: opts.onRole } : {}),
  });
  role.start();
  const watcher = watchNotifyFifo({
    path: opts.ha.keepalived.fifo,
    instance: opts.ha.keepalived.instance,
    onState: (s) => role.vrrp(s),
    onError: (m) => log.warn(m),
  });
  return {
    role,
    follower,
    fence,
    async stop() {
      watcher.close();
      await role.stop();
    },
  };
}
