/**
 * The writers' fence of an HA pair (issue 18 item 3): two portd nodes share one PostgreSQL lease table and at
 * most one of them may write it, whatever keepalived believes during a partition.
 *
 * The fence is the one row of `ha_fence` (migration v2, src/leases/pg/migrations.ts), a generation number:
 * - `take()`: a node becoming active raises the generation by one in its own transaction and keeps the new value
 *   as its token. It needs nobody's cooperation: it waits only for a writer transaction in flight (below), and
 *   not longer than `lockTimeoutMs` per try.
 * - `guard(q, token)`: every writer transaction's first statement reads the generation `FOR SHARE` and throws
 *   `FencedError` when it is not the token. The share lock is held to that transaction's end.
 *
 * Why two writers never happen: the takeover's UPDATE needs the row exclusively, so it waits for every writer
 * transaction that has passed its guard; those commit before the new generation exists. A guard that runs after
 * the takeover committed reads the new generation (READ COMMITTED: a share lock waiting on an update re-reads
 * the updated row) and refuses. So every committed write of the old writer precedes the new generation, and none
 * follows it — the fencing token of a lease lock, with the database itself as the guarded resource. A partition
 * changes nothing: a writer cut off from the server commits nothing; its transaction left open on the server
 * (links down mid-tick) holds the share lock until the server ends that session (`idle_in_transaction_session_timeout`,
 * set on every session the guard runs on, and TCP keepalives), which bounds how long a takeover waits.
 * A writer that cannot reach the server never acknowledges a client (a client is answered after the commit), so
 * an unknown-outcome commit is not an acknowledged lease: if it committed the new writer sees it.
 */
import { ErrorCode, PortdError } from '../errors.js';

/** a pg.Pool, pg.Client or pg.PoolClient: anything that runs a query */
export interface Queryable {
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: R[]; rowCount: number | null }>;
}

/** a writer transaction of a node whose generation is no longer the fence's: roll it back, stop writing */
export class FencedError extends PortdError {
  constructor(
    readonly token: number,
    readonly current: number,
    readonly holder: string | null,
  ) {
    super(
      ErrorCode.HA_FENCED,
      `this node's writer generation ${token} is stale: the fence is at ${current} (held by ${holder ?? 'nobody'})`,
      'another node took over as the writer; this node follows as the standby (see docs/ha.md)',
    );
  }
}

export interface FenceOptions {
  /** the node's name as stored in ha_fence.holder (ha.node) */
  readonly node: string;
  /** the clock for `taken_at` (epoch ms) */
  readonly now: () => number;
  /** how long one takeover try waits for the row (a writer transaction in flight); default 2000 */
  readonly lockTimeoutMs?: number;
  /** how long the server lets a guarded session sit idle inside a transaction; default 2000 */
  readonly idleInTransactionMs?: number;
}

export interface FenceState {
  readonly generation: number;
  readonly holder: string | null;
  readonly takenAt: number | null;
}

export function createFence(opts: FenceOptions) {
  const lockTimeout = Math.max(1, Math.round(opts.lockTimeoutMs ?? 2000));
  const idle = Math.max(1, Math.round(opts.idleInTransactionMs ?? 2000));
  return {
    /** raises the generation; the new value is this node's token. `c` must not be inside a transaction. */
    async take(c: Queryable): Promise<number> {
      await c.query('BEGIN');
      try {
        await c.query(`SET LOCAL lock_timeout = ${lockTimeout}`);
        const res = await c.query<{ generation: number | string }>(
          `UPDATE ha_fence SET generation = generation + 1, holder = $1, taken_at = $2 RETURNING generation`,
          [opts.node, opts.now()],
        );
        await c.query('COMMIT');
        return Number(res.rows[0]!.generation);
      } catch (e) {
        await c.query('ROLLBACK').catch(() => {});
        throw e;
      }
    },
    /**
     * The first statement of every writer transaction (`c` inside BEGIN): throws FencedError when `token` is
     * stale; otherwise the share lock it takes holds off a takeover until this transaction ends.
     */
    async guard(c: Queryable, token: number): Promise<void> {
      await c.query(`SET LOCAL idle_in_transaction_session_timeout = ${idle}`);
      const res = await c.query<{ generation: number | string; holder: string | null }>(
        'SELECT generation, holder FROM ha_fence FOR SHARE',
      );
      const current = Number(res.rows[0]!.generation);
      if (current !== token) throw new FencedError(token, current, res.rows[0]!.holder);
    },
    async state(c: Queryable): Promise<FenceState> {
      const res = await c.query<{ generation: number | string; holder: string | null; taken_at: number | null }>(
        'SELECT generation, holder, taken_at FROM ha_fence',
      );
      const r = res.rows[0]!;
      return {
        generation: Number(r.generation),
        holder: r.holder,
        takenAt: r.taken_at === null ? null : Number(r.taken_at),
      };
    },
  };
}
export type Fence = ReturnType<typeof createFence>;
