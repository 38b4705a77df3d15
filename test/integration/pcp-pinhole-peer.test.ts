/**
 * PCP PEER for IPv6 flows and THIRD_PARTY for pinholes (issue 15, item 5), through the PCP handler and a
 * real lease table (SQLite, memory dataplane, fixed clock).
 *
 * - PEER with an IPv6 internal address (RFC 6887 §12): portd is a pure firewall there, so the answer is a
 *   pinhole for that one peer: a family-6 lease, external = internal, remote filter = the peer (/128); a
 *   repeat renews it (no second row, no second kernel element), lifetime 0 deletes it, another nonce may
 *   not, an IPv4 peer (no NAT64) and pinholes off are NOT_AUTHORIZED.
 * - THIRD_PARTY for a pinhole (§13.1): in secure mode accepted for another address of the requesting host
 *   (the sameHost seam: one link-layer address), NOT_AUTHORIZED for another host's address and when secure
 *   mode is off without pcp.thirdParty; pcp.thirdParty still lets a trusted requester open any pinhole.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import pino from 'pino';
import {
  decodePcpResponse,
  encodePcpRequest,
  IpProtocol,
  Opcode,
  ResultCode,
  Version,
  type PcpOption,
} from '../../protocols/pcp/index.js';
import { createPcpHandler } from '../../src/frontends/pcp/handler.js';
import { makeTable, testPolicy } from '../helpers/leases.js';

const HOST = '2001:db8:77::11';
const HOST_TEMP = '2001:db8:77:0:5c1e:a9f3:7b20:d411'; // the same host's privacy address
const OTHER = '2001:db8:77::12'; // another host
const PEER = '2001:db8:113::2';
const NONCE = new Uint8Array(12).fill(7);

const disposers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const d of disposers.splice(0)) await d();
});

function setup(opts: { secureMode?: boolean; thirdParty?: string[]; ipv6Pinholes?: boolean | (() => boolean) } = {}) {
  const env = makeTable({
    policy: { secureMode: opts.secureMode ?? true },
    // the neighbour table's verdict: HOST and HOST_TEMP share a link-layer address, OTHER has its own
    policyDeps: {
      sameHost: (a, b) => {
        const mac = (x: string) => (x === OTHER ? 'b' : 'a');
        return mac(a) === mac(b) ? { same: true, reason: 'one lladdr' } : { same: false, reason: 'two lladdrs' };
      },
    },
  });
  disposers.push(() => env.dispose());
  const handler = createPcpHandler({
    config: {
      pcp: {
        enabled: true,
        port: 0,
        peer: true,
        thirdParty: opts.thirdParty ?? [],
        allowAllProtocols: false,
        rateLimit: 0,
        ipv6: true,
      },
      natpmp: { enabled: true },
      policy: testPolicy({ secureMode: opts.secureMode ?? true }),
      limits: { pcpRequestsPerSecond: 0, peerLookupsPerSecond: 0 },
    },
    leases: env.table,
    log: pino({ level: 'silent' }),
    conntrack: null, // no conntrack: an IPv6 PEER needs none
    epoch: () => 9,
    now: () => 0,
    ipv6Pinholes: opts.ipv6Pinholes ?? true,
  });
  const ask = async (packet: Uint8Array, source: string) => {
    const r = await handler.handle(packet, source);
    assert.ok(r.response, `answered (${r.result} ${r.detail ?? ''})`);
    return { res: decodePcpResponse(r.response), detail: r.detail };
  };
  const pinholes = () => env.table.list({ family: 6, state: 'active' }).leases;
  return { env, handler, ask, pinholes };
}

function peer(
  client: string,
  over: { lifetime?: number; remote?: string; remotePort?: number; nonce?: Uint8Array } = {},
  options: PcpOption[] = [],
) {
  return encodePcpRequest({
    version: Version.PCP,
    opcode: Opcode.PEER,
    lifetime: over.lifetime ?? 600,
    clientAddress: client,
    options,
    peer: {
      nonce: over.nonce ?? NONCE,
      protocol: IpProtocol.TCP,
      internalPort: 8443,
      externalPort: 0,
      externalAddress: '::',
      remotePort: over.remotePort ?? 51000,
      remoteAddress: over.remote ?? PEER,
    },
  });
}

function map(client: string, options: PcpOption[], lifetime = 600) {
  return encodePcpRequest({
    version: Version.PCP,
    opcode: Opcode.MAP,
    lifetime,
    clientAddress: client,
    options,
    map: { nonce: NONCE, protocol: IpProtocol.UDP, internalPort: 3478, externalPort: 0, externalAddress: '::' },
  });
}

describe('PCP PEER for an IPv6 flow: a pinhole for that one peer', () => {
  it('creates a family-6 lease, external = internal, remote filter = the peer; the kernel gets one element', async () => {
    const h = setup();
    const { res } = await h.ask(peer(HOST), HOST);
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(res.opcode, Opcode.PEER);
    assert.equal(res.lifetime, 600);
    assert.equal(res.peer?.externalAddress, HOST);
    assert.equal(res.peer?.externalPort, 8443);
    assert.equal(res.peer?.remoteAddress, PEER);
    const [l, ...more] = h.pinholes();
    assert.equal(more.length, 0);
    assert.equal(l?.family, 6);
    assert.equal(l?.source, 'pcp');
    assert.equal(l?.protocol, 'tcp');
    assert.equal(l?.internalAddress, HOST);
    assert.equal(l?.externalAddress, HOST);
    assert.equal(l?.internalPort, 8443);
    assert.equal(l?.externalPort, 8443);
    assert.equal(l?.remoteAddress, PEER);
    assert.equal(l?.remotePrefix, 128);
    assert.equal(l?.owner, HOST);
    const kernel = await h.env.dataplane.list();
    assert.equal(kernel.length, 1, JSON.stringify(kernel));
    assert.equal(kernel[0]?.family, 6);
    assert.equal(kernel[0]?.remoteAddress, PEER);
  });

  it('a repeat renews the same lease (lifetime clamped by policy), lifetime 0 deletes it', async () => {
    const h = setup();
    await h.ask(peer(HOST), HOST);
    const id = h.pinholes()[0]!.id;
    h.env.clock.advance(100_000);
    const again = await h.ask(peer(HOST, { lifetime: 10 }), HOST);
    assert.equal(again.res.resultCode, ResultCode.SUCCESS);
    assert.equal(again.res.lifetime, 120, 'policy.lifetime.pcp.min');
    assert.deepEqual(
      h.pinholes().map((l) => l.id),
      [id],
      'renewed, not a second lease',
    );
    // another nonce (a restarted client) may not delete it (RFC 6887 §11.2, QUIRKS.md)
    const foreign = await h.ask(peer(HOST, { lifetime: 0, nonce: new Uint8Array(12).fill(1) }), HOST);
    assert.equal(foreign.res.resultCode, ResultCode.NOT_AUTHORIZED);
    assert.equal(h.pinholes().length, 1);
    const del = await h.ask(peer(HOST, { lifetime: 0 }), HOST);
    assert.equal(del.res.resultCode, ResultCode.SUCCESS);
    assert.equal(del.res.lifetime, 0);
    assert.equal(h.pinholes().length, 0);
    // deleting what does not exist succeeds (§15)
    assert.equal((await h.ask(peer(HOST, { lifetime: 0 }), HOST)).res.resultCode, ResultCode.SUCCESS);
  });

  it('two peers of one internal endpoint are two pinholes', async () => {
    const h = setup();
    await h.ask(peer(HOST), HOST);
    await h.ask(peer(HOST, { remote: '2001:db8:113::3' }), HOST);
    assert.deepEqual(
      h
        .pinholes()
        .map((l) => l.remoteAddress)
        .sort(),
      ['2001:db8:113::2', '2001:db8:113::3'],
    );
  });

  it('what cannot be done: an IPv4 peer (no NAT64), pinholes off, an unreachable internal address', async () => {
    const h = setup();
    const v4 = await h.ask(peer(HOST, { remote: '::ffff:203.0.113.2' }), HOST);
    assert.equal(v4.res.resultCode, ResultCode.NOT_AUTHORIZED);
    assert.match(v4.detail ?? '', /NAT64/);
    // policy.ipv6Pinholes off (main.ts passes it as a function: it follows a reload)
    const off = setup({ ipv6Pinholes: () => false });
    assert.equal((await off.ask(peer(HOST), HOST)).res.resultCode, ResultCode.NOT_AUTHORIZED);
    const ll = await h.ask(peer('fe80::11'), 'fe80::11');
    assert.equal(ll.res.resultCode, ResultCode.NOT_AUTHORIZED);
    assert.equal(h.pinholes().length + off.pinholes().length, 0);
  });
});

describe('THIRD_PARTY for pinholes, by policy', () => {
  it('secure mode: the host may open a pinhole for another of its own addresses', async () => {
    const h = setup();
    const { res } = await h.ask(peer(HOST_TEMP, {}, [{ kind: 'third_party', address: HOST }]), HOST_TEMP);
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    const m = await h.ask(map(HOST_TEMP, [{ kind: 'third_party', address: HOST }]), HOST_TEMP);
    assert.equal(m.res.resultCode, ResultCode.SUCCESS);
    assert.equal(m.res.map?.externalAddress, HOST);
    assert.deepEqual(
      h.pinholes().map((l) => [l.internalAddress, l.owner]),
      [
        [HOST, HOST_TEMP],
        [HOST, HOST_TEMP],
      ],
    );
    // and deletes it again, from the same address with the same nonce
    const del = await h.ask(map(HOST_TEMP, [{ kind: 'third_party', address: HOST }], 0), HOST_TEMP);
    assert.equal(del.res.resultCode, ResultCode.SUCCESS);
    assert.equal(h.pinholes().length, 1);
  });

  it("secure mode: another host's address is NOT_AUTHORIZED, and nothing is opened", async () => {
    const h = setup();
    const p = await h.ask(peer(HOST, {}, [{ kind: 'third_party', address: OTHER }]), HOST);
    assert.equal(p.res.resultCode, ResultCode.NOT_AUTHORIZED);
    const m = await h.ask(map(HOST, [{ kind: 'third_party', address: OTHER }]), HOST);
    assert.equal(m.res.resultCode, ResultCode.NOT_AUTHORIZED);
    assert.equal(h.pinholes().length, 0);
  });

  it('secure mode off, no pcp.thirdParty: NOT_AUTHORIZED (RFC 6887 §13.1); pcp.thirdParty lets any through', async () => {
    const open = setup({ secureMode: false });
    const m = await open.ask(map(HOST_TEMP, [{ kind: 'third_party', address: HOST }]), HOST_TEMP);
    assert.equal(m.res.resultCode, ResultCode.NOT_AUTHORIZED);
    assert.equal(open.pinholes().length, 0);
    const trusted = setup({ thirdParty: ['2001:db8:77::12/128'] });
    const t = await trusted.ask(map(OTHER, [{ kind: 'third_party', address: HOST }]), OTHER);
    assert.equal(t.res.resultCode, ResultCode.SUCCESS);
    assert.equal(trusted.pinholes()[0]?.internalAddress, HOST);
  });
});
