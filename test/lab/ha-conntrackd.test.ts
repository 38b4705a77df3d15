/**
 * Lab, established flows through an HA failover with conntrackd (issue 18 item 4; the case without it is in
 * ha-failover.test.ts): the pair with loose TCP pickup off (nf_conntrack_tcp_loose=0, where the peer cannot
 * adopt a mid-stream segment by itself), conntrackd syncing A's conntrack table to B, keepalived's
 * notify_master committing it into B's kernel: a TCP flow from the WAN host through A's mapping carries on
 * through B after kill -9 of A's node. Root only; a failure under CI=true. ≈ 20 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Agent, hasTool, labSkip } from './harness.js';
import { createHaLab, HA, type HaLab } from './ha-lab.js';
import { createStandIns, standInTrackScript } from './ha-stand-in.js';

const skip =
  labSkip('ha-conntrackd') ||
  (hasTool('keepalived') && hasTool('conntrackd') ? false : 'keepalived or conntrackd not installed');

describe('HA pair with conntrackd: an established flow survives the failover', { skip, timeout: 120_000 }, () => {
  let lab: HaLab;
  let wan: Agent, client: Agent;
  const { nodes, startNode, call, waitRole } = createStandIns(() => lab);
  const figures: string[] = [];

  before(async () => {
    lab = await createHaLab({
      advertInt: 0.2,
      conntrackd: true,
      trackScript: standInTrackScript,
      verbose: !!process.env['LAB_LOG'],
    });
    for (const n of ['A', 'B'] as const) {
      await lab.must(lab.ns[n], ['sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_loose=0']);
      await startNode(n);
    }
    wan = await lab.agent(lab.ns.wan, 'wan');
    client = await lab.agent(lab.ns.client, 'client');
    assert.ok((await client.listen('tcp', 9100)).ok);
    await lab.startKeepalived('A');
    await waitRole('A', 'active');
    await lab.startKeepalived('B');
    await waitRole('B', 'standby');
  });

  after(async () => {
    if (figures.length) process.stderr.write(`\nha-conntrackd figures: ${figures.join('; ')}\n`);
    for (const n of Object.values(nodes)) await n?.proc.stop();
    await lab?.teardown();
  });

  test('kill -9 of A with tcp_loose=0: the flow carries on through B', async () => {
    const g = await call('A', {
      op: 'grant',
      leaseId: 'lease-8100',
      externalPort: 8100,
      internalAddress: HA.client,
      internalPort: 9100,
      lifetime: 600,
    });
    assert.ok(g.ok, JSON.stringify(g));
    const flow = await wan.tcpConnect(HA.vipWan, 8100, { timeoutMs: 1000 });
    assert.ok(flow.ok, JSON.stringify(flow));
    assert.equal((await wan.tcpSend(flow.conn!, 'before')).reply, `client|${HA.wanHost}|before`);
    // the entry reached B's external cache (conntrackd -e lists it)
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    nodes.A!.proc.child.kill('SIGKILL');
    for (let i = 0; i < 200 && (await lab.vipHolder()) !== 'B'; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(await lab.vipHolder(), 'B');
    figures.push(`addresses on B ${Date.now() - t0} ms after the kill`);
    await new Promise((r) => setTimeout(r, 500)); // notify_master's conntrackd -c
    const sent = await wan.tcpSend(flow.conn!, 'after', 2000);
    figures.push(`established flow after kill -9, tcp_loose=0, with conntrackd: ${sent.ok ? 'kept' : sent.error}`);
    assert.equal(sent.reply, `client|${HA.wanHost}|after`);
  });
});
