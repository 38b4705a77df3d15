/**
 * Lab: the IPv6 base of issue 15 (item 8). The harness's `ipv6` option gives the LAN 2001:db8:77::/64
 * and the WAN 2001:db8:113::/64 through the gateway, with forwarding on, no NAT66 and the lab's own
 * default-deny inbound policy (`table inet lab`). A LAN host reaches the WAN host over IPv6; the WAN host
 * cannot reach a LAN host, unless its flow carries portd's accept mark (0x100); each LAN host has a stable
 * and a temporary global address and a link-local one. Root only; a failure under CI=true.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADDR6, IF, LAB6_RULESET, createLab, labSkip, type Agent, type Lab } from './harness.js';

const skip = labSkip('ipv6-lab');
const FAIL_MS = 700;

interface IpAddr {
  ifname: string;
  address?: string;
  addr_info: { family: string; local: string; prefixlen: number; scope: string; tentative?: boolean }[];
}

describe('IPv6 in the lab: routed, default-deny inbound, two global addresses per host', {
  skip,
  timeout: 60_000,
}, () => {
  let lab: Lab;
  let hostA: Agent, hostB: Agent, wan: Agent;

  before(async () => {
    lab = await createLab({ ipv6: { temporary: true } });
    hostA = await lab.agent(lab.lanA, 'hostA');
    hostB = await lab.agent(lab.lanB, 'hostB');
    wan = await lab.agent(lab.wan, 'wan');
    for (const a of [hostA, wan]) {
      assert.ok((await a.listen('tcp', 9600, '::')).ok);
      assert.ok((await a.listen('udp', 9600, '::')).ok);
    }
  });

  after(async () => {
    await lab?.teardown();
  });

  test('a LAN host reaches the WAN host over IPv6, TCP and UDP, from its own address (no NAT66)', async () => {
    const opts = { localAddress: ADDR6.hostA };
    const tcp = await hostA.tcpProbe(ADDR6.wanHost, 9600, { ...opts, data: 'hi' });
    assert.equal(tcp.reply, `wan|${ADDR6.hostA}|hi`, JSON.stringify(tcp));
    const udp = await hostA.udpProbe(ADDR6.wanHost, 9600, { ...opts, data: 'hu' });
    assert.equal(udp.reply, `wan|${ADDR6.hostA}|hu`, JSON.stringify(udp));
    // by default the host sends from its temporary address, as a host with privacy addresses does
    const tmp = await hostA.tcpProbe(ADDR6.wanHost, 9600, { data: 'ht' });
    assert.equal(tmp.reply, `wan|${ADDR6.hostATemp}|ht`, JSON.stringify(tmp));
  });

  test('the WAN host cannot reach a LAN host (default deny); without the lab policy it could', async () => {
    assert.equal((await wan.tcpProbe(ADDR6.hostA, 9600, { timeoutMs: FAIL_MS })).ok, false, 'TCP denied');
    assert.equal((await wan.udpProbe(ADDR6.hostA, 9600, { timeoutMs: FAIL_MS })).ok, false, 'UDP denied');
    // the refusal is the policy, not the routing: with the table gone the same probe gets through
    await lab.must(lab.gw, ['nft', 'delete', 'table', 'inet', 'lab']);
    try {
      const open = await wan.tcpProbe(ADDR6.hostA, 9600, { data: 'x' });
      assert.equal(open.reply, `hostA|${ADDR6.wanHost}|x`, JSON.stringify(open));
    } finally {
      const r = await lab.nft(LAB6_RULESET);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal((await wan.tcpProbe(ADDR6.hostA, 9600, { timeoutMs: FAIL_MS })).ok, false, 'denied again');
  });

  test("a WAN→LAN flow that carries portd's mark 0x100 is accepted (the coexistence contract)", async () => {
    // what portd's pinhole rule will do (its forward chain runs at filter - 1, before the lab's)
    const marker = `table inet labmark {
  chain forward { type filter hook forward priority filter - 1; policy accept;
    iifname "${IF.wan}" ip6 daddr ${ADDR6.hostA} tcp dport 9600 ct state new ct mark set ct mark | 0x100
  }
}
`;
    const r = await lab.nft(marker);
    assert.equal(r.code, 0, r.stderr);
    try {
      const ok = await wan.tcpProbe(ADDR6.hostA, 9600, { data: 'm' });
      assert.equal(ok.reply, `hostA|${ADDR6.wanHost}|m`, JSON.stringify(ok));
      // only the marked flow: UDP to the same port and TCP to the other host stay out
      assert.equal((await wan.udpProbe(ADDR6.hostA, 9600, { timeoutMs: FAIL_MS })).ok, false);
      assert.equal((await wan.tcpProbe(ADDR6.hostB, 9600, { timeoutMs: FAIL_MS })).ok, false);
    } finally {
      await lab.must(lab.gw, ['nft', 'delete', 'table', 'inet', 'labmark']);
    }
  });

  test('each LAN host has a stable and a temporary global address, a link-local one, none tentative', async () => {
    for (const [ns, stable, temp] of [
      [lab.lanA, ADDR6.hostA, ADDR6.hostATemp],
      [lab.lanB, ADDR6.hostB, ADDR6.hostBTemp],
    ] as const) {
      const doc = JSON.parse(await lab.must(ns, ['ip', '-j', '-6', 'addr', 'show', 'dev', 'eth0'])) as IpAddr[];
      const info = doc[0]!.addr_info;
      const global = info.filter((a) => a.scope === 'global').map((a) => a.local);
      assert.deepEqual(global.sort(), [stable, temp].sort());
      assert.ok(
        info.some((a) => a.scope === 'link' && a.local.startsWith('fe80:')),
        JSON.stringify(info),
      );
      assert.ok(!info.some((a) => a.tentative), `DAD is off: ${JSON.stringify(info)}`);
    }
    // the gateway's LAN bridge has its link-local address too (PCP listens there)
    const gw = JSON.parse(await lab.must(lab.gw, ['ip', '-j', '-6', 'addr', 'show', 'dev', IF.lan])) as IpAddr[];
    assert.ok(
      gw[0]!.addr_info.some((a) => a.scope === 'link' && !a.tentative),
      JSON.stringify(gw),
    );
    assert.ok((await hostB.tcpProbe(ADDR6.wanHost, 9600, { localAddress: ADDR6.hostBTemp })).ok);
  });
});
