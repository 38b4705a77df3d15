/**
 * PCP messages (RFC 6887 §7, §11, §12, §13, §14): pure encode/decode.
 * No sockets, clocks or randomness: the caller passes epochs and nonces.
 */
import { isIpv4Mapped, readAddress, sameAddress, writeAddress } from './address.js';
import {
  OptionCode,
  Opcode,
  RESPONSE_BIT,
  ResultCode,
  Size,
  Version,
  errorLifetime,
  isMandatoryOption,
} from './constants.js';
import { PcpDecodeError } from './errors.js';
import { put16, put32, u16, u32 } from './bytes.js';

/** MAP opcode-specific data (RFC 6887 §11.1). In a response the external fields are the assigned ones. */
export interface MapData {
  /** 12 octets, chosen by the client */
  readonly nonce: Uint8Array;
  /** IANA protocol number; 0 = all protocols */
  readonly protocol: number;
  readonly internalPort: number;
  /** request: suggested (0 = any); response: assigned */
  readonly externalPort: number;
  /** request: suggested ("::" / "0.0.0.0" = any); response: assigned */
  readonly externalAddress: string;
}

/** PEER opcode-specific data (RFC 6887 §12.1) */
export interface PeerData extends MapData {
  readonly remotePort: number;
  readonly remoteAddress: string;
}

export type PcpOption =
  | { readonly kind: 'third_party'; readonly address: string } // RFC 6887 §13.1
  | { readonly kind: 'prefer_failure' } // RFC 6887 §13.2
  | {
      readonly kind: 'filter';
      readonly prefixLength: number;
      readonly remotePort: number;
      readonly remoteAddress: string;
    } // RFC 6887 §13.3
  // optional options we do not process (kept for round trips)
  | { readonly kind: 'other'; readonly code: number; readonly data: Uint8Array };

interface RequestBase {
  readonly version: typeof Version.PCP;
  /** requested lifetime in seconds (RFC 6887 §7.1) */
  readonly lifetime: number;
  /** the PCP client's address as written in the header */
  readonly clientAddress: string;
  readonly options: readonly PcpOption[];
}

export type PcpRequest =
  | (RequestBase & { readonly opcode: typeof Opcode.ANNOUNCE })
  | (RequestBase & { readonly opcode: typeof Opcode.MAP; readonly map: MapData })
  | (RequestBase & { readonly opcode: typeof Opcode.PEER; readonly peer: PeerData });

export interface PcpResponse {
  readonly version: number;
  /** without the R bit */
  readonly opcode: number;
  readonly resultCode: number;
  /** granted lifetime (success) or how long the error is expected to last (RFC 6887 §7.2) */
  readonly lifetime: number;
  /** seconds since the server's state began (RFC 6887 §8.5) */
  readonly epoch: number;
  readonly map?: MapData;
  readonly peer?: PeerData;
  /** opcode-specific octets for opcodes without a structure here (copied from a request) */
  readonly opcodeData?: Uint8Array;
  readonly options: readonly PcpOption[];
}

export interface DecodeRequestContext {
  /** the packet's source address; a differing client address gives ADDRESS_MISMATCH (RFC 6887 §8.3) */
  readonly source?: string;
  /** opcodes the server supports; others give UNSUPP_OPCODE. Default: ANNOUNCE, MAP, PEER */
  readonly opcodes?: readonly number[];
}

const ALL_OPCODES: readonly number[] = [Opcode.ANNOUNCE, Opcode.MAP, Opcode.PEER];

/** which options are defined for which opcode (RFC 6887 §13.1-§13.3) */
const OPTION_OPCODES: Readonly<Record<number, readonly number[]>> = {
  [OptionCode.THIRD_PARTY]: [Opcode.MAP, Opcode.PEER],
  [OptionCode.PREFER_FAILURE]: [Opcode.MAP],
  [OptionCode.FILTER]: [Opcode.MAP],
};

/** nonce as the 24 hex characters stored in the lease table */
export function nonceHex(nonce: Uint8Array): string {
  let s = '';
  for (const x of nonce) s += x.toString(16).padStart(2, '0');
  return s;
}

