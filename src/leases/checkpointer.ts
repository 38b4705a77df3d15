/**
 * The background WAL checkpointer of the lease store, started only while there is something to copy.
 *
 * Its own connection in a worker thread copies committed WAL pages into the database file (and fsyncs
 * it), so no writer tick pays for that on the event loop (docs/operation.md, "Durability"). A worker is
 * a second V8 isolate with its own better-sqlite3: ≈ 7.5 MiB of RSS (docs/benchmarks.md, "footprint"),
 * for a thread that on a quiet router has nothing to do for hours. So the main thread only looks at the
 * WAL file's size (one stat a period), and starts the worker when the WAL has grown past START_BYTES, or
 * when it has held anything for a while (a checkpoint is due: dueMs); the worker stops itself once the
 * WAL has been fully checkpointed and unchanged for idleMs, after truncating it to zero bytes — so while
 * it is stopped, the WAL's size is exactly what was written since, and nothing is lost by waiting: the
 * WAL is as durable as the database file (kill -9 and a start with a full WAL are recovered by SQLite).
 *
 * A WAL past START_BYTES that is still growing (a burst of requests: every lease commit appends ≈ 7 pages) waits
 * for the first period it did not grow, for dueMs, or for BURST_BYTES, whichever comes first. Why: the worker's
 * start (a second isolate, better-sqlite3 loaded again) took ≈ 0.2 s of CPU, and its checkpoints then copied
 * the same few hot pages again every period; on a 2-core router both ran in the middle of the first 2,000 PCP
 * MAPs after a start (docs/benchmarks.md, "Cold start"). After the burst, one checkpoint copies each page once.
 *
 * A due WAL of at most MAIN_BYTES (the start's few writes, a renewal now and then: the usual case on a
 * quiet router) is not worth a worker: once it has not changed for one period and no transaction is open,
 * the main thread checkpoints it itself (TRUNCATE: at most 64 pages copied and one fsync of the database
 * file, a few ms on the event loop, at a moment nothing was written). Anything larger, a checkpoint that
 * finds a reader in the way, or a WAL that keeps changing for another dueMs, starts the worker as before.
 */
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

/** a WAL this large starts the worker at once */
export const START_BYTES = 1024 * 1024;
/** a due WAL up to this size is checkpointed on the main thread, at a quiet moment, without a worker */
export const MAIN_BYTES = 256 * 1024;
/** a WAL past START_BYTES waits for a quiet period, but never past this size (the worker's own TRUNCATE bound) */
export const BURST_BYTES = 64 * 1024 * 1024;

export interface CheckpointerOptions {
  readonly path: string;
  /** PASSIVE checkpoint period of the running worker, ms; 0 = none (SQLite's own, inside commits) */
  readonly intervalMs: number;
  readonly synchronous: 'NORMAL' | 'FULL';
  readonly warn: (message: string) => void;
  /** a non-empty WAL starts the worker after this long (default 60 periods: 30 s) */
  readonly dueMs?: number;
  /** the worker stops after the WAL was caught up and unchanged this long (default 20 periods: 10 s) */
  readonly idleMs?: number;
  /** a growing WAL starts the worker at once from this size (default BURST_BYTES; tests set less) */
  readonly burstBytes?: number;
  /** the worker went idle and exited: its isolate and malloc arena are free, a GC and malloc_trim get them back */
  readonly onStopped?: () => void;
}

export interface Checkpointer {
  /** is the worker thread running now? */
  running(): boolean;
  /** how many times it was started */
  starts(): number;
  /** how many small WALs the main thread checkpointed itself (MAIN_BYTES) */
  checkpointedHere(): number;
  /** stops the worker (resolves once its connection is closed) and the watch */
  stop(): Promise<void>;
}

