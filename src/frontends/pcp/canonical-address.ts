import { ipv4ToInt } from '../../common/net.js';
import { normalizeAddress } from '../../../protocols/pcp/index.js';

/**
 * The PCP front-end's one address normaliser: an address in the one text form the codec reads
 * (normalizeAddress: IPv4-mapped `::ffff:a.b.c.d` becomes the dotted quad, IPv6 its RFC 5952 text), or as
 * given when it is no address. A dotted quad without leading zeros is that form already: no trip through
 * 16 bytes (this runs several times per request).
 */
export function canonicalAddress(a: string): string {
  return ipv4ToInt(a) !== null ? a : (normalizeAddress(a) ?? a);
}
