/**
 * PCP (RFC 6887) and NAT-PMP (RFC 6886) numbers, named with the RFCs' own words.
 */

/** RFC 6887 §9: NAT-PMP is version 0, this document's PCP is version 2 (1 was a draft). */
export const Version = {
  NAT_PMP: 0, // RFC 6886 §3
  PCP: 2, // RFC 6887 §7.1
} as const;

/** RFC 6887 §7.1, IANA "PCP Opcodes" */
export const Opcode = {
  ANNOUNCE: 0, // RFC 6887 §14.1
  MAP: 1, // RFC 6887 §11
  PEER: 2, // RFC 6887 §12
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** RFC 6887 §7.4 */
export const ResultCode = {
  SUCCESS: 0, // RFC 6887 §7.4
  UNSUPP_VERSION: 1, // RFC 6887 §7.4, long lifetime
  NOT_AUTHORIZED: 2, // RFC 6887 §7.4, long lifetime
  MALFORMED_REQUEST: 3, // RFC 6887 §7.4, long lifetime
  UNSUPP_OPCODE: 4, // RFC 6887 §7.4, long lifetime
  UNSUPP_OPTION: 5, // RFC 6887 §7.4, long lifetime
  MALFORMED_OPTION: 6, // RFC 6887 §7.4, long lifetime
  NETWORK_FAILURE: 7, // RFC 6887 §7.4, short lifetime
  NO_RESOURCES: 8, // RFC 6887 §7.4, short lifetime
  UNSUPP_PROTOCOL: 9, // RFC 6887 §7.4, long lifetime
  USER_EX_QUOTA: 10, // RFC 6887 §7.4, short lifetime
  CANNOT_PROVIDE_EXTERNAL: 11, // RFC 6887 §7.4, short lifetime
  ADDRESS_MISMATCH: 12, // RFC 6887 §7.4, long lifetime
  EXCESSIVE_REMOTE_PEERS: 13, // RFC 6887 §7.4, long lifetime
} as const;
export type ResultCode = (typeof ResultCode)[keyof typeof ResultCode];

export const RESULT_CODE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(ResultCode).map(([k, v]) => [v, k]),
);

/** RFC 6887 §7.4: errors the client should retry soon; all others are long lifetime errors. */
export const SHORT_LIFETIME_ERRORS: ReadonlySet<number> = new Set([
  ResultCode.NETWORK_FAILURE,
  ResultCode.NO_RESOURCES,
  ResultCode.USER_EX_QUOTA,
  ResultCode.CANNOT_PROVIDE_EXTERNAL,
]);

/** RFC 6887 §7.2: the lifetime an error response carries. 30 s for short, 30 min for long errors. */
export const ERROR_LIFETIME = { short: 30, long: 1800 } as const;
export function errorLifetime(code: number): number {
  return SHORT_LIFETIME_ERRORS.has(code) ? ERROR_LIFETIME.short : ERROR_LIFETIME.long;
}

/** RFC 6887 §7.3: codes 0-127 are mandatory to process, 128-255 optional. */
export const OptionCode = {
  THIRD_PARTY: 1, // RFC 6887 §13.1
  PREFER_FAILURE: 2, // RFC 6887 §13.2
  FILTER: 3, // RFC 6887 §13.3
} as const;
export type OptionCode = (typeof OptionCode)[keyof typeof OptionCode];

export function isMandatoryOption(code: number): boolean {
  return code < 128; // RFC 6887 §7.3
}

/** RFC 6887 §7: sizes in octets */
export const Size = {
  HEADER: 24, // RFC 6887 §7.1, §7.2
  MAX_MESSAGE: 1100, // RFC 6887 §7
  MAP: 36, // RFC 6887 §11.1
  PEER: 56, // RFC 6887 §12.1
  OPTION_HEADER: 4, // RFC 6887 §7.3
  THIRD_PARTY: 16, // RFC 6887 §13.1
  PREFER_FAILURE: 0, // RFC 6887 §13.2
  FILTER: 20, // RFC 6887 §13.3
  NONCE: 12, // RFC 6887 §11.1
} as const;

/** IANA protocol numbers carried in MAP/PEER (RFC 6887 §11.1: 0 = all protocols) */
export const IpProtocol = {
  ALL: 0,
  TCP: 6,
  UDP: 17,
} as const;

/** The R bit: set in responses (RFC 6887 §7.1, RFC 6886 §3: opcode + 128). */
export const RESPONSE_BIT = 0x80;

/** RFC 6886 §3.2, §3.3 */
export const NatPmpOpcode = {
  EXTERNAL_ADDRESS: 0, // RFC 6886 §3.2
  MAP_UDP: 1, // RFC 6886 §3.3
  MAP_TCP: 2, // RFC 6886 §3.3
} as const;
export type NatPmpOpcode = (typeof NatPmpOpcode)[keyof typeof NatPmpOpcode];

/** RFC 6886 §3.5 */
export const NatPmpResultCode = {
  SUCCESS: 0, // RFC 6886 §3.5
  UNSUPPORTED_VERSION: 1, // RFC 6886 §3.5
  NOT_AUTHORIZED: 2, // RFC 6886 §3.5 "Not Authorized/Refused"
  NETWORK_FAILURE: 3, // RFC 6886 §3.5
  OUT_OF_RESOURCES: 4, // RFC 6886 §3.5
  UNSUPPORTED_OPCODE: 5, // RFC 6886 §3.5
} as const;
export type NatPmpResultCode = (typeof NatPmpResultCode)[keyof typeof NatPmpResultCode];

export const NAT_PMP_RESULT_CODE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(NatPmpResultCode).map(([k, v]) => [v, k]),
);

/** RFC 6886 §3.2, §3.3 sizes in octets */
export const NatPmpSize = {
  EXTERNAL_ADDRESS_REQUEST: 2,
  MAP_REQUEST: 12,
  RESPONSE_HEADER: 8,
  EXTERNAL_ADDRESS_RESPONSE: 12,
  MAP_RESPONSE: 16,
} as const;

/** RFC 6887 §19, RFC 6886 §3 */
export const Port = {
  SERVER: 5351,
  CLIENT: 5350,
} as const;

/** RFC 6887 §8.1.2 / RFC 6886 §3.2.1: all-hosts groups that receive unsolicited announcements */
export const ANNOUNCE_GROUP = { ipv4: '224.0.0.1', ipv6: 'ff02::1' } as const;
