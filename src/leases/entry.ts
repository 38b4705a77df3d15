/**
 * A lease's kernel entry: the one function that turns the lease's fields into the dataplane's entry, used by the
 * lease table (grants, renewals, reconcile) and by an HA standby's follower (src/ha/follower.ts), so both nodes'
 * kernels hold the same elements for the same rows.
 */
import type { DataplaneEntry } from '../dataplane/types.js';
import type { EntryFields } from './reconcile.js';

/** the kernel entry of `l` at `now` (epoch ms); `grace` seconds are added to the remaining lifetime */
export function leaseEntry(l: EntryFields, now: number, grace: number): DataplaneEntry {
  // the optional keys come last: a spread that opens an object literal (`{ ...(six ? { family: 6 } : {}), id… }`)
  // takes V8's slow path, 15-40 µs an object in node 20, and made every pinhole grant cost 1.5× a mapping's
  // (issue 15 item 9, docs/benchmarks.md session 8)
  return {
    id: l.id,
    protocol: l.protocol,
    externalAddress: l.externalAddress,
    externalPort: l.externalPort,
    externalPortEnd: l.externalPortEnd,
    internalAddress: l.internalAddress,
    internalPort: l.internalPort,
    remoteAddress: l.remoteAddress,
    timeoutSeconds: l.expiresAt === null ? null : Math.max(1, Math.ceil((l.expiresAt - now) / 1000)) + grace,
    ...(l.family === 6 ? { family: 6 as const } : {}),
    // a pinhole's remote filter may be a prefix (PCP FILTER, RFC 6887 §13.3): the dataplane keys on it
    ...(l.family === 6 && l.remotePrefix !== null && l.remotePrefix < 128 ? { remotePrefix: l.remotePrefix } : {}),
  };
}
