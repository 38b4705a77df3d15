import Database from 'better-sqlite3';
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ErrorCode, PortdError } from '../errors.js';
import { PRIVATE_FILE, databaseFiles, ensurePrivateDir, tightenFile } from '../file-modes.js';
import type { LeaseSource } from '../common/net-types.js';
import type { EndReason, HistoryEntry, Lease, LeaseEventType } from './types.js';
import { createCheckpointer, type Checkpointer } from './checkpointer.js';

/** schema versions, applied in order; `PRAGMA user_version` records the last applied */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE leases (
     id TEXT PRIMARY KEY,
     source TEXT NOT NULL,
     protocol TEXT NOT NULL,
     external_address TEXT NOT NULL,
     external_port INTEGER NOT NULL,
     external_port_end INTEGER NOT NULL,
     internal_address TEXT NOT NULL,
     internal_port INTEGER NOT NULL,
     remote_address TEXT,
     remote_prefix INTEGER,
     remote_port INTEGER,
     owner TEXT NOT NULL,
     description TEXT NOT NULL DEFAULT '',
     nonce TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     expires_at INTEGER,
     requested_lifetime INTEGER,
     read_only INTEGER NOT NULL DEFAULT 0,
     rule TEXT,
     state TEXT NOT NULL,
     ended_at INTEGER,
     end_reason TEXT
   );
   CREATE INDEX leases_active_ext ON leases(protocol, external_port) WHERE state = 'active';
   CREATE INDEX leases_active_int ON leases(protocol, internal_address, internal_port) WHERE state = 'active';
   CREATE INDEX leases_active_expiry ON leases(expires_at) WHERE state = 'active' AND expires_at IS NOT NULL;
   CREATE INDEX leases_active_owner ON leases(owner) WHERE state = 'active';
   CREATE INDEX leases_ended ON leases(ended_at) WHERE state = 'ended';
   CREATE TABLE events (
     seq INTEGER PRIMARY KEY,
     lease_id TEXT NOT NULL,
     type TEXT NOT NULL,
     at INTEGER NOT NULL,
     actor TEXT,
     reason TEXT
   );
   CREATE INDEX events_lease ON events(lease_id);
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // 2: port-trigger rules created through the admin API (config-file rules live in the file), and
  // per-rule counters for every rule (src/triggers/store.ts)
  `CREATE TABLE trigger_rules (
     name TEXT PRIMARY KEY,
     spec TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     actor TEXT
   );
   CREATE TABLE trigger_stats (
     name TEXT PRIMARY KEY,
     fired INTEGER NOT NULL DEFAULT 0,
     renewed INTEGER NOT NULL DEFAULT 0,
     refused INTEGER NOT NULL DEFAULT 0,
     last_fired_at INTEGER,
     last_host TEXT,
     last_refusal TEXT
   );`,
  // 3: an admin revoke holds for the rest of the lease's term: the holder's next renewal (a new grant for
  // the same mapping, since the lease ended) is refused until then
  `CREATE TABLE revocations (
     protocol TEXT NOT NULL,
     owner TEXT NOT NULL,
     internal_address TEXT NOT NULL,
     internal_port INTEGER NOT NULL,
     external_port INTEGER NOT NULL,
     until INTEGER NOT NULL,
     lease_id TEXT NOT NULL
   );
   CREATE INDEX revocations_int ON revocations(protocol, internal_address, internal_port);
   CREATE INDEX revocations_ext ON revocations(protocol, owner, external_port);`,
  // 4: who holds an external port or an internal endpoint is answered from memory (src/leases/table.ts):
  // these indexes over random keys only made every grant and release dirty random pages
  `DROP INDEX leases_active_ext;
   DROP INDEX leases_active_int;
   DROP INDEX leases_active_owner;`,
  // 5: a lease an admin-defined opening replaced keeps its port from its holder for the rest of its term
  // (kind 'replaced'; 'revoked' rows refuse the whole mapping, 'replaced' ones only that external port)
  `ALTER TABLE revocations ADD COLUMN kind TEXT NOT NULL DEFAULT 'revoked';
   ALTER TABLE revocations ADD COLUMN replaced_by TEXT;
   ALTER TABLE revocations ADD COLUMN replaced_by_source TEXT;`,
  // 6: bounded storage. A renewal updates its lease (count, time, who) instead of adding a history row
  // (a client renewing every 20 s added 4,320 rows a day per mapping); the rows from before are folded
  // into the counts. Listing pages walk indexes in the order they are served (UPnP GetGenericPortMappingEntry
  // by source and creation, the admin API by creation per state); created_at grows with time, so these
  // append. Revocations past their term are pruned through an index on their end.
  `ALTER TABLE leases ADD COLUMN renew_count INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE leases ADD COLUMN renewed_at INTEGER;
   ALTER TABLE leases ADD COLUMN renewed_by TEXT;
   UPDATE leases SET
     renew_count = (SELECT count(*) FROM events e WHERE e.lease_id = leases.id AND e.type = 'renewed'),
     renewed_at = (SELECT max(e.at) FROM events e WHERE e.lease_id = leases.id AND e.type = 'renewed'),
     renewed_by = (SELECT e.actor FROM events e WHERE e.lease_id = leases.id AND e.type = 'renewed'
                   ORDER BY e.seq DESC LIMIT 1)
     WHERE id IN (SELECT lease_id FROM events WHERE type = 'renewed');
   DELETE FROM events WHERE type = 'renewed';
   CREATE INDEX leases_active_src ON leases(source, created_at, id) WHERE state = 'active';
   CREATE INDEX leases_active_created ON leases(created_at, id) WHERE state = 'active';
   CREATE INDEX leases_ended_created ON leases(created_at, id) WHERE state = 'ended';
   CREATE INDEX revocations_until ON revocations(until);`,
  // 7: an address family (issue 15): 4 = an IPv4 mapping with translation (every lease before), 6 = an IPv6
  // pinhole without. Ended leases stay in this table with their events, so the history keeps the family too.
  `ALTER TABLE leases ADD COLUMN family INTEGER NOT NULL DEFAULT 4;`,
  // 8: the upstream mapping of a lease when the gateway is behind another NAT (issue 16, src/upstream/):
  // one row per chained lease, gone with the lease's row when the history is pruned
  `CREATE TABLE upstream_mappings (
     lease_id TEXT PRIMARY KEY REFERENCES leases(id) ON DELETE CASCADE,
     state TEXT NOT NULL,
     protocol TEXT NOT NULL,
     server TEXT NOT NULL,
     external_address TEXT,
     external_port INTEGER,
     lifetime INTEGER,
     expires_at INTEGER,
     nonce TEXT,
     epoch INTEGER,
     detail TEXT,
     updated_at INTEGER NOT NULL
   );`,
];
export const SCHEMA_VERSION = MIGRATIONS.length;

