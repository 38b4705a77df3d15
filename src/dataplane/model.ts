/**
 * The dataplane's typed model: what portd holds in its nftables table, as records rather than nft text.
 *
 * A lease (DataplaneEntry) becomes a Mapping here, in one place (`mappingOf`): family, protocol, the
 * addresses as bytes (4 or 16), ports, the remote filter and the timeout. A Mapping becomes the kernel
 * elements that carry it (`forwardElements`, `liveElement`): typed records of one named set whose layout
 * (`SET_LAYOUTS`) says which fields its key and data hold, in which order. The two writers encode these
 * records: nft text (nft-text.ts, for `nft -f` / `nft -i`) and netlink bytes (nf-netlink.ts); the
 * listings decode into them (nftables-listing.ts). Plan, diff and audit compare `elementId`s and
 * `sameData`, computed from the fields, never from text.
 *
 * An IPv6 pinhole is a family, not a second code path: the same Mapping, other sets.
 */
import type { AddressFamily, L4Protocol } from '../common/net-types.js';
import { ipv4ToInt } from '../common/net.js';
import { formatIPv6, maskIPv6, parseIPv6 } from '../common/ipv6.js';
import type { DataplaneEntry } from './types.js';

/** the kernel's name of a field type (nft's `type` words) */
export type FieldType = 'ipv4_addr' | 'ipv6_addr' | 'inet_proto' | 'inet_service';

/** the key fields an element may carry, in the order a set's layout names them */
export type KeyField = 'remote' | 'address' | 'protocol' | 'port';

export type FwdSet = 'fwd4' | 'fwd4_range' | 'fwd4_peer';
export type LiveSet = 'live_tcp' | 'live_udp' | 'live_tcp_range' | 'live_udp_range';
/**
 * IPv6 pinholes (no translation): internal address . protocol . port, a range, or with the remote first: one
 * whole remote address (pin6_peer, no interval: netlink writes it) or a remote prefix (pin6_net, an interval
 * set: PCP FILTER with a prefix length < 128, RFC 6887 §13.3)
 */
export type PinholeSet = 'pin6' | 'pin6_range' | 'pin6_peer' | 'pin6_net';
/** outbound source NAT of mapped internal endpoints: internal address . protocol . port -> external endpoint */
export type SnatSet = 'snat4' | 'snat4_range';
export type ElementSet = FwdSet | LiveSet | PinholeSet | SnatSet;
export const FWD_SETS: readonly FwdSet[] = ['fwd4', 'fwd4_range', 'fwd4_peer'];
export const LIVE_SETS: readonly LiveSet[] = ['live_tcp', 'live_udp', 'live_tcp_range', 'live_udp_range'];
export const PINHOLE_SETS: readonly PinholeSet[] = ['pin6', 'pin6_range', 'pin6_peer', 'pin6_net'];
export const SNAT_SETS: readonly SnatSet[] = ['snat4', 'snat4_range'];
/** every element set, in the order a tick writes them */
export const ELEMENT_SETS: readonly ElementSet[] = [...FWD_SETS, ...LIVE_SETS, ...PINHOLE_SETS, ...SNAT_SETS];

export interface SetLayout {
  /** key fields in kernel order, with their types */
  readonly key: readonly (readonly [KeyField, FieldType])[];
  /** map data types (address, then port when the map keeps one); null for a plain set */
  readonly data: readonly FieldType[] | null;
  /** the last key field (the port) is a range, or the remote a prefix: an interval set */
  readonly interval: boolean;
  /** the remote key field is a prefix (`2001:db8:113::/64`): the element's remotePrefix */
  readonly remotePrefix?: boolean;
}

const PROTO: readonly [KeyField, FieldType] = ['protocol', 'inet_proto'];
const PORT: readonly [KeyField, FieldType] = ['port', 'inet_service'];

