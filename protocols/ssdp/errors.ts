/**
 * Why an SSDP datagram was not accepted. SSDP has no error replies: the front-end ignores the datagram and counts it.
 */
export type SsdpDecodeErrorKind = 'too_large' | 'malformed' | 'not_search' | 'bad_man' | 'missing_st' | 'bad_mx';

export class SsdpDecodeError extends Error {
  constructor(
    readonly kind: SsdpDecodeErrorKind,
    message: string,
    readonly offset = 0,
  ) {
    super(message);
    this.name = 'SsdpDecodeError';
  }
}
