/**
 * End to end below the front-ends: the real lease table (SQLite) driving the nftables driver in the
 * gateway namespace, with real traffic from the WAN host. Covers expiry by the table, revoke, a portd
 * that stops without cleaning up (kernel timeouts alone close the port and its flows) and a restart
 * whose reconcile removes a planted element and restores a missing one.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createNftablesDataplane, type NftablesDataplane } from '../../src/dataplane/nftables.js';
import { createLeaseTable, type LeaseTable } from '../../src/leases/table.js';
import { createSystemClock } from '../../src/leases/clock.js';
import { createPolicy } from '../../src/policy/policy.js';
import type { LeaseRequest } from '../../src/leases/types.js';
import { createMetrics } from '../../src/metrics.js';
import { ADDR, IF, createLab, labSkip, type Agent, type Lab } from './harness.js';

const skip = labSkip('lease-table');
const log = pino({ level: process.env['LAB_LOG'] ?? 'silent' });
const EXT = ADDR.gwWan;
const FAIL_MS = 700;
const GRACE = 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const policy = createPolicy({
  secureMode: true,
  ipv6Pinholes: true,
  maxLeasesPerClient: 100,
  reservedPorts: [],
  lifetime: {
    pcp: { min: 1, max: 3600 },
    natpmp: { min: 1, max: 3600 },
    upnp: { min: 1, max: 3600 },
    trigger: { min: 1, max: 3600 },
  },
  rules: [],
  historyRetention: 3600,
});

function pcp(protocol: 'tcp' | 'udp', internalPort: number, externalPort: number, lifetime: number): LeaseRequest {
  return {
    source: 'pcp',
    identity: 'internal',
    protocol,
    owner: ADDR.hostA,
    internalAddress: ADDR.hostA,
    internalPort,
    externalPort,
    allowOtherPort: false,
    lifetime,
    nonce: 'aa'.repeat(12),
  };
}

describe('lease table + nftables driver in a namespace lab', { skip, timeout: 120_000 }, () => {
  let lab: Lab;
  let dir: string;
  let dp: NftablesDataplane;
  let table: LeaseTable;
  let hostA: Agent, wan: Agent;
  // one registry for the driver and the table, as main.ts wires them
  const metrics = createMetrics();

  async function start(): Promise<void> {
    dp = createNftablesDataplane({
      table: 'portd',
      wan: IF.wan,
      lan: [IF.lan],
      hairpin: true,
      frontendPorts: { tcp: [5000], udp: [1900, 5351] },
      log,
      metrics,
      netns: lab.gw,
    });
    table = createLeaseTable({
      metrics,
      database: { path: join(dir, 'portd.sqlite') },
      dataplane: dp,
      policy,
      clock: createSystemClock(),
      log,
      externalAddress: EXT,
      grace: GRACE,
    });
    // the order main.ts uses: structure, our address, then the kernel gets exactly the table
    await dp.init();
    await dp.setExternalAddresses([EXT]);
    await table.reconcile('start');
  }
  /** a portd that dies: no releases, no cleanup; the kernel keeps the table with its timeouts */
  async function die(): Promise<void> {
    await table.close();
    await dp.close();
  }

  before(async () => {
    lab = await createLab();
    dir = mkdtempSync(join(tmpdir(), 'portd-lab-'));
    hostA = await lab.agent(lab.lanA, 'hostA');
    wan = await lab.agent(lab.wan, 'wan');
    for (const p of [9101, 9102, 9103, 9104, 9105, 9106]) {
      await hostA.listen('tcp', p);
      await hostA.listen('udp', p);
    }
    await start();
  });

  after(async () => {
    await table?.close().catch(() => undefined);
    await dp?.close();
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('one tick is one dataplane batch in the metrics (the driver and the writer do not both count it)', async () => {
    const count = async () =>
      (await metrics.dataplaneBatchSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
    const before = await count();
    const r = await table.request(pcp('tcp', 9199, 8199, 30));
    assert.ok(r.ok);
    assert.equal(await count(), before + 1, 'one observation for the one batch of the grant');
    assert.ok((await table.revoke(r.lease.id, 'admin:test', 'lab')).ok);
    assert.equal(await count(), before + 2, 'and one for the revocation');
  });

  test('a granted lease opens the port; at its expiry the table closes it and its open flows', async () => {
    const t = await table.request(pcp('tcp', 9101, 8101, 3));
    const u = await table.request(pcp('udp', 9101, 8101, 3));
    assert.ok(t.ok && u.ok);
    const started = Date.now();
    const c = await wan.tcpConnect(EXT, 8101);
    const s = await wan.udpOpen();
    assert.deepEqual(await wan.tcpSend(c.conn!, 'a'), { ok: true, reply: `hostA|${ADDR.wanHost}|a` });
    assert.deepEqual(await wan.udpSend(s.sock!, EXT, 8101, 'b'), { ok: true, reply: `hostA|${ADDR.wanHost}|b` });
    // after the lease's expiry, before the kernel's own (lease + grace): the table's removal did it
    await sleep(Math.max(0, 3400 - (Date.now() - started)));
    assert.equal(table.get(t.ok ? t.lease.id : '')?.state, 'ended');
    assert.equal((await wan.tcpSend(c.conn!, 'c', FAIL_MS)).ok, false);
    assert.equal((await wan.udpSend(s.sock!, EXT, 8101, 'd', FAIL_MS)).ok, false);
    assert.equal((await wan.tcpProbe(EXT, 8101, { timeoutMs: FAIL_MS })).ok, false);
    await wan.tcpClose(c.conn!);
    await wan.udpClose(s.sock!);
  });

  test('revoke closes the port and its open flows', async () => {
    const t = await table.request(pcp('tcp', 9102, 8102, 600));
    assert.ok(t.ok);
    const c = await wan.tcpConnect(EXT, 8102);
    assert.deepEqual(await wan.tcpSend(c.conn!, 'a'), { ok: true, reply: `hostA|${ADDR.wanHost}|a` });
    const r = await table.revoke(t.lease.id, 'admin:test', 'lab');
    assert.ok(r.ok);
    assert.equal((await wan.tcpSend(c.conn!, 'b', FAIL_MS)).ok, false);
    assert.equal((await wan.tcpProbe(EXT, 8102, { timeoutMs: FAIL_MS })).ok, false);
    await wan.tcpClose(c.conn!);
  });

  test('portd dead: the kernel closes the port and its open flows on time; restart reconciles', async () => {
    const short = await table.request(pcp('udp', 9103, 8103, 2));
    const keep = await table.request(pcp('tcp', 9104, 8104, 600));
    const lost = await table.request(pcp('tcp', 9105, 8105, 600));
    assert.ok(short.ok && keep.ok && lost.ok);
    const started = Date.now();
    const s = await wan.udpOpen();
    assert.deepEqual(await wan.udpSend(s.sock!, EXT, 8103, 'a'), { ok: true, reply: `hostA|${ADDR.wanHost}|a` });
    await die();
    // kernel deadline = lifetime 2 s + grace 1 s
    await sleep(Math.max(0, 3500 - (Date.now() - started)));
    assert.equal(
      (await wan.udpSend(s.sock!, EXT, 8103, 'b', FAIL_MS)).ok,
      false,
      'open UDP flow stopped by the kernel alone',
    );
    assert.equal((await wan.udpProbe(EXT, 8103, { timeoutMs: FAIL_MS })).ok, false);
    await wan.udpClose(s.sock!);
    // long leases survive the dead daemon in the kernel
    assert.deepEqual(await wan.tcpProbe(EXT, 8104), { ok: true, reply: `hostA|${ADDR.wanHost}|probe` });

    // while portd is down: someone deletes one element and plants another
    const r = await lab.nft(
      `delete element inet portd fwd4 { tcp . 8105 }\nadd element inet portd fwd4 { tcp . 8106 : ${ADDR.hostA} . ` +
        '9106 }\nadd element inet portd live_tcp { 8106 }\n',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await wan.tcpProbe(EXT, 8106), { ok: true, reply: `hostA|${ADDR.wanHost}|probe` });

    await start();
    assert.deepEqual(
      await wan.tcpProbe(EXT, 8105),
      { ok: true, reply: `hostA|${ADDR.wanHost}|probe` },
      'missing element restored',
    );
    assert.equal((await wan.tcpProbe(EXT, 8106, { timeoutMs: FAIL_MS })).ok, false, 'planted element removed');
    assert.deepEqual(await wan.tcpProbe(EXT, 8104), { ok: true, reply: `hostA|${ADDR.wanHost}|probe` });
    assert.equal(await dp.count(), table.countActive().total);
    const fwd4 = await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']);
    assert.doesNotMatch(fwd4, /8106|8103/);
  });
});
