/**
 * The nft text encoding of the typed model (model.ts): an element's key and data as `nft` writes and
 * lists them (`tcp . 8080`, `203.0.113.9 . tcp . 443 : 192.168.77.11 . 80`, `6112-6119`), and the way
 * back from listed fields to a typed element. One of the model's two encoders; nf-netlink.ts is the other.
 */
import { isIPv4 } from 'node:net';
import { parseIPv6 } from '../common/ipv6.js';
import {
  SET_LAYOUTS,
  addressText,
  ipv4Bytes,
  type ElementData,
  type ElementSet,
  type ElementStep,
  type FieldType,
  type KernelElement,
  type NftElement,
} from './model.js';

/** an element's timeout as written to the kernel: whole seconds, at least 1 (both transports round alike) */
export function timeoutSeconds(t: number): number {
  return Math.max(1, Math.ceil(t));
}

function timeoutText(t: number | null): string {
  return t === null ? '' : ` timeout ${timeoutSeconds(t)}s`;
}

/** the key as nft writes it: the layout's fields joined by ` . ` */
export function keyText(
  el: Pick<NftElement, 'set' | 'remote' | 'remotePrefix' | 'address' | 'protocol' | 'port' | 'portEnd'>,
): string {
  const layout = SET_LAYOUTS[el.set];
  let out = '';
  for (const [field] of layout.key) {
    if (out !== '') out += ' . ';
    if (field === 'remote')
      out += layout.remotePrefix
        ? `${addressText(el.remote!)}/${el.remotePrefix ?? el.remote!.length * 8}`
        : addressText(el.remote!);
    else if (field === 'address') out += addressText(el.address!);
    else if (field === 'protocol') out += el.protocol!;
    else out += layout.interval && el.portEnd !== el.port ? `${el.port}-${el.portEnd}` : String(el.port);
  }
  return out;
}

/** map data as nft writes it (`192.168.77.11 . 80`, or the address alone); null for a set's element */
export function dataText(data: ElementData | null): string | null {
  if (data === null) return null;
  return data.port === null ? addressText(data.address) : `${addressText(data.address)} . ${data.port}`;
}

/** one element as it goes into `add element ... { }` (with timeout and data) */
export function elementText(el: NftElement): string {
  const data = dataText(el.data);
  return data === null
    ? `${keyText(el)}${timeoutText(el.timeout)}`
    : `${keyText(el)}${timeoutText(el.timeout)} : ${data}`;
}

/**
 * the steps as nft commands: `verb element inet T set { a, b }` (an add with timeouts and data, a delete by key)
 */
export function stepCommands(table: string, steps: readonly ElementStep[]): string[] {
  return steps.map(
    (st) =>
      `${st.verb} element inet ${table} ${st.set} { ` +
      `${st.elements.map((el) => (st.verb === 'add' ? elementText(el) : keyText(el))).join(', ')} }`,
  );
}

// ---------- back: listed fields to the typed model ----------

/** one listed value of a field: nft's text, or from JSON a number, or a range */
export type ListedValue = string | number | { readonly range: readonly [ListedValue, ListedValue] };

function addressOf(type: FieldType, v: ListedValue): Uint8Array | null {
  if (typeof v !== 'string') return null;
  if (type === 'ipv4_addr') return isIPv4(v) ? ipv4Bytes(v) : null;
  return parseIPv6(v);
}

function portOf(v: ListedValue): [number, number] | null {
  if (typeof v === 'object') {
    const a = portOf(v.range[0]);
    const b = portOf(v.range[1]);
    return a && b ? [a[0], b[0]] : null;
  }
  const s = String(v);
  const dash = s.indexOf('-');
  if (dash > 0) {
    const a = portOf(s.slice(0, dash));
    const b = portOf(s.slice(dash + 1));
    return a && b ? [a[0], b[0]] : null;
  }
  if (!/^\d{1,5}$/.test(s)) return null;
  const n = Number(s);
  return n <= 65535 ? [n, n] : null;
}

/**
 * A listed element of `set` as a typed one: key and data values in the layout's order (from the text,
 * split at ` . `; from JSON, the concat's items). null when the values do not fit the layout (not ours).
 */
export function decodeElement(
  set: ElementSet,
  key: readonly ListedValue[],
  data: readonly ListedValue[] | null,
  expires: number | null,
): KernelElement | null {
  const layout = SET_LAYOUTS[set];
  if (key.length !== layout.key.length) return null;
  let remote: Uint8Array | null = null;
  let remotePrefix: number | undefined;
  let address: Uint8Array | null = null;
  let protocol: 'tcp' | 'udp' | null = null;
  let port = 0;
  let portEnd = 0;
  for (let i = 0; i < key.length; i++) {
    const [field, type] = layout.key[i]!;
    const v = key[i]!;
    if (field === 'remote' && layout.remotePrefix) {
      // `2001:db8:113::/64` (nft lists a whole address without the length)
      const text = typeof v === 'string' ? v : '';
      const slash = text.indexOf('/');
      const b = addressOf(type, slash < 0 ? text : text.slice(0, slash));
      const len = slash < 0 ? (b?.length ?? 0) * 8 : Number(text.slice(slash + 1));
      if (!b || !Number.isInteger(len) || len < 1 || len > b.length * 8) return null;
      remote = b;
      remotePrefix = len;
    } else if (field === 'remote' || field === 'address') {
      const b = addressOf(type, v);
      if (!b) return null;
      if (field === 'remote') remote = b;
      else address = b;
    } else if (field === 'protocol') {
      if (v !== 'tcp' && v !== 'udp') return null;
      protocol = v;
    } else {
      const p = portOf(v);
      if (!p) return null;
      [port, portEnd] = p;
    }
  }
  let d: ElementData | null = null;
  if (layout.data !== null) {
    if (data === null || data.length !== layout.data.length) return null;
    const a = addressOf(layout.data[0]!, data[0]!);
    if (!a) return null;
    let p: number | null = null;
    if (layout.data.length === 2) {
      const pp = portOf(data[1]!);
      if (!pp) return null;
      p = pp[0];
    }
    d = { address: a, port: p };
  } else if (data !== null) return null;
  return {
    set,
    remote,
    ...(remotePrefix !== undefined ? { remotePrefix } : {}),
    address,
    protocol,
    port,
    portEnd,
    data: d,
    expires,
  };
}

/** decodeElement from nft's text of a key and data (`tcp . 8080`, `192.168.77.11 . 80`) */
export function decodeText(
  set: ElementSet,
  key: string,
  data: string | null,
  expires: number | null,
): KernelElement | null {
  return decodeElement(set, key.split(' . '), data === null ? null : data.split(' . '), expires);
}
