import type { AddressFamily, L4Protocol, LeaseSource, PortMapping } from '../common/net-types.js';

export interface Lease extends PortMapping {
  readonly id: string;
  readonly source: LeaseSource;
  readonly remotePrefix: number | null;
  readonly remotePort: number | null;
  /** the LAN address that asked */
  readonly owner: string;
  readonly description: string;
  /** PCP mapping nonce as 24 hex chars; null for others */
  readonly nonce: string | null;
  /** epoch ms (wall clock at grant, re-based on start) */
  readonly createdAt: number;
  readonly updatedAt: number;
  /** epoch ms; null only for leases without expiry (static forwards) */
  readonly expiresAt: number | null;
  /** the lifetime requested by the client in seconds, before clamping (0 = "permanent" for UPnP v1) */
  readonly requestedLifetime: number | null;
  /** config-file static forwards and trigger rules: not revocable / editable via API */
  readonly readOnly: boolean;
  /** for triggers: the rule name */
  readonly rule: string | null;
  readonly state: 'active' | 'ended';
  readonly endedAt: number | null;
  readonly endReason: EndReason | null;
  /** how often the lease was renewed; renewals update the lease and add no history row */
  readonly renewCount: number;
  /** epoch ms of the last renewal; null when never renewed */
  readonly lastRenewedAt: number | null;
}

export type EndReason = 'released' | 'expired' | 'revoked' | 'replaced' | 'config';

/**
 * What a front-end asks for. The core knows no protocol numbers.
 * identity: how the caller names the mapping.
 *  - 'internal' (PCP MAP, NAT-PMP): (protocol, internalAddress, internalPort) — a renewal may suggest
 *    another or no port
 *  - 'external' (UPnP, admin, trigger): (protocol, externalPort, remoteAddress)
 */
export interface LeaseRequest {
  /** 4 (default): a mapping with translation; 6: an IPv6 pinhole (externalPort = internalPort) */
  readonly family?: AddressFamily;
  readonly source: LeaseSource;
  readonly identity: 'internal' | 'external';
  readonly protocol: L4Protocol;
  readonly owner: string;
  readonly internalAddress: string;
  readonly internalPort: number;
  /** suggested external port; 0 or undefined = any */
  readonly externalPort?: number;
  /** for ranges (triggers, static); defaults to externalPort */
  readonly externalPortEnd?: number;
  /** when the suggested port is taken, may another be allocated? (PCP without PREFER_FAILURE, AddAnyPortMapping) */
  readonly allowOtherPort: boolean;
  readonly remoteAddress?: string | null;
  readonly remotePrefix?: number | null;
  readonly remotePort?: number | null;
  /**
   * requested lifetime in seconds; null = no expiry (static only). Clamped by policy per source. 0 is NOT a delete
   * here: use release().
   */
  readonly lifetime: number | null;
  readonly description?: string;
  readonly nonce?: string | null;
  /** the requester is a trusted third party (PCP THIRD_PARTY allowed by policy, admin, trigger) */
  readonly thirdPartyAllowed?: boolean;
  readonly readOnly?: boolean;
  readonly rule?: string | null;
  /** who is acting, for the audit trail (e.g. 'admin:token-name', 'pcp:192.168.1.5') */
  readonly actor?: string;
}

export type Refusal =
  | {
      readonly ok: false;
      readonly reason: 'conflict';
      readonly holder: {
        readonly id: string;
        readonly source: LeaseSource;
        readonly owner: string;
        readonly externalPort: number;
        readonly externalPortEnd: number;
      };
    }
  // secure mode, third party, nonce mismatch, read-only lease
  | { readonly ok: false; readonly reason: 'not_authorized'; readonly detail: string }
  | { readonly ok: false; readonly reason: 'denied'; readonly detail: string } // allow/deny rules
  | { readonly ok: false; readonly reason: 'reserved'; readonly detail: string } // reserved port
  | { readonly ok: false; readonly reason: 'quota'; readonly detail: string } // per-owner limit
  | { readonly ok: false; readonly reason: 'no_port'; readonly detail: string } // no free external port left
  // a global limit (active leases, requests) is reached
  | { readonly ok: false; readonly reason: 'capacity'; readonly detail: string }
  // the gateway itself listens on that external port
  | { readonly ok: false; readonly reason: 'in_use'; readonly detail: string }
  // bad arguments (port 0 internal, range mismatch...)
  | { readonly ok: false; readonly reason: 'invalid'; readonly detail: string }
  // database or dataplane failure: transient
  | { readonly ok: false; readonly reason: 'unavailable'; readonly detail: string };

export type RefusalReason = Refusal['reason'];

export type GrantResult =
  | { readonly ok: true; readonly lease: Lease; readonly created: boolean; readonly lifetime: number | null }
  | Refusal;

/** release by the holder (UPnP DeletePortMapping, PCP/NAT-PMP lifetime 0) */
export interface ReleaseRequest {
  readonly source: LeaseSource;
  readonly identity: 'internal' | 'external';
  readonly protocol: L4Protocol;
  readonly owner: string;
  /** internal identity */
  readonly internalAddress?: string;
  readonly internalPort?: number;
  /** external identity */
  readonly externalPort?: number;
  readonly remoteAddress?: string | null;
  /** PCP: must match the lease's nonce when the lease has one */
  readonly nonce?: string | null;
  /** may release leases of other owners (admin, secure mode off) */
  readonly thirdPartyAllowed?: boolean;
  readonly actor?: string;
}

export type ReleaseResult =
  | { readonly ok: true; readonly lease: Lease | null } // null: nothing to release (PCP says: success)
  | Refusal;

export interface LeaseFilter {
  readonly source?: LeaseSource;
  readonly owner?: string;
  readonly protocol?: L4Protocol;
  readonly externalPort?: number;
  readonly internalPort?: number;
  readonly state?: 'active' | 'ended' | 'all';
  readonly search?: string;
  readonly limit?: number;
  readonly offset?: number;
  readonly sort?: 'createdAt' | 'expiresAt' | 'externalPort' | 'owner';
  readonly order?: 'asc' | 'desc';
}

export type LeaseEventType = 'granted' | 'renewed' | 'released' | 'expired' | 'revoked' | 'refused' | 'replaced';

export interface LeaseEvent {
  readonly type: LeaseEventType;
  readonly at: number;
  readonly leaseId: string | null;
  readonly lease: Lease | null;
  readonly source: LeaseSource;
  readonly owner: string;
  readonly actor: string | null;
  readonly reason: string | null;
}

export interface HistoryEntry {
  readonly leaseId: string;
  readonly type: LeaseEventType;
  readonly at: number;
  readonly actor: string | null;
  readonly reason: string | null;
}
