/**
 * What kind of IPv4 address the WAN interface has: can hosts on the internet reach it, or is another NAT
 * in front of this gateway (a home router: double NAT; the ISP: carrier-grade NAT)?
 */
import { ipInCidr } from './net.js';

export type AddressKind = 'public' | 'private' | 'shared' | 'documentation' | 'link-local' | 'loopback' | 'unusable';

/** RFC 6890's special-purpose blocks that matter here, most specific first */
const BLOCKS: readonly { cidr: string; kind: AddressKind; name: string }[] = [
  { cidr: '10.0.0.0/8', kind: 'private', name: 'RFC 1918' },
  { cidr: '172.16.0.0/12', kind: 'private', name: 'RFC 1918' },
  { cidr: '192.168.0.0/16', kind: 'private', name: 'RFC 1918' },
  { cidr: '100.64.0.0/10', kind: 'shared', name: 'RFC 6598 shared address space' },
  { cidr: '192.0.2.0/24', kind: 'documentation', name: 'RFC 5737 TEST-NET-1' },
  { cidr: '198.51.100.0/24', kind: 'documentation', name: 'RFC 5737 TEST-NET-2' },
  { cidr: '203.0.113.0/24', kind: 'documentation', name: 'RFC 5737 TEST-NET-3' },
  { cidr: '169.254.0.0/16', kind: 'link-local', name: 'RFC 3927 link-local' },
  { cidr: '127.0.0.0/8', kind: 'loopback', name: 'loopback' },
  { cidr: '0.0.0.0/8', kind: 'unusable', name: '"this network"' },
  { cidr: '224.0.0.0/3', kind: 'unusable', name: 'multicast or reserved' },
];

export function classifyAddress(ip: string): { kind: AddressKind; block: string | null } {
  for (const b of BLOCKS) if (ipInCidr(ip, b.cidr)) return { kind: b.kind, block: `${b.cidr}, ${b.name}` };
  return { kind: 'public', block: null };
}
