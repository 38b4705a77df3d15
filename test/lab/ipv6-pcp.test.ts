/**
 * Lab: PCP over IPv6 reaches portd (issue 15, item 5's start). The real `portd start` in the gateway with
 * pcp.ipv6 listens on the LAN's global and link-local addresses; an ANNOUNCE from a LAN host over IPv6
 * is answered, on both, and a MAP for an IPv4 internal address sent over IPv6 gets an answer (whatever
 * result code, not silence, and portd stays up). Requests from outside the LAN's IPv6 prefix and from the
 * WAN host stay unanswered. Root only; a failure under CI=true.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePcpResponse, encodePcpRequest, nonceFromHex, ResultCode } from '../../protocols/pcp/index.js';
import { ADDR, ADDR6, IF, createLab, labSkip, type Agent, type Lab } from './harness.js';
import { startIPv6Gateway, type IPv6Gateway } from './ipv6-gateway.js';
import type { PortdProcess } from './portd-process.js';

const skip = labSkip('ipv6-pcp');

describe('PCP over IPv6 through portd start', { skip, timeout: 90_000 }, () => {
  let lab: Lab;
  let portd: PortdProcess;
  let gw: IPv6Gateway | undefined;
  let hostA: Agent, wan: Agent;
  let gwLinkLocal: string, hostALinkLocal: string;

  const linkLocal = async (ns: string, dev: string) => {
    const doc = JSON.parse(await lab.must(ns, ['ip', '-j', '-6', 'addr', 'show', 'dev', dev, 'scope', 'link'])) as {
      addr_info: { local?: string }[];
    }[];
    const a = doc[0]?.addr_info.find((x) => x.local)?.local;
    assert.ok(a, `no link-local address on ${dev}`);
    return a;
  };
  const announce = (clientAddress: string) =>
    Buffer.from(encodePcpRequest({ version: 2, opcode: 0, lifetime: 0, clientAddress, options: [] })).toString('hex');
  const ask = (a: Agent, host: string, hex: string, localAddress: string, timeoutMs = 2000) =>
    a.call('udpBytes', { host, port: 5351, hex, localAddress, timeoutMs });

  before(async () => {
    lab = await createLab({ ipv6: true });
    gw = await startIPv6Gateway(lab, {
      name: 'pcp6',
      config: [
        'policy: { secureMode: true, rules: ["allow 1024-65535 192.168.77.0/24 1-65535"] }',
        'upnp: { enabled: false }',
        'pcp: { ipv6: true }',
      ],
    });
    portd = gw.portd;
    gwLinkLocal = await linkLocal(lab.gw, IF.lan);
    hostALinkLocal = await linkLocal(lab.lanA, 'eth0');
    hostA = await lab.agent(lab.lanA, 'hostA');
    wan = await lab.agent(lab.wan, 'wan');
  });

  after(async () => {
    await gw?.stop();
    await lab?.teardown();
  });

  test('portd listens for PCP on the LAN global and link-local (scoped) IPv6 addresses', () => {
    const line = portd.logs.find((l) => l.msg === 'PCP/NAT-PMP listening');
    assert.ok(line, 'listening line');
    const listen = line['listen'] as string[];
    assert.ok(listen.includes(`${ADDR6.gwLan}:5351`), JSON.stringify(listen));
    assert.ok(listen.includes(`${gwLinkLocal}%${IF.lan}:5351`), JSON.stringify(listen));
    assert.ok(listen.includes(`${ADDR.gwLan}:5351`), JSON.stringify(listen));
  });

  test('an ANNOUNCE over IPv6 is answered: to the global address and to the link-local one', async () => {
    const g = await ask(hostA, ADDR6.gwLan, announce(ADDR6.hostA), ADDR6.hostA);
    assert.ok(g.ok, JSON.stringify(g));
    const rg = decodePcpResponse(Buffer.from(String(g.reply), 'hex'));
    assert.equal(rg.opcode, 0);
    assert.equal(rg.resultCode, ResultCode.SUCCESS);

    const l = await ask(hostA, `${gwLinkLocal}%eth0`, announce(hostALinkLocal), `${hostALinkLocal}%eth0`);
    assert.ok(l.ok, JSON.stringify(l));
    const rl = decodePcpResponse(Buffer.from(String(l.reply), 'hex'));
    assert.equal(rl.resultCode, ResultCode.SUCCESS, 'the zone is not part of the client address (no ADDRESS_MISMATCH)');
  });

  test('a MAP for an IPv4 internal address sent over IPv6 gets an answer, and portd stays up', async () => {
    const nonce = nonceFromHex('0102030405060708090a0b0c');
    const map = (clientAddress: string) =>
      Buffer.from(
        encodePcpRequest({
          version: 2,
          opcode: 1,
          lifetime: 600,
          clientAddress,
          options: [],
          map: { nonce, protocol: 6, internalPort: 9300, externalPort: 8300, externalAddress: '0.0.0.0' },
        }),
      ).toString('hex');
    // the IPv4 internal address in the header, the IPv6 source on the wire: ADDRESS_MISMATCH (RFC 6887 §8.3)
    const r4 = await ask(hostA, ADDR6.gwLan, map(ADDR.hostA), ADDR6.hostA);
    assert.ok(r4.ok, `answered: ${JSON.stringify(r4)}`);
    const res4 = decodePcpResponse(Buffer.from(String(r4.reply), 'hex'));
    assert.equal(res4.opcode, 1);
    assert.equal(res4.resultCode, ResultCode.ADDRESS_MISMATCH);
    // the IPv6 source in the header asking for an IPv4 external address: portd does no NAT64, the
    // suggestion is a hint, and the answer is a pinhole to the host itself (policy.ipv6Pinholes, the default)
    const r6 = await ask(hostA, ADDR6.gwLan, map(ADDR6.hostA), ADDR6.hostA);
    const res6 = decodePcpResponse(Buffer.from(String(r6.reply), 'hex'));
    assert.equal(res6.resultCode, ResultCode.SUCCESS);
    assert.equal(res6.map?.externalAddress, ADDR6.hostA, 'no translation: external = internal');
    assert.equal(res6.map?.externalPort, 9300);
    assert.equal(portd.running, true);
    assert.doesNotMatch(await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']), /8300/);
    // and IPv4 PCP still works beside it
    const v4 = await ask(hostA, ADDR.gwLan, announce(ADDR.hostA), ADDR.hostA);
    assert.equal(decodePcpResponse(Buffer.from(String(v4.reply), 'hex')).resultCode, ResultCode.SUCCESS);
  });

  test('no answer to a source outside the LAN prefix, nor to the WAN host', async () => {
    // an address of a prefix the LAN does not have, on the LAN link
    await lab.must(lab.lanA, ['ip', '-6', 'addr', 'add', '2001:db8:99::5/64', 'dev', 'eth0', 'nodad']);
    const from = portd.logs.length;
    const r = await ask(hostA, ADDR6.gwLan, announce('2001:db8:99::5'), '2001:db8:99::5', 800);
    assert.equal(r.ok, false, `silence: ${JSON.stringify(r)}`);
    const dropped = portd.since(from, (l) => l.msg === 'request from outside the LAN dropped');
    assert.equal(dropped[0]?.['client'], '2001:db8:99::5', 'dropped as not LAN, not lost on the way');
    const w = await ask(wan, ADDR6.gwLan, announce(ADDR6.wanHost), ADDR6.wanHost, 800);
    assert.equal(w.ok, false, `WAN host: silence: ${JSON.stringify(w)}`);
    const w2 = await ask(wan, ADDR6.gwWan, announce(ADDR6.wanHost), ADDR6.wanHost, 800);
    assert.equal(w2.ok, false, `WAN address: silence: ${JSON.stringify(w2)}`);
  });
  test('a prefix added to the LAN counts as LAN within moments (prefix watch → LAN clients)', async () => {
    const src = '2001:db8:78::11';
    await lab.must(lab.lanA, ['ip', '-6', 'addr', 'add', `${src}/64`, 'dev', 'eth0', 'nodad']);
    const before = await ask(hostA, ADDR6.gwLan, announce(src), src, 800);
    assert.equal(before.ok, false, 'not a LAN prefix yet: silence');
    await lab.must(lab.gw, ['ip', '-6', 'addr', 'add', '2001:db8:78::1/64', 'dev', IF.lan, 'nodad']);
    let answered = false;
    for (let i = 0; i < 10 && !answered; i++) {
      const r = await ask(hostA, ADDR6.gwLan, announce(src), src, 500);
      answered = r.ok && decodePcpResponse(Buffer.from(String(r.reply), 'hex')).resultCode === ResultCode.SUCCESS;
    }
    assert.ok(answered, 'answered once the gateway has the prefix');
    assert.ok(portd.logs.some((l) => l.msg === 'IPv6 prefixes changed' && l['side'] === 'lan'));
  });
});
