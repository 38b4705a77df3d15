import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NftPlanError } from '../../src/dataplane/model.js';
import { dataText, keyText } from '../../src/dataplane/nft-text.js';
import { parseTableJson, parseTablesJson } from '../../src/dataplane/nftables-listing.js';
import { NftModel, entryElements, planBatch, planReset } from '../../src/dataplane/nftables-plan.js';
import {
  asFile,
  asLine,
  renderExternalAddresses,
  renderInit,
  type RulesetOptions,
} from '../../src/dataplane/nftables-script.js';
import { flowDeleteArgs } from '../../src/dataplane/conntrack.js';
import { parseIpAddrJson } from '../../src/dataplane/external-address.js';
import type { DataplaneEntry } from '../../src/dataplane/types.js';
import { entryKey } from '../../src/dataplane/types.js';

const opts: RulesetOptions = {
  table: 'portd',
  wan: 'eth0',
  lan: ['br-lan'],
  hairpin: true,
  frontendPorts: { tcp: [5000, 8080], udp: [1900, 5351] },
};

function e(id: string, p: Partial<DataplaneEntry> & { externalPort: number }): DataplaneEntry {
  return {
    id,
    protocol: 'tcp',
    externalAddress: '198.51.100.7',
    externalPortEnd: p.externalPort,
    internalAddress: '192.168.1.20',
    internalPort: p.externalPort,
    remoteAddress: null,
    timeoutSeconds: 3605,
    ...p,
  };
}