/**
 * The worker: PASSIVE checkpoints every `intervalMs` (4x as long while the WAL was empty at the last
 * look). The writer starts the WAL over from its beginning by itself when it finds every frame
 * checkpointed; the file keeps its high-water size, though: past 16 MiB, and only when the last PASSIVE
 * left nothing to copy, a TRUNCATE takes it back to zero bytes (a moment's hold on the writer, nothing
 * to copy). Past 64 MiB (a writer that never pauses) the TRUNCATE happens anyway, and holds the writer
 * while it copies what is left. Caught up and unchanged for `idleMs`: a last TRUNCATE, then it posts
 * 'idle' and exits. Plain CommonJS, evaluated.
 *
 * A TRUNCATE (like FULL and RESTART) takes SQLite's write lock and keeps it while it copies, and while its busy
 * handler waits for readers to leave the old snapshot: the writer's BEGIN IMMEDIATE waits on it. So the
 * caught-up and idle TRUNCATEs wait for nobody (busy_timeout 0: busy is tried again next period; their hold is
 * the truncate alone), and only the forced one past 64 MiB waits up to 1 s for readers. A hold past the writer's
 * busy_timeout (2 s: a 64 MiB copy on a loaded machine) makes the writer begin its tick again, not refuse it
 * (writer.ts, "Busy is a wait"; portd_writer_busy_retries_total).
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { statSync } = require('node:fs');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('synchronous = ' + workerData.synchronous);
db.pragma('busy_timeout = 1000');
const MiB = 1024 * 1024;
const walSize = () => { try { return statSync(workerData.path + '-wal').size; } catch { return 0; } };
// a TRUNCATE holds the write lock while it waits (busy handler) for readers: only the forced one waits
const truncate = (waitMs) => {
  db.pragma('busy_timeout = ' + waitMs);
  try { return db.pragma('wal_checkpoint(TRUNCATE)')[0]; } finally { db.pragma('busy_timeout = 1000'); }
};
let lastError = '';
let last = 0;
let idle = false;
let caughtUp = false;
let lastLog = -1;
let quietSince = Date.now();
let done = false;
const finish = () => { done = true; clearInterval(timer); try { db.close(); } catch {} parentPort.close(); };
const timer = setInterval(() => {
  if (done) return;
  try {
    const now = Date.now();
    const size = walSize();
    if (size > 64 * MiB || (size > 16 * MiB && caughtUp)) {
      truncate(size > 64 * MiB ? 1000 : 0);
      last = now;
      idle = false;
      caughtUp = false;
      lastLog = -1;
      quietSince = now;
    } else if (now - last >= (idle ? 4 : 1) * workerData.intervalMs) {
      const r = db.pragma('wal_checkpoint(PASSIVE)')[0];
      idle = !r || r.log === 0;
      caughtUp = !!r && r.busy === 0 && r.log === r.checkpointed;
      if (!caughtUp || r.log !== lastLog) quietSince = now;
      lastLog = r ? r.log : -1;
      last = now;
      if (caughtUp && now - quietSince >= workerData.idleMs) {
        const t = truncate(0);
        if (t && t.busy === 0 && walSize() === 0) { parentPort.postMessage('idle'); finish(); return; }
      }
    }
    lastError = '';
  }
  catch (e) {
    const m = String((e && e.message) || e);
    if (m !== lastError) { lastError = m; parentPort.postMessage(m); }
  }
}, Math.min(100, workerData.intervalMs));
parentPort.on('message', (m) => { if (m === 'stop') finish(); });
`;

const walSize = (path: string): number => {
  try {
    return statSync(`${path}-wal`).size;
  } catch {
    return 0;
  }
};

/**
 * Takes over checkpointing from SQLite's automatic one on `db` (the writer connection). If a worker
 * cannot be started or dies, SQLite's automatic checkpoints come back (and stay).
 */
