/**
 * The lease table's storage on PostgreSQL (issue 18 item 2): `LeaseStorage` (../storage.ts) over node-postgres.
 *
 * The statements of every part run on a local SQLite **image** of the PostgreSQL tables (the SQLite schema, on a
 * tmpfs file under WAL, not durable by itself), so a job decides from memory and stays synchronous, as on SQLite.
 * Temporary triggers note the key of every row a statement inserts, changes or deletes (`temp.dirty`, inside the
 * image's own transaction, so a savepoint or a rollback takes the notes back with the rows). A commit sends the
 * noted rows as they stand in the image — upserted when present, deleted when gone — to PostgreSQL in one
 * statement (a data-modifying CTE per table over `json_populate_recordset`), which commits by itself: one round
 * trip per tick, however many jobs it held. Only when PostgreSQL has committed does the image commit.
 *
 * When that statement fails (the server refused it, the connection died and its outcome is unknown), the image
 * is rolled back and the keys are noted again outside the transaction: the next commit sends the image's state
 * for them, so PostgreSQL converges to what the image holds whichever way the lost commit went.
 *
 * At open: the migrations (./store.ts), the writer fence (./fence.ts), then every row of PostgreSQL into a fresh
 * image. On close: the pending notes go out, then the image is removed.
 *
 * The HA pair (`generation`, src/ha/portd.ts) takes no advisory lock: the flush statement itself checks the writer's
 * generation in `ha_fence` and writes nothing when another node took the fence (docs/ha.md, "One fence").
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../store.js';
import type { LeaseStorage } from '../storage.js';
import { acquireFence, type Fence } from './fence.js';
import { openPostgresStore, type PostgresStore } from './store.js';

export interface PostgresStorageOptions {
  readonly url: string;
  /** where the image lives (default: a fresh dir under /dev/shm, else the temp dir) */
  readonly imageDir?: string;
  readonly poolSize?: number;
  readonly onWarning?: (message: string) => void;
  /** take the writer fence (default true); false for a reader that never writes (a standby's inspection) */
  readonly fence?: boolean;
  /** the fence's connection was lost (another node may write now) */
  readonly onFenceLost?: (err: Error) => void;
  /** the fence's lock key (tests) */
  readonly fenceKey?: readonly [number, number];
  /**
   * The HA pair's writer generation (src/ha/fence.ts, docs/ha.md "One fence"): every write to PostgreSQL carries
   * `token` and changes nothing unless `ha_fence` still holds it; the commit then throws `fenced(…)`'s error (the
   * writer rolls the image back and undoes the kernel batch, as for any failed commit). Used with `fence: false`.
   */
  readonly generation?: {
    readonly token: number;
    readonly fenced: (current: number | null, holder: string | null) => Error;
  };
}

/** a table of the image and how PostgreSQL names its key */
interface TableSpec {
  readonly name: string;
  /** the key in the image (revocations: SQLite's rowid) */
  readonly key: string;
  /** the key in PostgreSQL (revocations: the identity column `id`) */
  readonly pgKey: string;
  readonly keyType: 'text' | 'bigint';
}

/** parents first (upstream_mappings references leases) */
const TABLES: readonly TableSpec[] = [
  { name: 'leases', key: 'id', pgKey: 'id', keyType: 'text' },
  { name: 'events', key: 'seq', pgKey: 'seq', keyType: 'bigint' },
  { name: 'revocations', key: 'rowid', pgKey: 'id', keyType: 'bigint' },
  { name: 'meta', key: 'key', pgKey: 'key', keyType: 'text' },
  { name: 'trigger_rules', key: 'name', pgKey: 'name', keyType: 'text' },
  { name: 'trigger_stats', key: 'name', pgKey: 'name', keyType: 'text' },
  { name: 'upstream_mappings', key: 'lease_id', pgKey: 'lease_id', keyType: 'text' },
];

/**
 * A fresh dir for the image, named by this pid: a portd killed with SIGKILL leaves its image behind, and the next
 * open removes every image whose process is gone (the rows are PostgreSQL's; an image is only ever a copy)
 */
function imageDirFor(opts: PostgresStorageOptions): string {
  const prefix = `portd-pg-image-${process.pid}-`;
  const bases = opts.imageDir ? [opts.imageDir] : [...(existsSync('/dev/shm') ? ['/dev/shm'] : []), tmpdir()];
  for (const base of bases) {
    removeStaleImages(base);
    try {
      return mkdtempSync(join(base, prefix));
    } catch {
      /* not writable: the next base */
    }
  }
  return mkdtempSync(join(tmpdir(), prefix));
}

function removeStaleImages(base: string): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^portd-pg-image-(\d+)-/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (e) {
        alive = (e as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (!alive) rmSync(join(base, n), { recursive: true, force: true });
  }
}

