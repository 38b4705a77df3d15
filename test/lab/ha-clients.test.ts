/**
 * Lab, the HA pair with the real portd and real clients (issue 18 items 3-4): `portd start` with `ha.enabled` on
 * gateways A and B (test/lab/ha-lab.ts: keepalived VRRP between them, PostgreSQL in a namespace of its own).
 * - natpmpc, upnpc and a PCP client on the LAN map through the LAN virtual address, served by A; the WAN host
 *   reaches every mapped port through the WAN virtual address; B (standby) answers nothing and its kernel
 *   holds every lease;
 * - kill -9 of portd on A: within 3 s the WAN host reaches the ports through B; natpmpc's renewal through B renews
 *   the same lease (same id, renew_count 1); the PCP client sees B's ANNOUNCE or an epoch that RFC 6887 §8.5 calls
 *   invalid, re-maps, and gets the same lease; no acknowledged lease lost;
 * - A's portd started again: the standby, its kernel matching the table, VRRP still on B (nopreempt);
 * - B's links down: A serves within 3 s, natpmpc renews the same lease through A; B, links up, is the standby
 *   with its kernel matching the table;
 * - A's nftables table deleted from outside: rebuilt, and A's PCP server starts a new epoch (announced);
 * - the fence raised behind keepalived's back: A's next grant is refused (nothing in PostgreSQL or its kernel),
 *   A logs `ha: fenced` and stops answering.
 * Root only; a failure under CI=true. ≈ 40 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodePcpResponse, encodePcpRequest, nonceFromHex, ResultCode } from '../../protocols/pcp/index.js';
import { createHaLab, HA, type HaLab, type NodeName } from './ha-lab.js';
import { type Agent, hasTool, labSkip } from './harness.js';
import {
  frontendsUp,
  isRole,
  kernelTcp,
  PortdNode,
  portdTrackScript,
  startPair,
  tableTcp,
  writePortdConfig,
} from './ha-portd.js';

const missing = ['keepalived', 'natpmpc', 'upnpc'].filter((t) => !hasTool(t));
// under CI=true a lab that cannot run fails (scripts/pretest.mjs installs the tools), never skips
if (missing.length > 0 && process.env['CI'] === 'true') throw new Error(`ha-clients needs ${missing.join(', ')}`);
const skip = labSkip('ha-clients') || (missing.length > 0 && `${missing.join(', ')} not installed`);
const BUDGET_MS = 3000;
const TOKEN = 'ha-clients-admin-token-0123456789';
const NONCE = '6a6a6a6a6a6a6a6a6a6a6a6a';

/** RFC 6887 §8.5: the client's check of the server's epoch against the previous answer; true: state was lost */
function epochInvalid(prev: { server: number; client: number }, cur: { server: number; client: number }): boolean {
  if (cur.server < prev.server - 1) return true;
  const clientDelta = cur.client - prev.client;
  const serverDelta = cur.server - prev.server;
  return clientDelta + 2 < serverDelta - serverDelta / 16 || serverDelta + 2 < clientDelta - clientDelta / 16;
}

