/**
 * TypeBox schemas of the admin API. They validate requests (fastify/ajv), shape responses
 * (fast-json-stringify) and are the source of the OpenAPI document: one description, three uses.
 */
import { Type } from '@sinclair/typebox';
import type { Static, TSchema } from '@sinclair/typebox';
import { LEASE_SOURCES } from '../common/net-types.js';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/** a string enum as `enum` (not anyOf of literals) so a 400 can list the allowed values */
export const StringEnum = <const T extends readonly string[]>(
  values: T,
  opts: { description?: string; default?: T[number] } = {},
) => Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...opts });

export const Source = StringEnum(LEASE_SOURCES, {
  description: 'who created the lease',
});
export const Protocol = StringEnum(['tcp', 'udp'] as const);
const Port = Type.Integer({ minimum: 1, maximum: 65535 });
/** 4: an IPv4 mapping with translation; 6: an IPv6 pinhole, no translation (docs/leases.md) */
export const Family = Type.Unsafe<4 | 6>({
  type: 'integer',
  enum: [4, 6],
  description: '4: IPv4 mapping (with translation); 6: IPv6 pinhole (external endpoint = internal endpoint)',
});
/** an IPv4 address, or an IPv6 one (stored and answered in its canonical RFC 5952 text) */
const IpAddress = (description?: string) =>
  Type.Union([Type.String({ format: 'ipv4' }), Type.String({ format: 'ipv6' })], description ? { description } : {});
const EndReason = StringEnum(['released', 'expired', 'revoked', 'replaced', 'config'] as const);
/** free text stays printable: no control characters (they would reach terminals through `portd leases`) */
const PRINTABLE = '^[^\\u0000-\\u001f\\u007f-\\u009f]*$';
const EventType = StringEnum(['granted', 'renewed', 'released', 'expired', 'revoked', 'refused', 'replaced'] as const);

/** the lease's mapping on the NAT the gateway sits behind (src/upstream/, docs/double-nat.md) */
export const UpstreamSchema = Type.Object({
  state: StringEnum(['pending', 'active', 'failed'] as const),
  protocol: StringEnum(['pcp', 'natpmp', 'upnp'] as const),
  server: Type.String(),
  externalAddress: Nullable(Type.String({ description: 'the public address the upstream gave' })),
  externalPort: Nullable(Type.Integer({ description: 'the public port the upstream gave' })),
  lifetime: Nullable(Type.Integer({ description: 'seconds the upstream granted at its last answer' })),
  expiresAt: Nullable(Type.Integer({ description: 'epoch ms' })),
  nonce: Nullable(Type.String()),
  epoch: Nullable(Type.Integer({ description: 'the upstream epoch (PCP / NAT-PMP) at its last answer' })),
  detail: Nullable(Type.String()),
  updatedAt: Type.Integer({ description: 'epoch ms' }),
});

export const LeaseSchema = Type.Object({
  family: Family,
  id: Type.String(),
  source: Source,
  protocol: Protocol,
  externalAddress: Type.String(),
  externalPort: Type.Integer(),
  externalPortEnd: Type.Integer(),
  internalAddress: Type.String(),
  internalPort: Type.Integer(),
  remoteAddress: Nullable(Type.String()),
  remotePrefix: Nullable(Type.Integer()),
  remotePort: Nullable(Type.Integer()),
  owner: Type.String({ description: 'the LAN address that asked' }),
  description: Type.String(),
  nonce: Nullable(Type.String()),
  createdAt: Type.Integer({ description: 'epoch ms' }),
  updatedAt: Type.Integer({ description: 'epoch ms' }),
  expiresAt: Nullable(Type.Integer({ description: 'epoch ms; null = no expiry' })),
  requestedLifetime: Nullable(Type.Integer()),
  readOnly: Type.Boolean({ description: 'config-file forwards and trigger rules cannot be revoked through the API' }),
  rule: Nullable(Type.String()),
  state: StringEnum(['active', 'ended'] as const),
  endedAt: Nullable(Type.Integer()),
  endReason: Nullable(EndReason),
  renewCount: Type.Integer({ description: 'renewals so far (each updates the lease; the history shows the last)' }),
  lastRenewedAt: Nullable(Type.Integer({ description: 'epoch ms of the last renewal; null = never renewed' })),
  upstream: Type.Optional(Nullable(UpstreamSchema)),
});

export const HistoryEntrySchema = Type.Object({
  leaseId: Type.String(),
  type: EventType,
  at: Type.Integer({ description: 'epoch ms' }),
  actor: Nullable(Type.String()),
  reason: Nullable(Type.String()),
});

export const ErrorSchema = Type.Object({
  code: Type.String({ description: 'stable code from docs/errors.md' }),
  message: Type.String(),
  field: Type.Optional(Type.String({ description: 'the offending request field (400)' })),
  holder: Type.Optional(
    Type.Object(
      {
        id: Type.String(),
        source: Source,
        owner: Type.String(),
        externalPort: Type.Integer(),
        externalPortEnd: Type.Integer(),
      },
      { description: 'the lease in the way (409)' },
    ),
  ),
});