export interface LeaseRow {
  id: string;
  source: string;
  protocol: string;
  external_address: string;
  external_port: number;
  external_port_end: number;
  internal_address: string;
  internal_port: number;
  remote_address: string | null;
  remote_prefix: number | null;
  remote_port: number | null;
  owner: string;
  description: string;
  nonce: string | null;
  created_at: number;
  updated_at: number;
  expires_at: number | null;
  requested_lifetime: number | null;
  read_only: number;
  rule: string | null;
  state: string;
  ended_at: number | null;
  end_reason: string | null;
  renew_count: number;
  renewed_at: number | null;
  renewed_by: string | null;
  family: number;
}

export function rowToLease(r: LeaseRow): Lease {
  return {
    family: r.family === 6 ? 6 : 4,
    id: r.id,
    source: r.source as LeaseSource,
    protocol: r.protocol as 'tcp' | 'udp',
    externalAddress: r.external_address,
    externalPort: r.external_port,
    externalPortEnd: r.external_port_end,
    internalAddress: r.internal_address,
    internalPort: r.internal_port,
    remoteAddress: r.remote_address,
    remotePrefix: r.remote_prefix,
    remotePort: r.remote_port,
    owner: r.owner,
    description: r.description,
    nonce: r.nonce,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    expiresAt: r.expires_at,
    requestedLifetime: r.requested_lifetime,
    readOnly: r.read_only === 1,
    rule: r.rule,
    state: r.state as 'active' | 'ended',
    endedAt: r.ended_at,
    endReason: r.end_reason as EndReason | null,
    renewCount: r.renew_count ?? 0,
    lastRenewedAt: r.renewed_at ?? null,
  };
}

