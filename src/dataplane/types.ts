/**
 * The narrow interface between the lease table and the kernel (or memory).
 * One entry is one lease as the dataplane needs it: nothing about who asked or why.
 */
import type { PortMapping } from '../common/net-types.js';

export interface DataplaneEntry extends PortMapping {
  /** lease id; stable, used for logging and for the memory driver's identity */
  readonly id: string;
  /** kernel timeout in whole seconds (remaining lifetime + grace); null = no timeout (static) */
  readonly timeoutSeconds: number | null;
  /**
   * the remote filter's prefix length when shorter than the whole address (an IPv6 pinhole's PCP FILTER by
   * prefix, RFC 6887 §13.3; remoteAddress is then the prefix's network); absent or null = one whole address
   */
  readonly remotePrefix?: number | null;
}

/** One writer tick's changes. Removals are applied before additions; a renewal is remove + add of the same key. */
export interface DataplaneBatch {
  readonly remove: readonly DataplaneEntry[];
  readonly add: readonly DataplaneEntry[];
}

export interface DataplaneHealth {
  readonly ok: boolean;
  readonly lastReconcileAt: number | null;
  readonly lastDrift: number;
  readonly detail?: string;
}

export interface Dataplane {
  readonly driver: 'memory' | 'nftables';
  /** create (or adopt) the owned kernel state; must be idempotent */
  init(): Promise<void>;
  /** apply atomically: either the whole batch is in effect afterwards, or it throws and nothing changed */
  apply(batch: DataplaneBatch): Promise<void>;
  /** every entry currently in effect (may be expensive: use count() for cheap checks) */
  list(): Promise<DataplaneEntry[]>;
  /** number of entries in effect, cheap */
  count(): Promise<number>;
  /** replace everything with exactly these entries, atomically (reconcile) */
  reset(entries: readonly DataplaneEntry[]): Promise<void>;
  /** end established flows that used these (now removed) entries; best effort */
  endFlows(entries: readonly DataplaneEntry[]): Promise<void>;
  /** change the addresses treated as ours on the WAN */
  setExternalAddresses(addresses: readonly string[]): Promise<void>;
  health(): DataplaneHealth;
  /**
   * cheap liveness check of the owned kernel state; rebuilds it when it vanished (drivers without kernel state omit it)
   */
  check?(): Promise<{ ok: boolean; rebuilt: boolean; reason?: string }>;
  /**
   * full compare of every element with what the driver wrote, repairing drift; only when due (bounded share of time),
   * null when skipped
   */
  audit?(): Promise<{ missing: number; stale: number; repaired: boolean } | null>;
  /**
   * how many leases the kernel itself holds (not the driver's model), without listing them; drivers without kernel
   * state omit it
   */
  kernelCount?(): Promise<number>;
  /**
   * packets that came in through an IPv6 pinhole (kernel counters; UPnP GetPinholePackets); null when the
   * driver cannot count or the entry is not a pinhole
   */
  packets?(entry: DataplaneEntry): Promise<number | null>;
  close(): Promise<void>;
}

/**
 * Key under which the kernel knows an entry: two entries with the same key cannot coexist. Family 4: the
 * external endpoint (protocol, external port range, remote); family 6 (a pinhole, no translation): the internal
 * endpoint and the remote. Built from the record's fields, never from nft text.
 */
export function entryKey(
  e: Pick<
    DataplaneEntry,
    'family' | 'protocol' | 'externalPort' | 'externalPortEnd' | 'internalAddress' | 'internalPort' | 'remoteAddress'
  >,
): string {
  if (e.family === 6) {
    const end = e.internalPort + (e.externalPortEnd - e.externalPort);
    return `6/${e.protocol}/${e.internalAddress}/${e.internalPort}-${end}/${e.remoteAddress ?? '*'}`;
  }
  return `${e.protocol}/${e.externalPort}-${e.externalPortEnd}/${e.remoteAddress ?? '*'}`;
}
