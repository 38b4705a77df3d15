/**
 * Wiring helper for main.ts: resolve the token, build the admin server with a default
 * readiness probe (database read + dataplane health), listen, and report the address.
 *
 * With `lazy`, the admin port is bound at start but the fastify app (routes, schemas compiled by ajv,
 * OpenAPI, dashboard) is built only when the first connection arrives: on a router nobody may open the
 * API for weeks, and the app is ≈ 9 MiB of the idle RSS (docs/benchmarks.md, "footprint"). The listening
 * socket is handed to the app's own http.Server (server.listen(handle)), so from then on it is exactly
 * the eager server: request timeouts, connection tracking, close.
 */
import type { UpstreamRecord } from '../leases/upstream.js';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { Dataplane } from '../dataplane/types.js';
import type { LeaseTableApi } from '../leases/table-api.js';
import type { Metrics } from '../metrics.js';
import { ErrorCode, PortdError } from '../errors.js';
import { isLoopbackListen, adminListen, resolveAdminToken } from './auth.js';
import type { ResolvedAdminToken } from './auth.js';
import { createRequestGuard, proxyHeaderOf } from './request-guard.js';
import type { AdminRoutePlugin, AdminServer, WanStatusInfo } from './server.js';

export interface StartAdminOptions {
  readonly config: Config;
  readonly leases: LeaseTableApi;
  readonly dataplane: Dataplane;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly clock: { now(): number };
  /** epoch ms */
  readonly startedAt: number;
  readonly version: string;
  readonly env?: NodeJS.ProcessEnv;
  /** the PCP epoch in seconds, or null when PCP is off */
  readonly pcpEpoch?: () => number | null;
  /** behind another NAT: each lease's upstream mapping (the lease JSON's `upstream`) */
  readonly upstream?: { recordFor(leaseId: string): UpstreamRecord | null };
  /** other listening front-ends; the admin API adds itself */
  readonly frontends?: () => readonly { name: string; listening: readonly string[] }[];
  readonly upnpDescriptionUrls?: () => readonly string[];
  /** the WAN block of /api/v1/status (dataplane/wan-status.ts snapshot) */
  readonly wan?: () => WanStatusInfo;
  readonly routes?: readonly AdminRoutePlugin[];
  /** replaces the default probe (a database read and dataplane health) */
  readonly readyz?: () => Promise<{ ok: boolean; detail?: string }>;
  /** build the app at the first connection (see the file's comment); `routes` may then be loaded late too */
  readonly lazy?: boolean;
  /** more route plugins, imported when the app is built (lazy) or at once */
  readonly loadRoutes?: () => Promise<readonly AdminRoutePlugin[]>;
}

export type RunningAdmin = Omit<AdminServer, 'app'> & {
  /** the fastify app; undefined while a lazy admin has not had its first connection */
  readonly app: AdminServer['app'] | undefined;
  readonly address: string;
  readonly port: number;
  readonly token: ResolvedAdminToken;
};

