/**
 * Who is a LAN client (issue 15, item 5): the check every front-end applies to a request's source
 * address before anything else; WAN-side requests are dropped in silence.
 *
 * - IPv4 (and IPv4-mapped IPv6): inside one of the LAN networks (interface CIDRs carry host bits,
 *   `192.168.1.1/24`: compared under the mask).
 * - IPv6 global and unique-local (RFC 4193): inside one of the prefixes of the LAN interfaces' own
 *   addresses, read from the interfaces (so a renumbered LAN is followed after `refresh()`).
 * - IPv6 link-local (fe80::/10, RFC 4291 §2.5.6): every interface has that prefix, so the prefix says
 *   nothing; only the zone does. A link-local source counts when its zone (`fe80::1%br-lan`, as the
 *   socket reports it; a numeric zone is an interface index) names a LAN interface; without a zone,
 *   it does not count.
 *
 * A spoofed global LAN source arriving on the WAN is not told apart here (a UDP socket does not say
 * which interface a datagram came in on): portd's input chain drops its front-end ports on the WAN
 * interface before they reach a socket (docs/nftables.md).
 */
import { inPrefix, ipv4ToInt, unmapIPv4 } from '../common/net.js';
import { classifyIPv6, maskIPv6, parseIPv6, samePrefix, splitZone, formatIPv6 } from '../common/ipv6.js';

/** one address of an interface, the shape of `os.networkInterfaces()` entries */
export interface InterfaceAddress {
  readonly address: string;
  readonly family: 'IPv4' | 'IPv6' | 4 | 6;
  readonly cidr: string | null;
  readonly scopeid?: number;
}

export type InterfaceAddressReader = () => NodeJS.Dict<readonly InterfaceAddress[]>;

export interface LanPrefix {
  readonly interface: string;
  /** canonical network text, host bits zero: `2001:db8:77::` */
  readonly network: string;
  readonly prefixLength: number;
}

export interface LanClientsOptions {
  /** the LAN networks as IPv4 CIDRs (`192.168.1.1/24`): configured listen addresses or the interfaces' */
  readonly ipv4: readonly string[];
  /** the LAN interfaces whose IPv6 prefixes and link-local zone count (none: no IPv6 client is LAN) */
  readonly interfaces: readonly string[];
  /** the interfaces' addresses (os.networkInterfaces in portd; a fixed table in tests) */
  readonly read: InterfaceAddressReader;
}

export interface LanClients {
  /** is this source address (as the socket reports it, zone included) on the LAN? */
  isLanClient(address: string): boolean;
  /** the LAN's global and unique-local IPv6 prefixes, as last read */
  ipv6Prefixes(): readonly LanPrefix[];
  /** re-read the interfaces (after a prefix change) */
  refresh(): void;
}

/** the global and unique-local prefixes of the named interfaces' IPv6 addresses, each prefix once (pure) */
export function lanIPv6Prefixes(
  table: NodeJS.Dict<readonly InterfaceAddress[]>,
  interfaces: readonly string[],
): LanPrefix[] {
  const out: LanPrefix[] = [];
  const seen = new Set<string>();
  for (const name of interfaces) {
    for (const a of table[name] ?? []) {
      if (!isV6(a) || !a.cidr) continue;
      const b = parseIPv6(splitZone(a.address).address);
      const len = Number(a.cidr.split('/')[1]);
      if (!b || !Number.isInteger(len) || len < 0 || len > 128) continue;
      const k = classifyIPv6(b);
      if (k !== 'global' && k !== 'unique-local' && k !== 'documentation') continue;
      const network = formatIPv6(maskIPv6(b, len));
      const key = `${name} ${network}/${len}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ interface: name, network, prefixLength: len });
    }
  }
  return out;
}

function isV6(a: InterfaceAddress): boolean {
  return a.family === 'IPv6' || a.family === 6;
}

export function createLanClients(opts: LanClientsOptions): LanClients {
  const v4 = opts.ipv4.map((c) => {
    const [net, len] = c.split('/');
    return { net: net!, len: Number(len) };
  });
  let prefixes: { p: LanPrefix; bytes: Uint8Array }[] = [];
  /** zones a link-local LAN source may carry: the LAN interfaces' names and their indexes */
  let zones = new Set<string>();
  // the answer per source text until the next refresh: every request is checked, and an IPv6 source was a parse,
  // a classification and a prefix walk each time (issue 15 item 9); bounded, and forgotten when the prefixes change
  const known = new Map<string, boolean>();

  function refresh(): void {
    known.clear();
    const table = opts.read();
    prefixes = lanIPv6Prefixes(table, opts.interfaces).map((p) => ({ p, bytes: parseIPv6(p.network)! }));
    zones = new Set(opts.interfaces);
    for (const name of opts.interfaces)
      for (const a of table[name] ?? []) if (isV6(a) && a.scopeid) zones.add(String(a.scopeid));
  }
  refresh();

  function decide(address: string): boolean {
    const plain = unmapIPv4(address);
    if (ipv4ToInt(plain) !== null) return v4.some((n) => inPrefix(plain, n.net, n.len));
    const { address: ip, zone } = splitZone(address);
    const b = parseIPv6(ip);
    if (!b) return false;
    const kind = classifyIPv6(b);
    if (kind === 'link-local') return zone !== null && zones.has(zone);
    if (kind !== 'global' && kind !== 'unique-local' && kind !== 'documentation') return false;
    return prefixes.some(({ p, bytes }) => samePrefix(b, bytes, p.prefixLength));
  }

  return {
    isLanClient(address) {
      let lan = known.get(address);
      if (lan === undefined) {
        lan = decide(address);
        if (known.size >= 1024) known.clear();
        known.set(address, lan);
      }
      return lan;
    },
    ipv6Prefixes: () => prefixes.map((x) => x.p),
    refresh,
  };
}
