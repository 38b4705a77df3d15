/**
 * The warm standby's follower (issue 18 item 3): keeps this node's own dataplane equal to the shared PostgreSQL
 * lease table while the other node writes it, so that on takeover every lease is already in this kernel.
 *
 * - A connection of its own LISTENs on `portd_leases` (migration v2's trigger sends the id of every lease row a
 *   committed transaction wrote), then reads every active lease and `reset`s the dataplane to exactly their
 *   entries: LISTEN comes first, so a change committed during the read is notified and re-read after it.
 * - Each notification batch (the ids of one or more commits) re-reads those rows and applies one batch: the
 *   entry this follower put in for that id out, the row's current entry in (none when it ended or is gone).
 *   A renewal is remove + add of the same key (the kernel's timeout restarts), as the lease table does it.
 * - A lost connection is retried with a growing, bounded delay, and every (re)connect resyncs in full: nothing
 *   notified while away is missed, because nothing is taken from the notifications but the ids.
 * - The entries come from `leaseEntry` (src/leases/entry.ts), the function the lease table uses itself.
 *
 * The follower only reads; it is stopped before the node takes the fence and becomes the writer.
 */
import type { Logger } from 'pino';
import type { DataplaneEntry, Dataplane } from '../dataplane/types.js';
import { leaseEntry } from '../leases/entry.js';
import { type LeaseRow, rowToLease } from '../leases/store.js';

/** the part of a pg.Client the follower uses */
export interface ListenClient {
  connect(): Promise<unknown>;
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: R[] }>;
  on(event: 'notification', fn: (msg: { channel: string; payload?: string }) => void): unknown;
  on(event: 'error' | 'end', fn: (e?: Error) => void): unknown;
  end(): Promise<void>;
}

export interface FollowerOptions {
  /** a new, unconnected client each time (pg: `() => new pg.Client({ connectionString, types })`) */
  readonly client: () => ListenClient;
  readonly dataplane: Dataplane;
  readonly now: () => number;
  /** kernel grace seconds, as the lease table's (`grace`, default 5) */
  readonly grace?: number;
  readonly log: Logger;
  /** retry delays after a lost connection, ms (default 200 doubling to 5000) */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
}

export interface FollowerStatus {
  readonly connected: boolean;
  readonly resyncs: number;
  readonly applied: number;
  readonly entries: number;
  readonly lastError: string | null;
}

export const LEASE_CHANNEL = 'portd_leases';