export async function startAdmin(o: StartAdminOptions): Promise<RunningAdmin> {
  const log = o.log.child({ component: 'admin' });
  // always a token, on loopback too: changes through the API need it wherever portd listens (any user of
  // the gateway can reach 127.0.0.1); the file is 0600, so root and portd's own user (the CLI) can read it
  const token = resolveAdminToken({ config: o.config, env: o.env ?? {}, log, required: true });
  let self: string[] = [];
  const readyz =
    o.readyz ??
    (async () => {
      const problems: string[] = [];
      // a read through the database (the counts come from memory)
      try {
        o.leases.get('readyz');
      } catch (e) {
        problems.push(`database: ${(e as Error).message}`);
      }
      const h = o.dataplane.health();
      if (!h.ok) problems.push(`dataplane (${o.dataplane.driver}): ${h.detail ?? 'failing'}`);
      else {
        try {
          await o.dataplane.count();
        } catch (e) {
          problems.push(`dataplane (${o.dataplane.driver}): ${(e as Error).message}`);
        }
      }
      return problems.length
        ? { ok: false, detail: problems.join('; ') }
        : { ok: true, detail: `database ok, dataplane ${o.dataplane.driver} ok` };
    });
  const build = async (): Promise<AdminServer> => {
    const { createAdminServer } = await import('./server.js');
    await o.metrics.startDefaultMetrics();
    const late = o.loadRoutes ? await o.loadRoutes() : [];
    return createAdminServer({
      config: o.config,
      leases: o.leases,
      metrics: o.metrics,
      log: o.log,
      clock: o.clock,
      readyz,
      token: { value: token.value, name: token.name },
      routes: [...(o.routes ?? []), ...late],
      ...(o.upstream ? { upstream: o.upstream } : {}),
      status: () => ({
        version: o.version,
        startedAt: o.startedAt,
        pcpEpoch: o.pcpEpoch?.() ?? null,
        dataplane: { driver: o.dataplane.driver, ...o.dataplane.health() },
        frontends: [...(o.frontends?.() ?? []), { name: 'admin', listening: self }],
        upnpDescriptionUrls: o.upnpDescriptionUrls?.() ?? [],
        wan: o.wan?.() ?? null,
      }),
    });
  };
  if (!o.lazy) {
    const server = await build();
    const { address, port } = await server.listen();
    self = [`${address.includes(':') ? `[${address}]` : address}:${port}`];
    return Object.assign(server, { address, port, token });
  }
  const lazy = await listenLazily(o.config.admin.listen, build, log, o.config.admin.allowedHosts);
  self = [`${lazy.address.includes(':') ? `[${lazy.address}]` : lazy.address}:${lazy.port}`];
  return {
    get app() {
      return lazy.app();
    },
    authRequired: !isLoopbackListen(o.config.admin.listen),
    listen: async () => ({ address: lazy.address, port: lazy.port }),
    close: () => lazy.close(),
    address: lazy.address,
    port: lazy.port,
    token,
  };
}

/** the liveness answer of the lazy gate: the same body and type as the app's /healthz route */
const HEALTHZ_BODY = '{"ok":true}';
const HEALTHZ_HEAD =
  'HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\n' +
  `content-length: ${HEALTHZ_BODY.length}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n`;

/**
 * Reads a whole `GET|HEAD /healthz` request head from the first chunk of a connection; null for
 * anything else (another request, a head split over chunks, a body): those go to the app.
 */
function healthzRequest(chunk: Buffer): { method: string; headers: Record<string, string> } | null {
  const end = chunk.indexOf('\r\n\r\n');
  if (end < 0 || end + 4 !== chunk.length) return null;
  const lines = chunk.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^(GET|HEAD) \/healthz HTTP\/1\.[01]$/.exec(lines[0] ?? '');
  if (!m) return null;
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) return null;
    const name = line.slice(0, i).trim().toLowerCase();
    // a repeated header, or a body announced: the app's parser decides, not this shortcut
    if (name in headers || name === 'content-length' || name === 'transfer-encoding') return null;
    headers[name] = line.slice(i + 1).trim();
  }
  return { method: m[1]!, headers };
}

/**
 * Binds `listen` with a plain net.Server whose connections wait (paused) until `build` has made the
 * app; the first one starts the build. The bound handle then moves to the app's http.Server, and the
 * waiting connections are given to it. A failed build closes the waiting connections and is retried
 * at the next connection.
 *
 * A liveness probe (`GET /healthz`, passing the same Host/Origin guard as the app) is answered by the
 * gate itself while the app is not built: building it imports and compiles the whole admin API (1-2 s
 * idle, 4-6 s on a loaded machine, under tsx more), so the first probe timed out (curl -m 5), and a
 * probe every few seconds would have built the app on a router nobody administers.
 */