describe('HA pair through portd start: natpmpc, upnpc and PCP across kill -9', { skip, timeout: 180_000 }, () => {
  let lab: HaLab;
  let wan: Agent, client: Agent;
  const nodes = {} as Record<NodeName, PortdNode>;
  const figures: string[] = [];
  let pcpBefore: { server: number; client: number } | null = null;
  let ids: string[] = [];

  const reach = async (port: number, t0: number, limitMs = 10_000): Promise<number> => {
    for (let i = 0; i < 400 && Date.now() - t0 < limitMs; i++) {
      const r = await wan.tcpProbe(HA.vipWan, port, { timeoutMs: 250, data: 'x' });
      if (r.ok && r.reply === `client|${HA.wanHost}|x`) return Date.now() - t0;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`the WAN host did not reach port ${port} within ${limitMs} ms`);
  };
  const activeRows = () =>
    lab.sql(`SELECT id || ' ' || source || ' ' || external_port || ' ' || renew_count FROM leases
             WHERE state = 'active' ORDER BY external_port`);
  const pcpMap = async (lifetime: number) => {
    const hex = Buffer.from(
      encodePcpRequest({
        version: 2,
        opcode: 1,
        lifetime,
        clientAddress: HA.client,
        options: [],
        map: {
          nonce: nonceFromHex(NONCE),
          protocol: 6,
          internalPort: 9300,
          externalPort: 8300,
          externalAddress: '0.0.0.0',
        },
      }),
    ).toString('hex');
    const r = await client.call('udpBytes', { host: HA.vipLan, port: 5351, hex, timeoutMs: 3000 });
    assert.ok(r.ok, JSON.stringify(r));
    return {
      res: decodePcpResponse(Buffer.from(String(r.reply), 'hex')),
      at: Date.now() / 1000,
      from: (r as { from?: string }).from,
    };
  };
  const kernelOf = (node: NodeName) => kernelTcp(lab, node);

  before(async () => {
    lab = await createHaLab({
      advertInt: 0.2,
      trackScript: portdTrackScript,
      verbose: !!process.env['LAB_LOG'],
    });
    wan = await lab.agent(lab.ns.wan, 'wan');
    client = await lab.agent(lab.ns.client, 'client');
    for (const p of [9100, 9200, 9300]) assert.ok((await client.listen('tcp', p)).ok);
    for (const n of ['A', 'B'] as const) nodes[n] = new PortdNode(lab.ns[n], writePortdConfig(lab, n, TOKEN));
    await startPair(lab, nodes);
  });

  after(async () => {
    if (figures.length) process.stderr.write(`\nha-clients figures (advert_int 0.2 s): ${figures.join('; ')}\n`);
    for (const n of Object.values(nodes)) await n?.kill9();
    await lab?.teardown();
  });

  test('natpmpc, upnpc and a PCP client map through the LAN virtual address on A; the WAN host gets in', async () => {
    assert.equal(await lab.vipHolder(), 'A');
    const n = await lab.exec(lab.ns.client, ['natpmpc', '-g', HA.vipLan, '-a', '8100', '9100', 'tcp', '600'], {
      timeoutMs: 15_000,
    });
    assert.match(n.stdout, /Mapped public port 8100 protocol TCP to local port 9100/, n.stdout + n.stderr);
    const u = await lab.exec(
      lab.ns.client,
      ['upnpc', '-u', `http://${HA.vipLan}:5000/igd1/desc.xml`, '-a', HA.client, '9200', '8200', 'TCP', '600'],
      { timeoutMs: 20_000 },
    );
    assert.match(
      u.stdout,
      /external 203\.0\.113\.1:8200 TCP is redirected to internal 192\.168\.77\.11:9200/,
      u.stdout,
    );
    const p = await pcpMap(600);
    assert.equal(p.res.resultCode, ResultCode.SUCCESS);
    assert.equal(p.res.map?.externalPort, 8300);
    assert.equal(p.from, `${HA.vipLan}:5351`, 'answered from the virtual address');
    pcpBefore = { server: p.res.epoch, client: p.at };
    for (const port of [8100, 8200, 8300]) await reach(port, Date.now());
    const rows = await activeRows();
    assert.equal(rows.length, 3, rows.join('\n'));
    ids = rows.map((r) => r.split(' ')[0]!);
    // B, the standby: its kernel holds every lease, and it answers nothing on the LAN
    const want = ['8100>192.168.77.11:9100', '8200>192.168.77.11:9200', '8300>192.168.77.11:9300'];
    for (let i = 0; i < 40 && (await kernelOf('B')).join() !== want.join(); i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await kernelOf('B'), want);
    const silent = await client.call('udpBytes', { host: HA.bLan, port: 5351, hex: '0000', timeoutMs: 700 });
    assert.equal(silent.ok, false, 'the standby does not answer NAT-PMP');
  });

  test('kill -9 of portd on A: B serves within 3 s; renewals through B renew the same leases; PCP learns of it', async () => {
    assert.ok(pcpBefore, 'the mapping test ran');
    // unsolicited ANNOUNCEs (RFC 6887 §14.1.3) go to 224.0.0.1:5350: the LAN client listens through the failover
    const announces = client.call('udpCollect', { host: '0.0.0.0', port: 5350, durationMs: 8000, timeoutMs: 8000 });
    await new Promise((r) => setTimeout(r, 200));
    const from = nodes.B.lines.length;
    const t0 = Date.now();
    await nodes.A.kill9();
    for (;;) {
      if ((await lab.vipHolder()) === 'B') break;
      if (Date.now() - t0 > 10_000) throw new Error('the virtual addresses never moved to B');
      await new Promise((r) => setTimeout(r, 25));
    }
    const moved = Date.now() - t0;
    figures.push(`addresses on B ${moved} ms after the kill`);
    assert.ok(moved <= BUDGET_MS, `${moved} ms`);
    const through = await reach(8100, t0);
    figures.push(`WAN reaches 8100 ${through} ms after the kill (polled once the addresses moved)`);
    await nodes.B.wait(isRole('active'), 10_000, from);
    await nodes.B.wait(frontendsUp, 10_000, from);
    const served = Date.now() - t0;
    figures.push(`B active with its front-ends up ${served} ms after the kill`);
    for (const port of [8100, 8200, 8300]) assert.ok((await reach(port, Date.now())) < BUDGET_MS);

    // natpmpc's renewal through B: the same lease, renewed
    const n = await lab.exec(lab.ns.client, ['natpmpc', '-g', HA.vipLan, '-a', '8100', '9100', 'tcp', '900'], {
      timeoutMs: 15_000,
    });
    assert.match(n.stdout, /Mapped public port 8100 protocol TCP to local port 9100/, n.stdout + n.stderr);
    // the PCP client: B's ANNOUNCE, or its epoch is invalid by §8.5; either way it re-maps, and gets the same lease
    const p = await pcpMap(900);
    assert.equal(p.res.resultCode, ResultCode.SUCCESS);
    assert.equal(p.res.map?.externalPort, 8300);
    const got = ((await announces) as { got?: { from: string; hex: string }[] }).got ?? [];
    const fromB = got
      // PCP's (version 2, opcode ANNOUNCE 0, a response), not NAT-PMP's address announcement (version 0)
      .filter((g) => g.hex.startsWith('0280') && g.from.startsWith(`${HA.vipLan}:`));
    const invalid = epochInvalid(pcpBefore!, { server: p.res.epoch, client: p.at });
    figures.push(
      `PCP: ${fromB.length} ANNOUNCE(s) from the virtual address; ` +
        `epoch ${pcpBefore!.server} → ${p.res.epoch} (${invalid ? 'invalid: re-map' : 'valid'})`,
    );
    assert.ok(fromB.length > 0, `B announces from the virtual address: ${JSON.stringify(got.slice(0, 6))}`);
    assert.ok(
      fromB.every((g) => Buffer.from(g.hex, 'hex').readUInt32BE(8) < 60),
      "B's ANNOUNCEs carry its fresh epoch",
    );
    const rows = await activeRows();
    assert.deepEqual(
      rows.map((r) => r.split(' ')[0]),
      ids,
      'no acknowledged lease lost, none added: the same ids',
    );
    const byPort = new Map(rows.map((r) => [r.split(' ')[2], r.split(' ')]));
    assert.equal(byPort.get('8100')![1], 'natpmp');
    assert.equal(byPort.get('8100')![3], '1', 'natpmpc renewed the same lease through B');
    assert.equal(byPort.get('8300')![3], '1', 'the PCP re-map renewed the same lease');
  });

  test("A's portd started again: the standby, its kernel matching the table; B stays master", async () => {
    nodes.A.start();
    await nodes.A.wait(isRole('standby'), 40_000);
    const want = await tableTcp(lab);
    for (let i = 0; i < 60 && (await kernelOf('A')).join() !== want.join(); i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await kernelOf('A'), want);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await lab.vipHolder(), 'B', 'nopreempt: B stays master');
    assert.ok(!nodes.A.lines.some(isRole('active')), 'A did not become active');
  });

  test("B's links go down: A serves within 3 s and renews the same lease; B comes back as the standby", async () => {
    const fromA = nodes.A.lines.length;
    const fromB = nodes.B.lines.length;
    const t0 = Date.now();
    await lab.linksDown('B');
    const ms = await reach(8100, t0);
    figures.push(`B's links down → WAN reaches 8100 through A in ${ms} ms`);
    assert.ok(ms <= BUDGET_MS, `${ms} ms`);
    assert.equal(await lab.vipHolder(), 'A');
    await nodes.A.wait(frontendsUp, 10_000, fromA);
    figures.push(`A active with its front-ends up ${Date.now() - t0} ms after B's links went down`);
    const n = await lab.exec(lab.ns.client, ['natpmpc', '-g', HA.vipLan, '-a', '8100', '9100', 'tcp', '900'], {
      timeoutMs: 15_000,
    });
    assert.match(n.stdout, /Mapped public port 8100 protocol TCP to local port 9100/, n.stdout + n.stderr);
    const rows = await activeRows();
    assert.deepEqual(
      rows.map((r) => r.split(' ')[0]),
      ids,
      'the same leases',
    );
    assert.equal(rows.find((r) => r.split(' ')[2] === '8100')!.split(' ')[3], '2', 'renewed again, through A');
    await lab.linksUp('B');
    await nodes.B.wait(isRole('standby'), 15_000, fromB);
    const want = await tableTcp(lab);
    for (let i = 0; i < 60 && (await kernelOf('B')).join() !== want.join(); i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await kernelOf('B'), want);
    assert.equal(await lab.vipHolder(), 'A', 'nopreempt: A stays master');
  });

  test("A's nftables table deleted from outside: rebuilt from the shared dataplane, PCP announces a new epoch", async () => {
    const from = nodes.A.lines.length;
    await lab.must(lab.ns.A, ['nft', 'delete', 'table', 'inet', 'portd']);
    // the check runs every min(10 s, dataplane.reconcileInterval) = 2 s here
    await nodes.A.wait((l) => l.msg === 'ha: dataplane rebuilt', 8000, from);
    await nodes.A.wait((l) => l.msg === 'PCP/NAT-PMP epoch reset; announcing', 2000, from);
    assert.ok((await reach(8100, Date.now())) < BUDGET_MS, 'the mapping forwards again');
  });

  test("a takeover behind keepalived's back fences the master: its next grant changes nothing and it stops answering", async () => {
    // someone else raised the generation (a partitioned peer that took over): keepalived still says MASTER on A
    const from = nodes.A.lines.length;
    await lab.sql(`UPDATE ha_fence SET generation = generation + 1, holder = 'intruder'`);
    const n = await lab.exec(lab.ns.client, ['natpmpc', '-g', HA.vipLan, '-a', '8400', '9400', 'tcp', '600'], {
      timeoutMs: 15_000,
    });
    assert.doesNotMatch(n.stdout, /Mapped public port 8400/, 'the fenced writer acknowledges nothing');
    await nodes.A.wait((l) => l.msg.startsWith('ha: fenced'), 5000, from);
    await nodes.A.wait(isRole('standby'), 5000, from);
    assert.deepEqual(await lab.sql(`SELECT id FROM leases WHERE external_port = 8400`), [], 'nothing in PostgreSQL');
    assert.ok(!(await kernelOf('A')).some((e) => e.startsWith('8400>')), "nor in A's kernel");
    const silent = await client.call('udpBytes', { host: HA.vipLan, port: 5351, hex: '0000', timeoutMs: 700 });
    assert.equal(silent.ok, false, 'A holds the addresses but answers nothing');
  });
});
