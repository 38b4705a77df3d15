/**
 * STUN messages (RFC 8489): the Binding request a client sends, and the Binding responses it reads.
 * Pure: the caller gives the transaction id (random bytes) and gets bytes or a typed StunDecodeError.
 */
import {
  AddressFamily,
  Attribute,
  FINGERPRINT_XOR,
  HEADER_LENGTH,
  KNOWN_REQUIRED,
  MAGIC_COOKIE,
  MAX_MESSAGE_LENGTH,
  MessageClass,
  Method,
  TRANSACTION_ID_LENGTH,
} from './constants.js';
import { StunDecodeError } from './errors.js';

export interface StunAttribute {
  readonly type: number;
  /** the value without padding */
  readonly value: Uint8Array;
  /** where the attribute's type field is in the message */
  readonly offset: number;
}

export interface StunMessage {
  readonly method: number;
  readonly class: MessageClass;
  readonly transactionId: Uint8Array;
  readonly attributes: readonly StunAttribute[];
}

export interface MappedAddress {
  readonly family: 4 | 6;
  /** dotted quad, or eight uncompressed hex groups (the caller canonicalises) */
  readonly address: string;
  readonly port: number;
}

export type BindingResult =
  | { readonly kind: 'success'; readonly mapped: MappedAddress; readonly via: 'xor-mapped-address' | 'mapped-address' }
  | { readonly kind: 'error'; readonly code: number; readonly reason: string };

/** RFC 8489 §5: the 14-bit method and 2-bit class interleaved in the 16-bit type (M11..M7 C1 M6..M4 C0 M3..M0) */
export function messageType(method: number, cls: MessageClass): number {
  return (
    ((method & 0xf80) << 2) | ((method & 0x070) << 1) | (method & 0x00f) | ((cls & 0b10) << 7) | ((cls & 0b01) << 4)
  );
}

