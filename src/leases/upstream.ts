/**
 * The upstream mapping of a lease (issue 16 part 3, "Chain upstream"): when the gateway is itself behind
 * another NAT, each IPv4 lease a LAN client gets is also requested from that NAT (PCP, NAT-PMP or UPnP IGD,
 * src/upstream/). This module holds what the lease table stores of it and the narrow face the front-ends
 * see; the clients and the manager live in src/upstream/ (which imports this, never the reverse).
 */
import type { Lease } from './types.js';

export type UpstreamProtocol = 'pcp' | 'natpmp' | 'upnp';

/**
 * pending: asked, no answer yet (or the answer came after the client's bound); active: mapped upstream;
 * failed: the upstream refused or stayed silent (the detail says which)
 */
export type UpstreamState = 'pending' | 'active' | 'failed';

/** one row of `upstream_mappings` (schema version 9), keyed by the lease */
export interface UpstreamRecord {
  readonly leaseId: string;
  readonly state: UpstreamState;
  readonly protocol: UpstreamProtocol;
  /** the upstream server: address (PCP / NAT-PMP) or the control URL's host:port (UPnP) */
  readonly server: string;
  /** the real public endpoint the upstream gave; null until active */
  readonly externalAddress: string | null;
  readonly externalPort: number | null;
  /** seconds the upstream granted at the last answer */
  readonly lifetime: number | null;
  /** epoch ms: when the upstream mapping ends unless renewed */
  readonly expiresAt: number | null;
  /** PCP mapping nonce (24 hex chars); null for NAT-PMP and UPnP */
  readonly nonce: string | null;
  /** the upstream's epoch (PCP / NAT-PMP seconds since its start) at the last answer */
  readonly epoch: number | null;
  /** why it failed, or the last upstream error */
  readonly detail: string | null;
  readonly updatedAt: number;
}

/**
 * An upstream refusal in neutral words; each front-end maps it to its own code (docs/double-nat.md,
 * "Chaining upstream", has the table):
 * - not_authorized: the upstream said no (PCP NOT_AUTHORIZED, NAT-PMP 2, UPnP 606/718 for another host)
 * - cannot_provide_external: that external port cannot be had (PCP CANNOT_PROVIDE_EXTERNAL, UPnP 718/729)
 * - no_resources: the upstream is out of ports or over a quota (PCP NO_RESOURCES / USER_EX_QUOTA, NAT-PMP 4,
 *   UPnP 728)
 * - unavailable: no answer within the bound, or a network failure (try later)
 */
export type UpstreamRefusal = 'not_authorized' | 'cannot_provide_external' | 'no_resources' | 'unavailable';

export type UpstreamOutcome =
  /** chaining is off, or this lease is not chained (IPv6 pinholes, triggers): answer as before */
  | { readonly kind: 'local' }
  | {
      readonly kind: 'mapped';
      readonly externalAddress: string;
      readonly externalPort: number;
      /** seconds the client may be told: no longer than the upstream mapping lives */
      readonly lifetime: number;
    }
  | { readonly kind: 'refused'; readonly reason: UpstreamRefusal; readonly detail: string };

/** what a front-end asks after a local grant or renewal (src/upstream/manager.ts implements it) */
export interface UpstreamChain {
  /** chain (or confirm) this lease upstream; resolves within the configured bound */
  chain(lease: Lease): Promise<UpstreamOutcome>;
  /** the upstream mapping stored for a lease, or null (admin API) */
  recordFor(leaseId: string): UpstreamRecord | null;
}
