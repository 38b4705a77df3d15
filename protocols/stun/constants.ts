/** STUN (RFC 8489) numbers portd's client needs: Binding only, no authentication, no TURN */

/** RFC 8489 §5: the fixed value in octets 4-7 of every message */
export const MAGIC_COOKIE = 0x2112a442;

/** RFC 8489 §5: the header is 20 octets; attributes follow, each padded to a multiple of 4 */
export const HEADER_LENGTH = 20;

/** RFC 8489 §5: the transaction id is 96 bits */
export const TRANSACTION_ID_LENGTH = 12;

/** RFC 8489 §18.1: the one method we use */
export const Method = {
  BINDING: 0x001,
} as const;

/** RFC 8489 §5: the class bits C1 C0 of the message type */
export const MessageClass = {
  REQUEST: 0b00,
  INDICATION: 0b01,
  SUCCESS_RESPONSE: 0b10,
  ERROR_RESPONSE: 0b11,
} as const;
export type MessageClass = (typeof MessageClass)[keyof typeof MessageClass];

/** attribute types (RFC 8489 §18.3 and the RFC 3489 ones old servers still send) */
export const Attribute = {
  MAPPED_ADDRESS: 0x0001, // RFC 8489 §14.1
  SOURCE_ADDRESS: 0x0004, // RFC 3489 §11.2.3, obsolete: sent by old servers, ignored
  CHANGED_ADDRESS: 0x0005, // RFC 3489 §11.2.3, obsolete: sent by old servers, ignored
  USERNAME: 0x0006, // RFC 8489 §14.3
  MESSAGE_INTEGRITY: 0x0008, // RFC 8489 §14.5
  ERROR_CODE: 0x0009, // RFC 8489 §14.8
  UNKNOWN_ATTRIBUTES: 0x000a, // RFC 8489 §14.9
  REALM: 0x0014, // RFC 8489 §14.9
  NONCE: 0x0015, // RFC 8489 §14.10
  MESSAGE_INTEGRITY_SHA256: 0x001c, // RFC 8489 §14.6
  PASSWORD_ALGORITHM: 0x001d, // RFC 8489 §14.12
  USERHASH: 0x001e, // RFC 8489 §14.4
  XOR_MAPPED_ADDRESS: 0x0020, // RFC 8489 §14.2
  SOFTWARE: 0x8022, // RFC 8489 §14.14
  ALTERNATE_SERVER: 0x8023, // RFC 8489 §14.15
  FINGERPRINT: 0x8028, // RFC 8489 §14.7
} as const;

/** RFC 8489 §14.7: the CRC-32 of the message is XORed with this ("STUN") */
export const FINGERPRINT_XOR = 0x5354554e;

/** RFC 8489 §14.1: address families in (XOR-)MAPPED-ADDRESS */
export const AddressFamily = {
  IPV4: 0x01,
  IPV6: 0x02,
} as const;

/**
 * RFC 8489 §18.3: types 0x0000-0x7FFF are comprehension-required; a response carrying one the client does not
 * know is discarded (§6.3.3, §7.3.3). These are the required-range ones this client knows (and may ignore).
 */
export const KNOWN_REQUIRED: ReadonlySet<number> = new Set([
  Attribute.MAPPED_ADDRESS,
  Attribute.SOURCE_ADDRESS,
  Attribute.CHANGED_ADDRESS,
  Attribute.USERNAME,
  Attribute.MESSAGE_INTEGRITY,
  Attribute.ERROR_CODE,
  Attribute.UNKNOWN_ATTRIBUTES,
  Attribute.REALM,
  Attribute.NONCE,
  Attribute.MESSAGE_INTEGRITY_SHA256,
  Attribute.PASSWORD_ALGORITHM,
  Attribute.USERHASH,
  Attribute.XOR_MAPPED_ADDRESS,
]);

/** a UDP datagram this long is not a STUN response to a Binding request (RFC 8489 §6.1: path MTU, 576 minimum) */
export const MAX_MESSAGE_LENGTH = 1500;
