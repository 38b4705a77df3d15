/**
 * Runs inside the lab's gateway namespace (ip netns exec <gw> node --import tsx test/lab/pcp-gateway.ts <dir>):
 * a real lease table on the nftables driver and the PCP/NAT-PMP server on the LAN address.
 * Prints one JSON line when ready; exits when stdin closes. Optional `bench` argument: runs
 * bench/pcp.ts's run() against the nftables driver instead, prints its result and exits.
 * LAB_PCP_PEER=1 in the environment turns PCP PEER on, answered from the namespace's real conntrack
 * (test/lab/pcp-peer.test.ts; LAB_PCP_KEEP_MS sets how often held flows are re-extended);
 * otherwise PEER is off (UNSUPP_OPCODE).
 */
import { join } from 'node:path';
import pino from 'pino';
import { createNftablesDataplane } from '../../src/dataplane/nftables.js';
import { createConntrackCli, createPcpServer } from '../../src/frontends/pcp/index.js';
import { createSystemClock } from '../../src/leases/clock.js';
import { createLeaseTable } from '../../src/leases/table.js';
import { createMetrics } from '../../src/metrics.js';
import { createPolicy } from '../../src/policy/policy.js';

const dir = process.argv[2] ?? '/tmp';
const mode = process.argv[3] ?? 'serve';
const peer = process.env['LAB_PCP_PEER'] === '1';
const conntrack = peer
  ? createConntrackCli({ keepIntervalMs: Number(process.env['LAB_PCP_KEEP_MS'] ?? 10_000) })
  : null;
const log = pino({ level: process.env['LAB_LOG'] ?? 'silent' }, pino.destination(2));
const dataplane = createNftablesDataplane({
  table: 'portd',
  wan: 'wan0',
  lan: ['br0'],
  hairpin: true,
  frontendPorts: { tcp: [], udp: [5351] },
  log,
});
await dataplane.init();
await dataplane.setExternalAddresses(['203.0.113.1']);

if (mode === 'bench') {
  const { run } = await import('../../bench/pcp.js');
  const count = Number(process.argv[4] ?? 2000);
  const preload = Number(process.argv[5] ?? 0);
  const res = await run({ dataplane, count, preload, noEcho: false });
  process.stdout.write(`${JSON.stringify(res)}\n`);
  await dataplane.destroy();
  await dataplane.close();
  process.exit(0);
}

const policyConfig = {
  secureMode: true,
  ipv6Pinholes: true,
  maxLeasesPerClient: 128,
  reservedPorts: [22, 53, 80, 443],
  rules: [],
  historyRetention: 86400,
  lifetime: {
    pcp: { min: 60, max: 86400 },
    natpmp: { min: 60, max: 86400 },
    upnp: { min: 1, max: 604800 },
    trigger: { min: 1, max: 86400 },
  },
};
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
const server = createPcpServer({
  config: {
    pcp: { enabled: true, port: 5351, peer, thirdParty: [], allowAllProtocols: false, rateLimit: 100, ipv6: false },
    natpmp: { enabled: true },
    // no global PCP cap (the bench mode drives thousands per second); PEER at the default rate
    limits: { pcpRequestsPerSecond: 0, peerLookupsPerSecond: 50 },
    policy: policyConfig,
  },
  leases: table,
  log,
  metrics,
  clock,
  listen: ['192.168.77.1'],
  conntrack,
});
await server.start();
process.stdout.write(`${JSON.stringify({ ready: true, listen: server.addresses() })}\n`);
process.stdin.resume();
process.stdin.on('end', async () => {
  await server.close();
  conntrack?.close();
  await table.close();
  await dataplane.destroy();
  await dataplane.close();
  process.exit(0);
});