export const LeaseListQuery = Type.Object(
  {
    family: Type.Optional(Family),
    source: Type.Optional(Source),
    owner: Type.Optional(IpAddress('the LAN address that asked (IPv6 in any spelling)')),
    protocol: Type.Optional(Protocol),
    externalPort: Type.Optional(Port),
    internalPort: Type.Optional(Port),
    state: Type.Optional(StringEnum(['active', 'ended', 'all'] as const, { default: 'active' })),
    q: Type.Optional(Type.String({ maxLength: 200, description: 'text search in the description' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
    sort: Type.Optional(StringEnum(['createdAt', 'expiresAt', 'externalPort', 'owner'] as const)),
    order: Type.Optional(StringEnum(['asc', 'desc'] as const)),
  },
  { additionalProperties: false },
);
export type LeaseListQuery = Static<typeof LeaseListQuery>;

export const LeaseList = Type.Object({
  leases: Type.Array(LeaseSchema),
  total: Type.Integer({ description: 'matching leases before paging' }),
  limit: Type.Integer(),
  offset: Type.Integer(),
});

export const EventsQuery = Type.Object(
  { source: Type.Optional(Source), family: Type.Optional(Family) },
  { additionalProperties: false },
);

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });

export const RevokeQuery = Type.Object(
  {
    reason: Type.Optional(
      Type.String({ maxLength: 200, pattern: PRINTABLE, description: 'recorded in the lease history' }),
    ),
  },
  { additionalProperties: false },
);

export const LeaseDetail = Type.Object({ lease: LeaseSchema, history: Type.Array(HistoryEntrySchema) });

export const StaticForwardBody = Type.Object(
  {
    protocol: Protocol,
    externalPort: Type.Integer({
      minimum: 1,
      maximum: 65535,
      description: 'the WAN port; for an IPv6 pinhole, the port opened on the host itself (no translation)',
    }),
    externalPortEnd: Type.Optional(Port),
    internalAddress: IpAddress(
      'an IPv4 LAN address (a forward), or a global or unique-local IPv6 address (a static pinhole)',
    ),
    internalPort: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 65535,
        description: 'defaults to externalPort; a range maps 1:1; a pinhole has no other (leave it out or equal)',
      }),
    ),
    remoteAddress: Type.Optional(
      Nullable(IpAddress('only this peer may use the forward (the same family as internalAddress)')),
    ),
    lifetime: Type.Optional(
      Nullable(Type.Integer({ minimum: 1, maximum: 31536000, description: 'seconds; null or absent = no expiry' })),
    ),
    description: Type.String({ maxLength: 200, pattern: PRINTABLE, default: '' }),
  },
  { additionalProperties: false },
);
export type StaticForwardBody = Static<typeof StaticForwardBody>;

export const GrantResponse = Type.Object({
  lease: LeaseSchema,
  created: Type.Boolean({ description: 'false when an identical forward was renewed' }),
});

export const LoginBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 512 }) },
  { additionalProperties: false },
);

export const OkResponse = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) });

/** the WAN side (issue 16 part 3, docs/double-nat.md) */
export const WanStatusSchema = Type.Object(
  {
    address: Nullable(Type.String({ description: "the WAN interface's IPv4 address (or the configured one)" })),
    kind: Nullable(
      Type.Union(
        ['public', 'private', 'shared', 'documentation', 'link-local', 'loopback', 'unusable'].map((k) =>
          Type.Literal(k),
        ),
        { description: 'what kind of address it is; documentation (RFC 5737) counts as public' },
      ),
    ),
    block: Nullable(Type.String({ description: 'the special-purpose block it is in, e.g. 100.64.0.0/10' })),
    stun: Type.Object({
      enabled: Type.Boolean({ description: 'STUN servers are configured' }),
      publicAddress: Nullable(Type.String({ description: 'the address a STUN server saw, while fresh' })),
      publicPort: Nullable(Type.Integer()),
      server: Nullable(Type.String({ description: 'host:port of the server that answered' })),
      learnedAt: Nullable(Type.Integer({ description: 'epoch ms of that answer' })),
      checkedAt: Nullable(Type.Integer({ description: 'epoch ms of the last check' })),
      lastError: Nullable(Type.String({ description: 'why the last check learned nothing' })),
    }),
    upstreamAddress: Nullable(
      Type.String({ description: "the upstream NAT's public address while upstream chaining holds our mappings" }),
    ),
    doubleNat: Type.Union([Type.Literal('yes'), Type.Literal('no'), Type.Literal('unknown')]),
    why: Type.String({ description: 'the reason for doubleNat, in words' }),
    reportedAddress: Type.String({ description: 'what UPnP GetExternalIPAddress and NAT-PMP report' }),
    reportedBecause: Type.String(),
  },
  { description: 'the WAN side: double NAT, STUN, the address clients are told' },
);

export const StatusResponse = Type.Object({
  version: Type.String(),
  startedAt: Type.Integer({ description: 'epoch ms' }),
  uptimeSeconds: Type.Integer(),
  externalAddress: Type.String(),
  pcpEpoch: Nullable(Type.Integer({ description: 'PCP/NAT-PMP epoch seconds' })),
  leases: Type.Object({
    total: Type.Integer(),
    bySource: Type.Record(Type.String(), Type.Integer()),
  }),
  quota: Type.Object({
    maxLeasesPerClient: Type.Integer(),
    clients: Type.Array(Type.Object({ owner: Type.String(), leases: Type.Integer() }), {
      description: 'busiest first',
    }),
  }),
  dataplane: Type.Object({
    driver: Type.String(),
    ok: Type.Boolean(),
    lastReconcileAt: Nullable(Type.Integer()),
    lastDrift: Type.Integer(),
    detail: Type.Optional(Type.String()),
  }),
  frontends: Type.Array(
    Type.Object({
      name: Type.String(),
      listening: Type.Array(Type.String({ description: 'address:port' })),
    }),
  ),
  upnpDescriptionUrls: Type.Array(Type.String()),
  wan: Nullable(WanStatusSchema),
  auth: Type.Object({ required: Type.Boolean(), caller: Type.String() }),
});
export type StatusResponse = Static<typeof StatusResponse>;

/** error responses every authenticated route may give */
export const errorResponses = { 400: ErrorSchema, 401: ErrorSchema } as const;
