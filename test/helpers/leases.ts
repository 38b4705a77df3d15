import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import pino from 'pino';
import type { PolicyConfig } from '../../src/config/types.js';
import { createMemoryDataplane, type MemoryDataplaneOptions } from '../../src/dataplane/memory.js';
import { createFixedClock } from '../../src/leases/clock.js';
import { createLeaseTable, type LeaseTableOptions } from '../../src/leases/table.js';
import type { LeaseRequest } from '../../src/leases/types.js';
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

const LAN_HOST = '192.168.77.11';

/** a PCP MAP as the PCP front-end asks it: internal identity, any external port will do */
export function pcpRequest(over: Partial<LeaseRequest> = {}): LeaseRequest {
  return {
    source: 'pcp',
    identity: 'internal',
    protocol: 'tcp',
    owner: LAN_HOST,
    internalAddress: LAN_HOST,
    internalPort: 4000,
    externalPort: 4000,
    allowOtherPort: true,
    lifetime: 3600,
    nonce: 'aa'.repeat(12),
    ...over,
  };
}

/** a UPnP AddPortMapping as the UPnP front-end asks it: external identity, that external port or nothing */
export function upnpRequest(over: Partial<LeaseRequest> = {}): LeaseRequest {
  return {
    source: 'upnp',
    identity: 'external',
    protocol: 'tcp',
    owner: LAN_HOST,
    internalAddress: LAN_HOST,
    internalPort: 5000,
    externalPort: 5000,
    allowOtherPort: false,
    lifetime: 3600,
    description: 'game',
    ...over,
  };
}

/**
 * makeTable for one test file: every table it makes is disposed after the file's tests (call it once, at the
 * file's top level, so the `after` hook is the file's own)
 */
export function tablesForFile(): (opts?: Parameters<typeof makeTable>[0]) => ReturnType<typeof makeTable> {
  const made: ReturnType<typeof makeTable>[] = [];
  after(async () => {
    for (const t of made) await t.dispose();
  });
  return (opts) => {
    const t = makeTable(opts);
    made.push(t);
    return t;
  };
}
