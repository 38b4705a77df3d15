/**
 * Trigger manager on a real lease table (temp SQLite, memory dataplane, fixed clock) with the memory
 * trigger kernel: firings become leases, one host at a time, all ranges or none, idleness follows
 * the activity the kernel reports, API rules persist, config rules are read-only.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { httpStatus } from '../../src/errors.js';
import { triggerConfig, triggerSetups } from '../helpers/triggers.js';

const A = '192.168.77.11';
const B = '192.168.77.12';
const settle = () => new Promise((r) => setTimeout(r, 20));

const GAME = `
  - name: game
    match: { protocol: udp, ports: "6112" }
    open: [{ protocol: tcp, ports: "6113-6119" }, { protocol: udp, ports: "6113-6119" }]
    idleTimeout: 60
`;

const setup = triggerSetups(GAME);

describe('trigger firing', () => {
  it('a firing opens every range to the host as trigger leases named after the rule', async () => {
    const s = setup();
    await s.m.start();
    assert.deepEqual(
      s.kernel.rules.map((r) => r.name),
      ['game'],
    );
    const r = await s.m.fire('game', A, 'admin:test');
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.result, 'granted');
    const active = s.table.list({ source: 'trigger' }).leases;
    assert.equal(active.length, 2);
    for (const l of active) {
      assert.equal(l.rule, 'game');
      assert.equal(l.owner, A);
      assert.equal(l.internalAddress, A);
      assert.equal(l.externalPort, 6113);
      assert.equal(l.externalPortEnd, 6119);
      assert.equal(l.internalPort, 6113);
      assert.equal(l.expiresAt, s.clock.now() + 60_000);
    }
    // in the dataplane: two range entries
    assert.deepEqual([...s.dataplane.entries.keys()].sort(), ['tcp/6113-6119/*', 'udp/6113-6119/*']);
    const v = s.m.get('game')!;
    assert.equal(v.state, 'held');
    assert.equal(v.holder, A);
    assert.equal(v.until, s.clock.now() + 60_000);
    assert.equal(v.counters.fired, 1);
  });

  it('a kernel flow (conntrack event) fires the rule named by its mark', async () => {
    const s = setup();
    await s.m.start();
    const id = s.kernel.rules[0]!.id;
    s.flows.push({ ruleId: id, protocol: 'udp', host: A, dst: '203.0.113.2', dport: 6112, at: Date.now() });
    for (let i = 0; i < 50 && s.table.list({ source: 'trigger' }).total < 2; i++) await settle();
    assert.equal(s.table.list({ source: 'trigger' }).total, 2);
    assert.equal(s.m.get('game')!.holder, A);
  });

  it('host B is refused while A holds, with an event and a counter naming the holder; after A ends, B wins', async () => {
    const s = setup();
    await s.m.start();
    assert.ok((await s.m.fire('game', A, 'admin:test')).ok);
    const refused = await s.m.fire('game', B, 'admin:test');
    assert.equal(refused.ok, false);
    assert.equal(refused.result, 'conflict');
    assert.ok(refused.result === 'conflict' && refused.holder.owner === A && refused.holder.source === 'trigger');
    const ev = s.events.filter((e) => e.type === 'refused');
    assert.ok(ev.length >= 1);
    assert.match(ev[0]!.reason ?? '', new RegExp(`held by trigger lease \\w+ of ${A.replace(/\./g, '\\.')}`));
    assert.equal(ev[0]!.owner, B);
    const v = s.m.get('game')!;
    assert.equal(v.counters.refused, 1);
    assert.equal(v.lastRefusal?.host, B);
    assert.equal(v.lastRefusal?.holder?.owner, A);
    const metric = await s.metrics.registry.getSingleMetricAsString('portd_trigger_firings_total');
    assert.match(metric, /portd_trigger_firings_total\{rule="game",result="conflict"\} 1/);
    assert.match(metric, /portd_trigger_firings_total\{rule="game",result="granted"\} 1/);
    // A's kernel entries stay A's
    assert.ok([...s.dataplane.entries.values()].every((e) => e.internalAddress === A));
    // A goes quiet: the opening ends at idleTimeout; then B's next firing wins
    s.clock.advance(60_000);
    await settle();
    assert.equal(s.table.list({ source: 'trigger' }).total, 0);
    const b = await s.m.fire('game', B, 'admin:test');
    assert.ok(b.ok && b.result === 'granted');
    assert.equal(s.m.get('game')!.holder, B);
    assert.ok([...s.dataplane.entries.values()].every((e) => e.internalAddress === B));
  });

  it('a range held by UPnP: the firing replaces the UPnP lease (admin-defined openings outrank dynamic ones)', async () => {
    const s = setup();
    // mapped before the rule was in force (a rule added later through the API or SIGHUP)
    const up = await s.table.request({
      source: 'upnp',
      identity: 'external',
      protocol: 'udp',
      owner: B,
      internalAddress: B,
      internalPort: 6115,
      externalPort: 6115,
      allowOtherPort: false,
      lifetime: 3600,
    });
    assert.ok(up.ok);
    await s.m.start();
    const r = await s.m.fire('game', A, 'admin:test');
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(s.table.get(up.lease.id)!.endReason, 'replaced');
    assert.deepEqual(
      s.table.history(up.lease.id).map((h) => h.type),
      ['granted', 'replaced'],
    );
    assert.equal(s.table.list({ source: 'trigger' }).total, 2);
    assert.ok(![...s.dataplane.entries.values()].some((e) => e.internalAddress === B), 'the UPnP element is gone');
    assert.equal(s.m.get('game')!.state, 'held');
  });

  it('a range held by a static forward is a conflict, and nothing of the rule stays open (all ranges or none)', async () => {
    const s = setup();
    await s.m.start();
    const st = await s.table.request({
      source: 'static',
      identity: 'external',
      protocol: 'udp',
      owner: B,
      internalAddress: B,
      internalPort: 6115,
      externalPort: 6115,
      allowOtherPort: false,
      lifetime: null,
      thirdPartyAllowed: true,
    });
    assert.ok(st.ok);
    const r = await s.m.fire('game', A, 'admin:test');
    assert.equal(r.ok, false);
    assert.ok(r.result === 'conflict' && r.holder.source === 'static' && r.holder.owner === B);
    assert.equal(
      s.table.list({ source: 'trigger' }).total,
      0,
      'the tcp range granted in the same firing was taken back',
    );
    assert.deepEqual([...s.dataplane.entries.keys()], ['udp/6115-6115/*']);
    assert.equal(s.m.get('game')!.state, 'idle');
  });

  it('the ports of enabled rules are known to the lease table (portRule), also while no host holds them', async () => {
    const s = setup(`
  - name: game
    match: { protocol: udp, ports: "6112" }
    open: [{ protocol: tcp, ports: "6113-6119" }, { protocol: udp, ports: "6113-6119" }]
  - name: off
    match: { protocol: tcp, ports: "7100" }
    open: [{ protocol: tcp, ports: "7101" }]
    enabled: false
`);
    await s.m.start();
    assert.equal(s.m.portRule('tcp', 6113), 'game');
    assert.equal(s.m.portRule('udp', 6119), 'game');
    assert.equal(s.m.portRule('tcp', 6120), null);
    assert.equal(s.m.portRule('tcp', 6112), null, "the match port is the LAN host's outbound one");
    assert.equal(s.m.portRule('tcp', 7101), null, 'a disabled rule keeps nothing');
    // so no UPnP client gets them, though nobody holds the trigger; PCP is given another port
    const up = await s.table.request({
      source: 'upnp',
      identity: 'external',
      protocol: 'tcp',
      owner: B,
      internalAddress: B,
      internalPort: 6114,
      externalPort: 6114,
      allowOtherPort: false,
      lifetime: 3600,
    });
    assert.ok(!up.ok && up.reason === 'conflict' && up.holder.source === 'trigger', JSON.stringify(up));
    const p = await s.table.request({
      source: 'pcp',
      identity: 'internal',
      protocol: 'udp',
      owner: B,
      internalAddress: B,
      internalPort: 6113,
      externalPort: 6113,
      allowOtherPort: true,
      lifetime: 3600,
    });
    assert.ok(p.ok && (p.lease.externalPort < 6113 || p.lease.externalPort > 6119), JSON.stringify(p));
    assert.ok(
      (
        await s.table.request({
          source: 'upnp',
          identity: 'external',
          protocol: 'tcp',
          owner: B,
          internalAddress: B,
          internalPort: 7101,
          externalPort: 7101,
          allowOtherPort: false,
          lifetime: 3600,
        })
      ).ok,
    );
  });

  it('hosts limits who may fire; a disabled rule does not fire', async () => {
    const s = setup(`
  - name: lim
    match: { protocol: tcp, ports: "7000" }
    open: [{ protocol: tcp, ports: "7001" }]
    hosts: [192.168.77.0/29]
  - name: off
    match: { protocol: tcp, ports: "7100" }
    open: [{ protocol: tcp, ports: "7101" }]
    enabled: false
`);
    await s.m.start();
    assert.deepEqual(
      s.kernel.rules.map((r) => r.name),
      ['lim'],
      'a disabled rule is not in the kernel',
    );
    const no = await s.m.fire('lim', A, 'admin:test'); // .11 is outside .0/29
    assert.equal(no.ok, false);
    assert.equal(no.result, 'not_allowed');
    assert.ok((await s.m.fire('lim', '192.168.77.5', 'admin:test')).ok);
    const off = await s.m.fire('off', A, 'admin:test');
    assert.equal(off.result, 'disabled');
    assert.equal(s.m.get('off')!.state, 'disabled');
  });
});

describe('trigger idle semantics', () => {
  it('activity moves expiresAt; the opening closes idleTimeout after the last packet, and its history says expired', async () => {
    const s = setup();
    await s.m.start();
    const t0 = s.clock.now();
    const r = await s.m.fire('game', A, 'admin:test');
    assert.ok(r.ok);
    const id = r.leases[0]!.id;
    // a packet at +40 s (the kernel refreshes the set: here the memory kernel's touch)
    s.clock.advance(40_000);
    await s.kernel.touch('game', A, 60);
    await s.m.poll();
    assert.equal(s.table.get(id)!.expiresAt, t0 + 100_000, 'follows the last packet');
    // nothing more: open until +100 s, closed at +100 s
    s.clock.advance(59_000);
    await s.m.poll();
    await settle();
    assert.equal(s.table.get(id)!.state, 'active');
    s.clock.advance(1_000);
    await settle();
    const ended = s.table.get(id)!;
    assert.equal(ended.state, 'ended');
    assert.equal(ended.endReason, 'expired');
    assert.equal(ended.endedAt, t0 + 100_000);
    assert.deepEqual(
      s.table.history(id).map((h) => h.type),
      ['granted', 'renewed', 'expired'],
    );
    assert.equal(s.m.get('game')!.state, 'idle');
    assert.equal(s.dataplane.entries.size, 0);
  });

  it('steady traffic renews rarely (only when the deadline moved by half the idle timeout or the end is near)', async () => {
    const s = setup();
    await s.m.start();
    const r = await s.m.fire('game', A, 'admin:test');
    assert.ok(r.ok);
    const id = r.leases[0]!.id;
    for (let i = 0; i < 60; i++) {
      // one packet and one poll per second for a minute
      s.clock.advance(1000);
      await s.kernel.touch('game', A, 60);
      await s.m.poll();
    }
    await settle();
    const renewals = s.table.history(id).filter((h) => h.type === 'renewed').length;
    assert.ok(renewals >= 1 && renewals <= 3, `renewals: ${renewals}`);
    assert.equal(s.table.get(id)!.state, 'active');
    assert.ok(s.table.get(id)!.expiresAt! > s.clock.now() + 25_000);
  });

  it('maxLifetime caps one opening even with traffic', async () => {
    const s = setup(`
  - name: capped
    match: { protocol: udp, ports: "6112" }
    open: [{ protocol: udp, ports: "6200" }]
    idleTimeout: 30
    maxLifetime: 45
`);
    await s.m.start();
    const t0 = s.clock.now();
    const r = await s.m.fire('capped', A, 'admin:test');
    assert.ok(r.ok);
    const id = r.leases[0]!.id;
    s.clock.advance(20_000);
    await s.kernel.touch('capped', A, 30); // active until +50 s
    s.clock.advance(9_000); // the lease (until +30 s) is about to end: renewed, but only to +45 s
    await s.m.poll();
    assert.equal(s.table.get(id)!.expiresAt, t0 + 45_000, 'capped at createdAt + maxLifetime');
    s.clock.advance(16_000);
    await settle();
    assert.equal(s.table.get(id)!.state, 'ended');
  });
});

describe('trigger rules: API and config', () => {
  it('API rules are validated, persisted across a restart; config rules are read-only', async () => {
    const s = setup();
    await s.m.start();
    const bad = await s.m.create(
      { name: 'clash', match: { protocol: 'tcp', ports: '9000' }, open: [{ protocol: 'udp', ports: '6110-6114' }] },
      'admin:test',
    );
    assert.equal(bad.ok, false);
    assert.ok(!bad.ok && httpStatus(bad.code) === 400);
    assert.ok(
      !bad.ok &&
        bad.issues?.some(
          (i) => i.path === 'open[0].ports' && /overlaps udp 6113-6119 opened by trigger "game"/.test(i.message),
        ),
      JSON.stringify(bad),
    );
    const reserved = await s.m.create(
      { name: 'r', match: { protocol: 'tcp', ports: '9000' }, open: [{ protocol: 'tcp', ports: '20-30' }] },
      'admin:test',
    );
    assert.ok(!reserved.ok && /reserved port 22/.test(reserved.message));
    const empty = await s.m.create({ name: 'e', match: { protocol: 'tcp', ports: '9000' }, open: [] }, 'admin:test');
    assert.ok(!empty.ok && empty.issues?.some((i) => i.path === 'open'));

    const ok = await s.m.create({ name: 'irc', preset: 'irc-ident' }, 'admin:test');
    assert.ok(ok.ok, JSON.stringify(ok));
    assert.equal(ok.trigger.origin, 'api');
    assert.deepEqual(ok.trigger.open, [{ protocol: 'tcp', ports: '113' }]);
    const dup = await s.m.create({ name: 'irc', preset: 'irc-ident' }, 'admin:test');
    assert.ok(!dup.ok && httpStatus(dup.code) === 409);
    const ro = await s.m.update(
      'game',
      { match: { protocol: 'udp', ports: '6112' }, open: [{ protocol: 'tcp', ports: '6113' }] },
      'admin:test',
    );
    assert.ok(!ro.ok && httpStatus(ro.code) === 403);
    assert.ok(!(await s.m.remove('game', 'admin:test')).ok);
    const upd = await s.m.update('irc', { preset: 'irc-ident', idleTimeout: 300 }, 'admin:test');
    assert.ok(upd.ok && upd.trigger.idleTimeout === 300);
    assert.ok((await s.m.fire('irc', A, 'admin:test')).ok);

    // restart on the same database: the API rule and the counters come back
    const dir = s.dir;
    await s.close();
    const s2 = setup(GAME, { dir });
    await s2.m.start();
    const irc = s2.m.get('irc');
    assert.ok(irc);
    assert.equal(irc.origin, 'api');
    assert.equal(irc.idleTimeout, 300);
    assert.equal(irc.counters.fired, 1);
    assert.equal(irc.state, 'held', 'its lease survived the restart');
    assert.deepEqual(s2.kernel.rules.map((r) => r.name).sort(), ['game', 'irc']);
    // deleting it closes its opening, with the reason in the lease history
    const del = await s2.m.remove('irc', 'admin:test');
    assert.ok(del.ok);
    await settle();
    const ended = s2.table.list({ source: 'trigger', state: 'ended' }).leases.find((l) => l.rule === 'irc')!;
    assert.equal(ended.endReason, 'revoked');
    assert.equal(s2.table.history(ended.id).at(-1)?.reason, 'trigger rule irc removed');
    assert.equal(s2.m.get('irc'), null);
  });

  it('a reload that drops a rule closes its opening; a new file rule wins over an API rule of the same name', async () => {
    const s = setup();
    await s.m.start();
    assert.ok(
      (
        await s.m.create(
          { name: 'extra', match: { protocol: 'tcp', ports: '9100' }, open: [{ protocol: 'tcp', ports: '9101' }] },
          'admin:test',
        )
      ).ok,
    );
    const r = await s.m.fire('game', A, 'admin:test');
    assert.ok(r.ok);
    await s.m.reload(
      triggerConfig(`
  - name: extra
    match: { protocol: tcp, ports: "9200" }
    open: [{ protocol: tcp, ports: "9201" }]
`),
    );
    await settle();
    assert.equal(s.table.get(r.leases[0]!.id)!.state, 'ended');
    assert.equal(s.table.history(r.leases[0]!.id).at(-1)?.reason, 'trigger rule game removed');
    const list = s.m.list();
    assert.deepEqual(
      list.map((t) => [t.name, t.origin, t.state]),
      [
        ['extra', 'config', 'idle'],
        ['extra', 'api', 'error'],
      ],
    );
    assert.match(list[1]!.error ?? '', /configuration file now defines a rule named extra/);
  });
});
