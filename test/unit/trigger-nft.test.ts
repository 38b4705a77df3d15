/**
 * The kernel side of triggers as text: the chain and sets (kept apart from the driver's four chains),
 * ct mark encoding (bits 0x100/0x200 untouched), activity parsing, conntrack event parsing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FORWARD_CT_MARK,
  TRIGGER_CT_FLAG,
  TriggerPlanError,
  parseActivity,
  parseNftDuration,
  renderTouch,
  renderTriggers,
  triggerIdOfMark,
  triggerMark,
} from '../../src/dataplane/nftables-triggers.js';
import type { TriggerKernelRule } from '../../src/dataplane/trigger-kernel.js';
import { PORTD_CT_MARK, PORTD_CT_MARK_HAIRPIN, renderInit } from '../../src/dataplane/nftables-script.js';
import { parseConntrackEvent } from '../../src/dataplane/conntrack-flows.js';
import { assignIds, hostAllowed } from '../../src/triggers/rules.js';
import { parseConfig } from '../../src/config/index.js';

const io = { table: 'portd', wan: 'wan0', lan: ['br0'] };
const game: TriggerKernelRule = {
  name: 'game',
  id: 1,
  match: { protocol: 'udp', ports: [{ start: 6112, end: 6112 }] },
  open: [
    { protocol: 'tcp', ports: { start: 6113, end: 6119 } },
    { protocol: 'udp', ports: { start: 6113, end: 6119 } },
  ],
  hosts: [],
  idleTimeout: 600,
};

describe('trigger ruleset text', () => {
  it('renders its own chain and one dynamic set per rule', () => {
    assert.deepEqual(renderTriggers(io, [game]), [
      'add chain inet portd triggers { type filter hook forward priority filter - 2; policy accept; }',
      'flush chain inet portd triggers',
      'add set inet portd trig_game_active { type ipv4_addr; flags dynamic,timeout; size 4096; }',
      'add set inet portd trig_game_active6 { type ipv6_addr; flags dynamic,timeout; size 4096; }',
      'add rule inet portd triggers iifname { "br0" } oifname "wan0" meta l4proto udp th dport { 6112 } update ' +
        '@trig_game_active { ip saddr timeout 600s } ct state new ct mark set ct mark | 0x00010400',
      'add rule inet portd triggers iifname "wan0" ct mark & 0x0fff0400 == 0x00010400 update @trig_game_active { ' +
        'ip daddr timeout 600s }',
      'add rule inet portd triggers iifname "wan0" ct status dnat meta l4proto tcp th dport { 6113-6119 } update ' +
        '@trig_game_active { ip daddr timeout 600s }',
      'add rule inet portd triggers iifname { "br0" } ct status dnat meta l4proto tcp th sport { 6113-6119 } ' +
        'update @trig_game_active { ip saddr timeout 600s }',
      'add rule inet portd triggers iifname "wan0" ct status dnat meta l4proto udp th dport { 6113-6119 } update ' +
        '@trig_game_active { ip daddr timeout 600s }',
      'add rule inet portd triggers iifname { "br0" } ct status dnat meta l4proto udp th sport { 6113-6119 } ' +
        'update @trig_game_active { ip saddr timeout 600s }',
      // IPv6 hosts (issue 15): their own set; the openings are pinholes, known by the forwarding bit 0x100
      'add rule inet portd triggers iifname { "br0" } oifname "wan0" meta l4proto udp th dport { 6112 } update ' +
        '@trig_game_active6 { ip6 saddr timeout 600s } ct state new ct mark set ct mark | 0x00010400',
      'add rule inet portd triggers iifname "wan0" ct mark & 0x0fff0400 == 0x00010400 update @trig_game_active6 { ' +
        'ip6 daddr timeout 600s }',
      'add rule inet portd triggers iifname "wan0" ct mark & 0x00000100 == 0x00000100 meta l4proto tcp th dport ' +
        '{ 6113-6119 } update @trig_game_active6 { ip6 daddr timeout 600s }',
      'add rule inet portd triggers iifname { "br0" } ct mark & 0x00000100 == 0x00000100 meta l4proto tcp th ' +
        'sport { 6113-6119 } update @trig_game_active6 { ip6 saddr timeout 600s }',
      'add rule inet portd triggers iifname "wan0" ct mark & 0x00000100 == 0x00000100 meta l4proto udp th dport ' +
        '{ 6113-6119 } update @trig_game_active6 { ip6 daddr timeout 600s }',
      'add rule inet portd triggers iifname { "br0" } ct mark & 0x00000100 == 0x00000100 meta l4proto udp th ' +
        'sport { 6113-6119 } update @trig_game_active6 { ip6 saddr timeout 600s }',
    ]);
    assert.equal(FORWARD_CT_MARK, PORTD_CT_MARK, 'the bit the forward chain sets on the flows portd lets in');
  });

  it('IPv6 hosts: ip6 saddr for IPv6 networks; a hosts list of one family leaves out the other firing rule', () => {
    const fire = (cmds: string[], set: string) =>
      cmds.filter((c) => c.includes('oifname "wan0"') && c.includes(`update @${set} `));
    const mixed = renderTriggers(io, [{ ...game, hosts: ['192.168.77.0/24', '2001:db8:77::/64'] }]);
    assert.deepEqual(
      fire(mixed, 'trig_game_active').map((c) => /(ip6? saddr \{[^}]*\})/.exec(c)?.[1]),
      ['ip saddr { 192.168.77.0/24 }'],
    );
    assert.deepEqual(
      fire(mixed, 'trig_game_active6').map((c) => /(ip6? saddr \{[^}]*\})/.exec(c)?.[1]),
      ['ip6 saddr { 2001:db8:77::/64 }'],
    );
    const only6 = renderTriggers(io, [{ ...game, hosts: ['2001:db8:77::11/128'] }]);
    assert.equal(fire(only6, 'trig_game_active').length, 0, 'no IPv4 host may fire');
    assert.equal(fire(only6, 'trig_game_active6').length, 1);
    const only4 = renderTriggers(io, [{ ...game, hosts: ['192.168.77.0/24'] }]);
    assert.equal(fire(only4, 'trig_game_active6').length, 0, 'no IPv6 host may fire');
    // not canonical, host bits, zones: refused before they reach the script
    for (const h of ['2001:DB8::/64', '2001:db8::1/64', 'fe80::1%eth0', '2001:db8::/129', '::1 } accept'])
      assert.throws(() => renderTriggers(io, [{ ...game, hosts: [h] }]), TriggerPlanError, h);
    // a dropped rule loses both its sets
    const cmds = renderTriggers(io, [], ['game']);
    assert.ok(cmds.includes('delete set inet portd trig_game_active6'));
    assert.ok(cmds.includes('delete set inet portd trig_game_active'));
  });

  it('limits firing to the rule hosts, matches both protocols, removes sets of dropped rules after the flush', () => {
    const r: TriggerKernelRule = {
      ...game,
      name: 'x',
      id: 7,
      match: {
        protocol: 'both',
        ports: [
          { start: 7000, end: 7010 },
          { start: 7100, end: 7100 },
        ],
      },
      hosts: ['192.168.77.0/24'],
    };
    const cmds = renderTriggers(io, [r], ['game']);
    assert.ok(
      cmds.includes(
        'add rule inet portd triggers iifname { "br0" } oifname "wan0" ip saddr { 192.168.77.0/24 } meta l4proto ' +
          '{ tcp, udp } th dport { 7000-7010, 7100 } update @trig_x_active { ip saddr timeout 600s } ct state new ' +
          'ct mark set ct mark | 0x00070400',
      ),
    );
    const flush = cmds.indexOf('flush chain inet portd triggers');
    const del = cmds.indexOf('delete set inet portd trig_game_active');
    assert.ok(flush >= 0 && del > flush);
  });

  it('the driver renders triggers only when given (its own chains untouched), and never flushes the trigger sets', () => {
    const base = { table: 'portd', wan: 'wan0', lan: ['br0'], hairpin: true, frontendPorts: { tcp: [], udp: [] } };
    const plain = renderInit(base);
    assert.ok(!plain.some((c) => c.includes('triggers')));
    const withT = renderInit({ ...base, triggers: [game] });
    assert.deepEqual(withT.slice(0, plain.length), plain);
    assert.ok(withT.includes('flush chain inet portd triggers'));
    assert.ok(!withT.some((c) => /flush set .*trig_/.test(c)));
  });

  it('ct marks use the flag 0x400 and bits 16-27, never the forwarding bits', () => {
    for (const id of [1, 77, 4095]) {
      const m = triggerMark(id);
      assert.equal(m & PORTD_CT_MARK, 0);
      assert.equal(m & PORTD_CT_MARK_HAIRPIN, 0);
      assert.equal(m & TRIGGER_CT_FLAG, TRIGGER_CT_FLAG);
      assert.equal(triggerIdOfMark(m | PORTD_CT_MARK | PORTD_CT_MARK_HAIRPIN), id);
    }
    assert.equal(triggerIdOfMark(0x100), null);
  });

  it('refuses names and values that would inject into the script', () => {
    assert.throws(() => renderTriggers(io, [{ ...game, name: 'a; flush ruleset' }]), TriggerPlanError);
    assert.throws(() => renderTriggers(io, [{ ...game, hosts: ['1.2.3.4 } accept'] }]), TriggerPlanError);
    assert.throws(() => renderTriggers(io, [game, { ...game, name: 'b' }]), TriggerPlanError); // same id
    assert.throws(() => renderTouch('portd', 'game', '1.2.3.4; flush', 5), TriggerPlanError);
  });

  it('touching an IPv6 host writes its canonical address into the IPv6 set', () => {
    assert.deepEqual(renderTouch('portd', 'game', '2001:DB8:77:0::11', 5), [
      'add element inet portd trig_game_active6 { 2001:db8:77::11 timeout 5s }',
      'delete element inet portd trig_game_active6 { 2001:db8:77::11 }',
      'add element inet portd trig_game_active6 { 2001:db8:77::11 timeout 5s }',
    ]);
  });

  it('touching a host re-adds its element with a fresh timeout', () => {
    assert.deepEqual(renderTouch('portd', 'game', '192.168.77.11', 4.2), [
      'add element inet portd trig_game_active { 192.168.77.11 timeout 5s }',
      'delete element inet portd trig_game_active { 192.168.77.11 }',
      'add element inet portd trig_game_active { 192.168.77.11 timeout 5s }',
    ]);
  });
});

describe('reading activity', () => {
  it('parses nft durations and set listings with milliseconds', () => {
    assert.equal(parseNftDuration('5s692ms'), 5692);
    assert.equal(parseNftDuration('59m59s980ms'), 3_599_980);
    assert.equal(parseNftDuration('1d2h'), 93_600_000);
    assert.equal(parseNftDuration('soon'), null);
    const text = `table inet portd {
\tset trig_game_active {
\t\ttype ipv4_addr
\t\tsize 4096
\t\tflags dynamic,timeout
\t\telements = { 192.168.77.11 timeout 10s expires 7s12ms,
\t\t\t     192.168.77.12 timeout 10s expires 980ms }
\t}
}`;
    assert.deepEqual(
      [...parseActivity(text)],
      [
        ['192.168.77.11', 7012],
        ['192.168.77.12', 980],
      ],
    );
    assert.equal(parseActivity('table inet portd {\n\tset trig_game_active {\n\t\ttype ipv4_addr\n\t}\n}').size, 0);
  });

  it('parses an IPv6 activity set (canonical text)', () => {
    const text = `table inet portd {
\tset trig_game_active6 {
\t\ttype ipv6_addr
\t\tsize 4096
\t\tflags dynamic,timeout
\t\telements = { 2001:db8:77::11 timeout 10s expires 7s12ms,
\t\t\t     2001:db8:77:0:5c1e:a9f3:7b20:d411 timeout 10s expires 980ms }
\t}
}`;
    assert.deepEqual(
      [...parseActivity(text)],
      [
        ['2001:db8:77::11', 7012],
        ['2001:db8:77:0:5c1e:a9f3:7b20:d411', 980],
      ],
    );
  });

  it('parses conntrack NEW events of IPv6 flows (conntrack -E reports both families without -f)', () => {
    // conntrack-tools 1.4.7 in the lab gateway: the same layout as IPv4, IPv6 addresses
    const udp =
      '[1796665381.889791]\t    [NEW] udp      17 30 src=2001:db8:77::11 dst=2001:db8:113::2 sport=44425 ' +
      'dport=7777 [UNREPLIED] src=2001:db8:113::2 dst=2001:db8:77::11 sport=7777 dport=44425 mark=66560';
    assert.deepEqual(parseConntrackEvent(udp, 0), {
      ruleId: 1,
      protocol: 'udp',
      host: '2001:db8:77::11',
      dst: '2001:db8:113::2',
      dport: 7777,
      at: 1796665381889,
    });
    const tcp =
      '    [NEW] tcp      6 120 SYN_SENT src=2001:db8:77:0:0:0:0:12 dst=2001:db8:113::2 sport=38560 dport=7777 ' +
      '[UNREPLIED] src=2001:db8:113::2 dst=2001:db8:77::12 sport=7777 dport=38560 mark=66560';
    assert.equal(parseConntrackEvent(tcp, 5)?.host, '2001:db8:77::12', 'canonical');
    assert.equal(parseConntrackEvent(tcp.replace('src=2001:db8:77:0:0:0:0:12', 'src=zz::1'), 5), null);
  });

  it('parses conntrack NEW events of marked flows', () => {
    const line =
      '[1767225600.123456]\t    [NEW] udp      17 30 src=192.168.77.11 dst=203.0.113.2 sport=40000 dport=6112 ' +
      '[UNREPLIED] src=203.0.113.2 dst=203.0.113.1 sport=6112 dport=40000 mark=66560';
    assert.deepEqual(parseConntrackEvent(line, 0), {
      ruleId: 1,
      protocol: 'udp',
      host: '192.168.77.11',
      dst: '203.0.113.2',
      dport: 6112,
      at: 1767225600123,
    });
    const tcp =
      '    [NEW] tcp      6 120 SYN_SENT src=192.168.77.12 dst=203.0.113.2 sport=5555 dport=6667 [UNREPLIED] ' +
      'src=203.0.113.2 dst=192.168.77.12 sport=6667 dport=5555 mark=' +
      (triggerMark(9) | 0x100);
    assert.equal(parseConntrackEvent(tcp, 42)?.ruleId, 9);
    assert.equal(parseConntrackEvent(tcp, 42)?.at, 42);
    assert.equal(parseConntrackEvent(line.replace('mark=66560', 'mark=256'), 0), null, 'not a trigger mark');
    assert.equal(parseConntrackEvent(line.replace('[NEW]', '[DESTROY]'), 0), null);
    assert.equal(parseConntrackEvent('conntrack v1.4.7 (conntrack-tools): 0 flow events have been shown.', 0), null);
  });
});

describe('rule helpers', () => {
  it('ids stay with their names and never collide', () => {
    const a = assignIds(['game', 'irc', 'x']);
    assert.equal(new Set(a.values()).size, 3);
    const b = assignIds(['irc', 'x', 'new'], a);
    assert.equal(b.get('irc'), a.get('irc'));
    assert.equal(b.get('x'), a.get('x'));
    assert.equal(new Set(b.values()).size, 3);
  });

  it('hosts networks decide who may fire; presets parse by name from the config', () => {
    const cfg = parseConfig(
      'dataplane: { driver: memory }\ninterfaces: { wan: lo, lan: [lo] }\nexternalAddress: ' +
        '203.0.113.1\ntriggers: [{ preset: battlenet, hosts: [192.168.77.8/29] }, { preset: irc-ident }]\n',
    );
    const [bn, irc] = cfg.triggers;
    assert.equal(bn!.name, 'battlenet');
    assert.deepEqual(
      bn!.open.map((o) => o.protocol),
      ['tcp', 'udp'],
    );
    assert.equal(hostAllowed(bn!, '192.168.77.11'), true);
    assert.equal(hostAllowed(bn!, '192.168.77.1'), false);
    assert.equal(hostAllowed(irc!, '10.0.0.1'), true);
  });
});