/** each set's layout: the one description both encoders and the decoder follow */
export const SET_LAYOUTS: Readonly<Record<ElementSet, SetLayout>> = {
  fwd4: { key: [PROTO, PORT], data: ['ipv4_addr', 'inet_service'], interval: false },
  fwd4_range: { key: [PROTO, PORT], data: ['ipv4_addr'], interval: true },
  fwd4_peer: { key: [['remote', 'ipv4_addr'], PROTO, PORT], data: ['ipv4_addr', 'inet_service'], interval: false },
  live_tcp: { key: [PORT], data: null, interval: false },
  live_udp: { key: [PORT], data: null, interval: false },
  live_tcp_range: { key: [PORT], data: null, interval: true },
  live_udp_range: { key: [PORT], data: null, interval: true },
  pin6: { key: [['address', 'ipv6_addr'], PROTO, PORT], data: null, interval: false },
  pin6_range: { key: [['address', 'ipv6_addr'], PROTO, PORT], data: null, interval: true },
  pin6_peer: { key: [['remote', 'ipv6_addr'], ['address', 'ipv6_addr'], PROTO, PORT], data: null, interval: false },
  // a prefix in a concatenation needs an interval set (nft's pipapo); its other fields are single values
  pin6_net: {
    key: [['remote', 'ipv6_addr'], ['address', 'ipv6_addr'], PROTO, PORT],
    data: null,
    interval: true,
    remotePrefix: true,
  },
  // outbound: the mapped internal endpoint leaves from its external one (snat4), or a range that keeps its port
  // numbers from the external address (snat4_range: snat to an address keeps the port)
  snat4: { key: [['address', 'ipv4_addr'], PROTO, PORT], data: ['ipv4_addr', 'inet_service'], interval: false },
  snat4_range: { key: [['address', 'ipv4_addr'], PROTO, PORT], data: ['ipv4_addr'], interval: true },
};

/** a map element's data: the translation target (a port is absent where the map keeps the packet's) */
export interface ElementData {
  readonly address: Uint8Array;
  readonly port: number | null;
}

/**
 * One kernel element, typed. Fields the set's layout does not name are null (`protocol` of a live set:
 * the protocol is the set). `portEnd` equals `port` unless the set is an interval set.
 */
export interface NftElement {
  readonly set: ElementSet;
  readonly remote: Uint8Array | null;
  /** the remote's prefix length in a set whose layout has remotePrefix (the remote is then the network) */
  readonly remotePrefix?: number;
  readonly address: Uint8Array | null;
  readonly protocol: L4Protocol | null;
  readonly port: number;
  readonly portEnd: number;
  readonly data: ElementData | null;
  /** seconds; null = no timeout */
  readonly timeout: number | null;
}

/** an element as a listing shows it: its seconds left instead of the timeout it was written with */
export interface KernelElement extends Omit<NftElement, 'timeout'> {
  /** seconds left; null = no timeout */
  readonly expires: number | null;
}

/**
 * one `add`/`delete` of elements of one set: what a tick writes, in order (encoded as nft text or as netlink)
 */
export interface ElementStep {
  readonly verb: 'add' | 'delete';
  readonly set: ElementSet;
  readonly elements: readonly NftElement[];
}

/** the remote filter of a mapping: one peer (prefix = the full length) or a prefix (the address is its network) */
export interface RemoteFilter {
  readonly address: Uint8Array;
  readonly prefix: number;
}

/** a DataplaneEntry as the dataplane reasons about it: typed, validated */
export interface Mapping {
  readonly family: AddressFamily;
  readonly protocol: L4Protocol;
  readonly externalPort: number;
  readonly externalPortEnd: number;
  /** 4 bytes (family 4) or 16 (family 6) */
  readonly internal: Uint8Array;
  readonly internalPort: number;
  readonly remote: RemoteFilter | null;
  /** seconds; null = no timeout (static) */
  readonly timeout: number | null;
  /** the external IPv4 address (4 bytes) outbound flows of the internal endpoint leave from; null: no outbound
   *  source NAT (a pinhole, or an external address that is not an IPv4 address yet) */
  readonly external?: Uint8Array | null;
}

export class NftPlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NftPlanError';
  }
}

/** refuse to expand a range with a port offset / peer filter into more elements than this */
export const MAX_EXPANDED_PORTS = 4096;

/** 4 bytes of a dotted-quad IPv4 address, or null */
export function ipv4Bytes(text: string): Uint8Array | null {
  const n = ipv4ToInt(text);
  if (n === null) return null;
  return Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
}

/** the text of 4 or 16 address bytes (dotted quad, RFC 5952) */
export function addressText(b: Uint8Array): string {
  return b.length === 4 ? `${b[0]}.${b[1]}.${b[2]}.${b[3]}` : formatIPv6(b);
}

function addressBytes(family: AddressFamily, text: string): Uint8Array | null {
  return family === 4 ? ipv4Bytes(text) : parseIPv6(text);
}

/** an external address outbound flows can leave from: an IPv4 address that is not 0.0.0.0 (not known yet) */
function routableExternal(text: string): Uint8Array | null {
  const b = ipv4Bytes(text);
  return b === null || (b[0] === 0 && b[1] === 0 && b[2] === 0 && b[3] === 0) ? null : b;
}

function checkPort(p: number, id: string): void {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new NftPlanError(`bad port ${p} in ${id}`);
}