export async function listenLazily(
  listen: string,
  build: () => Promise<AdminServer>,
  log: Logger,
  allowedHosts?: readonly string[],
): Promise<{ address: string; port: number; app(): AdminServer['app'] | undefined; close(): Promise<void> }> {
  const { host, port } = adminListen(listen);
  const gate: Server = createServer({ pauseOnConnect: true });
  const waiting: Socket[] = [];
  let server: AdminServer | null = null;
  let building: Promise<void> | null = null;
  let closed = false;
  /** connections whose first chunk is awaited */
  let reading = 0;
  const guard = createRequestGuard({
    listen,
    ...(allowedHosts ? { allowedHosts } : {}),
    boundPort: () => {
      const a = gate.address();
      return typeof a === 'object' && a ? a.port : null;
    },
  });
  const start = () => {
    building ??= build()
      .then(async (s) => {
        await s.app.ready();
        if (closed) {
          await s.app.close();
          return;
        }
        // the app's http.Server takes over the bound socket (Node: server.listen(handle)); gate stops accepting
        await new Promise<void>((resolve, reject) => {
          s.app.server.once('error', reject);
          s.app.server.listen(gate, () => {
            s.app.server.off('error', reject);
            resolve();
          });
        });
        server = s;
        // paused by pauseOnConnect: the http.Server reads from it once resumed
        for (const sock of waiting.splice(0)) {
          s.app.server.emit('connection', sock);
          sock.resume();
        }
      })
      .catch((e) => {
        log.error({ err: (e as Error).message }, 'admin API could not be built; closing the waiting connections');
        for (const sock of waiting.splice(0)) sock.destroy();
        building = null;
      });
  };
  const handOver = (sock: Socket) => {
    if (server) {
      server.app.server.emit('connection', sock);
      sock.resume();
      return;
    }
    // bounded: a flood of connections during the build is refused, not queued without end
    if (waiting.length >= 256 || closed) {
      sock.destroy();
      return;
    }
    waiting.push(sock);
    sock.once('close', () => {
      const i = waiting.indexOf(sock);
      if (i >= 0) waiting.splice(i, 1);
    });
    start();
  };
  gate.on('connection', (sock: Socket) => {
    if (server) {
      handOver(sock);
      return;
    }
    // the first chunk decides: a liveness probe is answered here, anything else waits for the app;
    // bounded like the wait for the build: a connection that sends nothing is closed after 10 s
    if (reading >= 256) {
      sock.destroy();
      return;
    }
    reading++;
    let decided = false;
    const onError = () => sock.destroy();
    sock.once('error', onError);
    sock.setTimeout(10_000, () => sock.destroy());
    sock.once('close', () => {
      if (!decided) reading--;
      decided = true;
    });
    sock.once('data', (chunk: Buffer) => {
      sock.pause();
      sock.setTimeout(0);
      sock.off('error', onError);
      if (!decided) reading--;
      decided = true;
      const probe = server ? null : healthzRequest(chunk);
      if (
        probe &&
        proxyHeaderOf(probe.headers) === null &&
        guard.check({
          method: probe.method,
          headers: probe.headers,
          localAddress: sock.localAddress,
          localPort: sock.localPort,
        }).ok
      ) {
        sock.end(probe.method === 'HEAD' ? HEALTHZ_HEAD : HEALTHZ_HEAD + HEALTHZ_BODY);
        return;
      }
      sock.unshift(chunk);
      handOver(sock);
    });
    sock.resume();
  });
  try {
    await new Promise<void>((resolve, reject) => {
      gate.once('error', reject);
      gate.listen({ host, port }, () => {
        gate.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    throw new PortdError(
      ErrorCode.LISTEN_FAILED,
      `admin API cannot listen on ${listen}: ${(e as Error).message}`,
      'pick another admin.listen address or stop the program using the port',
    );
  }
  const a = gate.address();
  const out = typeof a === 'object' && a ? { address: a.address, port: a.port } : { address: host, port };
  log.info(
    { ...out, auth: isLoopbackListen(listen) ? 'token for changes; reads open (loopback)' : 'token', lazy: true },
    `admin API listening on http://${out.address.includes(':') ? `[${out.address}]` : out.address}:${out.port}/ ` +
      '(built at the first connection)',
  );
  return {
    ...out,
    app: () => (server as AdminServer | null)?.app,
    async close() {
      closed = true;
      for (const sock of waiting.splice(0)) sock.destroy();
      if (building) await building;
      if (server) await (server as AdminServer).close();
      else await new Promise<void>((resolve) => gate.close(() => resolve()));
    },
  };
}