export interface OpenStoreOptions {
  readonly path: string;
  /** 'off' only for PostgreSQL's local image (pg/storage.ts), whose durable copy is PostgreSQL's */
  readonly synchronous?: 'normal' | 'full' | 'off';
  /** no lock file (PostgreSQL's image: its fence is an advisory lock in PostgreSQL, pg/fence.ts) */
  readonly noLock?: boolean;
  /**
   * Checkpoint the WAL from a worker thread every this many ms (default 500; 4x as long while the WAL
   * was empty at the last look; 0 = SQLite's own automatic checkpoints, run inside whichever commit
   * crosses 1,000 pages, on the event loop). The worker runs only while the WAL holds something
   * (checkpointer.ts): from 1 MiB of WAL or 60 periods after the first write, until 20 quiet periods.
   */
  readonly checkpointIntervalMs?: number;
  /** where the store reports trouble it works around (the checkpointer failing) */
  readonly onWarning?: (message: string) => void;
  /** the checkpointer's worker went idle and exited (main.ts: the idle GC collects and trims what it left) */
  readonly onCheckpointerStopped?: () => void;
}

/** starts the checkpointer (checkpointer.ts); the store closes it first on close */
function startCheckpointer(db: Database.Database, opts: OpenStoreOptions): Checkpointer | null {
  const intervalMs = opts.checkpointIntervalMs ?? 500;
  if (opts.path === ':memory:' || intervalMs <= 0) return null;
  return createCheckpointer(db, {
    path: opts.path,
    intervalMs,
    synchronous: opts.synchronous === 'full' ? 'FULL' : 'NORMAL',
    warn: opts.onWarning ?? (() => {}),
    ...(opts.onCheckpointerStopped ? { onStopped: opts.onCheckpointerStopped } : {}),
  });
}

