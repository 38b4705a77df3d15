/**
 * Lab: PCP PEER for an IPv6 flow (issue 15, item 5; RFC 6887 §12) through the real `portd start`, real
 * nftables and the lab's default-deny inbound IPv6 policy. PEER from LAN host A names the WAN host
 * (2001:db8:113::2) as its peer: that peer then reaches A's TCP port, the WAN host's other address
 * (2001:db8:113::3) does not; lifetime 0 closes it again. And MAP with FILTER by prefix (RFC 6887 §13.3):
 * 2001:db8:113::/64 lets both WAN addresses in, 2001:db8:113::2/128 only the one, and the periodic audit
 * (every second here) finds the prefix element as it wrote it, not stale. Root only; a failure under CI=true.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodePcpResponse,
  encodePcpRequest,
  IpProtocol,
  nonceFromHex,
  Opcode,
  ResultCode,
  type PcpOption,
} from '../../protocols/pcp/index.js';
import { ADDR6, createLab, labSkip, type Agent, type Lab } from './harness.js';
import { startIPv6Gateway, type IPv6Gateway } from './ipv6-gateway.js';
import type { PortdProcess } from './portd-process.js';

const skip = labSkip('ipv6-pcp-peer');
const PORT = 8443;
const FAIL_MS = 700;
const WAN2 = '2001:db8:113::3';
const NONCE = nonceFromHex('a1a2a3a4a5a6a7a8a9aaabac');

describe('PCP PEER over IPv6: a pinhole for one remote peer', { skip, timeout: 90_000 }, () => {
  let lab: Lab;
  let portd: PortdProcess;
  let gw: IPv6Gateway | undefined;
  let hostA: Agent, wan: Agent;

  const pcp = async (bytes: Uint8Array) => {
    const r = await hostA.call('udpBytes', {
      host: ADDR6.gwLan,
      port: 5351,
      hex: Buffer.from(bytes).toString('hex'),
      localAddress: ADDR6.hostA,
      timeoutMs: 2000,
    });
    assert.ok(r.ok, JSON.stringify(r));
    return decodePcpResponse(Buffer.from(String(r.reply), 'hex'));
  };
  const peer = (lifetime: number, remote = ADDR6.wanHost) =>
    encodePcpRequest({
      version: 2,
      opcode: Opcode.PEER,
      lifetime,
      clientAddress: ADDR6.hostA,
      options: [],
      peer: {
        nonce: NONCE,
        protocol: IpProtocol.TCP,
        internalPort: PORT,
        externalPort: 0,
        externalAddress: '::',
        remotePort: 40000,
        remoteAddress: remote,
      },
    });
  const map = (lifetime: number, options: PcpOption[]) =>
    encodePcpRequest({
      version: 2,
      opcode: Opcode.MAP,
      lifetime,
      clientAddress: ADDR6.hostA,
      options,
      map: { nonce: NONCE, protocol: IpProtocol.TCP, internalPort: PORT, externalPort: 0, externalAddress: '::' },
    });
  const filter = (remoteAddress: string, prefixLength: number): PcpOption => ({
    kind: 'filter',
    prefixLength,
    remotePort: 0,
    remoteAddress,
  });
  const reaches = async (from: string) =>
    (await wan.tcpProbe(ADDR6.hostA, PORT, { localAddress: from, data: 'x', timeoutMs: FAIL_MS })).ok;

  before(async () => {
    lab = await createLab({ ipv6: true });
    await lab.must(lab.wan, ['ip', '-6', 'addr', 'add', `${WAN2}/64`, 'dev', 'eth0', 'nodad']);
    gw = await startIPv6Gateway(lab, {
      name: 'peer6',
      dataplane: 'reconcileInterval: 1',
      config: ['upnp: { enabled: false }', 'pcp: { ipv6: true }'],
    });
    portd = gw.portd;
    hostA = await lab.agent(lab.lanA, 'hostA');
    wan = await lab.agent(lab.wan, 'wan');
    assert.ok((await hostA.listen('tcp', PORT, '::')).ok);
  });

  after(async () => {
    await gw?.stop();
    await lab?.teardown();
  });

  test('PEER lets that peer in, and only it; lifetime 0 closes it', async () => {
    assert.equal(await reaches(ADDR6.wanHost), false, 'default deny before');
    const res = await pcp(peer(600));
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(res.peer?.externalAddress, ADDR6.hostA, 'no translation');
    assert.equal(res.peer?.externalPort, PORT);
    assert.match(await lab.must(lab.gw, ['nft', 'list', 'set', 'inet', 'portd', 'pin6_peer']), /2001:db8:113::2/);
    assert.equal(await reaches(ADDR6.wanHost), true, 'the peer reaches the LAN host');
    assert.equal(await reaches(WAN2), false, 'another WAN address does not');
    const del = await pcp(peer(0));
    assert.equal(del.resultCode, ResultCode.SUCCESS);
    assert.equal(await reaches(ADDR6.wanHost), false, 'closed after lifetime 0');
  });

  test('FILTER by prefix: a /64 lets both WAN addresses in, a /128 only one; the audit keeps the element', async () => {
    assert.equal(await reaches(ADDR6.wanHost), false, 'closed before');
    const wide = await pcp(map(600, [filter('2001:db8:113::77', 64)]));
    assert.equal(wide.resultCode, ResultCode.SUCCESS);
    assert.equal(wide.options.find((o) => o.kind === 'filter')?.kind, 'filter', 'the FILTER is echoed');
    assert.match(
      await lab.must(lab.gw, ['nft', 'list', 'set', 'inet', 'portd', 'pin6_net']),
      /2001:db8:113::\/64 \. 2001:db8:77::11 \. tcp \. 8443/,
    );
    assert.equal(await reaches(ADDR6.wanHost), true, 'the WAN host is in the prefix');
    assert.equal(await reaches(WAN2), true, 'so is its other address');
    // the audit runs every second: the prefix element must read back as the one written (not stale, no repair)
    const from = portd.logs.length;
    await new Promise((r) => setTimeout(r, 2500));
    assert.deepEqual(
      portd.since(from, (l) => l.msg === 'nft drift repaired from the model'),
      [],
      'no drift repaired',
    );
    // prefix length 0 removes the filter, then one whole address: the renewal narrows the same pinhole
    const narrow = await pcp(map(600, [filter('::', 0), filter(ADDR6.wanHost, 128)]));
    assert.equal(narrow.resultCode, ResultCode.SUCCESS);
    assert.doesNotMatch(await lab.must(lab.gw, ['nft', 'list', 'set', 'inet', 'portd', 'pin6_net']), /8443/);
    assert.equal(await reaches(ADDR6.wanHost), true, 'the /128 peer');
    assert.equal(await reaches(WAN2), false, 'not the other address');
    assert.equal((await pcp(map(0, []))).resultCode, ResultCode.SUCCESS);
    assert.equal(await reaches(ADDR6.wanHost), false, 'closed after lifetime 0');
  });
});