function splitType(type: number): { method: number; class: MessageClass } {
  const method = ((type & 0x3e00) >> 2) | ((type & 0x00e0) >> 1) | (type & 0x000f);
  const cls = (((type & 0x0100) >> 7) | ((type & 0x0010) >> 4)) as MessageClass;
  return { method, class: cls };
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 as in ISO 3309 / ITU-T V.42 (what RFC 8489 §14.7 names) */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** a whole message: header plus attributes (padded with zeros); with fingerprint, FINGERPRINT is added last */
export function encodeStunMessage(
  msg: {
    method: number;
    class: MessageClass;
    transactionId: Uint8Array;
    attributes?: readonly { type: number; value: Uint8Array }[];
  },
  opts: { fingerprint?: boolean } = {},
): Uint8Array {
  if (msg.transactionId.length !== TRANSACTION_ID_LENGTH)
    throw new RangeError(`a STUN transaction id is ${TRANSACTION_ID_LENGTH} octets, not ${msg.transactionId.length}`);
  const attrs = msg.attributes ?? [];
  const body = attrs.reduce((n, a) => n + 4 + pad4(a.value.length), 0) + (opts.fingerprint ? 8 : 0);
  const out = new Uint8Array(HEADER_LENGTH + body);
  const v = new DataView(out.buffer);
  v.setUint16(0, messageType(msg.method, msg.class));
  v.setUint16(2, body);
  v.setUint32(4, MAGIC_COOKIE);
  out.set(msg.transactionId, 8);
  let o = HEADER_LENGTH;
  for (const a of attrs) {
    v.setUint16(o, a.type);
    v.setUint16(o + 2, a.value.length);
    out.set(a.value, o + 4);
    o += 4 + pad4(a.value.length);
  }
  if (opts.fingerprint) {
    // §14.7: the CRC covers the message up to the attribute, with the length already counting it
    v.setUint16(o, Attribute.FINGERPRINT);
    v.setUint16(o + 2, 4);
    v.setUint32(o + 4, (crc32(out.subarray(0, o)) ^ FINGERPRINT_XOR) >>> 0);
  }
  return out;
}

/** RFC 8489 §6.1: a Binding request with no attributes (no authentication is needed for Binding, §9) */
export function encodeBindingRequest(transactionId: Uint8Array, opts: { fingerprint?: boolean } = {}): Uint8Array {
  return encodeStunMessage({ method: Method.BINDING, class: MessageClass.REQUEST, transactionId }, opts);
}

/** the header and attribute list of any STUN message; checks the bounds of everything, reads no values */
export function decodeStunMessage(bytes: Uint8Array): StunMessage {
  if (bytes.length < HEADER_LENGTH || bytes.length > MAX_MESSAGE_LENGTH)
    throw new StunDecodeError('length', 0, `${bytes.length} octets is no STUN message (20 to ${MAX_MESSAGE_LENGTH})`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = v.getUint16(0);
  // §6.3: the two most significant bits are zero, the cookie is right
  if (type & 0xc000 || v.getUint32(4) !== MAGIC_COOKIE)
    throw new StunDecodeError('not_stun', type & 0xc000 ? 0 : 4, 'not a STUN message (type bits or magic cookie)');
  const length = v.getUint16(2);
  if (length % 4 !== 0 || HEADER_LENGTH + length !== bytes.length)
    throw new StunDecodeError(
      'header_length',
      2,
      `header length ${length} does not match the ${bytes.length - HEADER_LENGTH} octets after the header`,
    );
  const attributes: StunAttribute[] = [];
  let o = HEADER_LENGTH;
  while (o < bytes.length) {
    if (o + 4 > bytes.length) throw new StunDecodeError('attribute_bounds', o, 'attribute header cut short');
    const at = v.getUint16(o);
    const len = v.getUint16(o + 2);
    if (o + 4 + len > bytes.length)
      throw new StunDecodeError(
        'attribute_bounds',
        o + 2,
        `attribute 0x${at.toString(16)} of ${len} octets runs past the end`,
      );
    if (at === Attribute.FINGERPRINT) {
      // §14.7: four octets, the last attribute, CRC-32 of everything before it XOR 0x5354554e
      if (len !== 4 || o + 8 !== bytes.length)
        throw new StunDecodeError('fingerprint', o, 'FINGERPRINT is not the last attribute or not 4 octets');
      if (v.getUint32(o + 4) !== (crc32(bytes.subarray(0, o)) ^ FINGERPRINT_XOR) >>> 0)
        throw new StunDecodeError('fingerprint', o + 4, 'FINGERPRINT does not match the message');
    }
    attributes.push({ type: at, value: bytes.subarray(o + 4, o + 4 + len), offset: o });
    // §14: padding to a 4-octet boundary; the last attribute's padding must be inside the message too
    o += 4 + pad4(len);
    if (o > bytes.length)
      throw new StunDecodeError(
        'attribute_bounds',
        o - 4 - pad4(len),
        `attribute 0x${at.toString(16)} padding runs past the end`,
      );
  }
  const { method, class: cls } = splitType(type);
  return { method, class: cls, transactionId: bytes.slice(8, 8 + TRANSACTION_ID_LENGTH), attributes };
}

function hex4(n: number): string {
  return n.toString(16);
}

/** §14.1 / §14.2: family, port and address; with xor, X-Port and X-Address are un-XORed with cookie (+ txid) */
function decodeAddress(a: StunAttribute, xorWith: Uint8Array | null): MappedAddress {
  const value = a.value;
  if (value.length < 4) throw new StunDecodeError('bad_address', a.offset, 'address attribute shorter than 4 octets');
  const family = value[1];
  const size = family === AddressFamily.IPV4 ? 4 : family === AddressFamily.IPV6 ? 16 : 0;
  if (size === 0) throw new StunDecodeError('bad_address', a.offset + 5, `address family 0x${hex4(family!)} unknown`);
  if (value.length !== 4 + size)
    throw new StunDecodeError(
      'bad_address',
      a.offset + 2,
      `${value.length} octets for an IPv${size === 4 ? 4 : 6} address`,
    );
  let port = (value[2]! << 8) | value[3]!;
  const addr = value.slice(4);
  if (xorWith) {
    port ^= MAGIC_COOKIE >>> 16;
    for (let i = 0; i < size; i++) addr[i]! ^= xorWith[i]!;
  }
  if (size === 4) return { family: 4, address: Array.from(addr).join('.'), port };
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(hex4((addr[i]! << 8) | addr[i + 1]!));
  return { family: 6, address: groups.join(':'), port };
}

/**
 * What a Binding response says, checked against the transaction the client sent (§6.3.3, §7.3.3). Success:
 * XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (a server following RFC 3489 sends only that, §14.1).
 */
export function decodeBindingResponse(bytes: Uint8Array, transactionId: Uint8Array): BindingResult {
  const msg = decodeStunMessage(bytes);
  if (
    msg.method !== Method.BINDING ||
    (msg.class !== MessageClass.SUCCESS_RESPONSE && msg.class !== MessageClass.ERROR_RESPONSE)
  )
    throw new StunDecodeError(
      'unexpected_type',
      0,
      `message type 0x${hex4(messageType(msg.method, msg.class))} is not a Binding response`,
    );
  if (msg.transactionId.length !== transactionId.length || msg.transactionId.some((b, i) => b !== transactionId[i]))
    throw new StunDecodeError('transaction', 8, 'transaction id is not the one sent');
  for (const a of msg.attributes)
    if (a.type < 0x8000 && !KNOWN_REQUIRED.has(a.type))
      throw new StunDecodeError(
        'unknown_required',
        a.offset,
        `unknown comprehension-required attribute 0x${hex4(a.type)}`,
      );
  if (msg.class === MessageClass.ERROR_RESPONSE) {
    const e = msg.attributes.find((a) => a.type === Attribute.ERROR_CODE);
    // §14.8: 21 reserved bits, class 3-6 (3 bits), number 0-99, then a UTF-8 reason phrase
    if (!e || e.value.length < 4)
      throw new StunDecodeError('bad_error_code', e?.offset ?? 0, 'error response without a valid ERROR-CODE');
    const cls = e.value[2]! & 0x07;
    const num = e.value[3]!;
    if (cls < 3 || cls > 6 || num > 99)
      throw new StunDecodeError('bad_error_code', e.offset + 6, `ERROR-CODE class ${cls} number ${num} out of range`);
    const reason = new TextDecoder('utf-8', { fatal: false }).decode(e.value.subarray(4, 4 + 763));
    return { kind: 'error', code: cls * 100 + num, reason };
  }
  const xor = msg.attributes.find((a) => a.type === Attribute.XOR_MAPPED_ADDRESS);
  if (xor) {
    const key = new Uint8Array(16);
    new DataView(key.buffer).setUint32(0, MAGIC_COOKIE);
    key.set(transactionId, 4);
    return { kind: 'success', mapped: decodeAddress(xor, key), via: 'xor-mapped-address' };
  }
  const plain = msg.attributes.find((a) => a.type === Attribute.MAPPED_ADDRESS);
  if (plain) return { kind: 'success', mapped: decodeAddress(plain, null), via: 'mapped-address' };
  throw new StunDecodeError(
    'no_address',
    HEADER_LENGTH,
    'success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS',
  );
}

/** §14.2: an XOR-MAPPED-ADDRESS value for an IPv4 address (servers and tests build responses with it) */
export function xorMappedAddressV4(address: string, port: number): Uint8Array {
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  out[1] = AddressFamily.IPV4;
  v.setUint16(2, port ^ (MAGIC_COOKIE >>> 16));
  const parts = address.split('.').map(Number);
  v.setUint32(4, ((((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0) ^ MAGIC_COOKIE) >>> 0);
  return out;
}
