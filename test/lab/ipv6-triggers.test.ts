/**
 * Lab: port triggering for IPv6 LAN hosts (issue 15 item 7). The real `portd start` in the gateway with the
 * nftables driver, a trigger rule in its config file, and the lab's default-deny inbound IPv6 policy
 * (LAB6_RULESET: only flows carrying portd's mark 0x100 get in). Host A sends UDP to the WAN host on the
 * trigger port: the rule's ranges open as pinholes to A (family-6 trigger leases), the WAN host reaches A's
 * servers on them and nothing else; host B's TCP flow to the trigger port opens B's own pinholes; the same
 * rule still opens a DNAT mapping for an IPv4 flow; after the idle timeout (4 s) every opening closes and
 * the WAN host's attempts fail again. Root only (namespaces); a failure under CI=true.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADDR, ADDR6, IF, createLab, hasTool, labSkip, type Agent, type Lab } from './harness.js';
import { startIPv6Gateway, type IPv6Gateway } from './ipv6-gateway.js';
import type { PortdProcess } from './portd-process.js';

const skip = labSkip('ipv6-triggers') || (hasTool('conntrack') ? false : 'conntrack not installed');
const FAIL_MS = 700;
const IDLE = 4;
const TRIGGER_PORT = 7777;
const OPEN = [7800, 7801] as const;
const TOKEN = 'lab-triggers6-token-0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface LeaseJson {
  id: string;
  family: number;
  source: string;
  rule: string | null;
  owner: string;
  protocol: string;
  internalAddress: string;
  externalAddress: string;
  externalPort: number;
  externalPortEnd: number;
  state: string;
  endReason: string | null;
}

describe('port triggering for IPv6 LAN hosts through the nftables gateway', { skip, timeout: 180_000 }, () => {
  let lab: Lab;
  let portd: PortdProcess;
  let gw: IPv6Gateway | undefined;
  let hostA: Agent, hostB: Agent, wan: Agent;

  /** the trigger leases through the admin API (retried: curl's 5 s limit can pass on a loaded machine) */
  const leases = async (state = 'active'): Promise<LeaseJson[]> => {
    let last: unknown = null;
    for (let i = 0; i < 3; i++) {
      const r = await portd.api(`/api/v1/leases?source=trigger&state=${state}&limit=100`, TOKEN);
      if (r.status === 200) return (r.body as { leases: LeaseJson[] }).leases;
      last = r;
    }
    throw new Error(`GET /api/v1/leases failed: ${JSON.stringify(last)}`);
  };
  const set6 = () => lab.must(lab.gw, ['nft', 'list', 'set', 'inet', 'portd', 'trig_labgame_active6']);
  /** the WAN host's probe of a LAN host's IPv6 server: the echo, or null when it did not get through */
  const reach6 = async (proto: 'udp' | 'tcp', host: string, port: number, data = 'x') => {
    const r =
      proto === 'udp'
        ? await wan.udpProbe(host, port, { data, timeoutMs: FAIL_MS })
        : await wan.tcpProbe(host, port, { data, timeoutMs: FAIL_MS });
    return r.ok ? String(r.reply) : null;
  };
  async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, ms = 5000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  }

  before(async () => {
    lab = await createLab({ ipv6: true });
    // IPv4: the gateway masquerades LAN traffic to the WAN like any home router (a table of the lab's own)
    const nat = await lab.nft(
      'table ip labnat {\n  chain post {\n    type nat hook postrouting priority srcnat + 10; policy ' +
        `accept;\n    oifname "${IF.wan}" masquerade\n  }\n}\n`,
    );
    assert.equal(nat.code, 0, nat.stderr);
    gw = await startIPv6Gateway(lab, {
      name: 'trig6',
      dataplane: 'grace: 1',
      token: TOKEN,
      config: [
        'upnp: { enabled: false }',
        'pcp: { enabled: false }',
        'natpmp: { enabled: false }',
        'triggers:',
        '  - name: labgame',
        `    match: { protocol: both, ports: "${TRIGGER_PORT}" }`,
        `    open: [{ protocol: tcp, ports: "${OPEN[0]}-${OPEN[1]}" }, { protocol: udp, ports: ` +
          `"${OPEN[0]}-${OPEN[1]}" }]`,
        `    idleTimeout: ${IDLE}`,
      ],
    });
    portd = gw.portd;
    hostA = await lab.agent(lab.lanA, 'hostA');
    hostB = await lab.agent(lab.lanB, 'hostB');
    wan = await lab.agent(lab.wan, 'wan');
    for (const h of [hostA, hostB])
      for (const p of OPEN) {
        assert.ok((await h.listen('tcp', p, '::')).ok);
        assert.ok((await h.listen('udp', p, '::')).ok);
      }
    // the "game server" on both families
    assert.ok((await wan.listen('udp', TRIGGER_PORT, '::')).ok);
    assert.ok((await wan.listen('tcp', TRIGGER_PORT, '::')).ok);
  });

  after(async () => {
    await gw?.stop();
    await lab?.teardown();
  });

  test('the rule has IPv6 lines and its own IPv6 set; before a firing the WAN host cannot reach the LAN hosts', async () => {
    const chain = await lab.must(lab.gw, ['nft', 'list', 'chain', 'inet', 'portd', 'triggers']);
    assert.match(chain, /update @trig_labgame_active6 \{ ip6 saddr timeout 4s \} ct state new ct mark set/);
    assert.match(await set6(), /type ipv6_addr/);
    for (const p of OPEN) {
      assert.equal(await reach6('tcp', ADDR6.hostA, p), null, `tcp ${p} closed before`);
      assert.equal(await reach6('udp', ADDR6.hostA, p), null, `udp ${p} closed before`);
    }
    assert.deepEqual(await leases(), []);
  });

  test('host A sends UDP to the trigger port: pinholes open to A only, as family-6 trigger leases', async () => {
    const out = await hostA.udpProbe(ADDR6.wanHost, TRIGGER_PORT, { data: 'hello', localAddress: ADDR6.hostA });
    assert.equal(out.reply, `wan|${ADDR6.hostA}|hello`, 'no NAT66: the game server sees A itself');
    const mine = await until('A’s pinholes', async () => {
      const ls = (await leases()).filter((l) => l.owner === ADDR6.hostA);
      return ls.length === 2 ? ls : null;
    });
    for (const l of mine) {
      assert.equal(l.family, 6);
      assert.equal(l.source, 'trigger');
      assert.equal(l.rule, 'labgame');
      assert.equal(l.internalAddress, ADDR6.hostA);
      assert.equal(l.externalAddress, ADDR6.hostA);
      assert.deepEqual([l.externalPort, l.externalPortEnd], [...OPEN]);
    }
    for (const p of OPEN) {
      assert.equal(await reach6('tcp', ADDR6.hostA, p, `t${p}`), `hostA|${ADDR6.wanHost}|t${p}`, `tcp ${p}`);
      assert.equal(await reach6('udp', ADDR6.hostA, p, `u${p}`), `hostA|${ADDR6.wanHost}|u${p}`, `udp ${p}`);
    }
    assert.equal(await reach6('tcp', ADDR6.hostB, OPEN[0]), null, 'B has not fired: still closed');
    assert.equal(await reach6('tcp', ADDR6.hostA, OPEN[1] + 1), null, 'only the rule’s ports');
    assert.match(await set6(), new RegExp(`${ADDR6.hostA} timeout ${IDLE}s expires`));
  });

  test('host B opens a TCP flow to the trigger port: B gets its own pinholes, A keeps its own', async () => {
    const out = await hostB.tcpProbe(ADDR6.wanHost, TRIGGER_PORT, { data: 'hi', localAddress: ADDR6.hostB });
    assert.equal(out.reply, `wan|${ADDR6.hostB}|hi`);
    await until('B’s pinholes', async () => (await leases()).filter((l) => l.owner === ADDR6.hostB).length === 2);
    assert.equal(await reach6('tcp', ADDR6.hostB, OPEN[0], 'b'), `hostB|${ADDR6.wanHost}|b`);
    assert.equal(await reach6('udp', ADDR6.hostB, OPEN[1], 'b'), `hostB|${ADDR6.wanHost}|b`);
    assert.equal(await reach6('tcp', ADDR6.hostA, OPEN[0], 'a'), `hostA|${ADDR6.wanHost}|a`);
    const trig = (await portd.api('/api/v1/triggers/labgame', TOKEN)).body as { trigger: { state: string } };
    assert.equal(trig.trigger.state, 'held');
  });

  test('the same rule still opens a DNAT mapping for an IPv4 flow', async () => {
    const out = await hostA.udpProbe(ADDR.wanHost, TRIGGER_PORT, { data: 'v4' });
    // the servers listen on `::` (dual stack): IPv4 peers show as IPv4-mapped
    assert.equal(String(out.reply).replace('::ffff:', ''), `wan|${ADDR.gwWan}|v4`, 'masqueraded');
    await until('A’s IPv4 mappings', async () => {
      const ls = (await leases()).filter((l) => l.owner === ADDR.hostA);
      return ls.length === 2 && ls.every((l) => l.family === 4);
    });
    const tcp = await wan.tcpProbe(ADDR.gwWan, OPEN[0], { data: 'v4in', timeoutMs: 1500 });
    assert.equal(String(tcp.reply).replace('::ffff:', ''), `hostA|${ADDR.wanHost}|v4in`);
  });

  test('idle: after the idle timeout every opening closes and the WAN host is shut out again', async (t) => {
    const t0 = Date.now();
    // no traffic from here on (probes through the openings would keep them alive)
    const ended = await until(
      'the openings to expire',
      async () => {
        const active = await leases();
        return active.length === 0 ? await leases('ended') : null;
      },
      (IDLE + 8) * 1000,
    );
    t.diagnostic(`all six openings closed ${Date.now() - t0} ms after the last packet`);
    assert.equal(ended.length, 6);
    assert.ok(
      ended.every((l) => l.endReason === 'expired'),
      JSON.stringify(ended.map((l) => l.endReason)),
    );
    assert.equal(ended.filter((l) => l.family === 6).length, 4);
    for (const h of [ADDR6.hostA, ADDR6.hostB]) {
      assert.equal(await reach6('tcp', h, OPEN[0]), null, `${h} tcp closed after`);
      assert.equal(await reach6('udp', h, OPEN[1]), null, `${h} udp closed after`);
    }
    const pin = await lab.must(lab.gw, ['nft', 'list', 'set', 'inet', 'portd', 'pin6_range']);
    assert.doesNotMatch(pin, /2001:db8:77::1[12]/);
  });
});
