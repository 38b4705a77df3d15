/**
 * The one writer: the only door to the lease database and to the kernel's lease entries.
 *
 * Its contract (what every part that changes state may rely on, and must keep):
 *
 * - **One queue, one job at a time.** Everything that writes (lease requests, releases, revocations, expiry,
 *   pruning, static sync, upstream records, the clock mark, trigger rules and counters, UPnP UUIDs) is a job
 *   submitted here. Nothing else writes on the connection, so no write ever joins (and is rolled back with)
 *   another's transaction.
 * - **Group commit per tick.** The jobs queued when a tick starts (at most 1024) run in one `BEGIN IMMEDIATE`
 *   transaction, one after another, synchronously: a job's `run()` reads and writes rows and returns its
 *   outcome (kernel entries to add and remove, events, its result). The tick's kernel changes are netted (a
 *   remove then add of one entry is a replace; an add then remove is nothing) into one dataplane batch.
 * - **A savepoint per job.** A job that throws is rolled back to its savepoint alone and answered with its
 *   `onUnavailable`; the others commit. A tick of one job takes back the transaction itself (two statements
 *   fewer per lone request).
 * - **Kernel before commit.** The batch is applied to the kernel while the transaction is open; the commit
 *   follows only when the kernel took it. No job is answered and no event emitted before the commit: a caller
 *   that hears "granted" has a durable row and a kernel entry.
 * - **Solo retry.** When the kernel refuses a batch of several jobs, the transaction is rolled back and each job
 *   is retried in a tick of its own, in order, so one bad request does not refuse its neighbours. A lone job the
 *   kernel refuses is refused (`unavailable`), except a job of removals only: its rows end anyway (the element
 *   is most likely gone already) and a reconcile is asked for.
 * - **Busy is a wait.** A tick whose `BEGIN` meets SQLITE_BUSY (another connection — the WAL checkpointer's
 *   TRUNCATE — kept the write lock past busy_timeout) has done nothing yet: it begins again after a pause, up to
 *   BUSY_RETRIES times (`portd_writer_busy_retries_total`), and only then refuses its jobs.
 * - **Undo.** When the commit fails (disk full, not writable) after the kernel took the batch, the batch is
 *   undone in the kernel before anyone is answered: added entries are removed, removed entries come back when
 *   the (rolled back) rows still hold them unexpired (`restore`). If even that fails, a reconcile is asked for.
 * - **After every rollback** the owner's derived caches are rebuilt from the rows (`rebuild`): a job may have
 *   touched them before it threw or before its tick was taken back.
 * - **Exclusive jobs** (`exclusive`, `between`) run alone between ticks with no transaction open, in queue order:
 *   reconcile, the wall-clock rebase, a new external address, and the small stores (trigger rules, meta) whose
 *   writes must not join a tick.
 * - **Close** lets the queued work finish, then refuses new jobs (answered with `onUnavailable`).
 *
 * The writer knows transactions and the dataplane, not leases: what a job means is its owner's (table.ts).
 * The storage it drives is the `WriterTx` interface below (storage.ts `StorageTx`): SQLite's six statements are
 * synchronous; PostgreSQL's `commit` returns a promise (the tick's rows go to PostgreSQL and commit there, one
 * round trip), which the tick awaits — only then, so SQLite's tick has no await it did not have before.
 */
import type { Logger } from 'pino';
import type { Dataplane, DataplaneEntry } from '../dataplane/types.js';
import { entryKey } from '../dataplane/types.js';
import type { Metrics } from '../metrics.js';
import type { LeaseEvent } from './types.js';

/** what one job did inside a tick: rows are written already (inside the tick's transaction) */
export interface JobOutcome<R> {
  result: R;
  add: DataplaneEntry[];
  remove: DataplaneEntry[];
  events: LeaseEvent[];
  /** removals only: a failed kernel delete must not keep the row alive (the element may be gone already) */
  removalOnly?: boolean;
  /** leases this job ended besides its own change (replaced by an admin-defined opening): their flows end too */
  endFlows?: DataplaneEntry[];
}

/** the transaction control the writer drives (store.ts prepares it once); commit may return a promise */
export interface WriterTx {
  readonly begin: { run(): unknown };
  readonly commit: { run(): unknown };
  readonly rollback: { run(): unknown };
  readonly savepoint: { run(): unknown };
  readonly release: { run(): unknown };
  readonly rollbackTo: { run(): unknown };
}

