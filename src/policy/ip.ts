// Address helpers for the policy and front-ends: thin names over src/config/net.ts (one implementation).
import { ipv4Mask, ipv4ToInt, unmapIPv4 } from '../config/net.js';

export { ipv4ToInt, intToIpv4 } from '../config/net.js';

/** strip an IPv4-mapped IPv6 prefix (::ffff:1.2.3.4) as node reports dual-stack peers */
export const normalizeAddress = unmapIPv4;

export function inPrefix(ip: string, network: string, prefix: number): boolean {
  const a = ipv4ToInt(ip),
    b = ipv4ToInt(network);
  if (a === null || b === null) return false;
  const mask = ipv4Mask(prefix);
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}
