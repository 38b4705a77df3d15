import { MAN_DISCOVER, MX_MAX, SearchTarget, SsdpLimits } from './constants.js';
import { SsdpDecodeError } from './errors.js';

/** A decoded M-SEARCH request (UDA 1.1 §1.3.2). Header names are lower-cased. */
export interface SsdpSearch {
  readonly st: string;
  /** seconds, capped at MX_MAX; null when absent (unicast search: answer at once) */
  readonly mx: number | null;
  readonly host: string | null;
  readonly userAgent: string | null;
  readonly headers: ReadonlyMap<string, string>;
}

export interface SsdpDecodeLimits {
  readonly maxBytes: number;
  readonly maxHeaders: number;
  readonly maxLineLength: number;
}

/** Splits an HTTPU message into its start line and headers; throws SsdpDecodeError. */
export function decodeHttpu(
  bytes: Uint8Array,
  limits: SsdpDecodeLimits = SsdpLimits,
): { startLine: string; headers: Map<string, string> } {
  if (bytes.length > limits.maxBytes)
    throw new SsdpDecodeError('too_large', `datagram of ${bytes.length} bytes exceeds ${limits.maxBytes}`);
  if (bytes.length === 0) throw new SsdpDecodeError('malformed', 'empty datagram');
  // latin1 never fails on any byte string; header values we use are ASCII
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const head = end < 0 ? text : text.slice(0, end);
  const lines = head.split(/\r?\n/);
  const startLine = lines[0] ?? '';
  if (startLine.length > limits.maxLineLength) throw new SsdpDecodeError('malformed', 'start line too long');
  if (lines.length - 1 > limits.maxHeaders)
    throw new SsdpDecodeError('malformed', `more than ${limits.maxHeaders} headers`);
  const headers = new Map<string, string>();
  let offset = startLine.length;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    offset += line.length + 1;
    if (line.length === 0) continue;
    if (line.length > limits.maxLineLength) throw new SsdpDecodeError('malformed', 'header line too long', offset);
    const colon = line.indexOf(':');
    if (colon <= 0) throw new SsdpDecodeError('malformed', 'header line without a name', offset);
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[a-z0-9._-]+$/.test(name)) throw new SsdpDecodeError('malformed', 'bad header name', offset);
    const value = line.slice(colon + 1).trim();
    // a lone CR or other control character in a value could end up in a reply's header
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value))
      throw new SsdpDecodeError('malformed', `control character in ${name}`, offset);
    // first occurrence wins: a duplicate ST must not widen a search
    if (!headers.has(name)) headers.set(name, value);
  }
  return { startLine, headers };
}

/** Decodes an M-SEARCH datagram. Anything else (NOTIFY from other devices, responses, junk) throws SsdpDecodeError. */
export function decodeSearch(bytes: Uint8Array, limits: SsdpDecodeLimits = SsdpLimits): SsdpSearch {
  const { startLine, headers } = decodeHttpu(bytes, limits);
  const parts = startLine.trim().split(/\s+/);
  if (parts[0] !== 'M-SEARCH') throw new SsdpDecodeError('not_search', `not an M-SEARCH: ${startLine.slice(0, 40)}`);
  if (parts[1] !== '*' || !/^HTTP\/1\.[01]$/.test(parts[2] ?? ''))
    throw new SsdpDecodeError('malformed', 'bad M-SEARCH request line');
  const man = headers.get('man');
  // UDA 1.1 §1.3.2: MAN is REQUIRED and quoted; accept it unquoted too (seen in the field)
  if (man === undefined || (man !== MAN_DISCOVER && man !== 'ssdp:discover'))
    throw new SsdpDecodeError('bad_man', `MAN is ${JSON.stringify(man ?? null)}`);
  const st = headers.get('st');
  if (!st) throw new SsdpDecodeError('missing_st', 'no ST header');
  let mx: number | null = null;
  const mxText = headers.get('mx');
  if (mxText !== undefined && mxText !== '') {
    if (!/^\d{1,6}$/.test(mxText)) throw new SsdpDecodeError('bad_mx', `MX ${JSON.stringify(mxText)} is not a number`);
    mx = Math.min(Number(mxText), MX_MAX);
  }
  return { st, mx, host: headers.get('host') ?? null, userAgent: headers.get('user-agent') ?? null, headers };
}

/** `urn:<domain>:device|service:<type>:<version>` (UDA 1.1 §1.1.2 table, "NT"/"ST" values) */
export interface TypeUrn {
  readonly domain: string;
  readonly kind: 'device' | 'service';
  readonly type: string;
  readonly version: number;
}

export function parseTypeUrn(urn: string): TypeUrn | null {
  const m = /^urn:([^:\s]+):(device|service):([^:\s]+):(\d{1,4})$/.exec(urn);
  if (!m) return null;
  return { domain: m[1]!, kind: m[2] as 'device' | 'service', type: m[3]!, version: Number(m[4]) };
}

/** Something we advertise: one NOTIFY per target, one search response per matching target. */
export interface SsdpTarget<L = string> {
  /** the NT value: upnp:rootdevice, uuid:…, urn:…:device:…:v, urn:…:service:…:v */
  readonly nt: string;
  readonly usn: string;
  /** opaque to the codec: which root device (description) the target belongs to */
  readonly location: L;
}

export interface SearchMatch<L = string> {
  /**
   * the ST to answer with: the searched one (UDA 1.1 §1.3.3: "the same version as was contained in the search request")
   */
  readonly st: string;
  readonly target: SsdpTarget<L>;
}

/**
 * Which targets answer a search. ssdp:all → every target; upnp:rootdevice and uuid:… → exact;
 * a type URN → every target of that type with a version ≥ the searched one (UDA 1.1 §1.3.2:
 * a device must answer searches for any version it supports). When some target has exactly the
 * searched version, only those answer: a client searching for IGD:1 gets the IGD:1 root device,
 * whose description lists the :1 services it expects, not the IGD:2 one.
 */
export function matchSearch<L>(st: string, targets: readonly SsdpTarget<L>[]): SearchMatch<L>[] {
  if (st === SearchTarget.ALL) return targets.map((t) => ({ st: t.nt, target: t }));
  const want = parseTypeUrn(st);
  if (!want) return targets.filter((t) => t.nt === st).map((t) => ({ st, target: t }));
  const candidates: { t: SsdpTarget<L>; v: number }[] = [];
  for (const t of targets) {
    const have = parseTypeUrn(t.nt);
    if (
      have &&
      have.domain === want.domain &&
      have.kind === want.kind &&
      have.type === want.type &&
      have.version >= want.version
    ) {
      candidates.push({ t, v: have.version });
    }
  }
  const exact = candidates.filter((c) => c.v === want.version);
  return (exact.length > 0 ? exact : candidates).map((c) => ({ st, target: c.t }));
}
