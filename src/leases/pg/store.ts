/**
 * The lease rows on PostgreSQL through node-postgres (issue 18 item 2, first step): a pool opened from
 * `database.url`, the migrations of ./migrations.ts, and the statements of the lease rows (insert, renew, end,
 * by id, active list, history events) and of the meta table, all async.
 *
 * Not wired into portd yet: the writer (../writer.ts) runs a tick synchronously on better-sqlite3. How a tick
 * maps to one PostgreSQL transaction here (`transaction`, `job`) is set out in docs/development.md, "Storage
 * backends".
 */
import pg from 'pg';
import { ErrorCode, PortdError } from '../../errors.js';
import { type LeaseRow, rowToLease } from '../store.js';
import type { Lease } from '../types.js';
import { PG_MIGRATIONS } from './migrations.js';

export interface PostgresStoreOptions {
  /** a node-postgres connection string (`postgresql://user:pass@host:5432/db`, or a socket dir as `%2Frun%2F…`) */
  readonly url: string;
  /** connections in the pool (default 4: the writer holds one per tick, readers the rest) */
  readonly poolSize?: number;
  /** where the store reports trouble it survives (an idle connection dropped by the server) */
  readonly onWarning?: (message: string) => void;
}

/** the columns a grant writes (as ../store.ts `s.insert` takes them); state is 'active' */
export type LeaseInsert = Omit<
  LeaseRow,
  'state' | 'ended_at' | 'end_reason' | 'renew_count' | 'renewed_at' | 'renewed_by'
>;

/** what a renewal changes (as ../store.ts `s.renew` takes it) */
export interface LeaseRenew {
  readonly id: string;
  readonly updated_at: number;
  readonly expires_at: number | null;
  readonly requested_lifetime: number | null;
  readonly description: string;
  readonly nonce: string | null;
  readonly internal_port: number;
  readonly remote_address: string | null;
  readonly remote_prefix: number | null;
  readonly remote_port: number | null;
  readonly actor: string | null;
}

/** a pool or one checked-out client: both run a query */
interface Queryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

const INT8_OID = 20;
// epoch ms and counts come back as int8, which node-postgres gives as strings; they fit a double exactly
export const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary'
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** one advisory lock key for "migrating the portd schema": two nodes starting together migrate one at a time */
const MIGRATION_LOCK = 0x706f7274; // 'port'

/** the URL without its password, for messages */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable database.url)';
  }
}

