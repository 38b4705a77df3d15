/**
 * The admin server: JSON API over the lease table, SSE event stream, Prometheus metrics,
 * health probes and the dashboard. Every change an admin makes goes through the lease
 * table with `actor: 'admin:<token name>'`, so it is logged and kept in the lease history.
 */
import type { UpstreamRecord } from '../leases/upstream.js';
import Fastify, { LogController } from 'fastify';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { DataplaneHealth } from '../dataplane/types.js';
import { ErrorCode, type HttpErrorCode, PortdError, httpStatus, refusalCode } from '../errors.js';
import type { LeaseTableApi } from '../leases/table-api.js';
import type { Lease, LeaseEvent, Refusal } from '../leases/types.js';
import { LEASE_SOURCES, type LeaseSource } from '../common/net-types.js';
import type { Metrics } from '../metrics.js';
import {
  SESSION_COOKIE,
  bearerToken,
  createSessionStore,
  isLoopbackListen,
  parseCookies,
  adminListen,
  tokenMatches,
} from './auth.js';
import type { AdminToken } from './auth.js';
import { externalPorts, formatPortRange } from '../common/port-range.js';
import { canonicalIPv6, formatEndpoint } from '../common/ipv6.js';
import { createLogGate } from '../common/log-gate.js';
import { createRequestGuard, isWriteMethod, proxyHeaderOf } from './request-guard.js';
import { DASHBOARD_HTML, DASHBOARD_JS } from './dashboard.js';
import { buildOpenApi, collectRoutes } from './openapi.js';
import {
  ErrorSchema,
  EventsQuery,
  GrantResponse,
  IdParams,
  LeaseDetail,
  LeaseList,
  LeaseListQuery,
  LoginBody,
  OkResponse,
  RevokeQuery,
  StaticForwardBody,
  StatusResponse,
  errorResponses,
} from './schemas.js';

/** what only the wiring knows; the server adds lease counts, quotas and the external address */
export interface StatusInfo {
  readonly version: string;
  /** epoch ms */
  readonly startedAt: number;
  /** PCP/NAT-PMP epoch in seconds, null when PCP is off */
  readonly pcpEpoch: number | null;
  readonly dataplane: { readonly driver: string } & DataplaneHealth;
  readonly frontends: readonly { readonly name: string; readonly listening: readonly string[] }[];
  readonly upnpDescriptionUrls: readonly string[];
  /** the WAN side (double NAT, STUN); null when the wiring gives none */
  readonly wan?: WanStatusInfo | null;
}

/** the WAN block as the status route sends it (dataplane/wan-status.ts builds it) */
export type WanStatusInfo = StatusResponse['wan'];

/** what a route plugin (e.g. triggers) gets besides the fastify instance */
export interface AdminRouteContext {
  readonly leases: LeaseTableApi;
  readonly log: Logger;
  readonly clock: { now(): number };
  /** `admin:<token name>` of the request, for LeaseRequest.actor and logs */
  actorOf(request: FastifyRequest): string;
  /** send `{ code, message, ... }` with the code's HTTP status from the error registry */
  sendError(reply: FastifyReply, code: HttpErrorCode, message: string, extra?: Record<string, unknown>): FastifyReply;
  /** attach to a route's `schema.response` for the error codes */
  readonly ErrorSchema: typeof ErrorSchema;
}

/**
 * Extension point: more routes on the same server (auth, error format and OpenAPI
 * included), e.g. `/api/v1/triggers` from the triggers module. The dashboard's trigger
 * panel reads `GET /api/v1/triggers` when it exists.
 */
export type AdminRoutePlugin = (app: FastifyInstance, ctx: AdminRouteContext) => void | Promise<void>;