/** the one place a DataplaneEntry becomes the typed model; throws NftPlanError on what the kernel cannot hold */
export function mappingOf(e: DataplaneEntry): Mapping {
  const family = e.family ?? 4;
  if (family !== 4 && family !== 6) throw new NftPlanError(`bad address family ${String(family)} in ${e.id}`);
  if (e.protocol !== 'tcp' && e.protocol !== 'udp')
    throw new NftPlanError(`bad protocol ${String(e.protocol)} in ${e.id}`);
  checkPort(e.externalPort, e.id);
  checkPort(e.externalPortEnd, e.id);
  checkPort(e.internalPort, e.id);
  if (e.externalPortEnd < e.externalPort)
    throw new NftPlanError(`bad range ${e.externalPort}-${e.externalPortEnd} in ${e.id}`);
  if (e.internalPort + (e.externalPortEnd - e.externalPort) > 65535)
    throw new NftPlanError(`internal range past 65535 in ${e.id}`);
  const internal = addressBytes(family, e.internalAddress);
  if (!internal) throw new NftPlanError(`bad internal address ${e.internalAddress} in ${e.id}`);
  let remote: RemoteFilter | null = null;
  if (e.remoteAddress !== null) {
    const r = addressBytes(family, e.remoteAddress);
    if (!r) throw new NftPlanError(`bad remote address ${e.remoteAddress} in ${e.id}`);
    const full = r.length * 8;
    // IPv4's peer map is a dnat map, and nft 1.0.6 refuses an interval map there: a whole address only, as before
    const prefix = family === 4 ? full : (e.remotePrefix ?? full);
    if (!Number.isInteger(prefix) || prefix < 1 || prefix > full)
      throw new NftPlanError(`bad remote prefix /${prefix} in ${e.id}`);
    remote = { address: prefix === full ? r : maskIPv6(r, prefix), prefix };
  }
  if (e.timeoutSeconds !== null && !(Number.isFinite(e.timeoutSeconds) && e.timeoutSeconds > 0))
    throw new NftPlanError(`bad timeout ${e.timeoutSeconds} in ${e.id}`);
  if (family === 6 && (e.internalPort !== e.externalPort || e.externalAddress !== e.internalAddress))
    throw new NftPlanError(`an IPv6 pinhole has no translation: external endpoint must be the internal one in ${e.id}`);
  const width = e.externalPortEnd - e.externalPort + 1;
  if (width > 1 && (e.remoteAddress !== null || e.internalPort !== e.externalPort) && width > MAX_EXPANDED_PORTS) {
    throw new NftPlanError(
      `range of ${width} ports with a port offset or peer filter exceeds ${MAX_EXPANDED_PORTS} in ${e.id}`,
    );
  }
  return {
    family,
    protocol: e.protocol,
    externalPort: e.externalPort,
    externalPortEnd: e.externalPortEnd,
    internal,
    internalPort: e.internalPort,
    remote,
    timeout: e.timeoutSeconds,
    external: family === 4 ? routableExternal(e.externalAddress) : null,
  };
}

function element(
  set: ElementSet,
  f: Partial<Pick<NftElement, 'remote' | 'address' | 'protocol' | 'data'>> & { port: number; portEnd?: number },
  timeout: number | null,
): NftElement {
  return {
    set,
    remote: f.remote ?? null,
    address: f.address ?? null,
    protocol: f.protocol ?? null,
    port: f.port,
    portEnd: f.portEnd ?? f.port,
    data: f.data ?? null,
    timeout,
  };
}

/**
 * The forwarding elements of one mapping, with `timeout` (the caller picks it: the lease's, the remaining
 * one, 1 s for a pre-add). Ranges whose internal port differs from the external one, and peer-filtered
 * ranges, are expanded per port (nft 1.0.6 has no port-offset dnat).
 */
export function forwardElements(m: Mapping, timeout: number | null): NftElement[] {
  const protocol = m.protocol;
  const width = m.externalPortEnd - m.externalPort + 1;
  if (m.family === 6) return pinholeElements(m, timeout);
  if (width === 1 && m.remote === null)
    return [
      element('fwd4', { protocol, port: m.externalPort, data: { address: m.internal, port: m.internalPort } }, timeout),
    ];
  if (m.remote === null && m.internalPort === m.externalPort)
    return [
      element(
        'fwd4_range',
        { protocol, port: m.externalPort, portEnd: m.externalPortEnd, data: { address: m.internal, port: null } },
        timeout,
      ),
    ];
  const out: NftElement[] = [];
  const remote = m.remote?.address ?? null;
  for (let i = 0; i < width; i++) {
    const data = { address: m.internal, port: m.internalPort + i };
    out.push(
      element(remote === null ? 'fwd4' : 'fwd4_peer', { remote, protocol, port: m.externalPort + i, data }, timeout),
    );
  }
  return out;
}

/**
 * The elements of an IPv6 pinhole: the internal endpoint itself is the key (no translation, no map data). A
 * range is one interval element; a peer-filtered range is expanded per port into pin6_peer.
 */
