/** Builds a real lease table (temp sqlite file, memory dataplane) and an admin server over it. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Config, StaticForwardConfig } from '../../src/config/types.js';
import { createMemoryDataplane } from '../../src/dataplane/memory.js';
import { createAdminServer } from '../../src/admin/index.js';
import type { AdminRoutePlugin, StatusInfo } from '../../src/admin/index.js';
import { createSystemClock } from '../../src/leases/clock.js';
import type { Clock } from '../../src/leases/clock.js';
import { createLeaseTable } from '../../src/leases/table.js';
import type { LeaseRequest } from '../../src/leases/types.js';
import { createMetrics } from '../../src/metrics.js';
import { createPolicy } from '../../src/policy/policy.js';
import { testPolicy } from '../helpers/leases.js';

export const TOKEN = 'test-token-0123456789';

export interface AdminFixtureOptions {
  requireAuth?: boolean;
  listen?: string;
  clock?: Clock;
  staticForwards?: StaticForwardConfig[];
  ready?: () => Promise<{ ok: boolean; detail?: string }>;
  routes?: AdminRoutePlugin[];
  heartbeatMs?: number;
  tokenValue?: string | null;
  allowedHosts?: string[];
}

export async function makeAdmin(o: AdminFixtureOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'portd-admin-'));
  const clock = o.clock ?? createSystemClock();
  const dataplane = createMemoryDataplane();
  const metrics = createMetrics();
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: process.env.TEST_LOG ?? 'info' },
    {
      write(s: string) {
        lines.push(JSON.parse(s) as Record<string, unknown>);
        if (process.env.TEST_LOG) process.stderr.write(s);
      },
    },
  );
  const policyConfig = testPolicy({ rules: [] });
  const table = createLeaseTable({
    database: { path: join(dir, 'portd.sqlite') },
    dataplane,
    policy: createPolicy(policyConfig),
    clock,
    log,
    metrics,
    externalAddress: '203.0.113.1',
  });
  if (o.staticForwards) await table.syncStatic(o.staticForwards);
  const config = {
    admin: { listen: o.listen ?? '127.0.0.1:0', token: null, tokenFile: null, allowedHosts: o.allowedHosts ?? [] },
    policy: policyConfig,
  } satisfies Pick<Config, 'admin' | 'policy'>;
  const startedAt = clock.now() - 5000;
  const status = (): StatusInfo => ({
    version: '0.1.0-test',
    startedAt,
    pcpEpoch: 42,
    dataplane: { driver: dataplane.driver, ...dataplane.health() },
    frontends: [
      { name: 'pcp', listening: ['127.0.0.1:5351'] },
      { name: 'upnp', listening: ['127.0.0.1:5000'] },
    ],
    upnpDescriptionUrls: ['http://127.0.0.1:5000/rootDesc.xml'],
  });
  const server = createAdminServer({
    config,
    leases: table,
    metrics,
    log,
    status,
    token: { value: o.tokenValue === undefined ? TOKEN : o.tokenValue, name: 'ops' },
    readyz: o.ready ?? (async () => ({ ok: true })),
    clock,
    ...(o.requireAuth !== undefined ? { requireAuth: o.requireAuth } : {}),
    ...(o.routes ? { routes: o.routes } : {}),
    ...(o.heartbeatMs ? { heartbeatMs: o.heartbeatMs } : {}),
  });
  return {
    server,
    app: server.app,
    table,
    dataplane,
    metrics,
    lines,
    dir,
    clock,
    async dispose() {
      await server.close();
      await table.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const pcpReq = (over: Partial<LeaseRequest> = {}): LeaseRequest => ({
  source: 'pcp',
  identity: 'internal',
  protocol: 'udp',
  owner: '192.168.77.11',
  internalAddress: '192.168.77.11',
  internalPort: 4000,
  externalPort: 4000,
  allowOtherPort: false,
  lifetime: 3600,
  nonce: 'ab'.repeat(12),
  actor: 'pcp:192.168.77.11',
  ...over,
});

export const staticForward = (over: Partial<StaticForwardConfig> = {}): StaticForwardConfig => ({
  protocol: 'tcp',
  externalPort: 8443,
  externalPortEnd: 8443,
  internalAddress: '192.168.77.20',
  internalPort: 443,
  remoteAddress: null,
  description: 'nas',
  ...over,
});
