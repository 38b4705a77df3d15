/**
 * Lab: unsolicited PCP ANNOUNCE over IPv6 as RFC 6887 §14.1.1 says (issue 15, item 5): at start and on an
 * epoch reset, to the all-nodes group ff02::1 port 5350 on each LAN link, sent from that link's link-local
 * address. The gateway gets a second LAN link (veth `lan3`, its peer in host B's namespace), so host B sits on
 * both links; a listener on [::]:5350 there sees an ANNOUNCE from each link's gateway link-local address, no
 * NAT-PMP over IPv6, with the epoch of the moment: near 0 at start, and near 0 again after a LAN prefix
 * removal resets it seconds later. Root only; a failure under CI=true.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodePcpResponse } from '../../protocols/pcp/index.js';
import { IF, createLab, labSkip, type Agent, type Lab } from './harness.js';
import { PortdProcess } from './portd-process.js';

const skip = labSkip('pcp-announce6');
const LAN3 = 'lan3';

interface Got {
  from: string;
  hex: string;
}

describe('PCP ANNOUNCE to ff02::1 on each LAN link, from its link-local address', { skip, timeout: 90_000 }, () => {
  let lab: Lab;
  let portd: PortdProcess;
  let dir: string;
  let hostB: Agent;
  const ll: Record<string, string> = {};
  let atStart: Got[] = [];

  const linkLocal = async (ns: string, dev: string) => {
    const doc = JSON.parse(await lab.must(ns, ['ip', '-j', '-6', 'addr', 'show', 'dev', dev, 'scope', 'link'])) as {
      addr_info: { local?: string }[];
    }[];
    const a = doc[0]?.addr_info.find((x) => x.local)?.local;
    assert.ok(a, `no link-local address on ${dev}`);
    return a;
  };
  const collect = (durationMs: number) =>
    hostB.call('udpCollect', { host: '::', port: 5350, durationMs, timeoutMs: durationMs }).then((r) => {
      assert.ok(r.ok, JSON.stringify(r));
      return (r as unknown as { got: Got[] }).got;
    });
  /** the PCP announcements (version 2) that came over IPv6 from `from` (a link-local address with host B's zone) */
  const pcpFrom = (got: Got[], from: string) =>
    got.filter((g) => g.from.replace(/:\d+$/, '') === from).map((g) => Buffer.from(g.hex, 'hex'));

  before(async () => {
    lab = await createLab({ ipv6: true });
    // a second LAN link: the gateway's lan3, host B's eth1 (DAD is off in the lab's namespaces by default)
    await lab.must(lab.gw, ['ip', 'link', 'add', LAN3, 'type', 'veth', 'peer', 'name', 'eth1', 'netns', lab.lanB]);
    await lab.must(lab.gw, ['ip', 'link', 'set', LAN3, 'up']);
    await lab.must(lab.lanB, ['ip', 'link', 'set', 'eth1', 'up']);
    ll['br0'] = await linkLocal(lab.gw, IF.lan);
    ll[LAN3] = await linkLocal(lab.gw, LAN3);
    dir = mkdtempSync(join(tmpdir(), 'portd-lab-announce6-'));
    portd = new PortdProcess({
      lab,
      dir,
      verbose: process.env['LAB_LOG'] === 'portd',
      config:
        [
          'logLevel: info',
          `interfaces: { wan: ${IF.wan}, lan: [${IF.lan}, ${LAN3}] }`,
          'externalAddress: auto',
          `stateDir: ${dir}`,
          `database: { path: ${join(dir, 'portd.sqlite')} }`,
          'dataplane: { driver: nftables, table: portd }',
          'upnp: { enabled: false }',
          'pcp: { ipv6: true }',
          'admin: { listen: "127.0.0.1:8080", token: "lab-token-0123456789" }',
        ].join('\n') + '\n',
    });
    hostB = await lab.agent(lab.lanB, 'hostB');
    // listening before portd starts: the start's series is 250 ms, 500 ms, ... apart
    const listening = collect(6000);
    await new Promise((r) => setTimeout(r, 300));
    await portd.start();
    atStart = await listening;
  });

  after(async () => {
    await portd?.stop();
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('at start: an ANNOUNCE on each link from its link-local address, epoch near 0, no NAT-PMP over IPv6', () => {
    for (const [link, zone] of [
      ['br0', 'eth0'],
      [LAN3, 'eth1'],
    ] as const) {
      const got = pcpFrom(atStart, `${ll[link]}%${zone}`);
      assert.ok(
        got.length >= 3,
        `${link}: ${got.length} from ${ll[link]}; all: ${JSON.stringify(atStart.map((g) => g.from))}`,
      );
      for (const b of got) {
        assert.equal(b[0], 2, 'PCP only: NAT-PMP stays IPv4');
        const r = decodePcpResponse(b);
        assert.equal(r.opcode, 0);
        assert.equal(r.resultCode, 0);
        assert.ok(r.epoch <= 8, `epoch ${r.epoch}`);
      }
    }
    // not from the global address (the old behaviour): a client may not have a route back to it
    assert.equal(
      atStart.filter((g) => g.from.startsWith('2001:db8:77::1')).length,
      0,
      JSON.stringify(atStart.map((g) => g.from)),
    );
  });

  test('an epoch reset (a LAN prefix removed) announces again on each link with the new, small epoch', async () => {
    await new Promise((r) => setTimeout(r, 4000)); // the old epoch is ≥ 4 s now
    const listening = collect(3000);
    await new Promise((r) => setTimeout(r, 200));
    const from = portd.logs.length;
    await lab.must(lab.gw, ['ip', '-6', 'addr', 'add', '2001:db8:78::1/64', 'dev', IF.lan, 'nodad']);
    await portd.waitForLog((l) => l.msg === 'IPv6 prefixes changed', 5000, from);
    await lab.must(lab.gw, ['ip', '-6', 'addr', 'del', '2001:db8:78::1/64', 'dev', IF.lan]);
    await portd.waitForLog((l) => l.msg === 'PCP/NAT-PMP epoch reset; announcing', 5000, from);
    const got = await listening;
    for (const [link, zone] of [
      ['br0', 'eth0'],
      [LAN3, 'eth1'],
    ] as const) {
      const pkts = pcpFrom(got, `${ll[link]}%${zone}`);
      assert.ok(pkts.length >= 1, `${link}: ${JSON.stringify(got.map((g) => g.from))}`);
      // the start's series may still send one (old epoch) before the reset cancels it: the reset's is there too
      const epochs = pkts.map((b) => decodePcpResponse(b).epoch);
      assert.ok(
        epochs.some((e) => e <= 2),
        `${link}: epochs ${epochs.join(',')}`,
      );
    }
  });
});
