/**
 * NAT-PMP version 0 messages (RFC 6886 §3): pure encode/decode.
 */
import { NatPmpOpcode, NatPmpResultCode, NatPmpSize, RESPONSE_BIT, Version } from './constants.js';
import { NatPmpDecodeError } from './errors.js';
import { put16, put32, u16, u32 } from './bytes.js';

export type NatPmpRequest =
  | { readonly opcode: typeof NatPmpOpcode.EXTERNAL_ADDRESS } // RFC 6886 §3.2
  | {
      readonly opcode: typeof NatPmpOpcode.MAP_UDP | typeof NatPmpOpcode.MAP_TCP; // RFC 6886 §3.3
      readonly internalPort: number;
      /** suggested; 0 = any */
      readonly externalPort: number;
      /** requested seconds; 0 = delete (RFC 6886 §3.4) */
      readonly lifetime: number;
    };

export type NatPmpResponse =
  | {
      // RFC 6886 §3.2: also the unsolicited announcement (§3.2.1)
      readonly opcode: typeof NatPmpOpcode.EXTERNAL_ADDRESS;
      readonly resultCode: number;
      readonly epoch: number;
      readonly externalAddress: string;
    }
  | {
      readonly opcode: typeof NatPmpOpcode.MAP_UDP | typeof NatPmpOpcode.MAP_TCP; // RFC 6886 §3.3
      readonly resultCode: number;
      readonly epoch: number;
      readonly internalPort: number;
      readonly externalPort: number;
      readonly lifetime: number;
    }
  | {
      /** header-only answer to a request we cannot parse further (RFC 6886 §3.5) */
      readonly opcode: number;
      readonly resultCode: number;
      readonly epoch: number;
      readonly headerOnly: true;
    };

/**
 * Decode a NAT-PMP request. Throws NatPmpDecodeError only.
 * - shorter than 2 octets, or a response (opcode ≥ 128): dropped
 * - version ≠ 0: UNSUPPORTED_VERSION (RFC 6886 §3.5; a PCP server routes versions ≥ 1 to PCP instead)
 * - unknown opcode: UNSUPPORTED_OPCODE (RFC 6886 §3.5)
 * - a MAP request shorter than 12 octets: dropped (RFC 6886 has no "malformed" code)
 * Octets beyond the message's size are ignored.
 */
export function decodeNatPmpRequest(b: Uint8Array): NatPmpRequest {
  if (b.length < NatPmpSize.EXTERNAL_ADDRESS_REQUEST)
    throw new NatPmpDecodeError('drop', 0, 0, 'shorter than 2 octets', 0);
  const version = b[0] ?? 0;
  const op = b[1] ?? 0;
  if ((op & RESPONSE_BIT) !== 0) throw new NatPmpDecodeError('drop', 0, 1, 'a response, not a request', op & 0x7f);
  if (version !== Version.NAT_PMP) {
    throw new NatPmpDecodeError(
      'respond',
      NatPmpResultCode.UNSUPPORTED_VERSION,
      0,
      `unsupported version ${version}`,
      op,
    );
  }
  if (op === NatPmpOpcode.EXTERNAL_ADDRESS) return { opcode: op };
  if (op !== NatPmpOpcode.MAP_UDP && op !== NatPmpOpcode.MAP_TCP) {
    throw new NatPmpDecodeError('respond', NatPmpResultCode.UNSUPPORTED_OPCODE, 1, `unsupported opcode ${op}`, op);
  }
  if (b.length < NatPmpSize.MAP_REQUEST)
    throw new NatPmpDecodeError('drop', 0, b.length, 'MAP request shorter than 12 octets', op);
  return { opcode: op, internalPort: u16(b, 4), externalPort: u16(b, 6), lifetime: u32(b, 8) };
}

export function encodeNatPmpRequest(req: NatPmpRequest): Uint8Array {
  if (req.opcode === NatPmpOpcode.EXTERNAL_ADDRESS) return Uint8Array.from([Version.NAT_PMP, req.opcode]);
  const b = new Uint8Array(NatPmpSize.MAP_REQUEST);
  b[1] = req.opcode;
  put16(b, 4, req.internalPort);
  put16(b, 6, req.externalPort);
  put32(b, 8, req.lifetime);
  return b;
}

function ipv4Bytes(address: string): number[] {
  const parts = address.split('.');
  const out = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : NaN));
  if (out.length !== 4 || out.some((n) => !(n >= 0 && n <= 255)))
    throw new TypeError(`not an IPv4 address: ${address}`);
  return out;
}

export function encodeNatPmpResponse(res: NatPmpResponse): Uint8Array {
  const header = (size: number): Uint8Array => {
    const b = new Uint8Array(size);
    b[0] = Version.NAT_PMP;
    b[1] = RESPONSE_BIT | (res.opcode & 0x7f); // RFC 6886 §3.5 (errata 3618: also for UNSUPPORTED_VERSION)
    put16(b, 2, res.resultCode);
    put32(b, 4, res.epoch);
    return b;
  };
  if ('headerOnly' in res) return header(NatPmpSize.RESPONSE_HEADER);
  if (res.opcode === NatPmpOpcode.EXTERNAL_ADDRESS) {
    const b = header(NatPmpSize.EXTERNAL_ADDRESS_RESPONSE);
    b.set(ipv4Bytes(res.externalAddress), 8);
    return b;
  }
  const b = header(NatPmpSize.MAP_RESPONSE);
  put16(b, 8, res.internalPort);
  put16(b, 10, res.externalPort);
  put32(b, 12, res.lifetime);
  return b;
}

/** Decode a NAT-PMP response (clients, tests, benchmarks). */
export function decodeNatPmpResponse(b: Uint8Array): NatPmpResponse {
  if (b.length < NatPmpSize.RESPONSE_HEADER)
    throw new NatPmpDecodeError('drop', 0, b.length, 'shorter than 8 octets', 0);
  const op = b[1] ?? 0;
  if ((op & RESPONSE_BIT) === 0) throw new NatPmpDecodeError('drop', 0, 1, 'a request, not a response', op);
  if (b[0] !== Version.NAT_PMP) throw new NatPmpDecodeError('drop', 0, 0, `version ${b[0]}`, op & 0x7f);
  const opcode = op & 0x7f;
  const resultCode = u16(b, 2);
  const epoch = u32(b, 4);
  if (opcode === NatPmpOpcode.EXTERNAL_ADDRESS && b.length >= NatPmpSize.EXTERNAL_ADDRESS_RESPONSE) {
    return { opcode, resultCode, epoch, externalAddress: `${b[8]}.${b[9]}.${b[10]}.${b[11]}` };
  }
  if ((opcode === NatPmpOpcode.MAP_UDP || opcode === NatPmpOpcode.MAP_TCP) && b.length >= NatPmpSize.MAP_RESPONSE) {
    return { opcode, resultCode, epoch, internalPort: u16(b, 8), externalPort: u16(b, 10), lifetime: u32(b, 12) };
  }
  return { opcode, resultCode, epoch, headerOnly: true };
}
