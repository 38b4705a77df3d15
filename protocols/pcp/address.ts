/**
 * PCP carries every address in a 128-bit field; IPv4 as an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, RFC 6887 §5). These helpers turn that field into the text form the
 * rest of portd uses (dotted quad for IPv4, RFC 5952 text for IPv6) and back.
 */

/** true when the 16 octets at `offset` are ::ffff:0:0/96 (RFC 6887 §5: check all 96 bits) */
export function isIpv4Mapped(b: Uint8Array, offset = 0): boolean {
  for (let i = 0; i < 10; i++) if (b[offset + i] !== 0) return false;
  return b[offset + 10] === 0xff && b[offset + 11] === 0xff;
}

export function isAllZero(b: Uint8Array, offset = 0, length = 16): boolean {
  for (let i = 0; i < length; i++) if (b[offset + i] !== 0) return false;
  return true;
}

/** 16 octets → text. IPv4-mapped → "a.b.c.d"; the all-zero field → "::". */
export function readAddress(b: Uint8Array, offset: number): string {
  if (isIpv4Mapped(b, offset)) {
    return `${b[offset + 12]}.${b[offset + 13]}.${b[offset + 14]}.${b[offset + 15]}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(((b[offset + 2 * i] ?? 0) << 8) | (b[offset + 2 * i + 1] ?? 0));
  // RFC 5952 §4.2: compress the longest run (≥ 2) of zero groups, the first one on a tie
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // a loop, not map/join: every PCP request and answer with an IPv6 address comes through here
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += groups[i]!.toString(16);
  }
  return out;
}

// The parsers below scan characters instead of splitting and testing regular expressions: every PCP request
// and response goes through them (the THIRD_PARTY option, the assigned external address), and a pinhole's
// IPv6 address cost ≈ 10 µs a parse the old way (issue 15 item 9, docs/benchmarks.md session 8).

/** a hex digit's value, or -1 */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 102) return c - 87; // a-f
  if (c >= 65 && c <= 70) return c - 55; // A-F
  return -1;
}

/** a dotted quad (four parts of 1-3 decimal digits, each ≤ 255) in s[from, to) into out[at..at+3] */
function ipv4Into(s: string, from: number, to: number, out: Uint8Array, at: number): boolean {
  let i = from;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (i >= to || s.charCodeAt(i) !== 46) return false; // '.'
      i++;
    }
    const first = i;
    let v = 0;
    while (i < to && i - first < 4) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      i++;
    }
    if (i === first || i - first > 3 || v > 255) return false;
    out[at + part] = v;
  }
  return i === to;
}

/**
 * IPv6 text (a zone id after '%' ignored, a dotted-quad tail allowed) into out[at..at+15]; false when it is not one
 * (out may then hold part of it). In place, so an encoder writes an address without a 16-octet array of its own.
 */
function ipv6Into(s: string, out: Uint8Array, at: number): boolean {
  const pct = s.indexOf('%');
  const n = pct >= 0 ? pct : s.length; // the zone id is not part of the address
  if (n < 2) return false;
  // every octet is written below (the groups, the zeros of '::', the moved tail): no clearing first
  let count = 0; // groups written so far, from the front; those after '::' move to the back at the end
  let gap = -1;
  let i = 0;
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
  }
  while (i < n) {
    if (count === 8) return false;
    const first = i;
    let v = 0;
    while (i < n && i - first < 5) {
      const h = hexDigit(s.charCodeAt(i));
      if (h < 0) break;
      v = v * 16 + h;
      i++;
    }
    if (i < n && s.charCodeAt(i) === 46) {
      // a dotted-quad tail: the last two groups
      if (count > 6 || !ipv4Into(s, first, n, out, at + 2 * count)) return false;
      count += 2;
      break;
    }
    if (i === first || i - first > 4) return false;
    out[at + 2 * count] = v >> 8;
    out[at + 2 * count + 1] = v & 255;
    count++;
    if (i === n) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (i < n && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false; // a second '::'
      gap = count;
      i++;
    } else if (i === n) return false; // a trailing lone ':'
  }
  if (gap < 0) return count === 8;
  if (count > 7) return false; // '::' stands for at least one zero group
  const tail = 2 * (count - gap);
  out.copyWithin(at + 16 - tail, at + 2 * gap, at + 2 * count);
  out.fill(0, at + 2 * gap, at + 16 - tail);
  return true;
}

/** text → 16 octets; IPv4 becomes IPv4-mapped. Returns null for text that is no address. */
export function addressBytes(address: string): Uint8Array | null {
  const out = new Uint8Array(16);
  return addressInto(address, out, 0) ? out : null;
}

/** text into out[at..at+15] (IPv4 as IPv4-mapped); false for text that is no address (out may hold part of it) */
function addressInto(address: string, out: Uint8Array, at: number): boolean {
  if (address.indexOf(':') < 0) {
    out.fill(0, at, at + 10);
    out[at + 10] = 0xff;
    out[at + 11] = 0xff;
    return ipv4Into(address, 0, address.length, out, at + 12);
  }
  return ipv6Into(address, out, at);
}

/**
 * writes `address` into 16 octets at `offset`; throws TypeError for text that is no address (encoder misuse).
 * In place: every PCP answer writes one or two addresses, and a 16-octet array each was most of an IPv6
 * answer's extra cost (issue 15 item 9)
 */
export function writeAddress(b: Uint8Array, offset: number, address: string): void {
  if (offset < 0 || offset + 16 > b.length) throw new RangeError(`no room for an address at offset ${offset}`);
  if (!addressInto(address, b, offset)) throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
}

/** same address in any spelling ("::ffff:1.2.3.4" and "1.2.3.4" are equal) */
export function sameAddress(a: string, b: string): boolean {
  const x = addressBytes(a);
  const y = addressBytes(b);
  if (!x || !y) return false;
  for (let i = 0; i < 16; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** the text form readAddress would give, for any accepted spelling ("::ffff:1.2.3.4" → "1.2.3.4") */
export function normalizeAddress(address: string): string | null {
  const b = addressBytes(address);
  return b ? readAddress(b, 0) : null;
}

/** the unspecified address in PCP's field: "::" or IPv4 0.0.0.0 (RFC 6887 §5) */
export function isUnspecified(address: string): boolean {
  return address === '::' || address === '0.0.0.0';
}