export interface AdminServerOptions {
  readonly config: Pick<Config, 'admin' | 'policy'>;
  readonly leases: LeaseTableApi;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly status: () => StatusInfo;
  readonly token: AdminToken;
  readonly readyz: () => Promise<{ ok: boolean; detail?: string }>;
  readonly clock?: { now(): number };
  /**
   * Whether reads need the token too. Default: true unless config.admin.listen is a loopback address
   * (tests inject it). Changes (POST, PUT, PATCH, DELETE) always need it, and so does every request
   * that came through a proxy (it carries Forwarded, X-Forwarded-*, Via, X-Real-IP).
   */
  readonly requireAuth?: boolean;
  readonly routes?: readonly AdminRoutePlugin[];
  /** behind another NAT: each lease's upstream mapping (src/upstream/); leases show `upstream: null` without it */
  readonly upstream?: { recordFor(leaseId: string): UpstreamRecord | null };
  /** SSE heartbeat comment interval (default 15 s) */
  readonly heartbeatMs?: number;
  /** dashboard session lifetime (default 12 h) */
  readonly sessionTtlMs?: number;
  /** interval for "once per client" log lines of refusals and bad input, ms (default 60 s) */
  readonly logIntervalMs?: number;
}

export interface AdminServer {
  readonly app: FastifyInstance;
  readonly authRequired: boolean;
  listen(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyRequest {
    portdCaller: string;
  }
  interface FastifyContextConfig {
    public?: boolean;
  }
}

const API = '/api/v1';
/** an SSE client this far behind is dropped (it reconnects and re-reads the list) */
const SSE_MAX_BUFFER = 1 << 20;

type JsonType = 'string' | 'integer' | 'number' | 'boolean' | 'object' | 'array' | 'null';

/** the JSON types a (TypeBox) schema admits at its top level; null = anything */
function typesOf(schema: Record<string, unknown>): Set<JsonType> | null {
  if (Array.isArray(schema['enum']))
    return new Set((schema['enum'] as unknown[]).map((v) => (v === null ? 'null' : typeof v) as JsonType));
  const t = schema['type'];
  if (typeof t === 'string') return new Set([t as JsonType]);
  if (Array.isArray(t)) return new Set(t as JsonType[]);
  const union = (schema['anyOf'] ?? schema['oneOf']) as Record<string, unknown>[] | undefined;
  if (Array.isArray(union)) {
    const out = new Set<JsonType>();
    for (const s of union) {
      const m = typesOf(s);
      if (!m) return null;
      for (const x of m) out.add(x);
    }
    return out;
  }
  return null;
}

function jsonTypeOf(v: unknown): JsonType {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v as JsonType;
}

/**
 * ajv runs with coerceTypes (query strings are all text), which would also turn a body's "8443"
 * or [8443] into 8443 and ["tcp"] into "tcp". A JSON body has real types: the first field whose
 * type the schema does not admit is named, before ajv gets to coerce it.
 */
export function strictBodyTypeError(schema: unknown, body: unknown): { field: string; message: string } | null {
  if (!schema || typeof schema !== 'object' || !body || typeof body !== 'object' || Array.isArray(body)) return null;
  const props = (schema as Record<string, unknown>)['properties'] as
    | Record<string, Record<string, unknown>>
    | undefined;
  if (!props) return null;
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    const p = props[k];
    if (!p) continue; // unknown fields: ajv names them (additionalProperties: false)
    const allowed = typesOf(p);
    if (!allowed) continue;
    const got = jsonTypeOf(v);
    if (allowed.has(got) || (got === 'integer' && allowed.has('number'))) continue;
    return { field: k, message: `body.${k} must be ${[...allowed].join(' or ')}, not ${got}` };
  }
  return null;
}

function fieldOfValidation(err: FastifyError): { field: string; message: string } {
  const v = err.validation?.[0];
  const ctx = err.validationContext ?? 'request';
  if (!v) return { field: ctx, message: err.message };
  const path = v.instancePath.split('/').filter(Boolean);
  const params = v.params as Record<string, unknown>;
  let msg = v.message ?? 'is invalid';
  if (typeof params['missingProperty'] === 'string') {
    path.push(params['missingProperty']);
    msg = 'is required';
  } else if (typeof params['additionalProperty'] === 'string') {
    path.push(params['additionalProperty']);
    msg = 'is not a known field';
  } else if (Array.isArray(params['allowedValues']))
    msg = `must be one of: ${(params['allowedValues'] as unknown[]).join(', ')}`;
  const field = path.join('.') || ctx;
  return { field, message: `${ctx}.${field} ${msg}` };
}

