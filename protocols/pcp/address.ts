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
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

function parseIpv4(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

function parseIpv6(s: string): number[] | null {
  let text = s;
  const pct = text.indexOf('%');
  if (pct >= 0) text = text.slice(0, pct); // zone id is not part of the address
  let tailV4: number[] | null = null;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    tailV4 = parseIpv4(text.slice(lastColon + 1));
    if (!tailV4) return null;
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const left = parse(halves[0] ?? '');
  const right = halves.length === 2 ? parse(halves[1] ?? '') : [];
  if (!left || !right) return null;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - left.length - right.length;
    if (fill < 1) return null;
    groups = [...left, ...new Array<number>(fill).fill(0), ...right];
  } else {
    groups = left;
  }
  if (groups.length !== 8) return null;
  const bytes: number[] = [];
  for (const g of groups) bytes.push(g >> 8, g & 0xff);
  if (tailV4) bytes.splice(12, 4, ...tailV4);
  return bytes;
}

/** text → 16 octets; IPv4 becomes IPv4-mapped. Returns null for text that is no address. */
export function addressBytes(address: string): Uint8Array | null {
  const v4 = parseIpv4(address);
  if (v4) return Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4]);
  const v6 = parseIpv6(address);
  return v6 ? Uint8Array.from(v6) : null;
}

/** writes `address` into 16 octets at `offset`; throws TypeError for text that is no address (encoder misuse) */
export function writeAddress(b: Uint8Array, offset: number, address: string): void {
  const bytes = addressBytes(address);
  if (!bytes) throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
  b.set(bytes, offset);
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
