/**
 * Lab (root; a failure under CI=true): the real `portd start` in the gateway namespace (nftables
 * driver, policy.checkPortInUse at its default) with processes of the gateway itself listening on
 * 0.0.0.0:2222/tcp and 203.0.113.1:51820/udp (an SSH and a WireGuard):
 *   - `upnpc -a` for 2222 gets 718, `natpmpc -a` for 51820 gets another public port, and the WAN
 *     host's connection to 2222 still reaches the gateway's own listener, not the LAN host;
 *   - a socket bound to the gateway's LAN address only does not keep its port from a client;
 *   - an admin static forward on a port a UPnP client holds replaces it: the WAN host reaches the
 *     forward's host, and the UPnP client's renewal gets 718.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ADDR, createLab, hasTool, labSkip, type Agent, type Lab } from './harness.js';
import { PortdProcess } from './portd-process.js';

const skip =
  labSkip('own-ports') ||
  (!hasTool('upnpc') && 'upnpc not installed') ||
  (!hasTool('natpmpc') && 'natpmpc not installed');
const TOKEN = 'lab-token-0123456789';
const EXT = ADDR.gwWan;
const FAIL_MS = 700;
const SSH = 2222,
  WG = 51820,
  LAN_ONLY = 2300,
  SHARED = 8300;

describe("the gateway's own ports and admin precedence, real portd in a namespace lab", {
  skip,
  timeout: 180_000,
}, () => {
  let lab: Lab;
  let dir: string;
  let portd: PortdProcess;
  let self: Agent, hostA: Agent, hostB: Agent, wan: Agent;

  before(async () => {
    lab = await createLab();
    dir = mkdtempSync(join(tmpdir(), 'portd-own-'));
    // the gateway's own services, started before portd (the first grant reads the socket tables)
    self = await lab.agent(lab.gw, 'gateway');
    assert.ok((await self.listen('tcp', SSH, '0.0.0.0')).ok);
    assert.ok((await self.listen('udp', WG, EXT)).ok);
    assert.ok((await self.listen('tcp', LAN_ONLY, ADDR.gwLan)).ok);
    hostA = await lab.agent(lab.lanA, 'hostA');
    hostB = await lab.agent(lab.lanB, 'hostB');
    wan = await lab.agent(lab.wan, 'wan');
    for (const p of [SSH, LAN_ONLY, SHARED]) assert.ok((await hostA.listen('tcp', p)).ok);
    assert.ok((await hostA.listen('udp', WG)).ok);
    assert.ok((await hostB.listen('tcp', SHARED)).ok);
    portd = new PortdProcess({
      lab,
      dir,
      verbose: process.env['LAB_LOG'] === 'portd',
      config:
        [
          'logLevel: info',
          'interfaces: { wan: wan0, lan: [br0] }',
          'externalAddress: auto',
          `stateDir: ${dir}`,
          `database: { path: ${join(dir, 'portd.sqlite')} }`,
          'dataplane: { driver: nftables, table: portd, hairpin: true, reconcileInterval: 0 }',
          'policy:',
          '  secureMode: true',
          '  rules: ["allow 1024-65535 192.168.77.0/24 1-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
          'upnp: { enabled: true, httpPort: 5000, ssdp: false }',
          'pcp: { rateLimit: 0 }',
          `admin: { listen: "127.0.0.1:8080", token: "${TOKEN}" }`,
        ].join('\n') + '\n',
    });
    await portd.start();
  });

  after(async () => {
    try {
      await portd?.stop();
    } catch {
      /* gone */
    }
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // -i: the lab's WAN address is TEST-NET-3, which miniupnpc would otherwise call "not connected"
  const upnpc = (ns: string, args: string[]) =>
    lab.exec(ns, ['upnpc', '-i', '-u', `http://${ADDR.gwLan}:5000/igd1/desc.xml`, ...args], { timeoutMs: 30_000 });

  test('upnpc -a for the port the gateway listens on (0.0.0.0) gets 718; the WAN host still reaches the gateway', async () => {
    const logFrom = portd.logs.length;
    const r = await upnpc(lab.lanA, ['-e', 'steal-ssh', '-a', ADDR.hostA, String(SSH), String(SSH), 'TCP', '600']);
    assert.match(r.stdout + r.stderr, /failed with code 718/, r.stdout + r.stderr);
    assert.doesNotMatch(
      await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']),
      new RegExp(`tcp \\. ${SSH} `),
    );
    const probe = await wan.tcpProbe(EXT, SSH, { data: 'hi' });
    assert.equal(probe.reply, `gateway|${ADDR.wanHost}|hi`, JSON.stringify(probe));
    // stdout lines go out in batches of up to 100 ms (src/logger.ts): wait for it rather than look once
    const refused = (l: (typeof portd.logs)[number]) => l.msg === 'lease refused' && l['reason'] === 'in_use';
    const line = await portd.waitForLog(refused, 2_000, logFrom).catch(() => undefined);
    assert.ok(line, 'the refusal is logged with its reason');
  });

  test('natpmpc -a for the UDP port bound on the WAN address gets another public port', async () => {
    const r = await lab.exec(lab.lanA, ['natpmpc', '-g', ADDR.gwLan, '-a', String(WG), String(WG), 'udp', '600'], {
      timeoutMs: 15_000,
    });
    const m = /Mapped public port (\d+) protocol UDP to local port (\d+)/.exec(r.stdout);
    assert.ok(m, r.stdout + r.stderr);
    assert.notEqual(Number(m[1]), WG);
    assert.equal(Number(m[2]), WG);
    // the WAN host reaches the LAN host on the port it was given, and the gateway's own socket on WG
    const lan = await wan.udpProbe(EXT, Number(m[1]), { data: 'ping' });
    assert.equal(lan.reply, `hostA|${ADDR.wanHost}|ping`, JSON.stringify(lan));
    const own = await wan.udpProbe(EXT, WG, { data: 'ping' });
    assert.equal(own.reply, `gateway|${ADDR.wanHost}|ping`, JSON.stringify(own));
  });

  test("a socket bound to the gateway's LAN address only does not keep its port", async () => {
    const r = await upnpc(lab.lanA, [
      '-e',
      'lan-only',
      '-a',
      ADDR.hostA,
      String(LAN_ONLY),
      String(LAN_ONLY),
      'TCP',
      '600',
    ]);
    assert.match(
      r.stdout,
      new RegExp(`is redirected to internal ${ADDR.hostA.replace(/\./g, '\\.')}:${LAN_ONLY}`),
      r.stdout + r.stderr,
    );
    const probe = await wan.tcpProbe(EXT, LAN_ONLY, { data: 'x' });
    assert.equal(probe.reply, `hostA|${ADDR.wanHost}|x`);
  });

  test("a static forward on a port a UPnP client holds replaces it; the client's renewal gets 718", async () => {
    let r = await upnpc(lab.lanA, ['-e', 'shared', '-a', ADDR.hostA, String(SHARED), String(SHARED), 'TCP', '600']);
    assert.match(r.stdout, /is redirected to internal/, r.stdout + r.stderr);
    assert.equal((await wan.tcpProbe(EXT, SHARED, { data: 'a' })).reply, `hostA|${ADDR.wanHost}|a`);
    const post = await portd.api('/api/v1/leases', TOKEN, {
      method: 'POST',
      body: { protocol: 'tcp', externalPort: SHARED, internalAddress: ADDR.hostB, description: 'admin' },
    });
    assert.equal(post.status, 201, JSON.stringify(post.body));
    const list = await portd.api(`/api/v1/leases?state=ended&source=upnp&externalPort=${SHARED}`, TOKEN);
    const ended = (list.body as { leases: { endReason: string }[] }).leases;
    assert.deepEqual(
      ended.map((l) => l.endReason),
      ['replaced'],
    );
    assert.equal((await wan.tcpProbe(EXT, SHARED, { data: 'b' })).reply, `hostB|${ADDR.wanHost}|b`);
    r = await upnpc(lab.lanA, ['-e', 'shared', '-a', ADDR.hostA, String(SHARED), String(SHARED), 'TCP', '600']);
    assert.match(r.stdout + r.stderr, /failed with code 718/, r.stdout + r.stderr);
    assert.equal((await wan.tcpProbe(EXT, SHARED, { data: 'c' })).reply, `hostB|${ADDR.wanHost}|c`);
    assert.equal((await wan.tcpProbe(EXT, 1, { timeoutMs: FAIL_MS })).ok, false);
  });
});
