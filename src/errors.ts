/**
 * The error registry: every error an operator or API user can see has a stable code here, with the
 * HTTP status the admin API answers it with, documented in docs/errors.md (test/unit/errors.test.ts
 * checks the two against each other both ways).
 */
/** a registry entry: its stable code and the admin API's HTTP status for it (null: never sent over HTTP) */
export interface ErrorEntry {
  readonly code: `PORTD_${string}`;
  readonly status: number | null;
}

export const errorRegistry = {
  CONFIG_NOT_FOUND: { code: 'PORTD_CONFIG_NOT_FOUND', status: null },
  CONFIG_INVALID: { code: 'PORTD_CONFIG_INVALID', status: null },
  CONFIG_PARSE: { code: 'PORTD_CONFIG_PARSE', status: null },
  DATABASE_LOCKED: { code: 'PORTD_DATABASE_LOCKED', status: null },
  DATABASE_OPEN: { code: 'PORTD_DATABASE_OPEN', status: null },
  DATABASE_SCHEMA: { code: 'PORTD_DATABASE_SCHEMA', status: null },
  DATABASE_WRITE: { code: 'PORTD_DATABASE_WRITE', status: null },
  HA_FENCED: { code: 'PORTD_HA_FENCED', status: 503 },
  DATAPLANE_UNAVAILABLE: { code: 'PORTD_DATAPLANE_UNAVAILABLE', status: null },
  DATAPLANE_BATCH: { code: 'PORTD_DATAPLANE_BATCH', status: 503 },
  NFT_MISSING: { code: 'PORTD_NFT_MISSING', status: null },
  NO_CAP_NET_ADMIN: { code: 'PORTD_NO_CAP_NET_ADMIN', status: null },
  LISTEN_FAILED: { code: 'PORTD_LISTEN_FAILED', status: null },
  USAGE: { code: 'PORTD_USAGE', status: null },
  LEASE_CONFLICT: { code: 'PORTD_LEASE_CONFLICT', status: 409 },
  LEASE_DENIED: { code: 'PORTD_LEASE_DENIED', status: 403 },
  LEASE_RESERVED: { code: 'PORTD_LEASE_RESERVED', status: 403 },
  LEASE_QUOTA: { code: 'PORTD_LEASE_QUOTA', status: 403 },
  LEASE_NOT_AUTHORIZED: { code: 'PORTD_LEASE_NOT_AUTHORIZED', status: 403 },
  LEASE_NO_PORT: { code: 'PORTD_LEASE_NO_PORT', status: 409 },
  LEASE_CAPACITY: { code: 'PORTD_LEASE_CAPACITY', status: 503 },
  LEASE_PORT_IN_USE: { code: 'PORTD_LEASE_PORT_IN_USE', status: 409 },
  LEASE_INVALID: { code: 'PORTD_LEASE_INVALID', status: 400 },
  LEASE_UNAVAILABLE: { code: 'PORTD_LEASE_UNAVAILABLE', status: 503 },
  LEASE_NOT_FOUND: { code: 'PORTD_LEASE_NOT_FOUND', status: 404 },
  LEASE_READ_ONLY: { code: 'PORTD_LEASE_READ_ONLY', status: 403 },
  ADMIN_UNAUTHORIZED: { code: 'PORTD_ADMIN_UNAUTHORIZED', status: 401 },
  ADMIN_BAD_REQUEST: { code: 'PORTD_ADMIN_BAD_REQUEST', status: 400 },
  ADMIN_NOT_FOUND: { code: 'PORTD_ADMIN_NOT_FOUND', status: 404 },
  ADMIN_INTERNAL: { code: 'PORTD_ADMIN_INTERNAL', status: 500 },
  ADMIN_FORBIDDEN_HOST: { code: 'PORTD_ADMIN_FORBIDDEN_HOST', status: 421 },
  ADMIN_FORBIDDEN_ORIGIN: { code: 'PORTD_ADMIN_FORBIDDEN_ORIGIN', status: 403 },
  LEASE_ENDED: { code: 'PORTD_LEASE_ENDED', status: 409 },
  TRIGGER_NOT_FOUND: { code: 'PORTD_TRIGGER_NOT_FOUND', status: 404 },
  TRIGGER_EXISTS: { code: 'PORTD_TRIGGER_EXISTS', status: 409 },
  TRIGGER_READ_ONLY: { code: 'PORTD_TRIGGER_READ_ONLY', status: 403 },
  TRIGGER_HOST_NOT_ALLOWED: { code: 'PORTD_TRIGGER_HOST_NOT_ALLOWED', status: 403 },
  TRIGGER_DISABLED: { code: 'PORTD_TRIGGER_DISABLED', status: 409 },
} as const satisfies Record<string, ErrorEntry>;
type Registry = typeof errorRegistry;

/** `ErrorCode.LEASE_CONFLICT` → `'PORTD_LEASE_CONFLICT'`, derived from the registry */
export const ErrorCode = Object.freeze(
  Object.fromEntries(Object.entries(errorRegistry).map(([key, e]) => [key, e.code])),
) as { readonly [K in keyof Registry]: Registry[K]['code'] };
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** the codes the admin API can answer with: those with an HTTP status in the registry */
export type HttpErrorCode = {
  [K in keyof Registry]: Registry[K]['status'] extends number ? Registry[K]['code'] : never;
}[keyof Registry];

const statusOfCode: ReadonlyMap<string, number | null> = new Map(
  Object.values(errorRegistry).map((e) => [e.code, e.status]),
);

/** the HTTP status of an admin API error, from the registry */
export function httpStatus(code: HttpErrorCode): number {
  const status = statusOfCode.get(code);
  if (typeof status !== 'number') throw new Error(`${code} has no HTTP status in the error registry (src/errors.ts)`);
  return status;
}

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