/** A lock file beside the database so two portd processes never share one table. */
function acquireLock(dbPath: string): () => void {
  if (dbPath === ':memory:') return () => {};
  const lockPath = `${dbPath}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(lockPath, 'utf8') === String(process.pid)) unlinkSync(lockPath);
        } catch {
          /* gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let pid = NaN;
      try {
        pid = Number(readFileSync(lockPath, 'utf8'));
      } catch {
        /* raced */
      }
      let alive = false;
      if (pid === process.pid) alive = true;
      else if (Number.isInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 0);
          alive = true;
        } catch (k) {
          alive = (k as NodeJS.ErrnoException).code === 'EPERM';
        }
      }
      if (alive) {
        throw new PortdError(
          ErrorCode.DATABASE_LOCKED,
          `database ${dbPath} is in use by another portd (pid ${pid})`,
          `stop that portd first, or point database.path at another file`,
        );
      }
      try {
        unlinkSync(lockPath);
      } catch {
        /* raced */
      } // stale lock from a killed portd
    }
  }
  throw new PortdError(
    ErrorCode.DATABASE_LOCKED,
    `could not lock ${dbPath}`,
    `remove ${lockPath} if no portd is running`,
  );
}

export function openStore(opts: OpenStoreOptions) {
  const modes = (m: string) => opts.onWarning?.(m);
  if (opts.path !== ':memory:') {
    try {
      ensurePrivateDir(dirname(opts.path), modes);
    } catch (e) {
      throw new PortdError(
        ErrorCode.DATABASE_OPEN,
        `cannot create the directory of ${opts.path}: ${(e as Error).message}`,
        'check database.path and permissions',
      );
    }
  }
  const unlock = opts.noLock ? () => {} : acquireLock(opts.path);
  let db: Database.Database;
  try {
    if (opts.path !== ':memory:') {
      // 0600 whatever the umask; SQLite gives the -wal and -shm it creates the database file's mode
      for (const f of databaseFiles(opts.path)) tightenFile(f, modes);
      closeSync(openSync(opts.path, 'a', PRIVATE_FILE));
    }
    db = new Database(opts.path);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : opts.synchronous === 'off' ? 'OFF' : 'NORMAL'}`);
    db.pragma('busy_timeout = 2000');
    // 100k leases with their indexes are ~40 MiB: keep them in the page cache so cost stays flat with size
    db.pragma('cache_size = -65536');
    db.pragma('temp_store = MEMORY');
    db.pragma('foreign_keys = ON');
  } catch (e) {
    unlock();
    throw new PortdError(
      ErrorCode.DATABASE_OPEN,
      `cannot open database ${opts.path}: ${(e as Error).message}`,
      'check database.path, permissions and free space',
    );
  }
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    db.close();
    unlock();
    throw new PortdError(
      ErrorCode.DATABASE_SCHEMA,
      `database ${opts.path} has schema version ${version}, newer than this portd knows (${MIGRATIONS.length})`,
      'upgrade portd or use another database.path',
    );
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  // a second connection for readers: under WAL it sees only committed state, never a tick in flight
  const reader = opts.path === ':memory:' ? db : new Database(opts.path, { readonly: true, fileMustExist: true });
  const checkpointer = startCheckpointer(db, opts);

  const s = {
    insert: db.prepare(`INSERT INTO leases (id, source, protocol, external_address, external_port, external_port_end,
      internal_address, internal_port, remote_address, remote_prefix, remote_port, owner, description, nonce,
      created_at, updated_at, expires_at, requested_lifetime, read_only, rule, state, family)
      VALUES (@id, @source, @protocol, @external_address, @external_port, @external_port_end,
      @internal_address, @internal_port, @remote_address, @remote_prefix, @remote_port, @owner, @description, @nonce,
      @created_at, @updated_at, @expires_at, @requested_lifetime, @read_only, @rule, 'active', @family)`),
    renew: db.prepare(`UPDATE leases SET updated_at = @updated_at, expires_at = @expires_at,
      requested_lifetime = @requested_lifetime, description = @description, nonce = @nonce,
      internal_port = @internal_port, remote_address = @remote_address, remote_prefix = @remote_prefix,
      remote_port = @remote_port, renew_count = renew_count + 1, renewed_at = @updated_at, renewed_by = @actor
      WHERE id = @id`),
    end: db.prepare(
      `UPDATE leases SET state = 'ended', ended_at = @at, end_reason = @reason, updated_at = @at WHERE id = @id ` +
        `AND state = 'active'`,
    ),
    event: db.prepare(`INSERT INTO events (lease_id, type, at, actor, reason) VALUES (?, ?, ?, ?, ?)`),
    byId: db.prepare(`SELECT * FROM leases WHERE id = ?`),
    due: db.prepare(
      `SELECT * FROM leases WHERE state = 'active' AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY ` +
        'expires_at LIMIT ?',
    ),
    nextExpiry: db.prepare(`SELECT min(expires_at) AS t FROM leases WHERE state = 'active' AND expires_at IS NOT NULL`),
    // only rows written in this run's (wrong) frame move; rows from before a restart were written in the true one
    rebaseActive: db.prepare(`UPDATE leases SET expires_at = expires_at + @d, created_at = created_at + @d,
      updated_at = updated_at + @d WHERE state = 'active' AND updated_at >= @since`),
    revoke: db.prepare(
      'INSERT INTO revocations (protocol, owner, internal_address, internal_port, external_port, until, ' +
        'lease_id) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    revoked: db.prepare(`SELECT lease_id, until FROM revocations
      WHERE until > @now AND protocol = @protocol AND kind = 'revoked'
      AND ((internal_address = @ia AND internal_port = @ip) OR (owner = @owner AND external_port = @ep)) LIMIT 1`),
    replace:
      db.prepare(`INSERT INTO revocations (protocol, owner, internal_address, internal_port, external_port, until,
      lease_id, kind, replaced_by, replaced_by_source)
      VALUES (?, ?, ?, ?, ?, ?, ?, 'replaced', ?, ?)`),
    replacedHolds: db.prepare(
      'SELECT protocol, owner, external_port, until, lease_id, replaced_by, replaced_by_source FROM revocations ' +
        `WHERE kind = 'replaced' AND until > ?`,
    ),
    pruneRevocations: db.prepare(`DELETE FROM revocations WHERE until <= ?`),
    // the last term of an admin revoke: while none holds, a new grant need not look (src/leases/table.ts)
    revokedUntil: db.prepare(`SELECT max(until) AS t FROM revocations WHERE kind = 'revoked'`),
    countRevocations: db.prepare(`SELECT count(*) AS n FROM revocations`),
    // the revocations ending first go first when the table is over its cap
    trimRevocations: db.prepare(
      `DELETE FROM revocations WHERE rowid IN (SELECT rowid FROM revocations ORDER BY until LIMIT ?)`,
    ),
    // ended leases, oldest end first (index leases_ended): pruned a bounded batch per writer tick
    oldestEnded: db
      .prepare(`SELECT id, ended_at FROM leases WHERE state = 'ended' ORDER BY ended_at LIMIT ?`)
      .raw(true),
    countEnded: db.prepare(`SELECT count(*) AS n FROM leases WHERE state = 'ended'`),
    deleteEvents: db.prepare(`DELETE FROM events WHERE lease_id = ?`),
    deleteLease: db.prepare(`DELETE FROM leases WHERE id = ? AND state = 'ended'`),
    // history per lease: its first entry and the latest ones (index events_lease)
    countHistory: db.prepare(`SELECT count(*) AS n FROM events WHERE lease_id = ?`),
    trimHistory: db.prepare(`DELETE FROM events
      WHERE seq IN (SELECT seq FROM events WHERE lease_id = @id ORDER BY seq DESC LIMIT -1 OFFSET @keep)
      AND seq > (SELECT min(seq) FROM events WHERE lease_id = @id)`),
    maxId: db.prepare(`SELECT max(id) AS id FROM leases`),
    metaGet: db.prepare(`SELECT value FROM meta WHERE key = ?`),
    metaSet: db.prepare(
      `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
    ),
  };
  // the writer's transaction control, prepared once (db.exec would parse each statement on every tick)
  const tx = {
    begin: db.prepare('BEGIN IMMEDIATE'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),
    savepoint: db.prepare('SAVEPOINT job'),
    release: db.prepare('RELEASE job'),
    rollbackTo: db.prepare('ROLLBACK TO job'),
  };
  const r = {
    byId: reader.prepare(`SELECT * FROM leases WHERE id = ?`),
    history: reader.prepare(`SELECT lease_id, type, at, actor, reason FROM events WHERE lease_id = ? ORDER BY seq`),
    renewals: reader.prepare(`SELECT renew_count, renewed_at, renewed_by FROM leases WHERE id = ?`),
  };
  return {
    driver: 'sqlite' as const,
    db,
    reader,
    s,
    r,
    tx,
    /** the writer's `between`: better-sqlite3's own transaction wrapper, synchronous */
    transaction: <T>(fn: () => T) => db.transaction(fn) as () => T,
    /** every write is durable at its own commit already */
    settle: async () => {},
    /**
     * The stored history, with the lease's renewals as one entry at the last renewal (renewals are counted
     * on the lease, not stored one by one): `reason` says how many there were.
     */
    history(id: string): HistoryEntry[] {
      const out = (
        r.history.all(id) as {
          lease_id: string;
          type: string;
          at: number;
          actor: string | null;
          reason: string | null;
        }[]
      ).map(
        (h): HistoryEntry => ({
          leaseId: h.lease_id,
          type: h.type as LeaseEventType,
          at: h.at,
          actor: h.actor,
          reason: h.reason,
        }),
      );
      const l = r.renewals.get(id) as
        | { renew_count: number; renewed_at: number | null; renewed_by: string | null }
        | undefined;
      if (l && l.renew_count > 0 && l.renewed_at !== null) {
        const at = l.renewed_at;
        const entry: HistoryEntry = {
          leaseId: id,
          type: 'renewed',
          at,
          actor: l.renewed_by,
          reason: l.renew_count === 1 ? null : `renewed ${l.renew_count} times; the last at this time`,
        };
        // after everything up to that moment except the end (a lease renewed and ended in the same ms)
        let i = out.findIndex((h, k) => k > 0 && (h.at > at || (h.at === at && h.type !== 'granted')));
        if (i < 0) i = out.length;
        out.splice(Math.max(1, Math.min(i, out.length)), 0, entry);
      }
      return out;
    },
    /** the WAL checkpointer's worker: running now, times started (null: none, SQLite's own checkpoints) */
    checkpointer: checkpointer && { running: checkpointer.running, starts: checkpointer.starts },
    meta(key: string): string | null {
      return (s.metaGet.get(key) as { value: string } | undefined)?.value ?? null;
    },
    setMeta(key: string, value: string) {
      s.metaSet.run(key, value);
    },
    /** the checkpointer's connection closes first, so this one is the last and leaves no -wal/-shm behind */
    async close(): Promise<void> {
      await checkpointer?.stop();
      if (reader !== db) reader.close();
      db.close();
      unlock();
    },
  };
}
export type Store = ReturnType<typeof openStore>;