export function createAdminServer(opts: AdminServerOptions): AdminServer {
  const { config, leases, metrics } = opts;
  const log = opts.log.child({ component: 'admin' });
  const clock = opts.clock ?? { now: () => Date.now() };
  const authRequired = opts.requireAuth ?? !isLoopbackListen(config.admin.listen);
  const token = opts.token;
  const heartbeatMs = opts.heartbeatMs ?? 15_000;
  const sessionTtlMs = opts.sessionTtlMs ?? 12 * 3600_000;
  const sessions = createSessionStore({ now: () => clock.now(), ttlMs: sessionTtlMs });
  // refusals and bad input are logged once per client address (and kind) per minute, with the count held back
  const gate = createLogGate({ intervalMs: opts.logIntervalMs ?? 60_000, now: () => performance.now() });
  const logOnce = (key: string, fields: Record<string, unknown>, msg: string) => {
    const n = gate.pass(key);
    if (n !== null) log.info({ ...fields, suppressed: n }, msg);
  };
  const streams = new Set<() => void>();
  // the lease JSON carries its upstream mapping (docs/double-nat.md): null when not chained
  const withUpstream = (l: Lease) => ({ ...l, upstream: opts.upstream?.recordFor(l.id) ?? null });

  if (authRequired && !token.value) {
    throw new PortdError(
      ErrorCode.CONFIG_INVALID,
      `admin.listen ${config.admin.listen} is not loopback but no admin token is known`,
      'set admin.token or admin.tokenFile, or PORTD_ADMIN_TOKEN; portd generates one in its state directory when ' +
        'none is set',
    );
  }
  if (!token.value)
    log.warn(
      'no admin token known: changes through the admin API are refused (startAdmin generates one in the state ' +
        'directory)',
    );

  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    // unknown fields are a 400 naming the field, not silently dropped
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    bodyLimit: 64 * 1024,
    forceCloseConnections: true,
    // a request must arrive whole within 30 s; Node checks every 2 s (its default, 30 s, would let
    // a slowloris connection live that long). SSE streams are responses, not requests: unaffected.
    requestTimeout: 30_000,
    http: { connectionsCheckingInterval: 2_000 },
    routerOptions: { maxParamLength: 128 },
    // the router's own errors (bad percent-encoding, over-long ids) in portd's error format
    frameworkErrors: (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
      metrics.badInput.inc({ frontend: 'admin', kind: err.code ?? 'router' });
      logOnce(
        `router:${req.ip}`,
        { ip: req.ip, method: req.method, url: req.url.slice(0, 200), err: err.message },
        'admin: bad request URL',
      );
      return reply
        .code(err.statusCode && err.statusCode < 500 ? err.statusCode : 400)
        .type('application/json')
        .send({ code: ErrorCode.ADMIN_BAD_REQUEST, message: err.message, field: 'url' });
    },
  }) as unknown as FastifyInstance; // a pino Logger narrows fastify's logger generic; the base type is all we use
  const routes = collectRoutes(app);
  const guard = createRequestGuard({
    listen: config.admin.listen,
    ...(config.admin.allowedHosts ? { allowedHosts: config.admin.allowedHosts } : {}),
    boundPort: () => {
      const a = app.server.listening ? app.server.address() : null;
      return typeof a === 'object' && a ? a.port : null;
    },
  });
  app.decorateRequest('portdCaller', '');

  // the status is the registry's (src/errors.ts); only a framework error keeps its own 4xx (413, 415...)
  const sendWithStatus = (
    reply: FastifyReply,
    status: number,
    code: HttpErrorCode,
    message: string,
    extra: Record<string, unknown> = {},
  ) =>
    reply
      .code(status)
      .type('application/json')
      .send({ code, message, ...extra });
  const sendError = (reply: FastifyReply, code: HttpErrorCode, message: string, extra: Record<string, unknown> = {}) =>
    sendWithStatus(reply, httpStatus(code), code, message, extra);
  const actorOf = (req: FastifyRequest) => `admin:${req.portdCaller || 'unknown'}`;

  const badRequest = (req: FastifyRequest, reply: FastifyReply, field: string, message: string) => {
    metrics.badInput.inc({ frontend: 'admin', kind: 'validation' });
    logOnce(
      `bad:${req.ip}`,
      { ip: req.ip, method: req.method, url: req.url.slice(0, 200), field, detail: message },
      `admin: bad request: ${message}`,
    );
    return sendError(reply, ErrorCode.ADMIN_BAD_REQUEST, message, { field });
  };

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      const { field, message } = fieldOfValidation(err);
      return badRequest(req, reply, field, message);
    }
    const status = err.statusCode ?? 500;
    if (status < 500) {
      metrics.badInput.inc({ frontend: 'admin', kind: err.code ?? 'client' });
      logOnce(
        `bad:${req.ip}`,
        { ip: req.ip, method: req.method, url: req.url.slice(0, 200), err: err.message },
        'admin: bad request',
      );
      return sendWithStatus(reply, status, ErrorCode.ADMIN_BAD_REQUEST, err.message, { field: 'body' });
    }
    log.error({ err, method: req.method, url: req.url }, 'admin: internal error');
    return sendError(reply, ErrorCode.ADMIN_INTERNAL, 'internal error (see the portd log)');
  });
  app.setNotFoundHandler((req, reply) =>
    sendError(reply, ErrorCode.ADMIN_NOT_FOUND, `no route ${req.method} ${req.url.split('?')[0]}`),
  );

  // ---- authentication -------------------------------------------------------------------
  const authenticate = (req: FastifyRequest): string | null => {
    const bearer = bearerToken(req.headers.authorization);
    if (bearer !== null && token.value && tokenMatches(bearer, token.value)) return token.name;
    const sid = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    if (sid) {
      const name = sessions.lookup(sid);
      if (name) return name;
    }
    return null;
  };

  // before authentication, for every route (the page and /healthz too): Host, Origin, Sec-Fetch-Site
  app.addHook('onRequest', async (req, reply) => {
    const v = guard.check({
      method: req.method,
      headers: req.headers,
      localAddress: req.socket.localAddress,
      localPort: req.socket.localPort,
    });
    if (v.ok) return;
    metrics.badInput.inc({ frontend: 'admin', kind: `forbidden_${v.kind}` });
    logOnce(
      `guard:${req.ip}:${v.kind}`,
      {
        ip: req.ip,
        method: req.method,
        url: req.url.split('?')[0]?.slice(0, 200),
        host: req.headers.host?.slice(0, 100),
        origin: req.headers.origin?.slice(0, 100),
      },
      `admin: refused: ${v.message}`,
    );
    return sendError(reply, v.code, v.message);
  });

  app.addHook('onRequest', async (req, reply) => {
    const who = authenticate(req);
    if (who) {
      req.portdCaller = who;
      return;
    }
    // a proxy in front (nginx on the gateway, say) makes every request look local: its client must show the token
    const proxied = proxyHeaderOf(req.headers);
    const write = isWriteMethod(req.method);
    if (!authRequired && !proxied && !write) {
      req.portdCaller = 'local';
      return;
    }
    if (req.routeOptions.config?.public) return;
    const tried = req.headers.authorization !== undefined || parseCookies(req.headers.cookie).has(SESSION_COOKIE);
    const why = tried
      ? 'wrong token or expired session'
      : proxied && !authRequired
        ? `no token on a proxied request (${proxied})`
        : write && !authRequired
          ? 'no token on a change'
          : 'no token';
    metrics.badInput.inc({ frontend: 'admin', kind: 'unauthorized' });
    logOnce(
      `auth:${req.ip}:${why}`,
      {
        ip: req.ip,
        method: req.method,
        url: req.url.split('?')[0]?.slice(0, 200),
        tried,
        ...(proxied ? { proxied } : {}),
      },
      `admin: refused: ${why}`,
    );
    reply.header('www-authenticate', 'Bearer realm="portd"');
    return sendError(
      reply,
      ErrorCode.ADMIN_UNAUTHORIZED,
      tried
        ? 'token not accepted or session expired'
        : proxied && !authRequired
          ? `authentication required: this request came through a proxy (${proxied} header); send Authorization: ` +
            'Bearer <token> or log in'
          : write && !authRequired
            ? 'authentication required for changes: send Authorization: Bearer <token> (the admin-token file in ' +
              'the state directory; the CLI reads it given --config) or log in'
            : 'authentication required: send Authorization: Bearer <token> or log in',
    );
  });

  app.addHook('preValidation', async (req, reply) => {
    const bad = strictBodyTypeError(req.routeOptions.schema?.body, req.body);
    if (bad) return badRequest(req, reply, bad.field, bad.message);
  });

  app.addHook('onResponse', async (_req, reply) => {
    metrics.requests.inc({ frontend: 'admin', result: String(reply.statusCode) });
    metrics.requestSeconds.observe({ frontend: 'admin' }, reply.elapsedTime / 1000);
  });

  // ---- login (dashboard) ----------------------------------------------------------------
  app.post(
    `${API}/login`,
    {
      config: { public: true },
      schema: {
        summary: 'Exchange the token for a session cookie (dashboard)',
        tags: ['auth'],
        body: LoginBody,
        response: { 200: OkResponse, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { token: given } = req.body as { token: string };
      if (!token.value || !tokenMatches(given, token.value)) {
        metrics.badInput.inc({ frontend: 'admin', kind: 'unauthorized' });
        logOnce(`login:${req.ip}`, { ip: req.ip }, 'admin: login failed: wrong token');
        return sendError(reply, ErrorCode.ADMIN_UNAUTHORIZED, 'token not accepted');
      }
      const sid = sessions.create(token.name);
      // HttpOnly + SameSite=Strict always; Secure only when a TLS proxy in front says so
      // (portd itself speaks plain HTTP, and a Secure cookie would never come back over it).
      const secure =
        String(req.headers['x-forwarded-proto'] ?? '')
          .split(',')[0]
          ?.trim() === 'https';
      reply.header(
        'set-cookie',
        `${SESSION_COOKIE}=${sid}; Path=/; HttpOnly; SameSite=Strict; ` +
          `Max-Age=${Math.floor(sessionTtlMs / 1000)}${secure ? '; Secure' : ''}`,
      );
      log.info({ ip: req.ip, caller: token.name }, 'admin: login');
      return { ok: true };
    },
  );

  app.post(
    `${API}/logout`,
    {
      config: { public: true },
      schema: { summary: 'End the dashboard session', tags: ['auth'], response: { 200: OkResponse } },
    },
    async (req, reply) => {
      const sid = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
      if (sid) sessions.remove(sid);
      reply.header('set-cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`);
      return { ok: true };
    },
  );

  // ---- leases ---------------------------------------------------------------------------
  app.get(
    `${API}/leases`,
    {
      schema: {
        summary: 'List leases',
        tags: ['leases'],
        querystring: LeaseListQuery,
        response: { 200: LeaseList, ...errorResponses },
      },
    },
    async (req) => {
      const q = req.query as LeaseListQuery;
      const limit = q.limit ?? 100;
      const offset = q.offset ?? 0;
      const { leases: list, total } = leases.list({
        ...(q.family ? { family: q.family } : {}),
        ...(q.source ? { source: q.source as LeaseSource } : {}),
        // owners are stored in canonical text: any spelling of an IPv6 owner finds its leases
        ...(q.owner ? { owner: canonicalIPv6(q.owner) ?? q.owner } : {}),
        ...(q.protocol ? { protocol: q.protocol } : {}),
        ...(q.externalPort ? { externalPort: q.externalPort } : {}),
        ...(q.internalPort ? { internalPort: q.internalPort } : {}),
        ...(q.q ? { search: q.q } : {}),
        ...(q.sort ? { sort: q.sort } : {}),
        ...(q.order ? { order: q.order } : {}),
        state: q.state ?? 'active',
        limit,
        offset,
      });
      return { leases: list.map(withUpstream), total, limit, offset };
    },
  );

  app.get(
    `${API}/leases/:id`,
    {
      schema: {
        summary: 'One lease with its history',
        tags: ['leases'],
        params: IdParams,
        response: { 200: LeaseDetail, 404: ErrorSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const lease = leases.get(id);
      if (!lease) return sendError(reply, ErrorCode.LEASE_NOT_FOUND, `no lease ${id}`);
      return { lease: withUpstream(lease), history: leases.history(id) };
    },
  );

  app.delete(
    `${API}/leases/:id`,
    {
      schema: {
        summary: "Revoke a lease (kernel entry removed, holder's next renewal fails)",
        tags: ['leases'],
        params: IdParams,
        querystring: RevokeQuery,
        response: {
          200: LeaseDetail,
          403: ErrorSchema,
          404: ErrorSchema,
          409: ErrorSchema,
          503: ErrorSchema,
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const { reason } = req.query as { reason?: string };
      const actor = actorOf(req);
      const lease = leases.get(id);
      if (!lease) {
        logOnce(
          `revoke404:${req.ip}`,
          { id: id.slice(0, 128), actor, ip: req.ip },
          'admin: revoke refused: no such lease',
        );
        return sendError(reply, ErrorCode.LEASE_NOT_FOUND, `no lease ${id}`);
      }
      if (lease.readOnly) {
        log.info({ id, actor, ip: req.ip, source: lease.source }, 'admin: revoke refused: read-only lease');
        return sendError(
          reply,
          ErrorCode.LEASE_READ_ONLY,
          `lease ${id} comes from the configuration (${lease.source}${lease.rule ? ` rule ${lease.rule}` : ''}): ` +
            'change the config file instead',
        );
      }
      if (lease.state !== 'active')
        return sendError(reply, ErrorCode.LEASE_ENDED, `lease ${id} already ended (${lease.endReason ?? 'ended'})`);
      const res = await leases.revoke(id, actor, reason ?? 'revoked by admin');
      if (!res.ok) {
        log.info({ id, actor, ip: req.ip, reason: res.reason }, `admin: revoke refused: ${res.reason}`);
        if (res.reason === 'not_authorized') return sendError(reply, ErrorCode.LEASE_READ_ONLY, res.detail);
        return sendRefusal(reply, res);
      }
      log.info(
        {
          id,
          actor,
          ip: req.ip,
          source: lease.source,
          owner: lease.owner,
          protocol: lease.protocol,
          externalPort: lease.externalPort,
        },
        'admin: lease revoked',
      );
      return { lease: leases.get(id) ?? res.lease ?? lease, history: leases.history(id) };
    },
  );

  const sendRefusal = (reply: FastifyReply, r: Refusal) => {
    if (r.reason === 'conflict') {
      const h = r.holder;
      const ports = formatPortRange(externalPorts(h));
      return sendError(
        reply,
        ErrorCode.LEASE_CONFLICT,
        `port ${ports} is held by a ${h.source} lease of ${h.owner} (id ${h.id})`,
        { holder: h },
      );
    }
    return sendError(reply, refusalCode[r.reason], r.detail);
  };

  app.post(
    `${API}/leases`,
    {
      schema: {
        summary: 'Add a static forward',
        tags: ['leases'],
        body: StaticForwardBody,
        response: {
          200: GrantResponse,
          201: GrantResponse,
          403: ErrorSchema,
          409: ErrorSchema,
          503: ErrorSchema,
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const b = req.body as StaticForwardBody;
      const actor = actorOf(req);
      const end = b.externalPortEnd ?? b.externalPort;
      if (end < b.externalPort)
        return badRequest(
          req,
          reply,
          'externalPortEnd',
          `body.externalPortEnd must be >= externalPort (${b.externalPort})`,
        );
      // an IPv6 internal address is a static pinhole: no translation, so no other internal port
      const family = b.internalAddress.includes(':') ? 6 : 4;
      const internalAddress =
        family === 6 ? (canonicalIPv6(b.internalAddress) ?? b.internalAddress) : b.internalAddress;
      if (family === 6 && b.internalPort !== undefined && b.internalPort !== b.externalPort)
        return badRequest(
          req,
          reply,
          'internalPort',
          `body.internalPort ${b.internalPort} differs from externalPort ${b.externalPort}: an IPv6 pinhole has ` +
            'no translation (leave internalPort out)',
        );
      if (b.remoteAddress && b.remoteAddress.includes(':') !== (family === 6))
        return badRequest(
          req,
          reply,
          'remoteAddress',
          `body.remoteAddress ${b.remoteAddress} must be an IPv${family} address like internalAddress`,
        );
      const internalPort = b.internalPort ?? b.externalPort;
      if (internalPort + (end - b.externalPort) > 65535)
        return badRequest(
          req,
          reply,
          'internalPort',
          `body.internalPort ${internalPort} + range length runs past 65535`,
        );
      const res = await leases.request({
        ...(family === 6 ? { family: 6 as const } : {}),
        source: 'static',
        identity: 'external',
        protocol: b.protocol,
        owner: internalAddress,
        internalAddress,
        internalPort,
        externalPort: b.externalPort,
        externalPortEnd: end,
        allowOtherPort: false,
        remoteAddress: b.remoteAddress ?? null,
        lifetime: b.lifetime ?? null,
        description: b.description,
        thirdPartyAllowed: true,
        actor,
      });
      const what = {
        actor,
        ip: req.ip,
        protocol: b.protocol,
        externalPort: b.externalPort,
        externalPortEnd: end,
        ...(family === 6 ? { family } : {}),
        internal: formatEndpoint(internalAddress, internalPort),
      };
      if (!res.ok) {
        log.info(
          {
            ...what,
            reason: res.reason,
            ...(res.reason === 'conflict' ? { holder: res.holder } : { detail: res.detail }),
          },
          `admin: static forward refused: ${res.reason}`,
        );
        return sendRefusal(reply, res);
      }
      log.info(
        { ...what, id: res.lease.id, created: res.created },
        res.created ? 'admin: static forward added' : 'admin: static forward renewed',
      );
      return reply.code(res.created ? 201 : 200).send({ lease: res.lease, created: res.created });
    },
  );

  // ---- status, health, metrics ----------------------------------------------------------
  app.get(
    `${API}/status`,
    {
      schema: { summary: 'Daemon status', tags: ['status'], response: { 200: StatusResponse, ...errorResponses } },
    },
    async (req) => {
      const s = opts.status();
      const counts = leases.countActive();
      const bySource: Record<string, number> = {};
      for (const src of LEASE_SOURCES) bySource[src] = counts.bySource[src] ?? 0;
      const clients = Object.entries(counts.byOwner)
        .map(([owner, n]) => ({ owner, leases: n }))
        .sort((a, b) => b.leases - a.leases || a.owner.localeCompare(b.owner));
      return {
        version: s.version,
        startedAt: s.startedAt,
        uptimeSeconds: Math.max(0, Math.floor((clock.now() - s.startedAt) / 1000)),
        externalAddress: leases.externalAddress(),
        pcpEpoch: s.pcpEpoch,
        leases: { total: counts.total, bySource },
        quota: { maxLeasesPerClient: config.policy.maxLeasesPerClient, clients: clients.slice(0, 50) },
        dataplane: {
          driver: s.dataplane.driver,
          ok: s.dataplane.ok,
          lastReconcileAt: s.dataplane.lastReconcileAt,
          lastDrift: s.dataplane.lastDrift,
          ...(s.dataplane.detail ? { detail: s.dataplane.detail } : {}),
        },
        frontends: s.frontends.map((f) => ({ name: f.name, listening: [...f.listening] })),
        upnpDescriptionUrls: [...s.upnpDescriptionUrls],
        wan: s.wan ?? null,
        auth: { required: authRequired, caller: req.portdCaller },
      };
    },
  );

  app.get(
    '/healthz',
    {
      config: { public: true },
      schema: { summary: 'Liveness: the process answers', tags: ['status'], response: { 200: OkResponse } },
    },
    async () => ({ ok: true }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: database and dataplane OK',
        tags: ['status'],
        response: { 200: OkResponse, 503: OkResponse, ...errorResponses },
      },
    },
    async (_req, reply) => {
      let r: { ok: boolean; detail?: string };
      try {
        r = await opts.readyz();
      } catch (e) {
        r = { ok: false, detail: (e as Error).message };
      }
      if (!r.ok) log.warn({ detail: r.detail }, 'admin: not ready');
      return reply.code(r.ok ? 200 : 503).send(r.detail !== undefined ? { ok: r.ok, detail: r.detail } : { ok: r.ok });
    },
  );

  app.get(
    '/metrics',
    {
      schema: { summary: 'Prometheus metrics', tags: ['status'], produces: ['text/plain'] } as Record<string, unknown>,
    },
    async (_req, reply) => {
      const body = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(body);
    },
  );

  // ---- events (SSE) ---------------------------------------------------------------------
  app.get(
    `${API}/events`,
    {
      schema: {
        summary:
          'Server-Sent Events: one event per lease change (granted, renewed, released, expired, revoked, ' +
          'replaced, refused)',
        tags: ['leases'],
        produces: ['text/event-stream'],
        querystring: EventsQuery,
        response: errorResponses,
      } as Record<string, unknown>,
    },
    (req, reply) => {
      const { source, family } = req.query as { source?: string; family?: 4 | 6 };
      reply.hijack();
      const res: ServerResponse = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write(`retry: 3000\n: portd events for ${req.portdCaller}\n\n`);
      let seq = 0;
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        clearInterval(hb);
        off();
        streams.delete(stop);
        log.debug({ ip: req.ip, sent: seq }, 'admin: event stream closed');
      };
      const stop = () => {
        end();
        res.end();
      };
      const write = (chunk: string) => {
        if (ended) return;
        if (res.writableLength > SSE_MAX_BUFFER) {
          log.warn({ ip: req.ip }, 'admin: event stream client too slow: dropped');
          stop();
          return;
        }
        res.write(chunk);
      };
      const off = leases.on((e: LeaseEvent) => {
        if (source && e.source !== source) return;
        // a refusal names no lease (none was made): it passes any family filter
        if (family && e.lease && e.lease.family !== family) return;
        write(`id: ${++seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      });
      const hb = setInterval(() => write(`: heartbeat ${clock.now()}\n\n`), heartbeatMs);
      hb.unref();
      streams.add(stop);
      req.raw.on('close', end);
      res.on('error', end);
      log.debug({ ip: req.ip, caller: req.portdCaller }, 'admin: event stream opened');
    },
  );
  // before fastify waits for open connections: end the streams cleanly
  app.addHook('preClose', async () => {
    for (const stop of [...streams]) stop();
  });

  // ---- OpenAPI, dashboard ---------------------------------------------------------------
  let openapi: Record<string, unknown> | null = null;
  app.get(`${API}/openapi.json`, { schema: { hide: true } as Record<string, unknown> }, async () => {
    openapi ??= buildOpenApi(routes, { version: opts.status().version, authRequired });
    return openapi;
  });

  const pageHeaders = {
    'content-security-policy':
      "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src " +
      "'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  };
  app.get('/', { config: { public: true }, schema: { hide: true } as Record<string, unknown> }, async (_req, reply) =>
    reply.headers(pageHeaders).type('text/html; charset=utf-8').send(DASHBOARD_HTML),
  );
  app.get(
    '/dashboard.js',
    { config: { public: true }, schema: { hide: true } as Record<string, unknown> },
    async (_req, reply) => reply.headers(pageHeaders).type('text/javascript; charset=utf-8').send(DASHBOARD_JS),
  );

  // ---- extension routes (triggers, ...) -------------------------------------------------
  const ctx: AdminRouteContext = { leases, log, clock, actorOf, sendError, ErrorSchema };
  for (const plugin of opts.routes ?? []) {
    void app.register(async (instance) => {
      await plugin(instance, ctx);
    });
  }

  return {
    app,
    authRequired,
    async listen() {
      const { host, port } = adminListen(config.admin.listen);
      try {
        await app.listen({ host, port });
      } catch (e) {
        throw new PortdError(
          ErrorCode.LISTEN_FAILED,
          `admin API cannot listen on ${config.admin.listen}: ${(e as Error).message}`,
          'pick another admin.listen address or stop the program using the port',
        );
      }
      const a = app.server.address();
      const out = typeof a === 'object' && a ? { address: a.address, port: a.port } : { address: host, port };
      log.info(
        { ...out, auth: authRequired ? 'token' : 'token for changes; reads open (loopback)' },
        `admin API listening on http://${out.address.includes(':') ? `[${out.address}]` : out.address}:${out.port}/`,
      );
      return out;
    },
    async close() {
      await app.close();
    },
  };
}

/** exported for the CLI and tests: what the API answers for a lease, as the dashboard shows it */
export function leaseLabel(
  l: Pick<Lease, 'protocol' | 'externalPort' | 'externalPortEnd' | 'internalAddress' | 'internalPort'> &
    Partial<Pick<Lease, 'family'>>,
): string {
  if (l.family === 6)
    return `${l.protocol}/${formatEndpoint(l.internalAddress, formatPortRange(externalPorts(l)))} (pinhole)`;
  return `${l.protocol}/${formatPortRange(externalPorts(l))} -> ${l.internalAddress}:${l.internalPort}`;
}
