/**
 * The single-writer fence on PostgreSQL (issue 18 item 2): the counterpart of SQLite's lock file. A session-level
 * advisory lock held on a connection of its own for as long as portd writes; a second portd on the same database
 * finds it taken and refuses to start. The server drops the lock with the connection (portd killed, the link cut),
 * so a dead node never holds it.
 *
 * This is the fence of a single node (no `ha.enabled`): a second portd is refused at once. The HA pair does not take
 * it: there the fence is the generation of `ha_fence` (src/ha/fence.ts), carried by every flush of the lease table
 * (./storage.ts `generation`), because a session lock of a node whose links went down stays held until the server
 * notices the dead session, and says nothing inside that node's late statements (docs/ha.md, "One fence").
 */
import pg from 'pg';
import { ErrorCode, PortdError } from '../../errors.js';
import { redactUrl } from './store.js';

/** the two-int advisory lock key of the writer: 'port', 'writ' (the migration lock is a one-bigint key) */
export const WRITER_LOCK = [0x706f7274, 0x77726974] as const;

export interface Fence {
  /** the lock's key as pg_locks shows it (classid, objid; objsubid 2) */
  readonly key: readonly [number, number];
  /** false once the fence connection was lost (the lock went with it) */
  held(): boolean;
  release(): Promise<void>;
}

export interface FenceOptions {
  readonly url: string;
  /** the connection and its lock were lost: another node may take the lock now (stop writing) */
  readonly onLost?: (err: Error) => void;
  /** the key; default WRITER_LOCK (tests use their own) */
  readonly key?: readonly [number, number];
}

/** takes the writer lock or throws PORTD_DATABASE_LOCKED naming the holder; never waits */
export async function acquireFence(opts: FenceOptions): Promise<Fence> {
  const key = opts.key ?? WRITER_LOCK;
  const c = new pg.Client({ connectionString: opts.url, application_name: 'portd fence' });
  let lost = false;
  c.on('error', (e) => {
    if (lost) return;
    lost = true;
    opts.onLost?.(e);
  });
  try {
    await c.connect();
  } catch (e) {
    throw new PortdError(
      ErrorCode.DATABASE_OPEN,
      `cannot connect to ${redactUrl(opts.url)} for the writer lock: ${(e as Error).message}`,
      'check database.url and that the server runs',
    );
  }
  const got = (await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [key[0], key[1]])).rows[0]
    ?.ok;
  if (!got) {
    // who holds it, for the message: the pid and address of the other session
    const holder = (
      await c
        .query<{ pid: number; addr: string | null; app: string | null }>(
          `SELECT a.pid, a.client_addr::text AS addr, a.application_name AS app FROM pg_locks l
           JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted`,
          [key[0], key[1]],
        )
        .catch(() => ({ rows: [] }))
    ).rows[0];
    await c.end().catch(() => {});
    const who = holder
      ? `server pid ${holder.pid}${holder.addr ? ` from ${holder.addr}` : ' over a local socket'}`
      : 'another session';
    throw new PortdError(
      ErrorCode.DATABASE_LOCKED,
      `database ${redactUrl(opts.url)} is in use by another portd: advisory lock (${key[0]}, ${key[1]}) ` +
        `is held by ${who}`,
      'stop that portd first, or point database.url at another database; ' +
        `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = ${key[0]} AND objid = ${key[1]} names it`,
    );
  }
  return {
    key,
    held: () => !lost,
    async release() {
      if (lost) return;
      lost = true;
      await c.end().catch(() => {});
    },
  };
}