/**
 * The door a small store is given instead of the connection: statements are prepared through it, and every
 * write goes through `write`, which runs between two ticks.
 */
export interface WriteDoor {
  prepare(sql: string): {
    run(...args: unknown[]): unknown;
    get(...args: unknown[]): unknown;
    all(...args: unknown[]): unknown[];
  };
  /** runs fn in a transaction of its own, between ticks; rejects when fn throws or the writer is closed */
  write<T>(name: string, fn: () => T): Promise<T>;
}

export interface WriterOptions {
  readonly tx: WriterTx;
  /**
   * the connection's own transaction wrapper, for `between` (better-sqlite3 `db.transaction`; PostgreSQL's
   * returns a promise that settles when the write is durable there)
   */
  readonly transaction: <T>(fn: () => T) => () => T | Promise<T>;
  /** after every exclusive job: writes it made outside a transaction reach the durable store (storage.ts) */
  readonly settle?: () => Promise<void>;
  readonly prepare: WriteDoor['prepare'];
  readonly dataplane: Pick<Dataplane, 'apply' | 'endFlows'>;
  readonly log: Logger;
  readonly metrics?: Metrics;
  /** after a rollback: the derived caches are rebuilt from the rows */
  rebuild(): void;
  /** after a failed commit: the removed entries the rolled-back rows still hold unexpired, to put back */
  restore(removed: readonly DataplaneEntry[]): DataplaneEntry[];
  /** a committed job's event, in commit order, after its caller is answered */
  emit(e: LeaseEvent): void;
  /** after a committed tick, every job answered: the outcomes that went through */
  committed(outcomes: readonly JobOutcome<unknown>[]): void;
  /** the kernel may not match the rows any more: an exclusive reconcile is wanted */
  reconcile(why: string): void;
}

interface Job<R = unknown> {
  readonly name: string;
  readonly run: () => JobOutcome<R>;
  /** runs alone, between ticks, with nothing else touching the table or the dataplane (reconcile) */
  readonly exclusive?: () => Promise<R>;
  readonly onUnavailable: (detail: string) => R;
  resolve(r: R): void;
  solo?: boolean;
}

/** the most jobs in one tick */
const TICK_MAX = 1024;
/**
 * a tick whose BEGIN meets SQLITE_BUSY (after busy_timeout, 2 s) begins again this many times, after 50, 100, 200,
 * 400, 800 ms: at worst ≈ 13.5 s (six busy_timeouts and the pauses) before its requests are refused
 */
const BUSY_RETRIES = 5;
const BUSY_DELAY_MS = 50;

