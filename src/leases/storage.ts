/**
 * The storage behind the lease table (issue 18 item 2): one interface, two backends.
 *
 * - **SQLite** (`./store.ts`, `openStore`, the embedded default): the statements run on better-sqlite3 and a
 *   tick's commit is the durable write, exactly as before this interface existed (no extra call per statement).
 * - **PostgreSQL** (`./pg/storage.ts`, `openPostgresStorage`): the same statements run on a local SQLite image
 *   of the PostgreSQL tables (loaded from PostgreSQL at start, on a tmpfs file, not durable by itself), and the
 *   commit sends what the transaction changed — the changed rows, found by their keys — to PostgreSQL as one
 *   set-based statement per tick. PostgreSQL's commit is the durable write; the image's commit follows it.
 *
 * Why this shape (docs/development.md "Storage backends" says it at length): a job's outcome is decided from
 * memory, never from a read that waits inside a tick, so the writer's jobs stay synchronous and every part keeps
 * its statements (table.ts, expiry, prune, reconcile, static sync, clock rebase, the trigger, meta and upstream
 * stores); the PostgreSQL write is derived from row images rather than written a second time per statement, so
 * the two backends cannot drift apart statement by statement; a tick is one round trip to PostgreSQL.
 */
import type Database from 'better-sqlite3';
import type { Store } from './store.js';
import type { HistoryEntry } from './types.js';

/**
 * The writer's transaction control (writer.ts `WriterTx`): `commit` may return a promise (PostgreSQL: the
 * tick's rows go out and commit there first), which the writer awaits; the others are synchronous.
 */
export interface StorageTx {
  // mutable: the fault tests wrap them (a commit that fails as on a full disk)
  begin: { run(...args: unknown[]): unknown };
  commit: { run(...args: unknown[]): unknown };
  rollback: { run(...args: unknown[]): unknown };
  savepoint: { run(...args: unknown[]): unknown };
  release: { run(...args: unknown[]): unknown };
  rollbackTo: { run(...args: unknown[]): unknown };
}

export interface LeaseStorage {
  /** which backend holds the durable rows */
  readonly driver: 'sqlite' | 'postgres';
  /** the connection every write runs on (the writer's); on PostgreSQL the local image */
  readonly db: Database.Database;
  /** committed state only (a second connection under WAL), for listings and reads outside the writer */
  readonly reader: Database.Database;
  /** the lease table's prepared statements (store.ts `s`; table.ts checks that `openStore` gives this interface) */
  readonly s: Store['s'];
  /** reads on `reader` (store.ts `r`) */
  readonly r: Store['r'];
  readonly tx: StorageTx;
  /**
   * fn in a transaction of its own (the writer's `between`): its writes are durable when the returned function's
   * result (a promise on PostgreSQL) settles
   */
  transaction<T>(fn: () => T): () => T | Promise<T>;
  /**
   * writes made outside a transaction (an exclusive job's autocommits: the clock rebase, a new external address)
   * reach the durable store; the writer calls it after every exclusive job. A no-op on SQLite.
   */
  settle(): Promise<void>;
  history(id: string): HistoryEntry[];
  meta(key: string): string | null;
  setMeta(key: string, value: string): void;
  /** the WAL checkpointer's worker (SQLite only) */
  readonly checkpointer: { running(): boolean; starts(): number } | null;
  close(): Promise<void>;
}