export function createCheckpointer(db: Database.Database, o: CheckpointerOptions): Checkpointer {
  const dueMs = o.dueMs ?? 60 * o.intervalMs;
  const idleMs = o.idleMs ?? 20 * o.intervalMs;
  const burstBytes = o.burstBytes ?? BURST_BYTES;
  let worker: Worker | null = null;
  let exited: Promise<void> = Promise.resolve();
  let failed = false;
  let stopping = false;
  let starts = 0;
  let here = 0;
  let nonEmptySince: number | null = null;
  let lastSize = -1;
  db.pragma('wal_autocheckpoint = 0');

  const fallBack = (why: string) => {
    if (failed || stopping) return;
    failed = true;
    clearInterval(watch);
    try {
      db.pragma('wal_autocheckpoint = 1000');
    } catch {
      /* closed */
    }
    o.warn(`WAL checkpointer stopped (${why}); SQLite checkpoints inside commits instead`);
  };
  const start = () => {
    let w: Worker;
    try {
      w = new Worker(WORKER, {
        eval: true,
        workerData: {
          driver: createRequire(import.meta.url).resolve('better-sqlite3'),
          path: o.path,
          intervalMs: o.intervalMs,
          idleMs,
          synchronous: o.synchronous,
        },
      });
    } catch (e) {
      fallBack(`not started: ${(e as Error).message}`);
      return;
    }
    starts++;
    worker = w;
    w.unref();
    let wentIdle = false;
    w.on('message', (m: string) => {
      if (m === 'idle') wentIdle = true;
      else o.warn(`WAL checkpoint failed: ${m}`);
    });
    w.on('error', (e) => fallBack(e.message));
    exited = new Promise<void>((resolve) =>
      w.once('exit', (code) => {
        worker = null;
        nonEmptySince = null;
        if (!wentIdle) fallBack(`exit ${code}`);
        else if (!stopping) o.onStopped?.();
        resolve();
      }),
    );
  };
  /** a TRUNCATE checkpoint of a small WAL on this connection; false: not done (the worker's turn) */
  const checkpointHere = (): boolean => {
    if (db.inTransaction) return false;
    // no waiting on the event loop for a reader (another process's) to finish: busy is the worker's case
    const timeout = db.pragma('busy_timeout', { simple: true }) as number;
    try {
      db.pragma('busy_timeout = 0');
      const r = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      if (r[0]?.busy !== 0 || walSize(o.path) !== 0) return false;
    } catch {
      return false;
    } finally {
      try {
        db.pragma(`busy_timeout = ${timeout}`);
      } catch {
        /* closed */
      }
    }
    here++;
    nonEmptySince = null;
    return true;
  };
  // the watch: one stat of the WAL per period while the worker is stopped
  const look = () => {
    if (worker || failed || stopping) return;
    const size = walSize(o.path);
    // the first look (a WAL left behind by kill -9 or a power cut) counts as quiet: nobody writes yet
    const quiet = size === lastSize || lastSize === -1;
    lastSize = size;
    if (size === 0) {
      nonEmptySince = null;
      return;
    }
    const now = Date.now();
    nonEmptySince ??= now;
    if (size >= START_BYTES) {
      // a burst still writing: the worker starts when it pauses (one checkpoint of each page, not one a period)
      if (quiet || size >= burstBytes || now - nonEmptySince >= dueMs) start();
    } else if (now - nonEmptySince >= dueMs) {
      if (size > MAIN_BYTES || now - nonEmptySince >= 2 * dueMs) start();
      else if (quiet) {
        if (checkpointHere()) lastSize = 0;
        else start();
      }
    }
  };
  const watch = setInterval(look, Math.max(20, Math.min(1000, o.intervalMs)));
  watch.unref();
  // a WAL left behind (kill -9, a power cut) is checkpointed at once if it is large
  look();

  return {
    running: () => worker !== null,
    starts: () => starts,
    checkpointedHere: () => here,
    async stop() {
      stopping = true;
      clearInterval(watch);
      const w = worker;
      if (!w) return;
      w.postMessage('stop');
      // bounded: a worker stuck in a checkpoint is terminated (its connection closes with the thread)
      const t = setTimeout(() => {
        void w.terminate();
      }, 2000);
      await exited;
      clearTimeout(t);
    },
  };
}
