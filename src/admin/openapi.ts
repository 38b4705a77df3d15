/**
 * OpenAPI 3.1 document built from the route schemas fastify registered (collected with the
 * onRoute hook), so the document cannot drift from what the server validates.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';

interface RouteSchema {
  summary?: string;
  description?: string;
  tags?: string[];
  querystring?: JsonSchema;
  params?: JsonSchema;
  body?: JsonSchema;
  response?: Record<string, JsonSchema>;
  produces?: string[];
  hide?: boolean;
}
type JsonSchema = Record<string, unknown>;

interface Collected {
  method: string;
  url: string;
  schema: RouteSchema;
}

/** strip TypeBox's symbol keys and undefined values: plain JSON Schema */
function plain(s: unknown): JsonSchema {
  return JSON.parse(JSON.stringify(s ?? {})) as JsonSchema;
}

function parameters(where: 'query' | 'path', schema: JsonSchema | undefined): unknown[] {
  if (!schema) return [];
  const s = plain(schema);
  const props = (s['properties'] ?? {}) as Record<string, JsonSchema>;
  const required = new Set((s['required'] ?? []) as string[]);
  return Object.entries(props).map(([name, p]) => {
    const { description, ...rest } = p;
    return {
      name,
      in: where,
      required: where === 'path' || required.has(name),
      ...(description ? { description } : {}),
      schema: rest,
    };
  });
}

export function collectRoutes(app: FastifyInstance): Collected[] {
  const routes: Collected[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    const schema = (r.schema ?? {}) as RouteSchema;
    if (schema.hide) return;
    for (const m of methods) {
      if (m === 'HEAD' || m === 'OPTIONS') continue;
      routes.push({ method: m.toLowerCase(), url: r.url, schema });
    }
  });
  return routes;
}

export function buildOpenApi(
  routes: readonly Collected[],
  info: { version: string; authRequired: boolean },
): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const s = r.schema;
    const responses: Record<string, unknown> = {};
    for (const [code, schema] of Object.entries(s.response ?? {})) {
      const p = plain(schema);
      const { description, ...rest } = p;
      const type = code === '200' && s.produces?.[0] ? s.produces[0] : 'application/json';
      responses[code] = {
        description: (description as string | undefined) ?? statusText(code),
        content: { [type]: { schema: type === 'application/json' ? rest : { type: 'string' } } },
      };
    }
    if (Object.keys(responses).length === 0) {
      responses['200'] = {
        description: 'OK',
        ...(s.produces?.[0] ? { content: { [s.produces[0]]: { schema: { type: 'string' } } } } : {}),
      };
    }
    const op: Record<string, unknown> = {
      operationId:
        r.method + path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : '')),
      ...(s.summary ? { summary: s.summary } : {}),
      ...(s.description ? { description: s.description } : {}),
      ...(s.tags ? { tags: s.tags } : {}),
      parameters: [...parameters('path', s.params), ...parameters('query', s.querystring)],
      ...(s.body
        ? { requestBody: { required: true, content: { 'application/json': { schema: plain(s.body) } } } }
        : {}),
      responses,
    };
    const ops = paths[path] ?? {};
    ops[r.method] = op;
    paths[path] = ops;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'portd admin API',
      version: info.version,
      description:
        'Leases of every kind (UPnP, PCP, NAT-PMP, triggers, static forwards) in one table. ' +
        (info.authRequired
          ? 'Every call needs the admin token (Bearer) or the dashboard session cookie.'
          : 'Listening on loopback: no authentication.'),
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer' },
        session: { type: 'apiKey', in: 'cookie', name: 'portd_session' },
      },
    },
    ...(info.authRequired ? { security: [{ bearer: [] }, { session: [] }] } : {}),
    paths,
  };
}

function statusText(code: string): string {
  return (
    (
      {
        '200': 'OK',
        '201': 'Created',
        '204': 'No Content',
        '400': 'Bad request (the field is named)',
        '401': 'Token missing or wrong',
        '403': 'Forbidden',
        '404': 'Not found',
        '409': 'Conflict',
        '503': 'Unavailable',
      } as Record<string, string>
    )[code] ?? code
  );
}