export type PostgresStorage = LeaseStorage & {
  readonly driver: 'postgres';
  /** the async statements of ./store.ts on the same database (load active leases, meta, history) */
  readonly pg: PostgresStore;
  /** the writer fence, null when opened with fence: false */
  readonly fence: Fence | null;
  /** rows noted in the image and not yet in PostgreSQL (tests, status) */
  pendingRows(): number;
};

export async function openPostgresStorage(opts: PostgresStorageOptions): Promise<PostgresStorage> {
  const warn = (m: string) => opts.onWarning?.(m);
  const pgs = await openPostgresStore({
    url: opts.url,
    ...(opts.poolSize ? { poolSize: opts.poolSize } : {}),
    onWarning: warn,
  });
  let fence: Fence | null = null;
  try {
    if (opts.fence !== false)
      fence = await acquireFence({
        url: opts.url,
        ...(opts.fenceKey ? { key: opts.fenceKey } : {}),
        onLost: (e) => {
          warn(`PostgreSQL writer lock lost with its connection: ${e.message}`);
          opts.onFenceLost?.(e);
        },
      });
  } catch (e) {
    await pgs.close().catch(() => {});
    throw e;
  }
  const dir = imageDirFor(opts);
  let image: ReturnType<typeof openStore>;
  try {
    image = openStore({ path: join(dir, 'image.sqlite'), synchronous: 'off', noLock: true, checkpointIntervalMs: 0 });
  } catch (e) {
    await fence?.release();
    await pgs.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const { db } = image;
  const columns = new Map<string, string[]>();
  for (const t of TABLES)
    columns.set(
      t.name,
      (db.pragma(`table_info(${t.name})`) as { name: string }[]).map((c) => c.name),
    );

  // ---- load: every PostgreSQL row into the fresh image, before the triggers exist ----
  try {
    const rows = new Map<string, Record<string, unknown>[]>();
    for (const t of TABLES) {
      const cols = columns.get(t.name)!;
      const sel = t.key === 'rowid' ? [`${t.pgKey} AS rowid`, ...cols] : cols;
      rows.set(t.name, (await pgs.query(`SELECT ${sel.join(', ')} FROM ${t.name} ORDER BY ${t.pgKey}`)).rows);
    }
    db.transaction(() => {
      for (const t of TABLES) {
        const cols = columns.get(t.name)!;
        const all = t.key === 'rowid' ? ['rowid', ...cols] : cols;
        const ins = db.prepare(
          `INSERT INTO ${t.name} (${all.join(', ')}) VALUES (${all.map((c) => `@${c}`).join(', ')})`,
        );
        for (const r of rows.get(t.name)!) ins.run(r);
      }
    })();
  } catch (e) {
    await image.close();
    rmSync(dir, { recursive: true, force: true });
    await fence?.release();
    await pgs.close().catch(() => {});
    throw e;
  }

  // ---- the notes: every row a statement touches, by table and key ----
  db.exec('CREATE TEMP TABLE dirty (tbl TEXT NOT NULL, k NOT NULL, PRIMARY KEY (tbl, k)) WITHOUT ROWID');
  for (const t of TABLES) {
    for (const [op, row] of [
      ['INSERT', 'NEW'],
      ['UPDATE', 'NEW'],
      ['DELETE', 'OLD'],
    ] as const) {
      db.exec(`CREATE TEMP TRIGGER dirty_${t.name}_${op} AFTER ${op} ON main.${t.name}
        BEGIN INSERT OR IGNORE INTO temp.dirty (tbl, k) VALUES ('${t.name}', ${row}.${t.key}); END`);
    }
  }
  const notes = db.prepare('SELECT tbl, k FROM temp.dirty');
  const countNotes = db.prepare('SELECT count(*) AS n FROM temp.dirty');
  const clearNotes = db.prepare('DELETE FROM temp.dirty');
  const note = db.prepare('INSERT OR IGNORE INTO temp.dirty (tbl, k) VALUES (?, ?)');
  const present = new Map(
    TABLES.map((t) => {
      const cols = columns.get(t.name)!;
      const sel = t.key === 'rowid' ? [`rowid AS ${t.pgKey}`, ...cols] : cols;
      return [
        t.name,
        db.prepare(
          `SELECT ${sel.join(', ')} FROM ${t.name} WHERE ${t.key} IN (SELECT k FROM temp.dirty WHERE tbl = ?)`,
        ),
      ];
    }),
  );

  /** the one statement that makes PostgreSQL's rows of the noted keys what the image holds; null: nothing noted */
  function gather(): { sql: string; params: unknown[]; keys: [string, unknown][] } | null {
    const keys = notes.raw(true).all() as [string, unknown][];
    if (keys.length === 0) return null;
    const byTable = new Map<string, unknown[]>();
    for (const [tbl, k] of keys) {
      const list = byTable.get(tbl);
      if (list) list.push(k);
      else byTable.set(tbl, [k]);
    }
    const ctes: string[] = [];
    const params: unknown[] = [];
    let i = 0;
    // HA: the generation check folded into the one statement. `f` locks the fence row FOR SHARE only while it
    // still holds our token; every write below runs only when `f` has its row (a one-time filter, evaluated before
    // the first row is written). A takeover's UPDATE waits for this statement; a check that waited on a committed
    // takeover re-reads the row (READ COMMITTED), finds another generation, and nothing is written.
    const gate = opts.generation ? ' AND EXISTS (SELECT 1 FROM f)' : '';
    const gateRows = opts.generation ? ' WHERE EXISTS (SELECT 1 FROM f)' : '';
    if (opts.generation) {
      params.push(opts.generation.token);
      ctes.push('f AS (SELECT generation FROM ha_fence WHERE generation = $1::bigint FOR SHARE)');
    }
    for (const t of TABLES) {
      const ks = byTable.get(t.name);
      if (!ks) continue;
      const rows = present.get(t.name)!.all(t.name) as Record<string, unknown>[];
      const here = new Set(rows.map((r) => r[t.pgKey]));
      const gone = ks.filter((k) => !here.has(k));
      if (gone.length > 0) {
        params.push(gone);
        ctes.push(
          `d${i++} AS (DELETE FROM ${t.name} WHERE ${t.pgKey} = ANY($${params.length}::${t.keyType}[])${gate})`,
        );
      }
      if (rows.length > 0) {
        const cols = t.key === 'rowid' ? [t.pgKey, ...columns.get(t.name)!] : columns.get(t.name)!;
        const rest = cols.filter((c) => c !== t.pgKey);
        params.push(JSON.stringify(rows));
        const set =
          rest.length === 0
            ? 'DO NOTHING'
            : `DO UPDATE SET (${rest.join(', ')}) = ROW(${rest.map((c) => `EXCLUDED.${c}`).join(', ')})`;
        ctes.push(
          `u${i++} AS (INSERT INTO ${t.name} (${cols.join(', ')}) SELECT ${cols.join(', ')} FROM ` +
            `json_populate_recordset(NULL::${t.name}, $${params.length}::json)${gateRows} ` +
            `ON CONFLICT (${t.pgKey}) ${set})`,
        );
      }
    }
    const tail = opts.generation
      ? 'SELECT EXISTS (SELECT 1 FROM f) AS ok, (SELECT generation FROM ha_fence) AS current, ' +
        '(SELECT holder FROM ha_fence) AS holder'
      : 'SELECT true AS ok';
    return { sql: `WITH ${ctes.join(',\n')} ${tail}`, params, keys };
  }

  /** keys whose write to PostgreSQL failed: noted again after the image's rollback */
  let failedKeys: [string, unknown][] = [];
  /** inside the image's open transaction: PostgreSQL first, then the image; throws when PostgreSQL refused */
  async function commitOpen(): Promise<void> {
    const g = gather();
    if (g) {
      try {
        const res = await pgs.query(g.sql, g.params);
        const r = res.rows[0] as { ok: boolean; current?: string | number | null; holder?: string | null };
        if (opts.generation && !r.ok)
          throw opts.generation.fenced(r.current == null ? null : Number(r.current), r.holder ?? null);
      } catch (e) {
        failedKeys = g.keys;
        throw e;
      }
      clearNotes.run();
    }
    image.tx.commit.run();
  }
  function rollbackOpen(): void {
    if (db.inTransaction) image.tx.rollback.run();
    if (failedKeys.length > 0) {
      for (const [tbl, k] of failedKeys) note.run(tbl, k);
      failedKeys = [];
    }
  }

  let closed = false;
  const storage: PostgresStorage = {
    driver: 'postgres',
    db,
    reader: image.reader,
    s: image.s,
    r: image.r,
    tx: {
      begin: image.tx.begin,
      commit: { run: () => commitOpen() },
      rollback: { run: () => rollbackOpen() },
      savepoint: image.tx.savepoint,
      release: image.tx.release,
      rollbackTo: image.tx.rollbackTo,
    },
    transaction<T>(fn: () => T) {
      return async (): Promise<T> => {
        image.tx.begin.run();
        try {
          const v = fn();
          await commitOpen();
          return v;
        } catch (e) {
          rollbackOpen();
          throw e;
        }
      };
    },
    async settle(): Promise<void> {
      if ((countNotes.get() as { n: number }).n === 0) return;
      image.tx.begin.run();
      try {
        await commitOpen();
      } catch (e) {
        rollbackOpen();
        warn(`could not write to PostgreSQL (retried at the next commit): ${(e as Error).message}`);
      }
    },
    history: (id) => image.history(id),
    meta: (key) => image.meta(key),
    setMeta: (key, value) => image.setMeta(key, value),
    checkpointer: null,
    pg: pgs,
    fence,
    pendingRows: () => (countNotes.get() as { n: number }).n,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      try {
        await storage.settle();
      } finally {
        await image.close();
        rmSync(dir, { recursive: true, force: true });
        await fence?.release();
        await pgs.close().catch(() => {});
      }
    },
  };
  return storage;
}
