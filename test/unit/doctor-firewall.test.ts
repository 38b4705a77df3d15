/**
 * The nft ruleset evaluator behind `portd doctor`'s firewall checks, over real `nft -j list ruleset` output
 * captured from rulesets built in a namespace (test/fixtures/nft-ruleset/capture.ts, nft 1.0.6): which base
 * chain accepts or drops a flow portd forwarded, and a packet to a front-end port arriving on the WAN.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { evaluateHook, parseRuleset, ruleText, type PacketModel } from '../../src/doctor/firewall.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'nft-ruleset');
const load = (name: string) =>
  parseRuleset((JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8')) as { ruleset: unknown }).ruleset);

/** a flow portd forwarded, as each chain sees it (the mark is set by portd's chain at priority -1) */
const forwarded =
  (ctState: 'new' | 'established', l4proto: 'tcp' | 'udp' = 'tcp') =>
  (c: { prio: number }): PacketModel => ({
    iifname: 'wan0',
    oifname: 'br0',
    l4proto,
    ctState,
    ctStatus: ['dnat'],
    ctMark: ctState === 'new' && c.prio <= -1 ? 0 : 0x100,
  });
const notPortd = (c: { table: string }) => c.table !== 'portd';
const forward = (name: string, state: 'new' | 'established', proto: 'tcp' | 'udp' = 'tcp') =>
  evaluateHook(load(name), 'forward', forwarded(state, proto), notPortd);

describe('forward chain: does the firewall accept portd-forwarded flows?', () => {
  test('Debian-style policy drop with the ct mark accept: accepted by that rule (tcp and udp)', () => {
    for (const proto of ['tcp', 'udp'] as const) {
      const [v, ...rest] = forward('debian-mark-accept', 'new', proto);
      assert.equal(rest.length, 0);
      assert.equal(v!.verdict, 'accept');
      assert.equal(v!.by?.text, 'ct mark & 0x100 == 0x100 accept');
      assert.equal(v!.chain.policy, 'drop');
    }
    assert.equal(forward('debian-mark-accept', 'established')[0]!.by?.text, 'ct state established,related accept');
  });

  test('ct status dnat accept is an equivalent accept', () => {
    const [v] = forward('debian-dnat-accept', 'new');
    assert.equal(v!.verdict, 'accept');
    assert.equal(v!.by?.text, 'ct status dnat accept');
  });

  test('policy drop with only established,related: the new flow meets the policy', () => {
    const [v] = forward('debian-no-accept', 'new', 'udp');
    assert.equal(v!.verdict, 'drop');
    assert.equal(v!.by, null); // the policy
    assert.equal(forward('debian-no-accept', 'established')[0]!.verdict, 'accept');
  });

  test('policy accept but an explicit drop: an accept for one port does not cover every forwarded flow', () => {
    const [v] = forward('explicit-drop', 'new');
    assert.equal(v!.chain.family, 'ip');
    assert.equal(v!.verdict, 'drop');
    assert.equal(v!.by?.text, 'iifname "wan0" drop');
  });

  test('the mark accept in a chain before portd sets the mark (priority -150) does not let a new flow in', () => {
    const [v] = forward('mark-accept-too-early', 'new');
    assert.equal(v!.chain.prio, -150);
    assert.equal(v!.verdict, 'drop');
    // the same chain with the mark already set (after portd's chain) would accept: the priority is what matters
    const late = evaluateHook(
      load('mark-accept-too-early'),
      'forward',
      () => ({ ...forwarded('new')({ prio: 0 }) }),
      notPortd,
    );
    assert.equal(late[0]!.verdict, 'accept');
  });

  test('OpenWrt fw4: jumps and verdict maps are followed; forward_wan accepts ct status dnat', () => {
    const [v] = forward('fw4-dnat', 'new');
    assert.equal(v!.verdict, 'accept');
    assert.equal(v!.by?.chain, 'forward_wan');
    assert.equal(v!.by?.text, 'ct status dnat accept');
    const [e] = forward('fw4-dnat', 'established');
    assert.equal(e!.by?.text, 'ct state vmap { established : accept, related : accept }');
  });

  test('fw4 without the port-forward accept: dropped in drop_to_lan, reached through jumps', () => {
    const [v] = forward('fw4-no-dnat', 'new');
    assert.equal(v!.verdict, 'drop');
    assert.equal(v!.by?.chain, 'drop_to_lan');
    assert.equal(v!.chain.name, 'forward');
  });

  test("only portd's table: no other forward chain", () => {
    assert.deepEqual(forward('accept-all', 'new'), []);
  });
});

