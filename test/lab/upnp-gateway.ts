/**
 * The UPnP side of the lab gateway, run INSIDE the gateway namespace by test/lab/upnp.test.ts:
 *   ip netns exec <gw> node --import tsx test/lab/upnp-gateway.ts
 * Real lease table + nftables dataplane + UPnP server (SSDP multicast on br0, HTTP on 192.168.77.1:5000).
 * Prints one JSON line {"ready":true,...} when listening; shuts down when stdin closes.
 * `bench [count] [preload]` arguments: runs bench/upnp.ts's run() against the nftables driver instead
 * (load generator and server on the namespace's loopback), prints its result as one JSON line and exits
 * (test/lab/upnp-bench.ts drives it).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { validateConfig } from '../../src/config/index.js';
import type { Config } from '../../src/config/types.js';
import { createNftablesDataplane } from '../../src/dataplane/nftables.js';
import { createUpnpServer, generateUuids } from '../../src/frontends/upnp/index.js';
import { createSystemClock } from '../../src/leases/clock.js';
import { createLeaseTable } from '../../src/leases/table.js';
import { createMetrics } from '../../src/metrics.js';
import { inPrefix } from '../../src/common/net.js';
import { createPolicy } from '../../src/policy/policy.js';

const log = pino({ level: process.env['LAB_LOG'] ?? 'silent' }, pino.destination(2));
const dir = mkdtempSync(join(tmpdir(), 'portd-lab-upnp-'));
const policyConfig: Config['policy'] = {
  secureMode: true,
  ipv6Pinholes: true,
  maxLeasesPerClient: 1000,
  reservedPorts: [22, 53, 80, 443],
  rules: [],
  historyRetention: 86400,
  lifetime: {
    pcp: { min: 120, max: 86400 },
    natpmp: { min: 120, max: 86400 },
    upnp: { min: 1, max: 604800 },
    trigger: { min: 1, max: 86400 },
  },
};
const config: Config = {
  ...validateConfig({ interfaces: { wan: 'wan0', lan: ['br0'] }, upnp: { httpPort: 5000, ssdp: true } }, 'lab'),
  policy: policyConfig,
};
// LAB_CONNTRACK_PATH=/bin/true: a diagnostic run without ending flows (what conntrack costs the benchmark)
const dataplane = createNftablesDataplane({
  table: 'portd',
  wan: 'wan0',
  lan: ['br0'],
  hairpin: true,
  frontendPorts: { tcp: [5000], udp: [1900] },
  log,
  ...(process.env['LAB_CONNTRACK_PATH'] ? { conntrackPath: process.env['LAB_CONNTRACK_PATH'] } : {}),
});
await dataplane.init();
await dataplane.setExternalAddresses(['203.0.113.1']);

/** ms until this process has no `conntrack` child left (the flows of deleted leases being ended), at most 120 s */
async function settle(): Promise<number> {
  const t0 = performance.now();
  const busy = () => {
    for (const t of readdirSync('/proc/self/task')) {
      let kids: string[] = [];
      try {
        kids = readFileSync(`/proc/self/task/${t}/children`, 'utf8').split(' ').filter(Boolean);
      } catch {
        continue;
      }
      for (const k of kids) {
        try {
          if (readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'conntrack') return true;
        } catch {
          /* gone */
        }
      }
    }
    return false;
  };
  // conntrack jobs are coalesced for up to 20 ms before one starts
  await new Promise((r) => setTimeout(r, 50));
  while (busy() && performance.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20));
  return Math.round(performance.now() - t0);
}

if (process.argv[2] === 'bench') {
  const { run } = await import('../../bench/upnp.js');
  try {
    const res = await run({
      dataplane,
      count: Number(process.argv[3] ?? 2000),
      preload: Number(process.argv[4] ?? 0),
      settle,
      subscribe: process.env['UPNP_BENCH_SUBSCRIBE'] === '1',
      ...(process.env['LAB_LOG'] ? { log } : {}),
    });
    process.stdout.write(`${JSON.stringify(res)}\n`);
  } finally {
    await dataplane.destroy();
    await dataplane.close();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
const clock = createSystemClock();
const metrics = createMetrics();
const table = createLeaseTable({
  database: { path: join(dir, 'portd.sqlite') },
  dataplane,
  policy: createPolicy(policyConfig),
  clock,
  log,
  metrics,
  externalAddress: '203.0.113.1',
});
const server = createUpnpServer({
  config,
  leases: table,
  log,
  metrics,
  clock,
  uuids: generateUuids(),
  listen: { addresses: ['192.168.77.1/24'], httpPort: 5000 },
  isLanClient: (a) => inPrefix(a, '192.168.77.0', 24),
  presentationUrl: null,
  ssdp: { maxDelayMs: 300 },
});
await server.listen();
process.stdout.write(
  JSON.stringify({ ready: true, descriptions: server.descriptionUrls(), ssdp: server.ssdpAddresses() }) + '\n',
);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  try {
    await server.close();
    await table.close();
    await dataplane.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  }
}
process.stdin.on('end', () => {
  void stop();
});
process.stdin.resume();
process.on('SIGTERM', () => {
  void stop();
});
