/**
 * Reconcile: the kernel gets exactly the table. An exclusive job of the writer (writer.ts): it runs between
 * ticks, so no tick changes rows or kernel entries while the active rows are read and the dataplane reset.
 * Asked for at start, by the periodic audit (counts only), after a refused kernel change or failed commit the
 * writer could not undo, and after a wall-clock step.
 */
import type { Logger } from 'pino';
import type { Dataplane, DataplaneEntry } from '../dataplane/types.js';
import { entryKey } from '../dataplane/types.js';
import type { Metrics } from '../metrics.js';
import type { LeaseRow } from './store.js';
import type { Lease } from './types.js';
import type { Writer } from './writer.js';

/** the fields of a lease its kernel entry is made of */
export type EntryFields = Pick<
  Lease,
  | 'family'
  | 'id'
  | 'protocol'
  | 'externalAddress'
  | 'externalPort'
  | 'externalPortEnd'
  | 'internalAddress'
  | 'internalPort'
  | 'remoteAddress'
  | 'remotePrefix'
  | 'expiresAt'
>;

export interface ReconcilerOptions {
  readonly prepare: (sql: string) => { get(): unknown; iterate(): IterableIterator<unknown> };
  readonly dataplane: Pick<Dataplane, 'count' | 'kernelCount' | 'list' | 'reset'>;
  readonly clock: { now(): number };
  readonly log: Logger;
  readonly metrics?: Metrics;
  /** a lease's kernel entry at this time (its timeout counted from now) */
  readonly toEntry: (l: EntryFields, now: number) => DataplaneEntry;
  readonly writer: Pick<Writer, 'exclusive'>;
}

export function createReconciler(opts: ReconcilerOptions) {
  const { prepare, dataplane, clock, log, metrics, toEntry, writer } = opts;
  // the periodic check compares counts only: no rows are read unless they differ (100k rows every minute
  // cost ≈ 0.3 s of blocked event loop and 100+ MB of garbage)
  const countActiveRows = prepare(`SELECT count(*) AS n FROM leases WHERE state = 'active'`);
  // only the columns an entry needs, and one string per distinct address (100k rows hold a few hundred):
  // less garbage while 100k entries are built, and fewer objects in the dataplane's model afterwards
  const activeEntryRows =
    prepare(`SELECT id, protocol, external_address, external_port, external_port_end, internal_address,
    internal_port, remote_address, remote_prefix, expires_at, family FROM leases WHERE state = 'active'`);
  type EntryRow = Pick<
    LeaseRow,
    | 'family'
    | 'id'
    | 'protocol'
    | 'external_address'
    | 'external_port'
    | 'external_port_end'
    | 'internal_address'
    | 'internal_port'
    | 'remote_address'
    | 'remote_prefix'
    | 'expires_at'
  >;
  async function reconcile(why: string, full = true): Promise<{ drift: number }> {
    return writer.exclusive(
      'reconcile',
      async () => {
        const now = clock.now();
        if (!full) {
          const rows = (countActiveRows.get() as { n: number }).n;
          const n = await dataplane.count();
          if (n === rows) return { drift: 0 };
        }
        // the kernel's count is read while the rows are (nft runs beside us: one turn of the loop lets the
        // driver start it before the rows are read): when it equals the entries, no element is listed (a
        // restart where the kernel kept everything), and when it is 0 nothing need be
        const kernelCount = dataplane.kernelCount ? dataplane.kernelCount().catch(() => null) : null;
        if (kernelCount) await new Promise((r) => setImmediate(r));
        // row by row: only the entries are kept, not 100k row objects and Leases besides them
        const desired: DataplaneEntry[] = [];
        const strings = new Map<string, string>();
        const intern = (x: string) => {
          const y = strings.get(x);
          if (y !== undefined) return y;
          strings.set(x, x);
          return x;
        };
        for (const r of activeEntryRows.iterate() as IterableIterator<EntryRow>) {
          if (r.expires_at !== null && r.expires_at <= now) continue;
          desired.push(
            toEntry(
              {
                family: r.family === 6 ? 6 : 4,
                id: r.id,
                protocol: r.protocol === 'udp' ? 'udp' : 'tcp',
                externalAddress: intern(r.external_address),
                externalPort: r.external_port,
                externalPortEnd: r.external_port_end,
                internalAddress: intern(r.internal_address),
                internalPort: r.internal_port,
                remoteAddress: r.remote_address === null ? null : intern(r.remote_address),
                remotePrefix: r.remote_prefix,
                expiresAt: r.expires_at,
              },
              now,
            ),
          );
        }
        let drift = 0;
        const counted = kernelCount === null ? null : await kernelCount;
        if (counted === 0) drift = desired.length;
        else if (counted === null || counted !== desired.length) {
          try {
            const current = await dataplane.list();
            const want = new Map(desired.map((e) => [entryKey(e) + '>' + e.internalAddress + ':' + e.internalPort, e]));
            const have = new Set(current.map((e) => entryKey(e) + '>' + e.internalAddress + ':' + e.internalPort));
            for (const k of want.keys()) if (!have.has(k)) drift++;
            for (const k of have) if (!want.has(k)) drift++;
          } catch {
            drift = -1;
          }
        }
        await dataplane.reset(desired);
        if (drift !== 0) {
          metrics?.reconcileDrift.inc(Math.max(drift, 0));
          log.warn({ why, drift, entries: desired.length }, 'reconcile repaired the dataplane');
        } else {
          log.debug({ why, entries: desired.length, kernelCount: counted }, 'reconcile: dataplane matches the table');
        }
        return { drift };
      },
      () => ({ drift: -1 }),
    );
  }
  return reconcile;
}
