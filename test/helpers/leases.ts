import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { PolicyConfig } from '../../src/config/types.js';
import { createMemoryDataplane, type MemoryDataplaneOptions } from '../../src/dataplane/memory.js';
import { createFixedClock } from '../../src/leases/clock.js';
import { createLeaseTable, type LeaseTableOptions } from '../../src/leases/table.js';
import { createMetrics } from '../../src/metrics.js';
import { createPolicy, type PolicyDeps } from '../../src/policy/policy.js';

export function testPolicy(over: Partial<PolicyConfig> = {}): PolicyConfig {
  return {
    secureMode: true,
    ipv6Pinholes: true,
    maxLeasesPerClient: 128,
    reservedPorts: [22, 53, 80, 443],
    lifetime: {
      pcp: { min: 120, max: 86400 },
      natpmp: { min: 120, max: 86400 },
      upnp: { min: 1, max: 604800 },
      trigger: { min: 1, max: 86400 },
    },
    rules: [],
    historyRetention: 86400,
    ...over,
  };
}

/** a lease table on a temp-file database, memory dataplane and a fixed clock; dispose() removes it all */
export function makeTable(
  opts: {
    policy?: Partial<PolicyConfig>;
    /** the policy's injected checks (secure mode's sameHost for IPv6 pinholes) */
    policyDeps?: PolicyDeps;
    dataplane?: MemoryDataplaneOptions;
    dir?: string;
    clock?: ReturnType<typeof createFixedClock>;
  } & Omit<Partial<LeaseTableOptions>, 'policy' | 'dataplane' | 'clock'> = {},
) {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'portd-test-'));
  const clock = opts.clock ?? createFixedClock();
  const dataplane = createMemoryDataplane(opts.dataplane);
  const metrics = createMetrics();
  const { policy: _p, policyDeps, dataplane: _d, dir: _dir, clock: _c, ...rest } = opts;
  const table = createLeaseTable({
    database: { path: join(dir, 'portd.sqlite') },
    dataplane,
    policy: createPolicy(testPolicy(opts.policy), policyDeps),
    clock,
    log: pino({ level: process.env.TEST_LOG ?? 'silent' }),
    metrics,
    externalAddress: '203.0.113.1',
    ...rest,
  });
  return {
    table,
    clock,
    dataplane,
    metrics,
    dir,
    async close() {
      await table.close();
    },
    async dispose() {
      try {
        await table.close();
      } catch {
        /* closed */
      }
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
