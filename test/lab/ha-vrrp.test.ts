/**
 * Lab, first step of the HA pair (issue 18 item 4): keepalived moves the LAN and WAN virtual addresses between
 * gateways A and B within the 3 s budget, when the tracked process on the master is killed (-9) and when the
 * master's links go down; a node that comes back stays backup (nopreempt). The tracked process here is a lab
 * agent standing in for portd (an echo server on the WAN side labelled with its node), so the test measures
 * VRRP alone: what the WAN host sees on 203.0.113.1 is the label of the node that holds the address.
 * Root only; a failure under CI=true. ≈ 15 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Agent, hasTool, labSkip } from './harness.js';
import { createHaLab, HA, type HaLab, type NodeName } from './ha-lab.js';

const skip = labSkip('ha-vrrp') || (hasTool('keepalived') ? false : 'keepalived not installed');
const BUDGET_MS = 3000;

describe('keepalived moves the virtual addresses between A and B', { skip, timeout: 90_000 }, () => {
  let lab: HaLab;
  const gw: Partial<Record<NodeName, Agent>> = {};
  let wan: Agent;
  const figures: string[] = [];

  const startStandIn = async (node: NodeName) => {
    const a = await lab.agent(lab.ns[node], `gw${node}`);
    assert.ok((await a.listen('tcp', 8100)).ok);
    gw[node] = a;
  };
  /** polls the WAN side every 50 ms (bounded) until `node` answers on the virtual address; ms since t0 */
  const reachedThrough = async (node: NodeName, t0: number): Promise<number> => {
    for (let i = 0; i < 200 && Date.now() - t0 < 8000; i++) {
      const r = await wan.tcpProbe(HA.vipWan, 8100, { timeoutMs: 250, data: 'x' });
      if (r.ok && r.reply?.startsWith(`gw${node}|`)) return Date.now() - t0;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`the WAN host did not reach gateway ${node} within 8 s`);
  };
  const waitHolder = async (node: NodeName) => {
    for (let i = 0; i < 100; i++) {
      if ((await lab.vipHolder()) === node) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${node} never became master`);
  };

  before(async () => {
    lab = await createHaLab({
      advertInt: 0.2,
      trackScript: (node) => `/usr/bin/pgrep -f agent.mjs.gw${node}$`,
      verbose: !!process.env['LAB_LOG'],
    });
    wan = await lab.agent(lab.ns.wan, 'wan');
    await startStandIn('A');
    await startStandIn('B');
    await lab.startKeepalived('A');
    await waitHolder('A'); // alone, A becomes master after the master-down interval
    await lab.startKeepalived('B');
  });

  after(async () => {
    if (figures.length) process.stderr.write(`\nha-vrrp figures (advert_int 0.2 s): ${figures.join('; ')}\n`);
    await lab?.teardown();
  });

  test('kill -9 of the tracked process on the master: the WAN host reaches B within 3 s', async () => {
    assert.equal((await wan.tcpProbe(HA.vipWan, 8100, { data: 'x' })).reply?.split('|')[0], 'gwA');
    const t0 = Date.now();
    gw.A!.stop(); // SIGKILL
    const ms = await reachedThrough('B', t0);
    figures.push(`kill -9 on A → WAN reaches B in ${ms} ms`);
    assert.ok(ms <= BUDGET_MS, `${ms} ms`);
    assert.equal(await lab.vipHolder(), 'B');
  });

  test('the killed node comes back as backup: the addresses stay on B (nopreempt)', async () => {
    await startStandIn('A');
    await new Promise((r) => setTimeout(r, 1500)); // several advertisement intervals
    assert.equal(await lab.vipHolder(), 'B');
    assert.equal((await wan.tcpProbe(HA.vipWan, 8100, { data: 'x' })).reply?.split('|')[0], 'gwB');
  });

  test("the master's links go down: the peer takes over within 3 s; links up again, it stays backup", async () => {
    // make A master again the same way, then take its links down
    const t1 = Date.now();
    gw.B!.stop();
    figures.push(`kill -9 on B → WAN reaches A in ${await reachedThrough('A', t1)} ms`);
    await startStandIn('B');
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    await lab.linksDown('A');
    const ms = await reachedThrough('B', t0);
    figures.push(`A's links down → WAN reaches B in ${ms} ms`);
    assert.ok(ms <= BUDGET_MS, `${ms} ms`);
    await lab.linksUp('A');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await lab.vipHolder(), 'B', 'A came back as backup');
  });
});
