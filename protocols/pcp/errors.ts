/**
 * Decoding failures. A failure either means "drop silently" (RFC 6887 §8.3: shorter than
 * 2 or 24 octets, a response arriving at the server) or carries the result code the server
 * answers with. `offset` is where in the packet the problem was found.
 */

export type DecodeAction = 'drop' | 'respond';

export class PcpDecodeError extends Error {
  override readonly name = 'PcpDecodeError';
  constructor(
    /** 'drop': silently dropped per RFC; 'respond': answer with resultCode */
    readonly action: DecodeAction,
    /** PCP result code (RFC 6887 §7.4) to answer with; 0 when action is 'drop' */
    readonly resultCode: number,
    /** octet offset of the offending field */
    readonly offset: number,
    message: string,
    /** what the server needs to build the error response (RFC 6887 §8.3: copy request fields) */
    readonly request: {
      readonly version: number;
      readonly opcode: number;
      readonly lifetime: number;
      /** opcode-specific octets of the request when the opcode is known and they were present */
      readonly opcodeData: Uint8Array | null;
    } | null = null,
  ) {
    super(message);
  }
}

export class NatPmpDecodeError extends Error {
  override readonly name = 'NatPmpDecodeError';
  constructor(
    readonly action: DecodeAction,
    /** NAT-PMP result code (RFC 6886 §3.5) to answer with; 0 when action is 'drop' */
    readonly resultCode: number,
    readonly offset: number,
    message: string,
    /** the request opcode, for the response's opcode (request + 128) */
    readonly opcode: number,
  ) {
    super(message);
  }
}

/** errors our decoders throw; anything else escaping a decoder is a bug */
export function isDecodeError(e: unknown): e is PcpDecodeError | NatPmpDecodeError {
  return e instanceof PcpDecodeError || e instanceof NatPmpDecodeError;
}
