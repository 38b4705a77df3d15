/**
 * The one home of the address helpers (config validator, policy, lease table, dataplane,
 * front-ends): IPv4 as integers, IPv4-mapped IPv6, CIDR parsing and membership.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

/**
 * parse a dotted-quad IPv4 address into an unsigned 32-bit integer; null when not IPv4 (exactly what
 * `net.isIPv4` accepts: four decimal parts 0-255, no leading zeros). By hand, one pass: it runs several
 * times per request (LAN check, lease keys, kernel elements), and isIPv4's regular expression plus a split
 * showed in the cold-start profile (docs/benchmarks.md, session 7).
 */
export function ipv4ToInt(ip: string): number | null {
  const len = ip.length;
  if (len < 7 || len > 15) return null;
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < len; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return null;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return null; // a leading zero
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return null;
    } else return null;
  }
  if (dots !== 3 || digits === 0) return null;
  return (n * 256 + part) >>> 0;
}

export function intToIpv4(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** the network mask for an IPv4 prefix length, as an unsigned 32-bit integer */
export function ipv4Mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** strips an IPv4-mapped IPv6 prefix (`::ffff:192.0.2.1`), as sockets on dual-stack listeners report it */
export function unmapIPv4(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m?.[1] ?? ip;
}

/** is IPv4 `ip` inside `network/prefix`? false when either side is not IPv4 */
export function inPrefix(ip: string, network: string, prefix: number): boolean {
  const a = ipv4ToInt(ip);
  const b = ipv4ToInt(network);
  if (a === null || b === null) return false;
  const mask = ipv4Mask(prefix);
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}

export interface Cidr {
  readonly family: 4 | 6;
  readonly address: string;
  readonly prefix: number;
}

/**
 * Parses `a.b.c.d/n`, `a.b.c.d/255.255.255.0`, a bare address (host prefix), or an IPv6 `x::/n`.
 * Throws a ConfigValueError-shaped Error (message = what is expected) on bad input, including
 * host bits set beyond the prefix — a `192.168.1.5/24` typo would otherwise silently widen a rule.
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const pfx = slash < 0 ? null : text.slice(slash + 1);
  if (isIPv4(addr)) {
    let prefix = 32;
    if (pfx !== null) {
      if (/^\d{1,2}$/.test(pfx) && Number(pfx) <= 32) prefix = Number(pfx);
      else if (isIPv4(pfx)) {
        const m = ipv4ToInt(pfx)!;
        prefix = Math.clz32(~m >>> 0); // a contiguous mask's complement is 2^k - 1
        if (ipv4Mask(prefix) !== m)
          throw new Error(`must be an IPv4 network like 192.168.1.0/24, got a non-contiguous mask "${pfx}"`);
      } else throw new Error(`must be an IPv4 network like 192.168.1.0/24 (prefix 0-32), got ${JSON.stringify(text)}`);
    }
    const n = ipv4ToInt(addr)!;
    const masked = (n & ipv4Mask(prefix)) >>> 0;
    if (masked !== n) {
      throw new Error(`has host bits set beyond /${prefix}: did you mean ${intToIpv4(masked)}/${prefix}?`);
    }
    return { family: 4, address: addr, prefix };
  }
  if (isIPv6(addr)) {
    let prefix = 128;
    if (pfx !== null) {
      if (/^\d{1,3}$/.test(pfx) && Number(pfx) <= 128) prefix = Number(pfx);
      else throw new Error(`must be an IPv6 network like fd00::/64 (prefix 0-128), got ${JSON.stringify(text)}`);
    }
    return { family: 6, address: addr, prefix };
  }
  throw new Error(`must be an IP address or network like 192.168.1.0/24, got ${JSON.stringify(text)}`);
}

/** canonical text of a CIDR: always with a prefix */
export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/**
 * Is `ip` inside `cidr`? Accepts IPv4 and IPv6 on both sides (bare addresses mean a host prefix);
 * an IPv4-mapped IPv6 address matches IPv4 networks. Returns false for anything unparsable.
 */
export function ipInCidr(ip: string, cidr: string): boolean {
  let c: Cidr;
  try {
    c = parseCidr(cidr);
  } catch {
    return false;
  }
  const addr = unmapIPv4(ip);
  if (c.family === 4) {
    const n = ipv4ToInt(addr);
    if (n === null) return false;
    const m = ipv4Mask(c.prefix);
    return (n & m) >>> 0 === (ipv4ToInt(c.address)! & m) >>> 0;
  }
  if (!isIPv6(addr)) return false;
  const bl = new BlockList();
  bl.addSubnet(c.address, c.prefix, 'ipv6');
  return bl.check(addr, 'ipv6');
}

/** a unicast IPv4 address a LAN host can have (not 0.0.0.0/8, not multicast/broadcast/reserved 224.0.0.0/3) */
export function isUsableIPv4Host(ip: string): boolean {
  const n = ipv4ToInt(ip);
  if (n === null) return false;
  const first = n >>> 24;
  return first !== 0 && first < 224;
}