describe('nft script generation', () => {
  test('init: the exact structure and rules', () => {
    assert.deepEqual(renderInit(opts), [
      'add table inet portd',
      'add map inet portd fwd4 { type inet_proto . inet_service : ipv4_addr . inet_service; flags timeout; }',
      'add map inet portd fwd4_range { type inet_proto . inet_service : ipv4_addr; flags interval,timeout; }',
      'add map inet portd fwd4_peer { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; ' +
        'flags timeout; }',
      'add set inet portd ext4 { type ipv4_addr; }',
      'add set inet portd live_tcp { type inet_service; flags timeout; }',
      'add set inet portd live_udp { type inet_service; flags timeout; }',
      'add set inet portd live_tcp_range { type inet_service; flags interval,timeout; }',
      'add set inet portd live_udp_range { type inet_service; flags interval,timeout; }',
      'add set inet portd pin6 { type ipv6_addr . inet_proto . inet_service; flags timeout; counter; }',
      'add set inet portd pin6_range { type ipv6_addr . inet_proto . inet_service; flags interval,timeout; counter; }',
      'add set inet portd pin6_peer { type ipv6_addr . ipv6_addr . inet_proto . inet_service; flags timeout; ' +
        'counter; }',
      'add set inet portd pin6_net { type ipv6_addr . ipv6_addr . inet_proto . inet_service; flags ' +
        'interval,timeout; counter; }',
      'add map inet portd snat4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; ' +
        'flags timeout; }',
      'add map inet portd snat4_range { type ipv4_addr . inet_proto . inet_service : ipv4_addr; ' +
        'flags interval,timeout; }',
      'add chain inet portd prerouting { type nat hook prerouting priority dstnat; policy accept; }',
      'add chain inet portd postrouting { type nat hook postrouting priority srcnat; policy accept; }',
      'add chain inet portd outbound { type nat hook postrouting priority srcnat - 10; policy accept; }',
      'add chain inet portd forward { type filter hook forward priority filter - 1; policy accept; }',
      'add chain inet portd input { type filter hook input priority filter - 1; policy accept; }',
      'flush chain inet portd prerouting',
      'flush chain inet portd postrouting',
      'flush chain inet portd outbound',
      'flush chain inet portd forward',
      'flush chain inet portd input',
      'add rule inet portd prerouting ip daddr @ext4 dnat ip to ip saddr . meta l4proto . th dport map @fwd4_peer',
      'add rule inet portd prerouting ip daddr @ext4 dnat ip to meta l4proto . th dport map @fwd4',
      'add rule inet portd prerouting ip daddr @ext4 dnat ip to meta l4proto . th dport map @fwd4_range',
      'add rule inet portd outbound oifname "eth0" snat ip to ip saddr . meta l4proto . th sport map @snat4',
      'add rule inet portd outbound oifname "eth0" snat ip to ip saddr . meta l4proto . th sport map @snat4_range',
      'add rule inet portd forward ct mark & 0x100 == 0x100 meta nfproto ipv4 meta l4proto tcp ct original ' +
        'proto-dst != @live_tcp ct original proto-dst != @live_tcp_range drop',
      'add rule inet portd forward ct mark & 0x100 == 0x100 meta nfproto ipv4 meta l4proto udp ct original ' +
        'proto-dst != @live_udp ct original proto-dst != @live_udp_range drop',
      'add rule inet portd forward ct mark & 0x100 == 0x100 ct direction original ip6 daddr . meta l4proto . th ' +
        'dport != @pin6 ip6 daddr . meta l4proto . th dport != @pin6_range ip6 saddr . ip6 daddr . meta l4proto . ' +
        'th dport != @pin6_peer ip6 saddr . ip6 daddr . meta l4proto . th dport != @pin6_net drop',
      'add rule inet portd forward ct mark & 0x100 == 0x100 ct direction reply ip6 saddr . meta l4proto . th ' +
        'sport != @pin6 ip6 saddr . meta l4proto . th sport != @pin6_range ip6 daddr . ip6 saddr . meta l4proto . ' +
        'th sport != @pin6_peer ip6 daddr . ip6 saddr . meta l4proto . th sport != @pin6_net drop',
      'add rule inet portd forward ct status dnat ct state new ct original ip daddr @ext4 meta l4proto tcp ct ' +
        'original proto-dst @live_tcp ct mark set ct mark | 0x100',
      'add rule inet portd forward ct status dnat ct state new ct original ip daddr @ext4 meta l4proto tcp ct ' +
        'original proto-dst @live_tcp_range ct mark set ct mark | 0x100',
      'add rule inet portd forward ct status dnat ct state new ct original ip daddr @ext4 meta l4proto udp ct ' +
        'original proto-dst @live_udp ct mark set ct mark | 0x100',
      'add rule inet portd forward ct status dnat ct state new ct original ip daddr @ext4 meta l4proto udp ct ' +
        'original proto-dst @live_udp_range ct mark set ct mark | 0x100',
      'add rule inet portd forward iifname "eth0" ct state new ip6 daddr . meta l4proto . th dport @pin6 ct mark ' +
        'set ct mark | 0x100',
      'add rule inet portd forward iifname "eth0" ct state new ip6 daddr . meta l4proto . th dport @pin6_range ' +
        'ct mark set ct mark | 0x100',
      'add rule inet portd forward iifname "eth0" ct state new ip6 saddr . ip6 daddr . meta l4proto . th dport ' +
        '@pin6_peer ct mark set ct mark | 0x100',
      'add rule inet portd forward iifname "eth0" ct state new ip6 saddr . ip6 daddr . meta l4proto . th dport ' +
        '@pin6_net ct mark set ct mark | 0x100',
      'add rule inet portd forward ct direction original ct mark & 0x100 == 0x100 ip6 daddr . meta l4proto . th ' +
        'dport @pin6',
      'add rule inet portd forward ct direction original ct mark & 0x100 == 0x100 ip6 daddr . meta l4proto . th ' +
        'dport @pin6_range',
      'add rule inet portd forward ct direction original ct mark & 0x100 == 0x100 ip6 saddr . ip6 daddr . meta ' +
        'l4proto . th dport @pin6_peer',
      'add rule inet portd forward ct direction original ct mark & 0x100 == 0x100 ip6 saddr . ip6 daddr . meta ' +
        'l4proto . th dport @pin6_net',
      'add rule inet portd forward iifname { "br-lan" } oifname { "br-lan" } ct state new ct mark & 0x100 == ' +
        '0x100 ct mark set ct mark | 0x200',
      'add rule inet portd postrouting ct mark & 0x200 == 0x200 masquerade',
      'add rule inet portd forward ct mark & 0x100 == 0x100 accept',
      'add rule inet portd input iifname "eth0" tcp dport { 5000, 8080 } drop',
      'add rule inet portd input iifname "eth0" udp dport { 1900, 5351 } drop',
    ]);
  });

  test('init without hairpin: LAN traffic to the external address is not redirected', () => {
    const cmds = renderInit({ ...opts, hairpin: false, frontendPorts: { tcp: [], udp: [] } });
    assert.ok(
      cmds.includes(
        'add rule inet portd prerouting iifname != { "br-lan" } ip daddr @ext4 dnat ip to meta l4proto . th ' +
          'dport map @fwd4',
      ),
    );
    assert.equal(
      cmds.some((c) => c.includes('masquerade') || c.includes('0x200') || c.includes('input iifname')),
      false,
    );
  });

  test('names that could inject nft syntax are refused', () => {
    assert.throws(() => renderInit({ ...opts, table: 'portd; flush ruleset' }), NftPlanError);
    assert.throws(() => renderInit({ ...opts, wan: 'eth0" accept' }), NftPlanError);
    assert.throws(() => renderExternalAddresses('portd', ['1.2.3.4 }; flush ruleset']), NftPlanError);
  });

  test('one new single-port lease: a plain add of the map and live elements', () => {
    const m = new NftModel();
    const plan = planBatch(
      'portd',
      m,
      { remove: [], add: [e('a', { externalPort: 8080, internalPort: 80 })] },
      1_000_000,
    );
    assert.equal(
      asFile(plan.commands),
      [
        'add element inet portd fwd4 { tcp . 8080 timeout 3605s : 192.168.1.20 . 80 }',
        'add element inet portd live_tcp { 8080 timeout 3605s }',
        // outbound: the internal endpoint leaves from its external one
        'add element inet portd snat4 { 192.168.1.20 . tcp . 80 timeout 3605s : 198.51.100.7 . 8080 }',
        '',
      ].join('\n'),
    );
    assert.deepEqual(plan.changes.delete, []);
    assert.deepEqual(
      plan.changes.set.map(([k]) => k),
      ['tcp/8080-8080/*'],
    );
  });

  test('a key whose model entry is past its deadline is touched first (the kernel may still hold it)', () => {
    const m = new NftModel();
    const a = e('a', { externalPort: 8080, internalPort: 80, timeoutSeconds: 5 });
    m.set(entryKey(a), { entry: a, deadline: 5000 });
    const plan = planBatch('portd', m, { remove: [], add: [{ ...a, id: 'b', timeoutSeconds: 60 }] }, 6000);
    assert.deepEqual(plan.commands, [
      'add element inet portd fwd4 { tcp . 8080 timeout 1s : 192.168.1.20 . 80 }',
      'add element inet portd live_tcp { 8080 timeout 1s }',
      'add element inet portd snat4 { 192.168.1.20 . tcp . 80 timeout 1s : 198.51.100.7 . 8080 }',
      'delete element inet portd fwd4 { tcp . 8080 }',
      'delete element inet portd live_tcp { 8080 }',
      'delete element inet portd snat4 { 192.168.1.20 . tcp . 80 }',
      'add element inet portd fwd4 { tcp . 8080 timeout 60s : 192.168.1.20 . 80 }',
      'add element inet portd live_tcp { 8080 timeout 60s }',
      'add element inet portd snat4 { 192.168.1.20 . tcp . 80 timeout 60s : 198.51.100.7 . 8080 }',
    ]);
  });

  test('a mixed tick: renewal, release, range, shifted range, peer filter, static', () => {
    const m = new NftModel();
    const old = e('r', { protocol: 'udp', externalPort: 3478, timeoutSeconds: 60 });
    const gone = e('g', { externalPort: 2222, internalPort: 22, internalAddress: '192.168.1.30' });
    m.set(entryKey(old), { entry: old, deadline: 50_000 });
    m.set(entryKey(gone), { entry: gone, deadline: 90_000 });
    const plan = planBatch(
      'portd',
      m,
      {
        remove: [old, gone],
        add: [
          { ...old, timeoutSeconds: 120 },
          e('range', { protocol: 'udp', externalPort: 6112, externalPortEnd: 6119 }),
          e('shift', { externalPort: 7000, externalPortEnd: 7001, internalPort: 9000 }),
          e('peer', { externalPort: 443, internalPort: 8443, remoteAddress: '203.0.113.9' }),
          e('static', { externalPort: 25, timeoutSeconds: null }),
        ],
      },
      10_000,
    );
    assert.deepEqual(plan.commands, [
      // pre-add of what is removed or renewed: a no-op when present, makes the delete safe when not
      'add element inet portd fwd4 { udp . 3478 timeout 1s : 192.168.1.20 . 3478, tcp . 2222 timeout 1s : ' +
        '192.168.1.30 . 22 }',
      'add element inet portd live_tcp { 2222 timeout 1s }',
      'add element inet portd live_udp { 3478 timeout 1s }',
      'add element inet portd snat4 { 192.168.1.20 . udp . 3478 timeout 1s : 198.51.100.7 . 3478, ' +
        '192.168.1.30 . tcp . 22 timeout 1s : 198.51.100.7 . 2222 }',
      'delete element inet portd fwd4 { udp . 3478, tcp . 2222 }',
      'delete element inet portd live_tcp { 2222 }',
      'delete element inet portd live_udp { 3478 }',
      'delete element inet portd snat4 { 192.168.1.20 . udp . 3478, 192.168.1.30 . tcp . 22 }',
      'add element inet portd fwd4 { udp . 3478 timeout 120s : 192.168.1.20 . 3478, tcp . 7000 timeout 3605s : ' +
        '192.168.1.20 . 9000, tcp . 7001 timeout 3605s : 192.168.1.20 . 9001, tcp . 25 : 192.168.1.20 . 25 }',
      'add element inet portd fwd4_range { udp . 6112-6119 timeout 3605s : 192.168.1.20 }',
      'add element inet portd fwd4_peer { 203.0.113.9 . tcp . 443 timeout 3605s : 192.168.1.20 . 8443 }',
      'add element inet portd live_tcp { 443 timeout 3605s, 25 }',
      'add element inet portd live_udp { 3478 timeout 120s }',
      'add element inet portd live_tcp_range { 7000-7001 timeout 3605s }',
      'add element inet portd live_udp_range { 6112-6119 timeout 3605s }',
      // outbound: per internal port (a shifted range expanded, like its dnat; a peer-filtered lease too: a filter
      // limits who comes in, not where the endpoint sends), a range that keeps its ports as one interval
      'add element inet portd snat4 { 192.168.1.20 . udp . 3478 timeout 120s : 198.51.100.7 . 3478, ' +
        '192.168.1.20 . tcp . 9000 timeout 3605s : 198.51.100.7 . 7000, 192.168.1.20 . tcp . 9001 timeout 3605s : ' +
        '198.51.100.7 . 7001, 192.168.1.20 . tcp . 8443 timeout 3605s : 198.51.100.7 . 443, ' +
        '192.168.1.20 . tcp . 25 : 198.51.100.7 . 25 }',
      'add element inet portd snat4_range { 192.168.1.20 . udp . 6112-6119 timeout 3605s : 198.51.100.7 }',
    ]);
    m.apply(plan.changes);
    assert.equal(m.size, 5);
    assert.equal(m.get('udp/3478-3478/*')?.deadline, 130_000);
    assert.equal(m.get('tcp/25-25/*')?.deadline, null);
  });

  test('a live port shared by two peer-filtered leases stays while one holder remains, with the longest timeout', () => {
    const m = new NftModel();
    const a = e('a', { externalPort: 5000, remoteAddress: '203.0.113.1', timeoutSeconds: 100 });
    const b = e('b', { externalPort: 5000, remoteAddress: '203.0.113.2', timeoutSeconds: 300 });
    let plan = planBatch('portd', m, { remove: [], add: [a, b] }, 0);
    assert.ok(plan.commands.includes('add element inet portd live_tcp { 5000 timeout 300s }'));
    m.apply(plan.changes);
    plan = planBatch('portd', m, { remove: [b], add: [] }, 50_000);
    assert.deepEqual(plan.commands.slice(-1), ['add element inet portd live_tcp { 5000 timeout 50s }']);
    m.apply(plan.changes);
    plan = planBatch('portd', m, { remove: [a], add: [] }, 60_000);
    assert.equal(
      plan.commands.some((c) => c.startsWith('add element inet portd live_tcp { 5000 timeout') && !c.includes('1s')),
      false,
    );
    assert.ok(plan.commands.includes('delete element inet portd live_tcp { 5000 }'));
  });

  test('adding a key the model holds is refused before nft runs', () => {
    const m = new NftModel();
    const a = e('a', { externalPort: 80 });
    m.set(entryKey(a), { entry: a, deadline: null });
    assert.throws(() => planBatch('portd', m, { remove: [], add: [{ ...a, id: 'b' }] }, 0), /exists/);
    assert.throws(() => planBatch('portd', m, { remove: [], add: [e('x', { externalPort: 0 })] }, 0), /bad port/);
    assert.throws(
      () => planBatch('portd', m, { remove: [], add: [e('x', { externalPort: 10, externalPortEnd: 5 })] }, 0),
      /bad range/,
    );
  });

  test('a removal of an element the kernel already expired cannot fail: it is added first', () => {
    const plan = planBatch('portd', new NftModel(), { remove: [e('late', { externalPort: 9000 })], add: [] }, 0);
    assert.deepEqual(plan.commands, [
      'add element inet portd fwd4 { tcp . 9000 timeout 1s : 192.168.1.20 . 9000 }',
      'add element inet portd live_tcp { 9000 timeout 1s }',
      'add element inet portd snat4 { 192.168.1.20 . tcp . 9000 timeout 1s : 198.51.100.7 . 9000 }',
      'delete element inet portd fwd4 { tcp . 9000 }',
      'delete element inet portd live_tcp { 9000 }',
      'delete element inet portd snat4 { 192.168.1.20 . tcp . 9000 }',
    ]);
  });

  test('reset: structure, flush and refill in one script; interactive form is one line', () => {
    const r = planReset(opts, [e('a', { externalPort: 80, timeoutSeconds: 10 })], 0);
    const tail = r.commands.slice(renderInit(opts).length);
    assert.deepEqual(tail, [
      'flush map inet portd fwd4',
      'flush map inet portd fwd4_range',
      'flush map inet portd fwd4_peer',
      'flush map inet portd snat4',
      'flush map inet portd snat4_range',
      'flush set inet portd live_tcp',
      'flush set inet portd live_udp',
      'flush set inet portd live_tcp_range',
      'flush set inet portd live_udp_range',
      'flush set inet portd pin6',
      'flush set inet portd pin6_range',
      'flush set inet portd pin6_peer',
      'flush set inet portd pin6_net',
      'add element inet portd fwd4 { tcp . 80 timeout 10s : 192.168.1.20 . 80 }',
      'add element inet portd live_tcp { 80 timeout 10s }',
      'add element inet portd snat4 { 192.168.1.20 . tcp . 80 timeout 10s : 198.51.100.7 . 80 }',
    ]);
    assert.equal(asLine(['a', 'b']), 'a; b');
    assert.deepEqual(renderExternalAddresses('portd', ['198.51.100.7']), [
      'flush set inet portd ext4',
      'add element inet portd ext4 { 198.51.100.7 }',
    ]);
  });

  test('a range with a port offset is expanded per port; a huge one is refused', () => {
    assert.equal(entryElements(e('s', { externalPort: 100, externalPortEnd: 102, internalPort: 200 }), 5).length, 3);
    assert.throws(
      () =>
        planBatch(
          'portd',
          new NftModel(),
          { remove: [], add: [e('s', { externalPort: 1000, externalPortEnd: 60000, internalPort: 1001 })] },
          0,
        ),
      /exceeds/,
    );
  });
});

