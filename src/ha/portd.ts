/**
 * `portd start` with `ha.enabled` (issue 18 items 3-4, docs/ha.md): one node of the HA pair around portd's own
 * start-up (`startPortd` of src/main.ts, given to us so the wiring stays on top).
 *
 * - Standby (the start, keepalived BACKUP/FAULT, or fenced): the follower keeps this node's nftables table equal
 *   to the shared PostgreSQL table; no front-end listens, nothing writes, no admin API.
 * - keepalived MASTER: the follower stops, the fence is taken (a new generation), and `startActive` runs portd's
 *   usual start on a PostgreSQL storage whose every write carries that generation (src/leases/pg/storage.ts
 *   `generation`; no advisory lock: the generation is the one fence here). The image is loaded from the table,
 *   reconcile on start finds the kernel already holding every lease (the follower put them there: the dataplane
 *   is this node's one instance, shared and never re-initialised), and the front-ends open — PCP with a fresh
 *   epoch and its unsolicited ANNOUNCE series (RFC 6887 §8.5, §14.1.3; RFC 6886 §3.2.1).
 * - A write refused by the generation check (another node took the fence while keepalived still says MASTER here)
 *   fails like any failed commit (the image rolls back, the kernel batch is undone, the client gets an error) and
 *   tells the role controller, which stops the active side and follows again.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { Dataplane } from '../dataplane/types.js';
import type { LeaseStorage } from '../leases/storage.js';
import { FencedError } from './fence.js';
import { type HaNode, startHaNode } from './node.js';
import type { HaRole } from './role.js';

/** what this module needs of a running portd (src/main.ts Portd) */
export interface ActivePortd {
  close(): Promise<void>;
  reload(next: Config): Promise<void>;
}

export interface HaPortdOptions<P extends ActivePortd> {
  readonly config: Config;
  readonly log: Logger;
  /** this node's dataplane, initialised, with the external address set; closed by the caller */
  readonly dataplane: Dataplane;
  /** portd's start on the given storage and this dataplane (main.ts) */
  readonly startActive: (config: Config, storage: LeaseStorage) => Promise<P>;
  readonly onRole?: (role: HaRole, token: number | null) => void;
}

export interface HaPortd<P extends ActivePortd> {
  readonly node: HaNode;
  /** the running active side, null while standby */
  active(): P | null;
  reload(next: Config): Promise<void>;
  close(): Promise<void>;
}

export async function startHaPortd<P extends ActivePortd>(opts: HaPortdOptions<P>): Promise<HaPortd<P>> {
  const { log } = opts;
  const ha = opts.config.ha!;
  const url = opts.config.database.url ?? '';
  let current = opts.config;
  let active: P | null = null;
  const [{ openPostgresStorage }, { openPostgresStore }] = await Promise.all([
    import('../leases/pg/storage.js'),
    import('../leases/pg/store.js'),
  ]);
  // the schema first (under the migration lock: both nodes may start together), so the follower finds v2
  await (await openPostgresStore({ url, onWarning: (m) => log.warn(m) })).close();
  let node: HaNode | null = null;
  node = startHaNode({
    ha: { ...ha, node: ha.node ?? hostname() },
    url,
    dataplane: opts.dataplane,
    log,
    grace: opts.config.dataplane.grace,
    activate: async (token) => {
      const storage = await openPostgresStorage({
        url,
        fence: false,
        onWarning: (m) => log.warn({ component: 'database' }, m),
        generation: {
          token,
          fenced: (cur, holder) => {
            // out of the failing commit first: stepping down closes the table that is running it
            setImmediate(() => node?.role.fenced());
            return new FencedError(token, cur ?? -1, holder);
          },
        },
      });
      let p: P;
      try {
        p = await opts.startActive(current, storage);
      } catch (e) {
        await storage.close().catch(() => {});
        throw e;
      }
      active = p;
      return {
        async stop() {
          active = null;
          await p.close();
        },
      };
    },
    onRole: (role, token) => {
      log.info({ role, generation: token }, `ha: node is ${role}`);
      opts.onRole?.(role, token);
    },
  });
  return {
    node,
    active: () => active,
    async reload(next) {
      current = next;
      await active?.reload(next);
    },
    async close() {
      await node.stop();
    },
  };
}