describe('input chain: is a front-end port closed from the WAN?', () => {
  const wanPacket = (dport: number, l4proto: 'tcp' | 'udp') => (): PacketModel => ({
    iifname: 'wan0',
    l4proto,
    dport,
    daddr: '203.0.113.1',
    ctState: 'new',
    ctStatus: [],
    ctMark: 0,
  });

  test("portd's own input chain drops its front-end ports on the WAN, not others", () => {
    const rs = load('accept-all');
    const [v] = evaluateHook(rs, 'input', wanPacket(5000, 'tcp'));
    assert.equal(v!.verdict, 'drop');
    assert.equal(v!.by?.text, 'iifname "wan0" tcp dport { 5000, 8080 } drop');
    assert.equal(evaluateHook(rs, 'input', wanPacket(5351, 'udp'))[0]!.verdict, 'drop');
    assert.equal(evaluateHook(rs, 'input', wanPacket(5351, 'tcp'))[0]!.verdict, 'accept'); // tcp dport set is tcp only
    assert.equal(evaluateHook(rs, 'input', wanPacket(22, 'tcp'))[0]!.verdict, 'accept');
  });

  test('an input chain that accepts everything from the WAN', () => {
    const [v] = evaluateHook(load('input-open'), 'input', wanPacket(5000, 'tcp'));
    assert.equal(v!.verdict, 'accept');
    assert.equal(v!.by?.text, 'iifname "wan0" accept');
  });

  test('fw4 rejects WAN input through its zone chains; a LAN packet is accepted', () => {
    const rs = load('fw4-dnat');
    const [v] = evaluateHook(rs, 'input', wanPacket(5000, 'tcp'));
    assert.equal(v!.verdict, 'drop');
    assert.equal(v!.by?.chain, 'handle_reject');
    const [lan] = evaluateHook(rs, 'input', () => ({ ...wanPacket(5000, 'tcp')(), iifname: 'br0' }));
    assert.equal(lan!.verdict, 'accept');
  });
});

describe('rules the evaluator cannot read', () => {
  const rs = parseRuleset({
    nftables: [
      { table: { family: 'ip', name: 'filter' } },
      {
        chain: {
          family: 'ip',
          table: 'filter',
          name: 'FORWARD',
          type: 'filter',
          hook: 'forward',
          prio: 0,
          policy: 'drop',
        },
      },
      // iptables-nft: `-m conntrack --ctstatus DNAT -j ACCEPT` shows up as an opaque xt match
      {
        rule: {
          family: 'ip',
          table: 'filter',
          chain: 'FORWARD',
          handle: 5,
          expr: [{ xt: { type: 'match', name: 'conntrack' } }, { counter: { packets: 0, bytes: 0 } }, { accept: null }],
        },
      },
    ],
  });

  test('are remembered, so the drop that follows is not reported as certain', () => {
    const [v] = evaluateHook(rs, 'forward', forwarded('new'));
    assert.equal(v!.verdict, 'drop');
    assert.equal(v!.unknown.length, 1);
    assert.equal(v!.unknown[0]!.handle, 5);
  });

  test('ruleText renders them without throwing', () => {
    assert.equal(ruleText([{ xt: { type: 'match' } }, { accept: null }]), 'xt accept');
  });

  test('parseRuleset refuses what is not nft JSON', () => {
    assert.throws(() => parseRuleset({ tables: [] }), /not nft JSON/);
  });
});
