/**
 * The error registry: every error an operator or API user can see has a stable code here,
 * documented in docs/errors.md (a test fails when a code lacks its line there).
 */
export const ErrorCode = {
  CONFIG_NOT_FOUND: 'PORTD_CONFIG_NOT_FOUND',
  CONFIG_INVALID: 'PORTD_CONFIG_INVALID',
  CONFIG_PARSE: 'PORTD_CONFIG_PARSE',
  DATABASE_LOCKED: 'PORTD_DATABASE_LOCKED',
  DATABASE_OPEN: 'PORTD_DATABASE_OPEN',
  DATABASE_SCHEMA: 'PORTD_DATABASE_SCHEMA',
  DATABASE_WRITE: 'PORTD_DATABASE_WRITE',
  DATAPLANE_UNAVAILABLE: 'PORTD_DATAPLANE_UNAVAILABLE',
  DATAPLANE_BATCH: 'PORTD_DATAPLANE_BATCH',
  NFT_MISSING: 'PORTD_NFT_MISSING',
  NO_CAP_NET_ADMIN: 'PORTD_NO_CAP_NET_ADMIN',
  LISTEN_FAILED: 'PORTD_LISTEN_FAILED',
  USAGE: 'PORTD_USAGE',
  LEASE_CONFLICT: 'PORTD_LEASE_CONFLICT',
  LEASE_DENIED: 'PORTD_LEASE_DENIED',
  LEASE_RESERVED: 'PORTD_LEASE_RESERVED',
  LEASE_QUOTA: 'PORTD_LEASE_QUOTA',
  LEASE_NOT_AUTHORIZED: 'PORTD_LEASE_NOT_AUTHORIZED',
  LEASE_NO_PORT: 'PORTD_LEASE_NO_PORT',
  LEASE_CAPACITY: 'PORTD_LEASE_CAPACITY',
  LEASE_PORT_IN_USE: 'PORTD_LEASE_PORT_IN_USE',
  LEASE_INVALID: 'PORTD_LEASE_INVALID',
  LEASE_UNAVAILABLE: 'PORTD_LEASE_UNAVAILABLE',
  LEASE_NOT_FOUND: 'PORTD_LEASE_NOT_FOUND',
  LEASE_READ_ONLY: 'PORTD_LEASE_READ_ONLY',
  ADMIN_UNAUTHORIZED: 'PORTD_ADMIN_UNAUTHORIZED',
  ADMIN_BAD_REQUEST: 'PORTD_ADMIN_BAD_REQUEST',
  ADMIN_NOT_FOUND: 'PORTD_ADMIN_NOT_FOUND',
  ADMIN_INTERNAL: 'PORTD_ADMIN_INTERNAL',
  ADMIN_FORBIDDEN_HOST: 'PORTD_ADMIN_FORBIDDEN_HOST',
  ADMIN_FORBIDDEN_ORIGIN: 'PORTD_ADMIN_FORBIDDEN_ORIGIN',
  LEASE_ENDED: 'PORTD_LEASE_ENDED',
  TRIGGER_NOT_FOUND: 'PORTD_TRIGGER_NOT_FOUND',
  TRIGGER_EXISTS: 'PORTD_TRIGGER_EXISTS',
  TRIGGER_READ_ONLY: 'PORTD_TRIGGER_READ_ONLY',
  TRIGGER_HOST_NOT_ALLOWED: 'PORTD_TRIGGER_HOST_NOT_ALLOWED',
  TRIGGER_DISABLED: 'PORTD_TRIGGER_DISABLED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class PortdError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'PortdError';
  }
  /** the line shown to a user: what is wrong, then what to do */
  toUserString(): string {
    return `${this.code}: ${this.message}${this.hint ? `\n  hint: ${this.hint}` : ''}`;
  }
}

/** maps the lease core's refusal reasons onto registry codes */
export const refusalCode = {
  conflict: ErrorCode.LEASE_CONFLICT,
  denied: ErrorCode.LEASE_DENIED,
  reserved: ErrorCode.LEASE_RESERVED,
  quota: ErrorCode.LEASE_QUOTA,
  not_authorized: ErrorCode.LEASE_NOT_AUTHORIZED,
  no_port: ErrorCode.LEASE_NO_PORT,
  capacity: ErrorCode.LEASE_CAPACITY,
  in_use: ErrorCode.LEASE_PORT_IN_USE,
  invalid: ErrorCode.LEASE_INVALID,
  unavailable: ErrorCode.LEASE_UNAVAILABLE,
} as const;
