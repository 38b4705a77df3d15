/**
 * Several consoles on one internal port (issue 16 part 1), in the namespace lab with the real `portd start`
 * (nftables driver) and real clients (upnpc, natpmpc). Both LAN hosts use UDP 3074 and TCP 3074; the second
 * gets other external ports (a 718 on 3074 first, as an Xbox sees it). The gateway has a masquerade of its own
 * for ordinary traffic (the "host's masquerade", priority srcnat). A recorder on the WAN host answers with the
 * source endpoint it saw:
 * - each host's outbound flows leave from its own mapped port (SNAT in portd's table, before the masquerade),
 *   to two different WAN destinations alike (endpoint-independent mapping, RFC 4787 REQ-1);
 * - WAN traffic to each mapped port reaches the right host, also from a WAN address the host never sent to
 *   (endpoint-independent filtering, RFC 4787 REQ-8);
 * - hairpin (LAN host -> external address -> the other host) still works;
 * - kill -9 of portd and a restart keep it (kernel state);
 * - after the delete, outbound falls back to the ordinary masquerade.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { ADDR, JsonLineChannel, createLab, hasTool, labSkip, type AgentReply, type Lab } from './harness.js';
import { PortdProcess } from './portd-process.js';

const skip =
  labSkip('snat') || (!hasTool('upnpc') && 'upnpc not installed') || (!hasTool('natpmpc') && 'natpmpc not installed');
const PEER = join(dirname(fileURLToPath(import.meta.url)), 'snat-peer.mjs');
const EXT = ADDR.gwWan;
/** a WAN address neither LAN host ever sends to (EIF) */
const STRANGER = '203.0.113.4';

interface Peer {
  call(op: string, args?: Record<string, unknown>): Promise<AgentReply>;
}

