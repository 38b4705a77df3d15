/**
 * Wiring helper for main.ts: resolve the token, build the admin server with a default
 * readiness probe (database read + dataplane health), listen, and report the address.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { Dataplane } from '../dataplane/types.js';
import type { LeaseTableApi } from '../leases/table-api.js';
import type { Metrics } from '../metrics.js';
import { resolveAdminToken } from './auth.js';
import type { ResolvedAdminToken } from './auth.js';
import { createAdminServer } from './server.js';
import type { AdminRoutePlugin, AdminServer } from './server.js';

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
  /** other listening front-ends; the admin API adds itself */
  readonly frontends?: () => readonly { name: string; listening: readonly string[] }[];
  readonly upnpDescriptionUrls?: () => readonly string[];
  readonly routes?: readonly AdminRoutePlugin[];
  /** replaces the default probe (a database read and dataplane health) */
  readonly readyz?: () => Promise<{ ok: boolean; detail?: string }>;
}

export type RunningAdmin = AdminServer & {
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
  const server = createAdminServer({
    config: o.config,
    leases: o.leases,
    metrics: o.metrics,
    log: o.log,
    clock: o.clock,
    readyz,
    token: { value: token.value, name: token.name },
    ...(o.routes ? { routes: o.routes } : {}),
    status: () => ({
      version: o.version,
      startedAt: o.startedAt,
      pcpEpoch: o.pcpEpoch?.() ?? null,
      dataplane: { driver: o.dataplane.driver, ...o.dataplane.health() },
      frontends: [...(o.frontends?.() ?? []), { name: 'admin', listening: self }],
      upnpDescriptionUrls: o.upnpDescriptionUrls?.() ?? [],
    }),
  });
  const { address, port } = await server.listen();
  self = [`${address.includes(':') ? `[${address}]` : address}:${port}`];
  return Object.assign(server, { address, port, token });
}
