import type { GrantResult, HistoryEntry, Lease, LeaseEvent, LeaseFilter, LeaseRequest, ReleaseRequest, ReleaseResult } from './types.js';

/** The lease table as front-ends, triggers and the admin API see it. */
export interface LeaseTableApi {
  /** create or renew; resolves after the change is committed and in the dataplane */
  request(req: LeaseRequest): Promise<GrantResult>;
  /** the holder ends its own lease */
  release(req: ReleaseRequest): Promise<ReleaseResult>;
  /** an admin ends any lease (also read-only ones only when force) */
  revoke(id: string, actor: string, reason?: string): Promise<ReleaseResult>;
  get(id: string): Lease | null;
  /** the active lease for an internal key (PCP/NAT-PMP) */
  findByInternal(protocol: 'tcp' | 'udp', internalAddress: string, internalPort: number): Lease | null;
  /** the active lease covering an external port (UPnP), any remote when remoteAddress undefined */
  findByExternal(protocol: 'tcp' | 'udp', externalPort: number, remoteAddress?: string | null): Lease | null;
  list(filter?: LeaseFilter): { leases: Lease[]; total: number };
  history(id: string): HistoryEntry[];
  countActive(): { total: number; bySource: Record<string, number>; byOwner: Record<string, number> };
  /** subscribe to lease events; returns an unsubscribe function */
  on(listener: (e: LeaseEvent) => void): () => void;
  /** the external address leases are opened on */
  externalAddress(): string;
}