describe('outbound SNAT: two consoles on internal port 3074', { skip, timeout: 180_000 }, () => {
  let lab: Lab;
  let dir: string;
  let portd: PortdProcess;
  let a: Peer, b: Peer, stranger: Peer;

  async function peer(ns: string, label: string, udpPort: number | string, tcpPorts: number[] = []): Promise<Peer> {
    const child = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, PEER, label, String(udpPort), ...tcpPorts.map(String)],
      {
        stdio: 'pipe',
      },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const ch = new JsonLineChannel<AgentReply>(child, (why) => ({ ok: false, error: `${label} ${why}: ${err}` }));
    const p: Peer = {
      call: (op, args = {}) => ch.call({ op, ...args }, ((args['timeoutMs'] as number | undefined) ?? 1500) + 3000),
    };
    const r = await p.call('ping');
    assert.ok(r.ok, r.error);
    return p;
  }

  const udp = (p: Peer, host: string, port: number, data = 'x') => p.call('udp', { host, port, data });
  const tcp = (p: Peer, host: string, port: number, data = 'x') => p.call('tcp', { localPort: 3074, host, port, data });
  /** the source endpoint the recorder saw, from its answer `rec|addr:port|data` */
  const seen = (r: AgentReply) => {
    assert.ok(r.ok, r.error);
    return r.reply?.split('|')[1];
  };
  const upnpc = (ns: string, args: string[]) =>
    lab.exec(ns, ['upnpc', '-m', 'eth0', '-i', ...args], { timeoutMs: 30_000 });

  before(async () => {
    lab = await createLab();
    await lab.must(lab.wan, ['ip', 'addr', 'add', `${STRANGER}/24`, 'dev', 'eth0']);
    dir = mkdtempSync(join(tmpdir(), 'portd-snat-'));
    // the host's masquerade for ordinary traffic, at the usual priority (a table of the lab's own)
    const nat = await lab.nft(
      'table ip labnat {\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n' +
        '    oifname "wan0" masquerade\n  }\n}\n',
    );
    assert.equal(nat.code, 0, nat.stderr);
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
          `database: { path: ${join(dir, 'portd.sqlite')}, synchronous: normal }`,
          'dataplane: { driver: nftables, table: portd, hairpin: true, reconcileInterval: 5 }',
          'policy:',
          '  secureMode: true',
          '  rules: ["allow 1024-65535 192.168.77.0/24 1-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
          'upnp: { enabled: true, httpPort: 5000, ssdp: true }',
          'admin: { listen: "127.0.0.1:8080", token: "lab-token-0123456789" }',
        ].join('\n') + '\n',
    });
    await portd.start();
    a = await peer(lab.lanA, 'hostA', 3074);
    b = await peer(lab.lanB, 'hostB', 3074);
    // the recorders: one per WAN destination address, each answering from the address it was sent to
    await peer(lab.wan, 'rec', `${ADDR.wanHost}:7001`, [7101, 7102]);
    await peer(lab.wan, 'rec', `${ADDR.wanHost2}:7001`);
    stranger = await peer(lab.wan, 'stranger', `${STRANGER}:0`);
  });

  after(async () => {
    try {
      if (portd?.running) await portd.stop();
    } finally {
      await lab?.teardown();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the second console gets another external port; each leaves from its own (UDP and TCP, two destinations)', async () => {
    let r = await upnpc(lab.lanA, ['-e', 'xbox-a', '-a', ADDR.hostA, '3074', '3074', 'UDP', '600']);
    assert.match(
      r.stdout,
      /external 203\.0\.113\.1:3074 UDP is redirected to internal 192\.168\.77\.11:3074/,
      r.stdout + r.stderr,
    );
    // the second console asks for 3074 too: taken (718), so it takes 3075, as an Xbox does
    r = await upnpc(lab.lanB, ['-e', 'xbox-b', '-a', ADDR.hostB, '3074', '3074', 'UDP', '600']);
    assert.match(r.stdout + r.stderr, /718/);
    r = await upnpc(lab.lanB, ['-e', 'xbox-b', '-a', ADDR.hostB, '3074', '3075', 'UDP', '600']);
    assert.match(
      r.stdout,
      /external 203\.0\.113\.1:3075 UDP is redirected to internal 192\.168\.77\.12:3074/,
      r.stdout + r.stderr,
    );
    r = await upnpc(lab.lanA, ['-e', 'xbox-a-tcp', '-a', ADDR.hostA, '3074', '3074', 'TCP', '600']);
    assert.match(r.stdout, /is redirected to internal 192\.168\.77\.11:3074/, r.stdout + r.stderr);
    // the second one's TCP mapping through NAT-PMP (RFC 6886), another client, another external port
    r = await lab.exec(lab.lanB, ['natpmpc', '-g', ADDR.gwLan, '-a', '3076', '3074', 'tcp', '600'], {
      timeoutMs: 15_000,
    });
    assert.match(r.stdout, /Mapped public port 3076 protocol TCP to local port 3074/, r.stdout + r.stderr);

    // EIM (RFC 4787 REQ-1): the same external endpoint whatever the destination
    for (const dst of [ADDR.wanHost, ADDR.wanHost2]) {
      assert.equal(seen(await udp(a, dst, 7001)), `${EXT}:3074`, `hostA -> ${dst}`);
      assert.equal(seen(await udp(b, dst, 7001)), `${EXT}:3075`, `hostB -> ${dst}`);
    }
    assert.equal(seen(await tcp(a, ADDR.wanHost, 7101)), `${EXT}:3074`);
    assert.equal(seen(await tcp(b, ADDR.wanHost2, 7102)), `${EXT}:3076`);
  });

  test('WAN traffic to each mapped port reaches the right console, also from an address it never sent to (EIF)', async () => {
    for (const [port, who] of [
      [3074, 'hostA'],
      [3075, 'hostB'],
    ] as const) {
      const r = await udp(stranger, EXT, port, 'in');
      assert.ok(r.ok, r.error);
      assert.match(r.reply ?? '', new RegExp(`^${who}\\|${STRANGER.replace(/\./g, '\\.')}:\\d+\\|in$`));
    }
    // TCP: a listener on each console's 3074 (the outbound connections above are closed)
    assert.ok((await a.call('listenTcp', { port: 3074 })).ok);
    assert.ok((await b.call('listenTcp', { port: 3074 })).ok);
    for (const [port, who] of [
      [3074, 'hostA'],
      [3076, 'hostB'],
    ] as const) {
      const r = await stranger.call('tcp', { localPort: 0, host: EXT, port, data: 'in' });
      assert.ok(r.ok, r.error);
      assert.match(r.reply ?? '', new RegExp(`^${who}\\|`));
    }
  });

  test('hairpin still works: console A reaches console B on its external port', async () => {
    const r = await udp(a, EXT, 3075, 'hair');
    assert.ok(r.ok, r.error);
    // B sees the gateway's LAN address (the hairpin masquerade), and answers A through the external address
    assert.match(r.reply ?? '', /^hostB\|192\.168\.77\.1:\d+\|hair$/);
  });

  test('kill -9 and a restart keep it: the kernel holds the SNAT elements', async () => {
    await portd.kill9();
    assert.equal(seen(await udp(b, ADDR.wanHost, 7001, 'dead')), `${EXT}:3075`, 'portd dead, the same flow');
    // its flows deleted, a new one is bound by the kernel's SNAT map alone (portd is not running)
    const list = await lab.exec(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'snat4']);
    assert.match(list.stdout, /192\.168\.77\.12 \. udp \. 3074 timeout \S+ expires \S+ : 203\.0\.113\.1 \. 3075/);
    assert.equal((await lab.exec(lab.gw, ['conntrack', '-D', '-p', 'udp', '-s', ADDR.hostB])).code, 0);
    assert.equal(seen(await udp(b, ADDR.wanHost2, 7001, 'dead')), `${EXT}:3075`, 'portd dead, new flow');
    await portd.start();
    await lab.exec(lab.gw, ['conntrack', '-D', '-p', 'udp', '-s', ADDR.hostB]);
    assert.equal(seen(await udp(b, ADDR.wanHost, 7001, 'back')), `${EXT}:3075`, 'after the restart');
  });

  test('an SNAT element deleted from outside is repaired by the audit, as a DNAT element is', async () => {
    const del = await lab.exec(lab.gw, [
      'nft',
      'delete',
      'element',
      'inet',
      'portd',
      'snat4',
      '{ 192.168.77.12 . udp . 3074 }',
    ]);
    assert.equal(del.code, 0, del.stderr);
    const t0 = Date.now();
    let list = '';
    // the periodic reconcile runs every 5 s here, the audit after it
    while (Date.now() - t0 < 30_000) {
      list = (await lab.exec(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'snat4'])).stdout;
      if (list.includes('192.168.77.12 . udp . 3074')) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.match(list, /192\.168\.77\.12 \. udp \. 3074 timeout \S+ expires \S+ : 203\.0\.113\.1 \. 3075/);
    await lab.exec(lab.gw, ['conntrack', '-D', '-p', 'udp', '-s', ADDR.hostB]);
    assert.equal(seen(await udp(b, ADDR.wanHost2, 7001, 'repaired')), `${EXT}:3075`);
  });

  test('after the delete, outbound falls back to the ordinary masquerade', async () => {
    const r = await upnpc(lab.lanB, ['-d', '3075', 'UDP']);
    assert.match(r.stdout, /returned : 0/, r.stdout + r.stderr);
    await lab.exec(lab.gw, ['conntrack', '-D', '-p', 'udp', '-s', ADDR.hostB]);
    const src = seen(await udp(b, ADDR.wanHost, 7001, 'after'));
    assert.match(src ?? '', /^203\.0\.113\.1:\d+$/);
    assert.notEqual(src, `${EXT}:3075`, 'no longer the deleted mapping');
    // the other console keeps its own
    assert.equal(seen(await udp(a, ADDR.wanHost2, 7001, 'still')), `${EXT}:3074`);
  });
});