export function createWriter(opts: WriterOptions) {
  const { tx, dataplane, log, metrics } = opts;
  const queue: Job[] = [];
  let running = false;
  let closed = false;
  /** close() is waiting for the queue */
  let closing = false;
  let scheduled = false;
  let needReconcile = false;

  function submit<R>(name: string, run: () => JobOutcome<R>, onUnavailable: (d: string) => R): Promise<R> {
    if (closed) return Promise.resolve(onUnavailable('portd is shutting down'));
    return new Promise<R>((resolve) => {
      queue.push({ name, run, onUnavailable, resolve: resolve as (r: unknown) => void } as Job);
      kick();
    });
  }
  function exclusive<R>(name: string, fn: () => Promise<R>, onUnavailable: (d: string) => R): Promise<R> {
    if (closed) return Promise.resolve(onUnavailable('portd is shutting down'));
    return new Promise<R>((resolve) => {
      queue.push({
        name,
        run: () => {
          throw new Error('exclusive');
        },
        exclusive: fn,
        onUnavailable,
        resolve: resolve as (r: unknown) => void,
      } as Job);
      kick();
    });
  }
  /** a write of a small store: its own transaction between ticks; rejects on failure (the caller reports it) */
  function between<T>(name: string, fn: () => T): Promise<T> {
    type Res = { ok: true; v: T } | { ok: false; e: Error };
    return exclusive<Res>(
      name,
      async () => {
        try {
          return { ok: true, v: await opts.transaction(fn)() };
        } catch (e) {
          return { ok: false, e: e as Error };
        }
      },
      (d) => ({ ok: false, e: new Error(d === 'portd is shutting down' ? 'database closed' : d) }),
    ).then((r) => {
      if (r.ok) return r.v;
      throw r.e;
    });
  }
  function kick(): void {
    if (running || scheduled || queue.length === 0) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      void tick();
    });
  }

  /** entryKey, and a pinhole's own address: pinholes to two hosts on one port are two entries (issue 15) */
  const batchKey = (e: DataplaneEntry): string =>
    e.family === 6 ? `6/${e.internalAddress}/${entryKey(e)}` : entryKey(e);
  /**
   * net effect of a tick's ops on the kernel: a remove then add of one key is a replace; an add then remove is nothing
   */
  function netBatch(outcomes: JobOutcome<unknown>[]): { add: DataplaneEntry[]; remove: DataplaneEntry[] } {
    const removes = new Map<string, DataplaneEntry>();
    const adds = new Map<string, DataplaneEntry>();
    for (const o of outcomes) {
      for (const e of o.remove) {
        const k = batchKey(e);
        if (adds.has(k)) adds.delete(k);
        else removes.set(k, e);
      }
      for (const e of o.add) adds.set(batchKey(e), e);
    }
    return { add: [...adds.values()], remove: [...removes.values()] };
  }

  async function tick(): Promise<void> {
    if (running) return;
    running = true;
    try {
      while (queue.length > 0) {
        const head = queue[0]!;
        if (head.exclusive) {
          queue.shift();
          try {
            const r = await head.exclusive();
            if (opts.settle) await opts.settle();
            head.resolve(r);
          } catch (e) {
            log.error({ job: head.name, err: (e as Error).message }, 'exclusive job failed');
            head.resolve(head.onUnavailable((e as Error).message));
          }
          continue;
        }
        // a job retried alone after a failed batch runs in a tick of its own
        const jobs: Job[] = head.solo ? [queue.shift()!] : [];
        while (!jobs[0]?.solo && queue.length > 0 && !queue[0]!.solo && !queue[0]!.exclusive && jobs.length < TICK_MAX)
          jobs.push(queue.shift()!);
        await runTick(jobs);
      }
    } finally {
      running = false;
      kick();
    }
  }

  function askReconcile(why: string): void {
    if (!needReconcile) return;
    needReconcile = false;
    opts.reconcile(why);
  }

  async function runTick(jobs: Job[]): Promise<void> {
    const outcomes: (JobOutcome<unknown> | null)[] = [];
    const failures: (string | null)[] = [];
    // another connection holding SQLite's write lock past busy_timeout (the checkpointer's TRUNCATE on a loaded
    // machine) is a wait, not a refusal: nothing was done yet, so the tick begins again a little later (bounded)
    for (let attempt = 0; ; attempt++) {
      try {
        tx.begin.run();
        break;
      } catch (e) {
        const busy = (e as { code?: string }).code === 'SQLITE_BUSY';
        if (busy && attempt < BUSY_RETRIES) {
          metrics?.writerBusyRetries.inc();
          log.warn(
            { jobs: jobs.length, attempt: attempt + 1, err: (e as Error).message },
            'database write lock held by another connection (WAL checkpoint?); retrying the tick',
          );
          await new Promise((r) => setTimeout(r, BUSY_DELAY_MS * 2 ** attempt));
          continue;
        }
        for (const j of jobs) j.resolve(j.onUnavailable(`database: ${(e as Error).message}`));
        log.error({ err: (e as Error).message }, 'database unavailable: cannot begin a transaction');
        return;
      }
    }
    // a savepoint per job, so one that throws is taken back alone; a tick of one job (every tick at concurrency 1)
    // needs none: the transaction itself is taken back (two statements fewer per lone request)
    const alone = jobs.length === 1;
    for (const j of jobs) {
      if (!alone) tx.savepoint.run();
      try {
        outcomes.push(j.run());
        failures.push(null);
        if (!alone) tx.release.run();
      } catch (e) {
        if (alone) {
          tx.rollback.run();
          opts.rebuild();
          log.error({ job: j.name, err: (e as Error).message }, 'job failed inside the writer');
          j.resolve(j.onUnavailable((e as Error).message));
          return;
        }
        tx.rollbackTo.run();
        tx.release.run();
        outcomes.push(null);
        failures.push((e as Error).message);
        log.error({ job: j.name, err: (e as Error).message }, 'job failed inside the writer');
      }
    }
    const ok = outcomes.filter((o): o is JobOutcome<unknown> => o !== null);
    const batch = netBatch(ok);
    let applied = true;
    let dpError = '';
    if (batch.add.length + batch.remove.length > 0) {
      const t0 = performance.now();
      try {
        await dataplane.apply(batch);
      } catch (e) {
        applied = false;
        dpError = (e as Error).message;
        metrics?.dataplaneErrors.inc();
      }
      metrics?.dataplaneBatchSeconds.observe((performance.now() - t0) / 1000);
    }
    metrics?.writerTickSize.observe(jobs.length);
    if (!applied) {
      const allRemovals = ok.every((o) => o.removalOnly);
      if (jobs.length > 1) {
        tx.rollback.run();
        opts.rebuild();
        log.warn({ jobs: jobs.length, err: dpError }, 'dataplane refused a batch; retrying its requests one by one');
        for (const j of jobs.reverse()) {
          j.solo = true;
          queue.unshift(j);
        }
        return;
      }
      if (allRemovals) {
        // the element is most likely gone from the kernel already (timed out): the row must end anyway; reconcile
        // repairs the rest
        log.warn(
          { job: jobs[0]?.name, err: dpError },
          'dataplane refused a removal; ending the lease anyway and scheduling a reconcile',
        );
        needReconcile = true;
      } else {
        tx.rollback.run();
        opts.rebuild();
        log.error({ job: jobs[0]?.name, err: dpError }, 'dataplane refused the change; request refused');
        for (const j of jobs) j.resolve(j.onUnavailable(`dataplane: ${dpError}`));
        return;
      }
    }
    try {
      // PostgreSQL: the rows go out and commit there; SQLite returns no promise and nothing is awaited
      const c = tx.commit.run();
      if (c instanceof Promise) await c;
    } catch (e) {
      try {
        tx.rollback.run();
      } catch {
        /* already rolled back */
      }
      opts.rebuild();
      log.error(
        { err: (e as Error).message },
        'database commit failed (disk full or not writable?); tick refused, kernel changes taken back',
      );
      // the batch reached the kernel before the commit: undo it before anyone is answered, so a refused
      // request leaves no open port and a refused renewal does not cut the lease it renews. Removed
      // entries come back only when the (rolled back) table still holds them unexpired.
      if (applied && batch.add.length + batch.remove.length > 0) {
        const back = opts.restore(batch.remove);
        try {
          await dataplane.apply({ remove: batch.add, add: back });
        } catch (u) {
          log.error({ err: (u as Error).message }, 'could not undo the kernel changes of a refused tick; reconciling');
          needReconcile = true;
        }
      }
      for (const j of jobs) j.resolve(j.onUnavailable(`database: ${(e as Error).message}`));
      askReconcile('after a failed commit');
      return;
    }
    // a job that threw was rolled back to its savepoint, but may have touched the derived caches first
    if (failures.some((f) => f !== null)) opts.rebuild();
    // committed: now, and only now, answer
    const ended: DataplaneEntry[] = [];
    let oi = 0;
    for (let i = 0; i < jobs.length; i++) {
      const j = jobs[i]!;
      if (failures[i] !== null) {
        j.resolve(j.onUnavailable(failures[i]!));
        continue;
      }
      const o = ok[oi++]!;
      j.resolve(o.result);
      for (const e of o.events) opts.emit(e);
      if (o.removalOnly) ended.push(...o.remove);
      else if (o.endFlows) ended.push(...o.endFlows);
    }
    if (ended.length > 0)
      dataplane.endFlows(ended).catch((e) => log.warn({ err: (e as Error).message }, 'could not end flows'));
    opts.committed(ok);
    askReconcile('after a refused dataplane change');
  }

  return {
    submit,
    exclusive,
    between,
    /** the door handed to the small stores (trigger rules and counters, meta) */
    door: { prepare: opts.prepare, write: between } satisfies WriteDoor,
    /** jobs waiting (not the one running) */
    queued: () => queue.length,
    /** queued + in-flight jobs, for tests and status */
    pending: () => queue.length + (running ? 1 : 0),
    /** close() is draining the queue: no new background work should be started */
    closing: () => closing,
    closed: () => closed,
    /** lets queued work finish, then refuses new jobs */
    async close(): Promise<void> {
      closing = true;
      while (running || queue.length > 0) await new Promise((r) => setTimeout(r, 5));
      closed = true;
    },
  };
}
export type Writer = ReturnType<typeof createWriter>;
