/**
 * The shared vocabulary of every layer (config, policy, lease table, dataplane, front-ends,
 * triggers, admin): defined once here, at the bottom, so no layer imports a type from a layer
 * above or beside it. Types only, plus the one list of lease sources the others derive from.
 */

/** a transport protocol a lease can open */
export type L4Protocol = 'tcp' | 'udp';

/** IPv4 mapping with translation, or IPv6 pinhole */
export type AddressFamily = 4 | 6;

/** an inclusive port range; a single port has start === end */
export interface PortRange {
  readonly start: number;
  readonly end: number;
}

/** the WAN → LAN opening itself: what a lease and the dataplane entry made from it share */
export interface PortMapping {
  /**
   * 4 (absent): an IPv4 mapping with translation. 6: an IPv6 firewall pinhole (issue 15), no
   * translation: externalAddress = internalAddress and externalPort = internalPort (a range: the
   * same range), all addresses in the canonical text of src/common/ipv6.ts.
   */
  readonly family?: AddressFamily;
  readonly protocol: L4Protocol;
  readonly externalAddress: string;
  readonly externalPort: number;
  /** equal to externalPort for a single port; a range maps 1:1 onto internalPort.. */
  readonly externalPortEnd: number;
  readonly internalAddress: string;
  readonly internalPort: number;
  /** only this peer may use the opening (UPnP RemoteHost, PCP FILTER); null = anyone */
  readonly remoteAddress: string | null;
}

/**
 * Who created a lease. The one list: the LeaseSource type, the admin API's schema
 * (src/admin/schemas.ts), the per-source counts and docs/admin-api.md follow it.
 */
export const LEASE_SOURCES = ['upnp', 'pcp', 'natpmp', 'trigger', 'static'] as const;
export type LeaseSource = (typeof LEASE_SOURCES)[number];
