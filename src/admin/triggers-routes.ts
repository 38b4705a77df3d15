/**
 * `/api/v1/triggers`: port-trigger rules with their state and counters (an AdminRoutePlugin).
 * Rules from the configuration file are listed but read-only; API rules are stored in the database.
 * `POST /api/v1/triggers/:name/fire` fires a rule for a host without a packet (memory driver,
 * tests, the dashboard): the same path as a kernel firing.
 */
import { Type } from '@sinclair/typebox';
import type { TSchema } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import { ErrorCode } from '../errors.js';
import type { MutationResult, TriggerManager } from '../triggers/manager.js';
import { isUsableIPv4Host } from '../common/net.js';
import { canonicalIPv6 } from '../common/ipv6.js';
import { LeaseSchema } from './schemas.js';
import type { AdminRoutePlugin } from './server.js';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Proto = Type.Unsafe<'tcp' | 'udp'>({ type: 'string', enum: ['tcp', 'udp'] });
const MatchProto = Type.Unsafe<'tcp' | 'udp' | 'both'>({ type: 'string', enum: ['tcp', 'udp', 'both'] });

export const TriggerSchema = Type.Object({
  name: Type.String(),
  preset: Type.Optional(Type.String({ description: 'the preset the rule was built from' })),
  match: Type.Object({
    protocol: MatchProto,
    ports: Type.String({ description: 'outbound destination ports that fire the rule, e.g. "6112,6120-6130"' }),
  }),
  open: Type.Array(
    Type.Object({ protocol: Proto, ports: Type.String({ description: 'a port or range opened inbound to the host' }) }),
  ),
  idleTimeout: Type.Integer({ description: 'seconds without traffic before the opening closes' }),
  maxLifetime: Nullable(Type.Integer({ description: 'seconds; an opening never lasts longer (null = no cap)' })),
  hosts: Type.Array(Type.String(), { description: 'LAN networks allowed to fire it (empty = any)' }),
  enabled: Type.Boolean(),
  origin: Type.Unsafe<'config' | 'api'>({
    type: 'string',
    enum: ['config', 'api'],
    description: 'config-file rules are read-only here',
  }),
  readOnly: Type.Boolean(),
  state: Type.Unsafe<'idle' | 'held' | 'disabled' | 'error'>({
    type: 'string',
    enum: ['idle', 'held', 'disabled', 'error'],
  }),
  holder: Nullable(Type.String({ description: 'the LAN host holding the opened ports' })),
  until: Nullable(Type.Integer({ description: 'epoch ms the opening closes unless there is traffic' })),
  leases: Type.Array(Type.String(), { description: 'ids of the leases of the current opening' }),
  counters: Type.Object({
    fired: Type.Integer({ description: 'openings created' }),
    renewed: Type.Integer({ description: 'firings by the holder while open' }),
    refused: Type.Integer({
      description: 'firings refused (another holder, a conflicting lease, host not allowed, disabled)',
    }),
    lastFiredAt: Nullable(Type.Integer()),
    lastHost: Nullable(Type.String()),
  }),
  lastRefusal: Nullable(
    Type.Object({
      at: Type.Integer(),
      host: Type.String(),
      reason: Type.String(),
      holder: Nullable(Type.Object({ source: Type.String(), owner: Type.String(), id: Type.String() })),
    }),
  ),
  error: Nullable(Type.String({ description: 'why an API rule is stored but not in force' })),
  summary: Type.String(),
});

