/**
 * Why a datagram was not a usable Binding response. The client drops it (RFC 8489 §6.3: a message that is
 * not a valid response is discarded), logs the reason and counts it; nothing here throws anything else.
 */

export type StunDecodeReason =
  /** shorter than the header, or longer than MAX_MESSAGE_LENGTH */
  | 'length'
  /** the two top bits are not zero or the magic cookie is wrong (RFC 8489 §6.3, §5): not STUN */
  | 'not_stun'
  /** the header's length field disagrees with the datagram or is not a multiple of 4 (§5) */
  | 'header_length'
  /** an attribute runs past the end of the message (§14) */
  | 'attribute_bounds'
  /** FINGERPRINT present, but wrong or not last (§14.7) */
  | 'fingerprint'
  /** an unknown comprehension-required attribute (§7.3.3: the response is discarded) */
  | 'unknown_required'
  /** not a Binding success or error response */
  | 'unexpected_type'
  /** not the transaction this client sent (§6.3.3) */
  | 'transaction'
  /** a (XOR-)MAPPED-ADDRESS with a bad length or family (§14.1, §14.2) */
  | 'bad_address'
  /** a success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS */
  | 'no_address'
  /** an ERROR-CODE attribute that does not parse (§14.8) */
  | 'bad_error_code'
  /** not the codec's: the client's label for any other failure while reading a datagram */
  | 'internal';

export class StunDecodeError extends Error {
  override readonly name = 'StunDecodeError';
  constructor(
    readonly reason: StunDecodeReason,
    /** octet offset of the offending field */
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}
