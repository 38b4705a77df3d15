import type { AddressFamily, LeaseSource } from '../common/net-types.js';
import type {
  GrantResult,
  HistoryEntry,
  Lease,
  LeaseEvent,
  LeaseFilter,
  LeaseRequest,
  ReleaseRequest,
  ReleaseResult,
} from './types.js';

/** The lease table as front-ends, triggers and the admin API see it. */
export interface LeaseTableApi {
  /** create or renew; resolves after the change is committed and in the dataplane */
  request(req: LeaseRequest): Promise<GrantResult>;
  /** the holder ends its own lease */
  release(req: ReleaseRequest): Promise<ReleaseResult>;
  /** an admin ends any lease (also read-only ones only when force) */
  revoke(id: string, actor: string, reason?: string, opts?: { sticky?: boolean }): Promise<ReleaseResult>;
  get(id: string): Lease | null;
  /**
   * the active lease for an internal key (PCP/NAT-PMP); for an IPv6 address, the pinhole covering that port
   * (with `remoteAddress` when given, else the one open to any peer, else any)
   */
  findByInternal(
    protocol: 'tcp' | 'udp',
    internalAddress: string,
    internalPort: number,
    remoteAddress?: string | null,
  ): Lease | null;
  /** the active lease covering an external port (UPnP), any remote when remoteAddress undefined */
  findByExternal(protocol: 'tcp' | 'udp', externalPort: number, remoteAddress?: string | null): Lease | null;
  /** one page of leases and the matching total: from memory or an index walk, never a scan of the table */
  list(filter?: LeaseFilter): { leases: Lease[]; total: number };
  /** active leases whose first external port is in [start, end], in port order; only `owner`'s when given */
  listExternalRange(
    protocol: 'tcp' | 'udp',
    start: number,
    end: number,
    opts?: { source?: LeaseSource; owner?: string },
  ): Lease[];
  /** active leases of one source, or of all (from memory); only IPv4 mappings or only pinholes with `family` */
  activeCount(source?: LeaseSource, family?: AddressFamily): number;
  /** the lease's history: stored entries, its renewals as one entry at the last (renewals are counted on the lease) */
  history(id: string): HistoryEntry[];
  /** from memory: active leases in total, per source and per owner */
  countActive(): { total: number; bySource: Record<string, number>; byOwner: Record<string, number> };
  /** subscribe to lease events; returns an unsubscribe function */
  on(listener: (e: LeaseEvent) => void): () => void;
  /** the external address leases are opened on */
  externalAddress(): string;
}