const TriggerError = Type.Object({
  code: Type.String(),
  message: Type.String(),
  field: Type.Optional(Type.String()),
  issues: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
  holder: Type.Optional(
    Type.Object({
      id: Type.String(),
      source: Type.String(),
      owner: Type.String(),
      externalPort: Type.Integer(),
      externalPortEnd: Type.Integer(),
    }),
  ),
});
const errors = {
  400: TriggerError,
  401: TriggerError,
  403: TriggerError,
  404: TriggerError,
  409: TriggerError,
  503: TriggerError,
};
const NameParams = Type.Object({ name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$' }) });
const RuleBody = Type.Object(
  {},
  {
    additionalProperties: true,
    description:
      'a trigger rule as in the configuration file: name, preset, match { protocol, ports }, open [{ protocol, ' +
      'ports }], idleTimeout, maxLifetime, hosts, enabled',
  },
);
const FireBody = Type.Object(
  { host: Type.String({ description: 'the LAN host (IPv4, or IPv6: pinholes) the rule fires for' }) },
  { additionalProperties: false },
);
const FireResponse = Type.Object({
  result: Type.String({ description: 'granted | renewed' }),
  host: Type.String(),
  leases: Type.Array(LeaseSchema),
  trigger: TriggerSchema,
});

export function triggerRoutes(manager: TriggerManager): AdminRoutePlugin {
  return (app, ctx) => {
    const API = '/api/v1/triggers';
    const send = (reply: FastifyReply, r: Exclude<MutationResult, { ok: true }>) =>
      ctx.sendError(reply, r.code, r.message, {
        ...(r.issues ? { issues: r.issues.map((i) => ({ path: i.path, message: i.message })) } : {}),
        ...(r.field !== undefined ? { field: r.field } : {}),
      });

    app.get(
      API,
      {
        schema: {
          summary: 'Port-trigger rules with state (idle / held by a host until a time) and counters',
          tags: ['triggers'],
          response: { 200: Type.Object({ triggers: Type.Array(TriggerSchema) }), ...errors },
        },
      },
      async () => ({ triggers: manager.list() }),
    );

    app.get(
      `${API}/:name`,
      {
        schema: {
          summary: 'One port-trigger rule',
          tags: ['triggers'],
          params: NameParams,
          response: { 200: Type.Object({ trigger: TriggerSchema }), ...errors },
        },
      },
      async (req, reply) => {
        const { name } = req.params as { name: string };
        const t = manager.get(name);
        if (!t) return ctx.sendError(reply, ErrorCode.TRIGGER_NOT_FOUND, `no trigger rule ${name}`);
        return { trigger: t };
      },
    );

    app.post(
      API,
      {
        schema: {
          summary: 'Create a port-trigger rule (stored in the database)',
          tags: ['triggers'],
          body: RuleBody,
          response: { 201: Type.Object({ trigger: TriggerSchema }), ...errors },
        },
      },
      async (req, reply) => {
        const r = await manager.create(req.body, ctx.actorOf(req));
        if (!r.ok) return send(reply, r);
        return reply.code(201).send({ trigger: r.trigger });
      },
    );

    app.put(
      `${API}/:name`,
      {
        schema: {
          summary: 'Replace a port-trigger rule created through the API',
          tags: ['triggers'],
          params: NameParams,
          body: RuleBody,
          response: { 200: Type.Object({ trigger: TriggerSchema }), ...errors },
        },
      },
      async (req, reply) => {
        const { name } = req.params as { name: string };
        const r = await manager.update(name, req.body, ctx.actorOf(req));
        if (!r.ok) return send(reply, r);
        return { trigger: r.trigger };
      },
    );

    app.delete(
      `${API}/:name`,
      {
        schema: {
          summary: 'Delete a port-trigger rule created through the API (its opening closes)',
          tags: ['triggers'],
          params: NameParams,
          response: { 200: Type.Object({ trigger: TriggerSchema }), ...errors },
        },
      },
      async (req, reply) => {
        const { name } = req.params as { name: string };
        const r = await manager.remove(name, ctx.actorOf(req));
        if (!r.ok) return send(reply, r);
        return { trigger: r.trigger };
      },
    );

    app.post(
      `${API}/:name/fire`,
      {
        schema: {
          summary: 'Fire a rule for a LAN host as if it had sent a packet to a trigger port',
          tags: ['triggers'],
          params: NameParams,
          body: FireBody,
          response: { 200: FireResponse, ...errors },
        },
      },
      async (req, reply) => {
        const { name } = req.params as { name: string };
        const { host } = req.body as { host: string };
        // an IPv6 host gets pinholes (issue 15); the manager refuses addresses a pinhole cannot open to
        if (!isUsableIPv4Host(host) && canonicalIPv6(host) === null)
          return ctx.sendError(
            reply,
            ErrorCode.ADMIN_BAD_REQUEST,
            `body.host must be a LAN host's IPv4 or IPv6 address, got ${JSON.stringify(host)}`,
            { field: 'host' },
          );
        const r = await manager.fire(name, host, ctx.actorOf(req));
        if (r.ok) return { result: r.result, host: r.host, leases: r.leases, trigger: manager.get(name)! };
        switch (r.result) {
          case 'unknown_rule':
            return ctx.sendError(reply, ErrorCode.TRIGGER_NOT_FOUND, r.detail);
          case 'conflict':
            return ctx.sendError(reply, ErrorCode.LEASE_CONFLICT, r.detail, { holder: r.holder });
          case 'not_allowed':
          case 'not_target':
            return ctx.sendError(reply, ErrorCode.TRIGGER_HOST_NOT_ALLOWED, r.detail);
          case 'disabled':
          case 'pinholes_off':
            return ctx.sendError(reply, ErrorCode.TRIGGER_DISABLED, r.detail);
          case 'max_lifetime':
            return ctx.sendError(reply, ErrorCode.LEASE_CONFLICT, r.detail);
          default:
            return ctx.sendError(reply, ErrorCode.LEASE_UNAVAILABLE, r.detail);
        }
      },
    );
  };
}
