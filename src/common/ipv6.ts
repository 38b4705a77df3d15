/**
 * The one home of the IPv6 helpers (issue 15): parse to 16 bytes, the one canonical text
 * (RFC 5952 §4: lower case, leading zeros dropped, the longest run of two or more zero groups
 * compressed, the first such run on a tie, IPv4-mapped addresses in dotted form), prefix
 * membership, and what kind of address it is (RFC 4291 §2.4, RFC 4193, RFC 3849, RFC 6890).
 *
 * Leases, policy, dataplane and front-ends store and compare IPv6 addresses in the canonical text
 * only: `2001:DB8::01` and `2001:db8:0:0::1` must be one key, or a client could hold two pinholes
 * for one endpoint and a quota count one host twice.
 */
/** a hex digit's value, or -1 */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 102) return c - 87; // a-f
  if (c >= 65 && c <= 70) return c - 55; // A-F
  return -1;
}

/**
 * A dotted quad from `i` to the end of `text` into out[at..at+3], as node's isIPv4 accepts it (four decimal
 * parts 0-255, no leading zeros); false when it is not one.
 */
function dottedQuadInto(text: string, i: number, out: Uint8Array, at: number): boolean {
  const n = text.length;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (i >= n || text.charCodeAt(i) !== 46) return false; // '.'
      i++;
    }
    const first = i;
    let v = 0;
    while (i < n && i - first < 4) {
      const c = text.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      i++;
    }
    const digits = i - first;
    if (digits === 0 || digits > 3 || v > 255 || (digits > 1 && text.charCodeAt(first) === 48)) return false;
    out[at + part] = v;
  }
  return i === n;
}

/**
 * 16 bytes of an IPv6 address; null when `text` is not one (a zone `%eth0` is not accepted here).
 * Accepts what node's `isIPv6` accepts (groups of 1-4 hex digits, one `::`, a dotted-quad tail in place of the
 * last two groups), without its regular expression: this runs several times on every pinhole request, and
 * `isIPv6` plus a split-and-map parse was ≈ 15 µs a call (issue 15 item 9, docs/benchmarks.md session 8).
 */
export function parseIPv6(text: string): Uint8Array | null {
  const n = text.length;
  if (n < 2 || n > 45) return null;
  const out = new Uint8Array(16);
  // groups are written from the front; the ones after `::` are moved to the back at the end
  let count = 0;
  let gap = -1;
  let i = 0;
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return null; // a lone leading ':'
    gap = 0;
    i = 2;
  }
  while (i < n) {
    if (count === 8) return null;
    const first = i;
    let v = 0;
    while (i < n && i - first < 5) {
      const h = hexDigit(text.charCodeAt(i));
      if (h < 0) break;
      v = v * 16 + h;
      i++;
    }
    if (i < n && text.charCodeAt(i) === 46) {
      // a dotted-quad tail: the last two groups (RFC 4291 §2.2 form 3)
      if (count > 6 || !dottedQuadInto(text, first, out, 2 * count)) return null;
      count += 2;
      break;
    }
    const digits = i - first;
    if (digits === 0 || digits > 4) return null;
    out[2 * count] = v >> 8;
    out[2 * count + 1] = v & 255;
    count++;
    if (i === n) break;
    if (text.charCodeAt(i) !== 58) return null; // not ':' (a zone '%', a stray character)
    i++;
    if (i < n && text.charCodeAt(i) === 58) {
      if (gap >= 0) return null; // a second '::'
      gap = count;
      i++;
    } else if (i === n) return null; // a trailing lone ':'
  }
  if (gap < 0) return count === 8 ? out : null;
  if (count > 7) return null; // '::' stands for at least one zero group
  const tail = 2 * (count - gap);
  out.copyWithin(16 - tail, 2 * gap, 2 * count);
  out.fill(0, 2 * gap, 16 - tail);
  return out;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** RFC 5952 §4 text of 16 bytes */