function statements(q: Queryable) {
  return {
    async insertLease(r: LeaseInsert): Promise<void> {
      await q.query(
        `INSERT INTO leases (id, source, protocol, external_address, external_port, external_port_end,
         internal_address, internal_port, remote_address, remote_prefix, remote_port, owner, description, nonce,
         created_at, updated_at, expires_at, requested_lifetime, read_only, rule, state, family)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
         'active', $21)`,
        [
          r.id,
          r.source,
          r.protocol,
          r.external_address,
          r.external_port,
          r.external_port_end,
          r.internal_address,
          r.internal_port,
          r.remote_address,
          r.remote_prefix,
          r.remote_port,
          r.owner,
          r.description,
          r.nonce,
          r.created_at,
          r.updated_at,
          r.expires_at,
          r.requested_lifetime,
          r.read_only,
          r.rule,
          r.family,
        ],
      );
    },
    /** true when the lease was there to renew */
    async renewLease(p: LeaseRenew): Promise<boolean> {
      const res = await q.query(
        `UPDATE leases SET updated_at = $2, expires_at = $3, requested_lifetime = $4, description = $5, nonce = $6,
         internal_port = $7, remote_address = $8, remote_prefix = $9, remote_port = $10,
         renew_count = renew_count + 1, renewed_at = $2, renewed_by = $11
         WHERE id = $1`,
        [
          p.id,
          p.updated_at,
          p.expires_at,
          p.requested_lifetime,
          p.description,
          p.nonce,
          p.internal_port,
          p.remote_address,
          p.remote_prefix,
          p.remote_port,
          p.actor,
        ],
      );
      return res.rowCount === 1;
    },
    /** true when an active lease ended (false: unknown or ended already) */
    async endLease(p: { id: string; at: number; reason: string }): Promise<boolean> {
      const res = await q.query(
        `UPDATE leases SET state = 'ended', ended_at = $2, end_reason = $3, updated_at = $2
         WHERE id = $1 AND state = 'active'`,
        [p.id, p.at, p.reason],
      );
      return res.rowCount === 1;
    },
    async addEvent(leaseId: string, type: string, at: number, actor: string | null, reason: string | null) {
      await q.query(`INSERT INTO events (lease_id, type, at, actor, reason) VALUES ($1, $2, $3, $4, $5)`, [
        leaseId,
        type,
        at,
        actor,
        reason,
      ]);
    },
    async lease(id: string): Promise<Lease | null> {
      const res = await q.query<LeaseRow>(`SELECT * FROM leases WHERE id = $1`, [id]);
      return res.rows[0] ? rowToLease(res.rows[0]) : null;
    },
    /** active leases in creation order (index leases_active_created), a page after (createdAt, id) */
    async listActive(opts: { limit: number; after?: { createdAt: number; id: string } }): Promise<Lease[]> {
      const res = opts.after
        ? await q.query<LeaseRow>(
            `SELECT * FROM leases WHERE state = 'active' AND (created_at, id) > ($1, $2)
             ORDER BY created_at, id LIMIT $3`,
            [opts.after.createdAt, opts.after.id, opts.limit],
          )
        : await q.query<LeaseRow>(`SELECT * FROM leases WHERE state = 'active' ORDER BY created_at, id LIMIT $1`, [
            opts.limit,
          ]);
      return res.rows.map(rowToLease);
    },
    async meta(key: string): Promise<string | null> {
      const res = await q.query<{ value: string }>(`SELECT value FROM meta WHERE key = $1`, [key]);
      return res.rows[0]?.value ?? null;
    },
    async setMeta(key: string, value: string): Promise<void> {
      await q.query(
        `INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
        [key, value],
      );
    },
  };
}
export type PostgresStatements = ReturnType<typeof statements>;

/** the statements on one transaction's connection, and a savepoint per job as the writer takes them */
export interface PostgresTx extends PostgresStatements {
  /** runs fn behind `SAVEPOINT job`: when it throws, only its writes are taken back, and it rethrows */
  job<T>(fn: () => Promise<T>): Promise<T>;
}

/**
 * Takes back the open transaction; the error when even that failed (the connection is lost), which the caller
 * hands to `release` so the pool drops that client instead of lending it out again
 */
async function rollback(c: pg.PoolClient): Promise<Error | undefined> {
  try {
    await c.query('ROLLBACK');
    return undefined;
  } catch (e) {
    return e as Error;
  }
}

/**
 * A client out of the pool with an error listener for as long as it is out: a connection the server ends
 * between two statements (an administrator, a failover) emits `error` on the client, and with no listener
 * that would end the process. The error is kept and makes `done` drop the client.
 */
async function checkout(pool: pg.Pool, warn: (m: string) => void) {
  const c = await pool.connect();
  let lost: Error | undefined;
  const onError = (e: Error) => {
    if (lost) return; // the socket's reset after the server's own message: said once
    lost = e;
    warn(`PostgreSQL connection lost in a transaction: ${e.message}`);
  };
  c.on('error', onError);
  return {
    c,
    /** back to the pool, or dropped when it failed (`broken`, or lost while out) */
    done(broken?: Error) {
      c.off('error', onError);
      c.release(broken ?? lost);
    },
  };
}

/** applies the migrations not yet applied, in one transaction, under the migration lock; returns the version */
async function migrate(pool: pg.Pool, url: string, warn: (m: string) => void): Promise<number> {
  const { c, done } = await checkout(pool, warn);
  let broken: Error | undefined;
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query(`CREATE TABLE IF NOT EXISTS schema_version (
      one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one), version INTEGER NOT NULL)`);
    await c.query('INSERT INTO schema_version (version) VALUES (0) ON CONFLICT (one) DO NOTHING');
    const version = (await c.query<{ version: number }>('SELECT version FROM schema_version')).rows[0]!.version;
    if (version > PG_MIGRATIONS.length) {
      throw new PortdError(
        ErrorCode.DATABASE_SCHEMA,
        `database ${redactUrl(url)} has schema version ${version}, newer than this portd knows ` +
          `(${PG_MIGRATIONS.length})`,
        'upgrade portd or point database.url at another database',
      );
    }
    // PostgreSQL's DDL is transactional: a migration that fails leaves the schema as it was
    for (let v = version; v < PG_MIGRATIONS.length; v++) await c.query(PG_MIGRATIONS[v]!);
    await c.query('UPDATE schema_version SET version = $1', [PG_MIGRATIONS.length]);
    await c.query('COMMIT');
    return PG_MIGRATIONS.length;
  } catch (e) {
    broken = await rollback(c);
    throw e;
  } finally {
    done(broken);
  }
}

export async function openPostgresStore(opts: PostgresStoreOptions) {
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.poolSize ?? 4, types });
  // an idle connection the server drops emits here; unhandled, it would end the process
  const warn = (m: string) => opts.onWarning?.(m);
  pool.on('error', (e) => warn(`PostgreSQL connection lost: ${e.message}`));
  let schemaVersion: number;
  try {
    schemaVersion = await migrate(pool, opts.url, warn);
  } catch (e) {
    await pool.end().catch(() => {});
    if (e instanceof PortdError) throw e;
    throw new PortdError(
      ErrorCode.DATABASE_OPEN,
      `cannot open database ${redactUrl(opts.url)}: ${(e as Error).message}`,
      'check database.url, that the server runs, and the user may create tables in that database',
    );
  }
  return {
    ...statements(pool),
    schemaVersion,
    /** one statement on a pooled connection (autocommit unless inside `transaction`): the image's flush */
    query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
      return pool.query<R>(text, values);
    },
    /**
     * One transaction on one connection: fn's statements all commit, or (it threw) none does. This is the
     * shape of a writer tick: `BEGIN`, a `job` per queued job, `COMMIT` — one connection, one round trip per
     * statement; the commit is the tick's one durable wait.
     */
    async transaction<T>(fn: (tx: PostgresTx) => Promise<T>): Promise<T> {
      const { c, done } = await checkout(pool, warn);
      let broken: Error | undefined;
      try {
        await c.query('BEGIN');
        const tx: PostgresTx = {
          ...statements(c),
          async job<J>(run: () => Promise<J>): Promise<J> {
            await c.query('SAVEPOINT job');
            try {
              const out = await run();
              await c.query('RELEASE SAVEPOINT job');
              return out;
            } catch (e) {
              await c.query('ROLLBACK TO SAVEPOINT job');
              throw e;
            }
          },
        };
        const out = await fn(tx);
        await c.query('COMMIT');
        return out;
      } catch (e) {
        broken = await rollback(c);
        throw e;
      } finally {
        done(broken);
      }
    },
    async close(): Promise<void> {
      await pool.end();
    },
  };
}
export type PostgresStore = Awaited<ReturnType<typeof openPostgresStore>>;