function pinholeElements(m: Mapping, timeout: number | null): NftElement[] {
  const protocol = m.protocol;
  const address = m.internal;
  if (m.remote === null) {
    const set = m.externalPortEnd === m.externalPort ? 'pin6' : 'pin6_range';
    return [element(set, { address, protocol, port: m.externalPort, portEnd: m.externalPortEnd }, timeout)];
  }
  const out: NftElement[] = [];
  const net = m.remote.prefix < 128;
  for (let p = m.externalPort; p <= m.externalPortEnd; p++)
    out.push(
      net
        ? {
            ...element('pin6_net', { remote: m.remote.address, address, protocol, port: p }, timeout),
            remotePrefix: m.remote.prefix,
          }
        : element('pin6_peer', { remote: m.remote.address, address, protocol, port: p }, timeout),
    );
  return out;
}

/**
 * the live-port element of an IPv4 mapping (shared by mappings on the same ports, e.g. several peer-filtered
 * ones): the forward chain drops marked DNAT'd flows whose original port is no longer live. A pinhole needs
 * none: its own element is what the drop rule looks up.
 */
export function liveElement(
  m: Pick<Mapping, 'protocol' | 'externalPort' | 'externalPortEnd'>,
  timeout: number | null,
): NftElement {
  const single = m.externalPortEnd === m.externalPort;
  const set: LiveSet =
    m.protocol === 'tcp' ? (single ? 'live_tcp' : 'live_tcp_range') : single ? 'live_udp' : 'live_udp_range';
  return element(set, { port: m.externalPort, portEnd: m.externalPortEnd }, timeout);
}

function bytesId(b: Uint8Array | null): string {
  if (b === null) return '';
  if (b.length === 4) return addressText(b);
  let s = '';
  for (const x of b) s += (x < 16 ? '0' : '') + x.toString(16);
  return s;
}

/**
 * The element's identity in its set: two elements with the same id are one kernel element. Built from
 * the typed fields; a live single port is `live_tcp/8080` (the model's holder index relies on that form).
 */
export function elementId(
  el: Pick<NftElement, 'set' | 'remote' | 'remotePrefix' | 'address' | 'protocol' | 'port' | 'portEnd'>,
): string {
  const ports = el.portEnd === el.port ? String(el.port) : `${el.port}-${el.portEnd}`;
  if (el.remote === null && el.address === null && el.protocol === null) return `${el.set}/${ports}`;
  const len = el.remotePrefix === undefined ? '' : `/${el.remotePrefix}`;
  return `${el.set}/${bytesId(el.remote)}${len}/${bytesId(el.address)}/${el.protocol ?? ''}/${ports}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** whether two elements' data are the same (the kernel refuses an add of the key with other data) */
export function sameData(a: ElementData | null, b: ElementData | null): boolean {
  if (a === null || b === null) return a === b;
  return a.port === b.port && sameBytes(a.address, b.address);
}

/**
 * The outbound source-NAT element of one internal port of an IPv4 mapping (`internalPort` within the mapping's
 * internal range), or null when the mapping translates nothing outbound (a pinhole, no IPv4 external address).
 * Endpoint-independent (RFC 4787 REQ-1): keyed by the internal endpoint alone, whatever the destination; a
 * remote filter restricts who may come in (RFC 6887 §13.3), not where the endpoint may send to.
 */
export function snatElementAt(m: Mapping, internalPort: number, timeout: number | null): NftElement | null {
  if (m.family !== 4 || !m.external) return null;
  const offset = internalPort - m.internalPort;
  return element(
    'snat4',
    {
      address: m.internal,
      protocol: m.protocol,
      port: internalPort,
      data: { address: m.external, port: m.externalPort + offset },
    },
    timeout,
  );
}

/**
 * The outbound source-NAT elements of a mapping: one snat4 element per internal port (a range with a port offset
 * is expanded, bounded like its DNAT elements by MAX_EXPANDED_PORTS), or one snat4_range interval element for a
 * range that keeps its port numbers. None for a pinhole (no translation).
 */
export function snatElements(m: Mapping, timeout: number | null): NftElement[] {
  if (m.family !== 4 || !m.external) return [];
  const width = m.externalPortEnd - m.externalPort + 1;
  if (width > 1 && m.internalPort === m.externalPort)
    return [
      element(
        'snat4_range',
        {
          address: m.internal,
          protocol: m.protocol,
          port: m.internalPort,
          portEnd: m.internalPort + width - 1,
          data: { address: m.external, port: null },
        },
        timeout,
      ),
    ];
  const out: NftElement[] = [];
  for (let i = 0; i < width; i++) out.push(snatElementAt(m, m.internalPort + i, timeout)!);
  return out;
}