export function formatIPv6(b: Uint8Array): string {
  if (b.length !== 16) throw new RangeError(`an IPv6 address has 16 bytes, got ${b.length}`);
  if (isV4Mapped(b)) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`; // §5
  // the longest run of zero groups, length ≥ 2 (§4.2.2), the first on a tie (§4.2.3)
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (b[2 * i] !== 0 || b[2 * i + 1] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && b[2 * j] === 0 && b[2 * j + 1] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestAt) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += (((b[2 * i]! << 8) | b[2 * i + 1]!) >>> 0).toString(16);
  }
  return out;
}

/** the canonical text of an IPv6 address, or null when `text` is not one */
export function canonicalIPv6(text: string): string | null {
  const b = parseIPv6(text);
  return b ? formatIPv6(b) : null;
}

/** an address with an optional zone (`fe80::1%eth0`, as Node reports link-local peers) → address and zone */
export function splitZone(text: string): { address: string; zone: string | null } {
  const i = text.indexOf('%');
  return i < 0 ? { address: text, zone: null } : { address: text.slice(0, i), zone: text.slice(i + 1) };
}

/** are the first `prefixLength` bits of `a` and `b` equal? */
export function samePrefix(a: Uint8Array, b: Uint8Array, prefixLength: number): boolean {
  if (prefixLength < 0 || prefixLength > 128)
    throw new RangeError(`an IPv6 prefix length is 0-128, got ${prefixLength}`);
  const full = prefixLength >> 3;
  for (let i = 0; i < full; i++) if (a[i] !== b[i]) return false;
  const rest = prefixLength & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[full]! & mask) === (b[full]! & mask);
}

/** is IPv6 text `ip` inside `network/prefixLength`? false when either is not IPv6 */
export function ipv6InPrefix(ip: string, network: string, prefixLength: number): boolean {
  const a = parseIPv6(splitZone(ip).address);
  const b = parseIPv6(network);
  return a !== null && b !== null && samePrefix(a, b, prefixLength);
}

/** the first `prefixLength` bits of `b`, the rest zero */
export function maskIPv6(b: Uint8Array, prefixLength: number): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, prefixLength - 8 * i));
    out[i] = b[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

export type IPv6Kind =
  | 'unspecified' // ::
  | 'loopback' // ::1
  | 'ipv4-mapped' // ::ffff:0:0/96
  | 'multicast' // ff00::/8
  | 'link-local' // fe80::/10
  | 'unique-local' // fc00::/7 (RFC 4193)
  | 'documentation' // 2001:db8::/32 (RFC 3849): the lab's addresses, public-like for portd
  | 'global';

/** what kind of unicast/multicast address `b` is (the checks a LAN source and a pinhole target need) */
export function classifyIPv6(b: Uint8Array): IPv6Kind {
  let zeros = true;
  for (let i = 0; i < 15; i++) if (b[i] !== 0) zeros = false;
  if (zeros && b[15] === 0) return 'unspecified';
  if (zeros && b[15] === 1) return 'loopback';
  if (isV4Mapped(b)) return 'ipv4-mapped';
  if (b[0] === 0xff) return 'multicast';
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return 'link-local';
  if ((b[0]! & 0xfe) === 0xfc) return 'unique-local';
  if (b[0] === 0x20 && b[1] === 0x01 && b[2] === 0x0d && b[3] === 0xb8) return 'documentation';
  return 'global';
}

/**
 * An address a LAN host can have and a pinhole can point to: unicast, not unspecified, loopback,
 * IPv4-mapped or multicast. Link-local is refused too: a pinhole from the WAN can never reach it
 * (RFC 4291 §2.5.6: routers must not forward it).
 */
export function isPinholeTarget(text: string): boolean {
  const b = parseIPv6(text);
  if (!b) return false;
  const k = classifyIPv6(b);
  return k === 'global' || k === 'unique-local' || k === 'documentation';
}

/** what an IPv6 text is, as canonicalIPv6 and isPinholeTarget would say */
export interface IPv6Facts {
  /** the canonical text, or null when the text is not an IPv6 address */
  readonly canonical: string | null;
  /** isPinholeTarget of it: global, unique-local or documentation unicast */
  readonly pinholeTarget: boolean;
}

export interface IPv6Memo {
  /** canonicalIPv6(text), remembered */
  canonical(text: string): string | null;
  /** isPinholeTarget(text), remembered */
  pinholeTarget(text: string): boolean;
  /** both at once */
  facts(text: string): IPv6Facts;
  readonly size: number;
}

/**
 * canonicalIPv6 and isPinholeTarget with a memory of the texts they were last asked about. One pinhole request
 * checks its address in the front-end, the policy and the lease table, and each must canonicalise what it is
 * given (a caller may spell it any way): a parse and a format each time, ≈ 1-2 µs, against ≈ 40 ns for a
 * remembered text (issue 15 item 9). The answers are pure functions of the text, so a remembered one is never
 * stale; `limit` bounds the memory (all forgotten when it is reached: a flood of spoofed addresses costs the
 * plain parse, never memory). Each owner (front-end, policy, lease table) makes its own: no module-level state.
 */
export function createIPv6Memo(limit = 1024): IPv6Memo {
  const known = new Map<string, IPv6Facts>();
  function facts(text: string): IPv6Facts {
    let f = known.get(text);
    if (f === undefined) {
      const b = parseIPv6(text);
      let target = false;
      if (b !== null) {
        const k = classifyIPv6(b);
        target = k === 'global' || k === 'unique-local' || k === 'documentation';
      }
      f = { canonical: b === null ? null : formatIPv6(b), pinholeTarget: target };
      if (known.size >= limit) known.clear();
      known.set(text, f);
    }
    return f;
  }
  return {
    canonical: (text) => facts(text).canonical,
    pinholeTarget: (text) => facts(text).pinholeTarget,
    facts,
    get size() {
      return known.size;
    },
  };
}

/**
 * An endpoint as operators write it: `[2001:db8::10]:443` for an IPv6 address (RFC 3986 §3.2.2 brackets, so
 * the port is not read as a group), `192.0.2.1:443` otherwise. `port` may be a range text (`6000-6010`).
 */
export function formatEndpoint(address: string, port: number | string): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