export function nonceFromHex(hex: string): Uint8Array {
  if (!/^[0-9a-fA-F]{24}$/.test(hex)) throw new TypeError('nonce must be 24 hex characters');
  const out = new Uint8Array(Size.NONCE);
  for (let i = 0; i < Size.NONCE; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * What a server does first with a datagram on the PCP port (RFC 6887 §8.3, §9):
 * drop it, hand it to NAT-PMP (version 0), or decode it as PCP.
 */
export function classifyPacket(b: Uint8Array): 'drop' | 'natpmp' | 'pcp' {
  if (b.length < 2) return 'drop'; // RFC 6887 §8.3: less than 2 octets
  if (((b[1] ?? 0) & RESPONSE_BIT) !== 0) return 'drop'; // RFC 6887 §8.3: R bit set
  return b[0] === Version.NAT_PMP ? 'natpmp' : 'pcp';
}

function readMap(b: Uint8Array, o: number): MapData {
  return {
    nonce: b.slice(o, o + 12),
    protocol: b[o + 12] ?? 0,
    internalPort: u16(b, o + 16),
    externalPort: u16(b, o + 18),
    externalAddress: readAddress(b, o + 20),
  };
}

function readPeer(b: Uint8Array, o: number): PeerData {
  return { ...readMap(b, o), remotePort: u16(b, o + 36), remoteAddress: readAddress(b, o + 40) };
}

function writeMap(b: Uint8Array, o: number, m: MapData): void {
  if (m.nonce.length !== Size.NONCE) throw new TypeError('nonce must be 12 octets');
  b.set(m.nonce, o);
  b[o + 12] = m.protocol & 0xff;
  put16(b, o + 16, m.internalPort);
  put16(b, o + 18, m.externalPort);
  writeAddress(b, o + 20, m.externalAddress);
}

function writePeer(b: Uint8Array, o: number, p: PeerData): void {
  writeMap(b, o, p);
  put16(b, o + 36, p.remotePort);
  writeAddress(b, o + 40, p.remoteAddress);
}

interface RequestInfo {
  version: number;
  opcode: number;
  lifetime: number;
  opcodeData: Uint8Array | null;
}

function fail(code: number, offset: number, message: string, request: RequestInfo | null): PcpDecodeError {
  return new PcpDecodeError('respond', code, offset, message, request);
}

/** parse options starting at `start`; `opcode` decides which codes are understood */
function readOptions(b: Uint8Array, start: number, opcode: number, info: RequestInfo): PcpOption[] {
  const options: PcpOption[] = [];
  let seenThirdParty = false;
  let seenPreferFailure = false;
  let o = start;
  while (o < b.length) {
    if (o + Size.OPTION_HEADER > b.length) {
      throw fail(ResultCode.MALFORMED_OPTION, o, 'truncated option header', info);
    }
    const code = b[o] ?? 0;
    const len = u16(b, o + 2);
    const padded = (len + 3) & ~3; // RFC 6887 §7.3: data padded to a multiple of 4
    const dataAt = o + Size.OPTION_HEADER;
    if (dataAt + padded > b.length) {
      throw fail(ResultCode.MALFORMED_OPTION, o + 2, `option ${code} length ${len} runs past the message`, info);
    }
    const understood = OPTION_OPCODES[code]?.includes(opcode) ?? false;
    if (!understood) {
      if (isMandatoryOption(code)) {
        throw fail(ResultCode.UNSUPP_OPTION, o, `unsupported mandatory option ${code}`, info);
      }
      options.push({ kind: 'other', code, data: b.slice(dataAt, dataAt + len) }); // optional: ignored by the server
    } else if (code === OptionCode.THIRD_PARTY) {
      if (len !== Size.THIRD_PARTY) throw fail(ResultCode.MALFORMED_OPTION, o + 2, `THIRD_PARTY length ${len}`, info);
      // RFC 6887 §13.1
      if (seenThirdParty) throw fail(ResultCode.MALFORMED_OPTION, o, 'THIRD_PARTY more than once', info);
      seenThirdParty = true;
      options.push({ kind: 'third_party', address: readAddress(b, dataAt) });
    } else if (code === OptionCode.PREFER_FAILURE) {
      if (len !== Size.PREFER_FAILURE)
        throw fail(ResultCode.MALFORMED_OPTION, o + 2, `PREFER_FAILURE length ${len}`, info);
      // RFC 6887 §13.2
      if (seenPreferFailure) throw fail(ResultCode.MALFORMED_OPTION, o, 'PREFER_FAILURE more than once', info);
      seenPreferFailure = true;
      options.push({ kind: 'prefer_failure' });
    } else {
      if (len !== Size.FILTER) throw fail(ResultCode.MALFORMED_OPTION, o + 2, `FILTER length ${len}`, info);
      const prefixLength = b[dataAt + 1] ?? 0;
      const v4 = isIpv4Mapped(b, dataAt + 4);
      // RFC 6887 §13.3: prefix length counts bits of the 128-bit field; for an IPv4-mapped
      // peer only 0 ("no bits") and 96..128 make sense
      if (prefixLength > 128 || (v4 && prefixLength !== 0 && prefixLength < 96)) {
        throw fail(ResultCode.MALFORMED_OPTION, dataAt + 1, `FILTER prefix length ${prefixLength}`, info);
      }
      options.push({
        kind: 'filter',
        prefixLength,
        remotePort: u16(b, dataAt + 2),
        remoteAddress: readAddress(b, dataAt + 4),
      });
    }
    o = dataAt + padded;
  }
  return options;
}

/**
 * Decode a PCP request, validating in the order of RFC 6887 §8.3. Throws PcpDecodeError only.
 * The caller hands version-0 packets to NAT-PMP before calling this (see classifyPacket);
 * here version 0 is just another unsupported version.
 */
export function decodePcpRequest(input: Uint8Array, ctx: DecodeRequestContext = {}): PcpRequest {
  const b = input;
  if (b.length < 2) throw new PcpDecodeError('drop', 0, 0, 'shorter than 2 octets');
  if (((b[1] ?? 0) & RESPONSE_BIT) !== 0)
    throw new PcpDecodeError('drop', 0, 1, 'R bit set: a response, not a request');
  const version = b[0] ?? 0;
  const opcode = (b[1] ?? 0) & 0x7f;
  const lifetime = b.length >= 8 ? u32(b, 4) : 0;
  if (version !== Version.PCP) {
    // RFC 6887 §9: answer with our version so the client can fall back
    throw fail(ResultCode.UNSUPP_VERSION, 0, `unsupported version ${version}`, {
      version,
      opcode,
      lifetime,
      opcodeData: null,
    });
  }
  if (b.length < Size.HEADER) throw new PcpDecodeError('drop', 0, b.length, 'shorter than the 24-octet header');
  const base: RequestInfo = { version, opcode, lifetime, opcodeData: null };
  if (b.length > Size.MAX_MESSAGE)
    throw fail(ResultCode.MALFORMED_REQUEST, Size.MAX_MESSAGE, `longer than ${Size.MAX_MESSAGE} octets`, base);
  if (b.length % 4 !== 0) throw fail(ResultCode.MALFORMED_REQUEST, b.length, 'length not a multiple of 4', base);
  if (!(ctx.opcodes ?? ALL_OPCODES).includes(opcode))
    throw fail(ResultCode.UNSUPP_OPCODE, 1, `unsupported opcode ${opcode}`, base);

  const dataLen = opcode === Opcode.MAP ? Size.MAP : opcode === Opcode.PEER ? Size.PEER : 0;
  if (b.length < Size.HEADER + dataLen) {
    throw fail(ResultCode.MALFORMED_REQUEST, b.length, `too short for opcode ${opcode}`, base);
  }
  const info: RequestInfo = { ...base, opcodeData: dataLen > 0 ? b.slice(Size.HEADER, Size.HEADER + dataLen) : null };
  const clientAddress = readAddress(b, 8);
  if (ctx.source !== undefined && !sameAddress(clientAddress, ctx.source)) {
    throw fail(ResultCode.ADDRESS_MISMATCH, 8, `client address ${clientAddress} is not the source ${ctx.source}`, info);
  }
  const options = readOptions(b, Size.HEADER + dataLen, opcode, info);
  const head = { version: Version.PCP, lifetime, clientAddress, options } as const;
  if (opcode === Opcode.ANNOUNCE) return { ...head, opcode };

  const data = opcode === Opcode.MAP ? readMap(b, Size.HEADER) : readPeer(b, Size.HEADER);
  // RFC 6887 §11.1: protocol 0 means all protocols and then the internal port must be 0;
  // internal port 0 with a protocol is only a delete ("all ports", lifetime 0)
  if (data.protocol === 0 && data.internalPort !== 0) {
    throw fail(ResultCode.MALFORMED_REQUEST, Size.HEADER + 16, 'protocol 0 with a non-zero internal port', info);
  }
  if (opcode === Opcode.MAP) {
    if (data.protocol !== 0 && data.internalPort === 0 && lifetime !== 0) {
      throw fail(ResultCode.MALFORMED_REQUEST, Size.HEADER + 16, 'internal port 0 is only valid in a delete', info);
    }
    return { ...head, opcode, map: data };
  }
  const peer = data as PeerData;
  // RFC 6887 §12.1: PEER names one flow; its ports cannot be wildcards
  if (peer.protocol !== 0 && (peer.internalPort === 0 || peer.remotePort === 0)) {
    throw fail(ResultCode.MALFORMED_REQUEST, Size.HEADER + 16, 'PEER with port 0', info);
  }
  return { ...head, opcode: Opcode.PEER, peer };
}

function optionsLength(options: readonly PcpOption[]): number {
  let n = 0;
  for (const o of options) n += Size.OPTION_HEADER + ((optionDataLength(o) + 3) & ~3);
  return n;
}

function optionDataLength(o: PcpOption): number {
  switch (o.kind) {
    case 'third_party':
      return Size.THIRD_PARTY;
    case 'prefer_failure':
      return Size.PREFER_FAILURE;
    case 'filter':
      return Size.FILTER;
    case 'other':
      return o.data.length;
  }
}

function writeOptions(b: Uint8Array, start: number, options: readonly PcpOption[]): void {
  let o = start;
  for (const opt of options) {
    const len = optionDataLength(opt);
    const dataAt = o + Size.OPTION_HEADER;
    switch (opt.kind) {
      case 'third_party':
        b[o] = OptionCode.THIRD_PARTY;
        writeAddress(b, dataAt, opt.address);
        break;
      case 'prefer_failure':
        b[o] = OptionCode.PREFER_FAILURE;
        break;
      case 'filter':
        b[o] = OptionCode.FILTER;
        b[dataAt + 1] = opt.prefixLength & 0xff;
        put16(b, dataAt + 2, opt.remotePort);
        writeAddress(b, dataAt + 4, opt.remoteAddress);
        break;
      case 'other':
        b[o] = opt.code & 0xff;
        b.set(opt.data, dataAt);
        break;
    }
    put16(b, o + 2, len);
    o = dataAt + ((len + 3) & ~3);
  }
}

export function encodePcpRequest(req: PcpRequest): Uint8Array {
  const dataLen = req.opcode === Opcode.MAP ? Size.MAP : req.opcode === Opcode.PEER ? Size.PEER : 0;
  const b = new Uint8Array(Size.HEADER + dataLen + optionsLength(req.options));
  b[0] = req.version;
  b[1] = req.opcode & 0x7f;
  put32(b, 4, req.lifetime);
  writeAddress(b, 8, req.clientAddress);
  if (req.opcode === Opcode.MAP) writeMap(b, Size.HEADER, req.map);
  else if (req.opcode === Opcode.PEER) writePeer(b, Size.HEADER, req.peer);
  writeOptions(b, Size.HEADER + dataLen, req.options);
  return b;
}

export function encodePcpResponse(res: PcpResponse): Uint8Array {
  const dataLen = res.map ? Size.MAP : res.peer ? Size.PEER : (res.opcodeData?.length ?? 0);
  const b = new Uint8Array(Size.HEADER + dataLen + optionsLength(res.options));
  b[0] = res.version;
  b[1] = RESPONSE_BIT | (res.opcode & 0x7f);
  b[3] = res.resultCode & 0xff;
  put32(b, 4, res.lifetime);
  put32(b, 8, res.epoch);
  if (res.map) writeMap(b, Size.HEADER, res.map);
  else if (res.peer) writePeer(b, Size.HEADER, res.peer);
  else if (res.opcodeData) b.set(res.opcodeData, Size.HEADER);
  writeOptions(b, Size.HEADER + dataLen, res.options);
  return b;
}

/**
 * Decode a PCP response (for clients, tests and benchmarks). Lenient about options:
 * an option that runs past the end is reported as an error, unknown ones are kept as 'other'.
 */
export function decodePcpResponse(b: Uint8Array): PcpResponse {
  if (b.length < Size.HEADER) throw new PcpDecodeError('drop', 0, b.length, 'shorter than the 24-octet header');
  if (((b[1] ?? 0) & RESPONSE_BIT) === 0)
    throw new PcpDecodeError('drop', 0, 1, 'R bit clear: a request, not a response');
  if (b.length > Size.MAX_MESSAGE || b.length % 4 !== 0) throw new PcpDecodeError('drop', 0, b.length, 'bad length');
  const version = b[0] ?? 0;
  const opcode = (b[1] ?? 0) & 0x7f;
  const base = { version, opcode, resultCode: b[3] ?? 0, lifetime: u32(b, 4), epoch: u32(b, 8) };
  let dataLen = 0;
  let map: MapData | undefined;
  let peer: PeerData | undefined;
  let opcodeData: Uint8Array | undefined;
  if (opcode === Opcode.MAP && b.length >= Size.HEADER + Size.MAP) {
    dataLen = Size.MAP;
    map = readMap(b, Size.HEADER);
  } else if (opcode === Opcode.PEER && b.length >= Size.HEADER + Size.PEER) {
    dataLen = Size.PEER;
    peer = readPeer(b, Size.HEADER);
  } else if (opcode !== Opcode.ANNOUNCE && opcode !== Opcode.MAP && opcode !== Opcode.PEER && b.length > Size.HEADER) {
    // opaque data of an opcode we do not know; we cannot tell it from options, so keep it all
    opcodeData = b.slice(Size.HEADER);
    dataLen = opcodeData.length;
  }
  const options = readResponseOptions(b, Size.HEADER + dataLen);
  return {
    ...base,
    ...(map ? { map } : {}),
    ...(peer ? { peer } : {}),
    ...(opcodeData ? { opcodeData } : {}),
    options,
  };
}

/** options in a response: the three we know are parsed when well formed, anything else kept opaque */
function readResponseOptions(b: Uint8Array, start: number): PcpOption[] {
  const out: PcpOption[] = [];
  let o = start;
  while (o < b.length) {
    if (o + Size.OPTION_HEADER > b.length) throw new PcpDecodeError('drop', 0, o, 'truncated option header');
    const code = b[o] ?? 0;
    const len = u16(b, o + 2);
    const dataAt = o + Size.OPTION_HEADER;
    const padded = (len + 3) & ~3;
    if (dataAt + padded > b.length) throw new PcpDecodeError('drop', 0, o + 2, 'option runs past the message');
    if (code === OptionCode.THIRD_PARTY && len === Size.THIRD_PARTY) {
      out.push({ kind: 'third_party', address: readAddress(b, dataAt) });
    } else if (code === OptionCode.PREFER_FAILURE && len === Size.PREFER_FAILURE) {
      out.push({ kind: 'prefer_failure' });
    } else if (code === OptionCode.FILTER && len === Size.FILTER) {
      out.push({
        kind: 'filter',
        prefixLength: b[dataAt + 1] ?? 0,
        remotePort: u16(b, dataAt + 2),
        remoteAddress: readAddress(b, dataAt + 4),
      });
    } else {
      out.push({ kind: 'other', code, data: b.slice(dataAt, dataAt + len) });
    }
    o = dataAt + padded;
  }
  return out;
}

/**
 * The error response for a request that failed to decode (RFC 6887 §8.3: copy the request's
 * fields; UNSUPP_VERSION carries the version we do support). Null when the packet is dropped.
 */
export function errorResponseFor(err: PcpDecodeError, epoch: number): PcpResponse | null {
  if (err.action === 'drop' || !err.request) return null;
  const r = err.request;
  return {
    version: Version.PCP,
    opcode: r.opcode,
    resultCode: err.resultCode,
    lifetime: errorLifetime(err.resultCode),
    epoch,
    ...(r.opcodeData ? { opcodeData: r.opcodeData } : {}),
    options: [],
  };
}
