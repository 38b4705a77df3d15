/**
 * Port triggering for IPv6 LAN hosts (issue 15 item 7) on a real lease table (temp SQLite, memory dataplane,
 * fixed clock) and the memory trigger kernel: an IPv6 firing opens the rule's ranges as pinholes (family 6,
 * source trigger) to that host, each host its own; idleness, maxLifetime and hosts apply as for IPv4;
 * link-local and other non-targets, and any IPv6 host with policy.ipv6Pinholes off, open nothing (metric).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostAllowed } from '../../src/triggers/rules.js';
import { parseConfig } from '../../src/config/index.js';
import { triggerSetups } from '../helpers/triggers.js';

const A6 = '2001:db8:77::11';
const B6 = '2001:db8:77::12';
const A4 = '192.168.77.11';
const settle = () => new Promise((r) => setTimeout(r, 20));

const GAME = `
  - name: game
    match: { protocol: udp, ports: "6112" }
    open: [{ protocol: tcp, ports: "6113-6119" }, { protocol: udp, ports: "6120" }]
    idleTimeout: 60
`;

const setup = triggerSetups(GAME);

const metric = async (s: ReturnType<typeof setup>) =>
  s.metrics.registry.getSingleMetricAsString('portd_trigger_firings_total');

describe('IPv6 trigger firings open pinholes', () => {
  it('a kernel flow from an IPv6 host opens every range as family-6 trigger leases to it (no translation)', async () => {
    const s = setup();
    await s.m.start();
    const id = s.kernel.rules[0]!.id;
    // conntrack's spelling may differ from the canonical one: the lease is stored canonical
    s.flows.push({
      ruleId: id,
      protocol: 'udp',
      host: '2001:DB8:77:0::11',
      dst: '2001:db8:113::2',
      dport: 6112,
      at: 0,
    });
    for (let i = 0; i < 50 && s.table.list({ source: 'trigger' }).total < 2; i++) await settle();
    const ls = s.table.list({ source: 'trigger' }).leases.sort((a, b) => a.externalPort - b.externalPort);
    assert.equal(ls.length, 2);
    for (const l of ls) {
      assert.equal(l.family, 6);
      assert.equal(l.source, 'trigger');
      assert.equal(l.rule, 'game');
      assert.equal(l.owner, A6);
      assert.equal(l.internalAddress, A6);
      assert.equal(l.externalAddress, A6, 'no translation');
      assert.equal(l.expiresAt, s.clock.now() + 60_000);
    }
    assert.deepEqual(
      ls.map((l) => [l.protocol, l.externalPort, l.externalPortEnd, l.internalPort]),
      [
        ['tcp', 6113, 6119, 6113],
        ['udp', 6120, 6120, 6120],
      ],
    );
    // the dataplane got pinhole entries (family 6), no IPv4 mapping
    const entries = [...s.dataplane.entries.values()];
    assert.equal(entries.length, 2);
    assert.ok(
      entries.every((e) => e.family === 6 && e.internalAddress === A6),
      JSON.stringify(entries),
    );
    assert.equal(s.m.get('game')!.holder, A6);
    assert.match(await metric(s), /rule="game",result="granted"\} 1/);
  });

  it('a second IPv6 host on the same rule gets its own pinholes; an IPv4 host still gets the DNAT mapping', async () => {
    const s = setup();
    await s.m.start();
    assert.ok((await s.m.fire('game', A6, 'admin:test')).ok);
    const b = await s.m.fire('game', B6, 'admin:test');
    assert.ok(b.ok, JSON.stringify(b));
    assert.equal(b.result, 'granted');
    const a4 = await s.m.fire('game', A4, 'admin:test');
    assert.ok(a4.ok, JSON.stringify(a4));
    const ls = s.table.list({ source: 'trigger' }).leases;
    assert.equal(ls.length, 6);
    assert.deepEqual(
      [...new Set(ls.map((l) => `${l.family}/${l.owner}`))].sort(),
      [`4/${A4}`, `6/${A6}`, `6/${B6}`].sort(),
    );
    assert.deepEqual(
      s.m
        .holdings()
        .map((h) => h.host)
        .sort(),
      [A4, A6, B6].sort(),
    );
  });

  it('idle: activity from the IPv6 set moves expiresAt; silence closes the pinholes (expired in history)', async () => {
    const s = setup();
    await s.m.start();
    const t0 = s.clock.now();
    const r = await s.m.fire('game', A6, 'admin:test');
    assert.ok(r.ok);
    const id = r.leases[0]!.id;
    s.clock.advance(40_000);
    await s.kernel.touch('game', A6, 60);
    await s.m.poll();
    assert.equal(s.table.get(id)!.expiresAt, t0 + 100_000, 'follows the last packet');
    s.clock.advance(60_000);
    await settle();
    assert.equal(s.table.get(id)!.state, 'ended');
    assert.equal(s.table.get(id)!.endReason, 'expired');
    assert.deepEqual(
      s.table.history(id).map((h) => h.type),
      ['granted', 'renewed', 'expired'],
    );
    assert.equal(s.dataplane.entries.size, 0);
  });

  it('the memory kernel reports activity per family', async () => {
    const s = setup();
    await s.kernel.touch('game', A4, 10);
    await s.kernel.touch('game', '2001:DB8:77::11', 10);
    assert.deepEqual([...(await s.kernel.activity(['game'], 4)).get('game')!.keys()], [A4]);
    assert.deepEqual([...(await s.kernel.activity(['game'], 6)).get('game')!.keys()], [A6]);
  });

  it('maxLifetime caps an IPv6 opening too', async () => {
    const s = setup(`
  - name: capped
    match: { protocol: udp, ports: "6112" }
    open: [{ protocol: udp, ports: "6200" }]
    idleTimeout: 30
    maxLifetime: 45
`);
    await s.m.start();
    const t0 = s.clock.now();
    const r = await s.m.fire('capped', A6, 'admin:test');
    assert.ok(r.ok);
    s.clock.advance(20_000);
    await s.kernel.touch('capped', A6, 30);
    s.clock.advance(9_000);
    await s.m.poll();
    assert.equal(s.table.get(r.leases[0]!.id)!.expiresAt, t0 + 45_000);
  });

  it('link-local, loopback and multicast hosts open nothing (refusal, metric, counter)', async () => {
    const s = setup();
    await s.m.start();
    for (const h of ['fe80::11', '::1', 'ff02::1', '::ffff:192.168.77.11']) {
      const r = await s.m.fire('game', h, 'admin:test');
      assert.equal(r.ok, false, h);
      assert.equal(r.result, 'not_target', h);
    }
    assert.equal(s.table.list({ source: 'trigger', state: 'all' }).total, 0);
    assert.match(await metric(s), /rule="game",result="not_target"\} 4/);
    assert.equal(s.m.get('game')!.counters.refused, 4);
  });

  it('policy.ipv6Pinholes false: IPv6 firings are refused, IPv4 ones still open', async () => {
    const s = setup(GAME, { extra: 'policy: { ipv6Pinholes: false }\n' });
    await s.m.start();
    const r = await s.m.fire('game', A6, 'admin:test');
    assert.equal(r.result, 'pinholes_off');
    assert.equal(s.table.list({ source: 'trigger' }).total, 0);
    assert.match(await metric(s), /rule="game",result="pinholes_off"\} 1/);
    assert.ok((await s.m.fire('game', A4, 'admin:test')).ok);
  });

  it('hosts takes IPv6 prefixes and addresses (canonical); a network matches its own family only', async () => {
    const s = setup(`
  - name: only6
    match: { protocol: udp, ports: "6112" }
    open: [{ protocol: udp, ports: "6300" }]
    idleTimeout: 30
    hosts: ["2001:DB8:77:0::/64", "fd00::5"]
`);
    assert.deepEqual(s.cfg.triggers[0]!.hosts, ['2001:db8:77::/64', 'fd00::5/128']);
    await s.m.start();
    assert.deepEqual(s.kernel.rules[0]!.hosts, ['2001:db8:77::/64', 'fd00::5/128']);
    assert.ok((await s.m.fire('only6', A6, 'admin:test')).ok);
    assert.ok((await s.m.fire('only6', 'fd00::5', 'admin:test')).ok);
    assert.equal((await s.m.fire('only6', 'fd00::6', 'admin:test')).result, 'not_allowed');
    assert.equal((await s.m.fire('only6', '2001:db8:78::1', 'admin:test')).result, 'not_allowed');
    assert.equal((await s.m.fire('only6', A4, 'admin:test')).result, 'not_allowed');
    const t = s.cfg.triggers[0]!;
    assert.equal(hostAllowed({ ...t, hosts: ['192.168.77.0/24'] }, A6), false);
    assert.equal(hostAllowed({ ...t, hosts: ['192.168.77.0/24', '2001:db8:77::/64'] }, A4), true);
  });

  it('hosts refuses host bits beyond the prefix and non-addresses, naming the key', () => {
    const bad = (h: string) => {
      try {
        parseConfig(
          'dataplane: { driver: memory }\ntriggers:\n  - name: x\n    match: { protocol: udp, ports: "1" }\n' +
            `    open: [{ protocol: udp, ports: "2" }]\n    hosts: ["${h}"]\n`,
        );
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    };
    assert.match(bad('2001:db8:77::11/64'), /triggers\[0\]\.hosts\[0\].*did you mean 2001:db8:77::\/64/s);
    assert.match(bad('fe80::1%eth0'), /triggers\[0\]\.hosts\[0\]/);
    assert.match(bad('2001:db8::/129'), /triggers\[0\]\.hosts\[0\]/);
  });
});