describe('parsing nft and ip output', () => {
  test('nft -j list table: elements of our maps and sets, with expiry', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'inet', name: 'portd', handle: 7 } },
        {
          map: {
            family: 'inet',
            name: 'fwd4',
            table: 'portd',
            elem: [
              [
                { elem: { val: { concat: ['tcp', 8080] }, timeout: 30, expires: 29 } },
                { concat: ['192.168.77.11', 80] },
              ],
              [{ concat: ['udp', 25] }, { concat: ['192.168.77.12', 25] }],
            ],
          },
        },
        {
          map: {
            family: 'inet',
            name: 'fwd4_range',
            table: 'portd',
            elem: [
              [
                { elem: { val: { concat: ['tcp', { range: [6113, 6119] }] }, timeout: 20, expires: 19 } },
                '192.168.77.11',
              ],
            ],
          },
        },
        { set: { family: 'inet', name: 'ext4', table: 'portd', elem: ['203.0.113.1'] } },
        {
          set: {
            family: 'inet',
            name: 'live_tcp',
            table: 'portd',
            elem: [{ elem: { val: 8080, timeout: 30, expires: 29 } }],
          },
        },
        { set: { family: 'inet', name: 'other', table: 'portd', elem: [1] } },
        {
          map: {
            family: 'inet',
            name: 'fwd4',
            table: 'notours',
            elem: [[{ concat: ['tcp', 1] }, { concat: ['10.0.0.1', 1] }]],
          },
        },
      ],
    });
    const t = parseTableJson(json, 'portd');
    assert.ok(t);
    const asText = t.elements.map((el) => ({
      set: el.set,
      key: keyText(el),
      data: dataText(el.data),
      expires: el.expires,
    }));
    assert.deepEqual(
      { handle: t.handle, ext4: t.ext4, elements: asText, foreign: t.foreign },
      {
        handle: 7,
        ext4: ['203.0.113.1'],
        foreign: 0,
        elements: [
          { set: 'fwd4', key: 'tcp . 8080', data: '192.168.77.11 . 80', expires: 29 },
          { set: 'fwd4', key: 'udp . 25', data: '192.168.77.12 . 25', expires: null },
          { set: 'fwd4_range', key: 'tcp . 6113-6119', data: '192.168.77.11', expires: 19 },
          { set: 'live_tcp', key: '8080', data: null, expires: 29 },
        ],
      },
    );
    assert.equal(
      parseTablesJson(
        JSON.stringify({
          nftables: [
            { table: { family: 'ip', name: 'portd', handle: 1 } },
            { table: { family: 'inet', name: 'portd', handle: 4 } },
          ],
        }),
        'portd',
      ),
      4,
    );
    assert.equal(parseTablesJson(JSON.stringify({ nftables: [] }), 'portd'), null);
  });

  test('ip -j addr: global IPv4 addresses, primary first', () => {
    const json = JSON.stringify([
      {
        ifname: 'eth0',
        addr_info: [
          { family: 'inet', local: '198.51.100.9', scope: 'global', secondary: true },
          { family: 'inet6', local: '2001:db8::1', scope: 'global' },
          { family: 'inet', local: '198.51.100.7', scope: 'global' },
          { family: 'inet', local: '169.254.1.1', scope: 'link' },
        ],
      },
    ]);
    assert.deepEqual(parseIpAddrJson(json), ['198.51.100.7', '198.51.100.9']);
  });

  test('conntrack -D arguments per port, peer filter kept, duplicates dropped', () => {
    assert.deepEqual(
      flowDeleteArgs([
        e('a', { protocol: 'udp', externalPort: 3478 }),
        e('b', { externalPort: 443, remoteAddress: '203.0.113.9' }),
        e('c', { externalPort: 7000, externalPortEnd: 7001 }),
        e('a2', { protocol: 'udp', externalPort: 3478 }),
      ]),
      [
        ['-D', '-f', 'ipv4', '-p', 'udp', '--orig-dst', '198.51.100.7', '--orig-port-dst', '3478'],
        [
          '-D',
          '-f',
          'ipv4',
          '-p',
          'tcp',
          '--orig-dst',
          '198.51.100.7',
          '--orig-port-dst',
          '443',
          '--orig-src',
          '203.0.113.9',
        ],
        ['-D', '-f', 'ipv4', '-p', 'tcp', '--orig-dst', '198.51.100.7', '--orig-port-dst', '7000'],
        ['-D', '-f', 'ipv4', '-p', 'tcp', '--orig-dst', '198.51.100.7', '--orig-port-dst', '7001'],
      ],
    );
  });
});
