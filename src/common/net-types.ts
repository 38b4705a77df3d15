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

/**
 * Who created a lease. The one list: the LeaseSource type, the admin API's schema
 * (src/admin/schemas.ts), the per-source counts and docs/admin-api.md follow it.
 */
export const LEASE_SOURCES = ['upnp', 'pcp', 'natpmp', 'trigger', 'static'] as const;
export type LeaseSource = (typeof LEASE_SOURCES)[number];
