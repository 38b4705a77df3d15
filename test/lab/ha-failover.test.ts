/**
 * Lab, the HA pair end to end on real nftables (issue 18 items 3-4): two nodes (test/lab/ha-node.ts: portd's
 * dataplane, fence, follower and role controller; a stand-in for the PostgreSQL writer) under keepalived, one
 * PostgreSQL in its own namespace.
 * - the standby's kernel follows every grant the active one makes (its nft map holds the element);
 * - kill -9 of A's node: within 3 s the WAN host reaches the mapped port through B; a renewal through B renews
 *   the same lease row; no granted lease is lost;
 * - A comes back: it is the standby, its kernel matches the table, and a write with its old generation is refused;
 * - B's links go down: A takes over within 3 s, the lease still reaches the LAN host.
 * Root only; a failure under CI=true. ≈ 30 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Agent, hasTool, labSkip } from './harness.js';
import { createHaLab, HA, type HaLab, type NodeName } from './ha-lab.js';
import { createStandIns, standInTrackScript } from './ha-stand-in.js';

const skip = labSkip('ha-failover') || (hasTool('keepalived') ? false : 'keepalived not installed');
const BUDGET_MS = 3000;

describe('HA pair: failover with the lease in both kernels', { skip, timeout: 150_000 }, () => {
  let lab: HaLab;
  let wan: Agent, client: Agent;
  const { nodes, startNode, call, waitRole } = createStandIns(() => lab);
  const figures: string[] = [];
  const reachable = async (t0: number): Promise<number> => {
    for (let i = 0; i < 300 && Date.now() - t0 < 10_000; i++) {
      const r = await wan.tcpProbe(HA.vipWan, 8100, { timeoutMs: 250, data: 'x' });
      if (r.ok && r.reply === `client|${HA.wanHost}|x`) return Date.now() - t0;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error('the WAN host did not reach the mapped port within 10 s');
  };
  // the test runs outside the lab's namespaces: it reads the table over the server's Unix socket
  const tableEntries = async (): Promise<string[]> =>
    (
      await lab.sql(
        `SELECT protocol || '/' || external_port || '>' || internal_address || ':' || internal_port
         FROM leases WHERE state = 'active'`,
      )
    ).sort();
  const vipMoved = async (to: NodeName, t0: number): Promise<number> => {
    for (let i = 0; i < 200; i++) {
      if ((await lab.vipHolder()) === to) return Date.now() - t0;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`the virtual addresses never moved to ${to}`);
  };

  before(async () => {
    lab = await createHaLab({
      advertInt: 0.2,
      trackScript: standInTrackScript,
      verbose: !!process.env['LAB_LOG'],
    });
    wan = await lab.agent(lab.ns.wan, 'wan');
    client = await lab.agent(lab.ns.client, 'client');
    assert.ok((await client.listen('tcp', 9100)).ok);
    await startNode('A');
    await startNode('B');
    await lab.startKeepalived('A');
    await waitRole('A', 'active');
    await lab.startKeepalived('B');
    await waitRole('B', 'standby');
  });

  after(async () => {
    if (figures.length) process.stderr.write(`\nha-failover figures (advert_int 0.2 s): ${figures.join('; ')}\n`);
    for (const n of Object.values(nodes)) await n?.proc.stop();
    await lab?.teardown();
  });

  test("A grants; B's kernel follows; the WAN host reaches the LAN host through A", async () => {
    const g = await call('A', {
      op: 'grant',
      leaseId: 'lease-8100',
      externalPort: 8100,
      internalAddress: HA.client,
      internalPort: 9100,
      lifetime: 600,
    });
    assert.ok(g.ok, JSON.stringify(g));
    await reachable(Date.now());
    const want = ['tcp/8100>192.168.77.11:9100'];
    for (let i = 0; i < 50; i++) {
      if ((await call('B', { op: 'kernel' })).entries?.join() === want.join()) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual((await call('B', { op: 'kernel' })).entries, want);
    assert.match(
      await lab.must(lab.ns.B, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']),
      /tcp \. 8100 .*: 192\.168\.77\.11 \. 9100/,
    );
  });

  test('kill -9 of A: the WAN host reaches the port through B within 3 s; a renewal through B renews the same lease', async () => {
    // an established flow through A, to see what becomes of it (no conntrackd: B has no conntrack entry for it)
    const flow = await wan.tcpConnect(HA.vipWan, 8100, { timeoutMs: 1000 });
    assert.ok(flow.ok, JSON.stringify(flow));
    assert.equal((await wan.tcpSend(flow.conn!, 'before')).reply, `client|${HA.wanHost}|before`);
    const t0 = Date.now();
    nodes.A!.proc.child.kill('SIGKILL');
    const ms = await reachable(t0);
    // A's kernel keeps forwarding after portd died (its elements outlive it): reachable at once; then VRRP moves
    figures.push(`kill -9 on A → WAN reaches the mapped port in ${ms} ms`);
    const moved = await vipMoved('B', t0);
    figures.push(`addresses on B ${moved} ms after the kill`);
    assert.ok(moved <= BUDGET_MS, `${moved} ms`);
    assert.ok((await reachable(Date.now())) < BUDGET_MS, 'through B');
    const sent = await wan.tcpSend(flow.conn!, 'after', 2000);
    figures.push(`established flow after kill -9 (no conntrackd): ${sent.ok ? 'kept' : sent.error}`);
    // B has no conntrack entry for it; the kernel's loose TCP pickup (nf_conntrack_tcp_loose=1, the default) makes
    // one from the next segment, and B's own copy of the mapping DNATs it to the same LAN host
    assert.equal(sent.reply, `client|${HA.wanHost}|after`, 'the established flow carries on through B');
    const s = await waitRole('B', 'active');
    figures.push(`B active (fence taken) ${Date.now() - t0} ms after the kill`);
    assert.equal(await lab.vipHolder(), 'B');
    const r = await call('B', { op: 'renew', leaseId: 'lease-8100', lifetime: 900 });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.lease?.id, 'lease-8100');
    assert.equal(r.lease?.renewCount, 1);
    assert.deepEqual(await tableEntries(), ['tcp/8100>192.168.77.11:9100'], 'no lease lost, none added');
    assert.ok((s.token ?? 0) >= 2);
  });

  test("A comes back as the standby, its kernel matches the table; its old generation's write is refused", async () => {
    await startNode('A');
    const s = await waitRole('A', 'standby');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await lab.vipHolder(), 'B', 'nopreempt: B stays master');
    assert.deepEqual((await call('A', { op: 'kernel' })).entries, await tableEntries());
    const stale = await call('A', {
      op: 'staleWrite',
      token: 1,
      leaseId: 'split-brain',
      externalPort: 8200,
      internalAddress: HA.client,
      internalPort: 9200,
    });
    assert.equal(stale.ok, false);
    assert.equal(stale.fenced, true, JSON.stringify(stale));
    assert.ok(!(await tableEntries()).some((e) => e.startsWith('tcp/8200')));
    void s;
  });

  test("B's links go down: A takes over within 3 s and the lease still reaches the LAN host", async () => {
    const flow = await wan.tcpConnect(HA.vipWan, 8100, { timeoutMs: 1000 });
    assert.ok(flow.ok, JSON.stringify(flow));
    assert.equal((await wan.tcpSend(flow.conn!, 'before')).reply, `client|${HA.wanHost}|before`);
    const t0 = Date.now();
    await lab.linksDown('B');
    const ms = await reachable(t0);
    figures.push(`B's links down → WAN reaches the mapped port through A in ${ms} ms`);
    assert.equal(await lab.vipHolder(), 'A');
    const sent = await wan.tcpSend(flow.conn!, 'after', 2000);
    figures.push(`established flow after links down (no conntrackd): ${sent.ok ? 'kept' : sent.error}`);
    assert.equal(sent.reply, `client|${HA.wanHost}|after`, 'the established flow carries on through A');
    assert.ok(ms <= BUDGET_MS, `${ms} ms`);
    await waitRole('A', 'active');
    figures.push(`A active (fence taken) ${Date.now() - t0} ms after B's links went down`);
    const r = await call('A', { op: 'renew', leaseId: 'lease-8100', lifetime: 900 });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.lease?.renewCount, 2);
    await lab.linksUp('B');
    await waitRole('B', 'standby');
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual((await call('B', { op: 'kernel' })).entries, await tableEntries());
  });

  test('without loose TCP pickup (nf_conntrack_tcp_loose=0) an established flow does not survive the failover', async () => {
    for (const n of ['A', 'B'] as const)
      await lab.must(lab.ns[n], ['sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_loose=0']);
    const flow = await wan.tcpConnect(HA.vipWan, 8100, { timeoutMs: 1000 });
    assert.ok(flow.ok, JSON.stringify(flow));
    assert.equal((await wan.tcpSend(flow.conn!, 'before')).reply, `client|${HA.wanHost}|before`);
    const t0 = Date.now();
    nodes.A!.proc.child.kill('SIGKILL');
    await vipMoved('B', t0);
    assert.ok((await reachable(Date.now())) < BUDGET_MS, 'new connections pass through B');
    const sent = await wan.tcpSend(flow.conn!, 'after', 2000);
    figures.push(`established flow after kill -9, tcp_loose=0, no conntrackd: ${sent.ok ? 'kept' : sent.error}`);
    assert.equal(sent.ok, false, 'B drops a mid-stream segment it has no conntrack entry for');
  });
});