export function createFollower(opts: FollowerOptions) {
  const grace = opts.grace ?? 5;
  const retryMin = opts.retryMinMs ?? 200;
  const retryMax = opts.retryMaxMs ?? 5000;
  const log = opts.log;
  /** what this follower put into the dataplane, by lease id (derived: rebuilt by every resync) */
  const mine = new Map<string, DataplaneEntry>();
  let client: ListenClient | null = null;
  let stopped = true;
  let connected = false;
  let retryMs = retryMin;
  let retryTimer: NodeJS.Timeout | null = null;
  let pending = new Set<string>();
  let chain: Promise<void> = Promise.resolve();
  let resyncs = 0;
  let applied = 0;
  let lastError: string | null = null;
  let generation = 0; // one per connection: work queued by a lost connection is dropped
  const waiters: Array<() => void> = [];

  // int8 columns arrive as strings from a client without the store's type parser: the entry needs numbers
  const entryOf = (r: LeaseRow): DataplaneEntry | null =>
    r.state === 'active'
      ? leaseEntry(
          rowToLease({ ...r, expires_at: r.expires_at === null ? null : Number(r.expires_at) }),
          opts.now(),
          grace,
        )
      : null;

  /** runs after everything queued before it, on the current connection only */
  function enqueue(gen: number, job: (c: ListenClient) => Promise<void>): void {
    chain = chain.then(async () => {
      if (gen !== generation || !client || stopped) return;
      try {
        await job(client);
      } catch (e) {
        lost(gen, e as Error);
      }
    });
  }

  async function resync(c: ListenClient): Promise<void> {
    const rows = (await c.query<LeaseRow & Record<string, unknown>>(`SELECT * FROM leases WHERE state = 'active'`))
      .rows;
    const entries: DataplaneEntry[] = [];
    mine.clear();
    for (const r of rows) {
      const e = entryOf(r);
      if (!e) continue;
      entries.push(e);
      mine.set(r.id, e);
    }
    await opts.dataplane.reset(entries);
    resyncs++;
    log.info({ leases: entries.length }, 'ha follower: resynced the dataplane from the shared table');
    for (const w of waiters.splice(0)) w();
  }

  async function applyIds(c: ListenClient, ids: string[]): Promise<void> {
    const rows = (await c.query<LeaseRow & Record<string, unknown>>(`SELECT * FROM leases WHERE id = ANY($1)`, [ids]))
      .rows;
    const byId = new Map(rows.map((r) => [r.id, r]));
    const remove: DataplaneEntry[] = [];
    const add: DataplaneEntry[] = [];
    const next = new Map<string, DataplaneEntry | null>();
    for (const id of ids) {
      const old = mine.get(id);
      const row = byId.get(id);
      const now = row ? entryOf(row) : null;
      if (old) remove.push(old);
      if (now) add.push(now);
      next.set(id, now);
    }
    if (remove.length === 0 && add.length === 0) return;
    await opts.dataplane.apply({ remove, add });
    for (const [id, e] of next) {
      if (e) mine.set(id, e);
      else mine.delete(id);
    }
    applied += ids.length;
    log.debug({ ids: ids.length, add: add.length, remove: remove.length }, 'ha follower: applied lease changes');
  }

  function lost(gen: number, e: Error): void {
    if (gen !== generation || stopped) return;
    generation++;
    connected = false;
    lastError = e.message;
    log.warn({ err: e.message, retryMs }, 'ha follower: lost the database connection; reconnecting');
    const c = client;
    client = null;
    c?.end().catch(() => {});
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMax, retryMs * 2);
  }

  function connect(): void {
    retryTimer = null;
    if (stopped) return;
    const gen = ++generation;
    const c = opts.client();
    client = c;
    pending = new Set();
    c.on('error', (e) => lost(gen, e ?? new Error('connection error')));
    c.on('end', () => lost(gen, new Error('connection ended')));
    c.on('notification', (msg) => {
      if (gen !== generation || msg.channel !== LEASE_CHANNEL || !msg.payload) return;
      const first = pending.size === 0;
      pending.add(msg.payload);
      // the notifications of one commit arrive together: one read and one batch for all of them
      if (first) {
        setImmediate(() => {
          const ids = [...pending];
          pending = new Set();
          if (ids.length) enqueue(gen, (cc) => applyIds(cc, ids));
        });
      }
    });
    c.connect().then(
      () => {
        if (gen !== generation) return;
        enqueue(gen, async (cc) => {
          await cc.query(`LISTEN ${LEASE_CHANNEL}`);
          await resync(cc);
          connected = true;
          retryMs = retryMin;
        });
      },
      (e: Error) => lost(gen, e),
    );
  }

  return {
    /** connects, listens and resyncs in the background; `synced()` resolves after the next full resync */
    start(): void {
      if (!stopped) return;
      stopped = false;
      connect();
    },
    /** resolves at the next completed full resync (start, reconnect) */
    synced(): Promise<void> {
      return new Promise((r) => waiters.push(r));
    },
    /** resolves once everything notified so far is applied */
    async drain(): Promise<void> {
      await new Promise((r) => setImmediate(r));
      await chain;
    },
    async stop(): Promise<void> {
      stopped = true;
      generation++;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      await chain;
      const c = client;
      client = null;
      connected = false;
      await c?.end().catch(() => {});
    },
    status(): FollowerStatus {
      return { connected, resyncs, applied, entries: mine.size, lastError };
    },
  };
}
export type Follower = ReturnType<typeof createFollower>;
