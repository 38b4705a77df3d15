/**
 * NAT-PMP (RFC 6886) over loopback through the real lease table, and the one-table rule
 * across PCP, NAT-PMP and UPnP (RFC 6887 Appendix A).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeNatPmpResponse,
  decodePcpResponse,
  encodeNatPmpRequest,
  NatPmpResultCode,
  ResultCode,
} from '../../protocols/pcp/index.js';
import {
  EXTERNAL,
  mapRequest,
  NONCE_A,
  NONCE_B,
  startPcp,
  udpClient,
  type Harness,
  type UdpClient,
} from './pcp-helpers.js';

const ext = encodeNatPmpRequest({ opcode: 0 });
const map = (opcode: 1 | 2, internalPort: number, externalPort: number, lifetime: number) =>
  encodeNatPmpRequest({ opcode, internalPort, externalPort, lifetime });

describe('NAT-PMP', () => {
  let h: Harness;
  let c: UdpClient;
  before(async () => {
    h = await startPcp();
    c = await udpClient();
  });
  after(async () => {
    c.close();
    await h.close();
  });

  test('external address request → our IPv4 and the epoch', async () => {
    h.env.clock.advance(5000);
    const r = decodeNatPmpResponse(await c.ask(ext, h.port));
    assert.deepEqual(r, { opcode: 0, resultCode: 0, epoch: 5, externalAddress: EXTERNAL });
  });

  test('map UDP: granted, lease row with source natpmp and no nonce', async () => {
    const r = decodeNatPmpResponse(await c.ask(map(1, 4000, 4000, 3600), h.port));
    assert.equal(r.resultCode, NatPmpResultCode.SUCCESS);
    assert.ok('lifetime' in r);
    assert.equal(r.internalPort, 4000);
    assert.equal(r.externalPort, 4000);
    assert.equal(r.lifetime, 3600);
    const lease = h.env.table.findByInternal('udp', '127.0.0.1', 4000)!;
    assert.equal(lease.source, 'natpmp');
    assert.equal(lease.nonce, null);
  });

  test('a lifetime of 3,600,000 s (milliseconds sent as seconds) is clamped to policy', async () => {
    const r = decodeNatPmpResponse(await c.ask(map(2, 4001, 4001, 3_600_000), h.port));
    assert.ok('lifetime' in r);
    assert.equal(r.lifetime, 86400);
  });

  test('delete (lifetime 0): external port 0 in the answer, lease gone; unknown mapping succeeds too', async () => {
    const r = decodeNatPmpResponse(await c.ask(map(2, 4001, 4001, 0), h.port));
    assert.deepEqual(r, { opcode: 2, resultCode: 0, epoch: r.epoch, internalPort: 4001, externalPort: 0, lifetime: 0 });
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 4001), null);
    const again = decodeNatPmpResponse(await c.ask(map(2, 4001, 0, 0), h.port));
    assert.equal(again.resultCode, 0);
  });

  test('internal port 0 + lifetime 0 deletes every mapping of the client for the protocol (RFC 6886 §3.4)', async () => {
    for (const p of [4100, 4101])
      assert.equal(decodeNatPmpResponse(await c.ask(map(2, p, p, 600), h.port)).resultCode, 0);
    const r = decodeNatPmpResponse(await c.ask(map(2, 0, 0, 0), h.port));
    assert.equal(r.resultCode, 0);
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 4100), null);
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 4101), null);
    assert.ok(h.env.table.findByInternal('udp', '127.0.0.1', 4000), 'the UDP mapping is untouched');
  });

  test('unsupported opcode → result 5 in a header-only answer; a response (op ≥ 128) is dropped', async () => {
    const r = await c.ask(Buffer.from('0003', 'hex'), h.port);
    assert.equal(r.toString('hex'), `0083 0005 ${r.subarray(4, 8).toString('hex')}`.replace(/ /g, ''));
    c.send(Buffer.from('0080', 'hex'), h.port);
    assert.equal(await c.next(300), null);
  });

  test('a port held by UPnP is never handed out: NAT-PMP gets another port', async () => {
    const u = await h.env.table.request({
      source: 'upnp',
      identity: 'external',
      protocol: 'tcp',
      owner: '127.0.0.9',
      internalAddress: '127.0.0.9',
      internalPort: 4500,
      externalPort: 4500,
      allowOtherPort: false,
      lifetime: 3600,
    });
    assert.ok(u.ok);
    const r = decodeNatPmpResponse(await c.ask(map(2, 4500, 4500, 600), h.port));
    assert.equal(r.resultCode, 0);
    assert.ok('externalPort' in r);
    assert.notEqual(r.externalPort, 4500);
    assert.equal(h.env.table.findByExternal('tcp', 4500)!.source, 'upnp');
  });

  test('PCP and NAT-PMP share the mapping for one internal endpoint (RFC 6887 Appendix A)', async () => {
    // NAT-PMP creates and renews, PCP renews (adopting its nonce), after which NAT-PMP may not: one lease throughout
    const n1 = decodeNatPmpResponse(await c.ask(map(2, 4600, 4600, 600), h.port));
    assert.equal(n1.resultCode, 0);
    const id = h.env.table.findByInternal('tcp', '127.0.0.1', 4600)!.id;
    const p = decodePcpResponse(
      await c.ask(mapRequest({ internalPort: 4600, nonce: NONCE_A, lifetime: 1200 }), h.port),
    );
    assert.equal(p.resultCode, ResultCode.SUCCESS);
    assert.equal(p.map?.externalPort, 4600);
    let lease = h.env.table.findByInternal('tcp', '127.0.0.1', 4600)!;
    assert.equal(lease.id, id);
    assert.equal(lease.nonce, NONCE_A, 'PCP adopted the NAT-PMP lease');
    const wrong = decodePcpResponse(await c.ask(mapRequest({ internalPort: 4600, nonce: NONCE_B }), h.port));
    assert.equal(wrong.resultCode, ResultCode.NOT_AUTHORIZED, 'after adoption the nonce rules apply');
    const n2 = decodeNatPmpResponse(await c.ask(map(2, 4600, 0, 900), h.port));
    assert.equal(n2.resultCode, NatPmpResultCode.NOT_AUTHORIZED, "the nonce is the owner's proof and NAT-PMP has none");
    lease = h.env.table.findByInternal('tcp', '127.0.0.1', 4600)!;
    assert.equal(lease.id, id);
    assert.equal(lease.nonce, NONCE_A);
    assert.equal(h.env.table.list({ owner: '127.0.0.1', internalPort: 4600 }).total, 1);
  });

  test('NAT-PMP cannot renew, move or delete a mapping PCP made with a nonce: result 2, the lease unchanged', async () => {
    const p = decodePcpResponse(
      await c.ask(
        mapRequest({ protocol: 17, internalPort: 4700, externalPort: 4700, nonce: NONCE_A, lifetime: 3600 }),
        h.port,
      ),
    );
    assert.equal(p.resultCode, ResultCode.SUCCESS);
    const before = h.env.table.findByInternal('udp', '127.0.0.1', 4700)!;
    h.env.clock.advance(30_000);
    // a renewal with the same ports
    const renew = decodeNatPmpResponse(await c.ask(map(1, 4700, 4700, 7200), h.port));
    assert.equal(renew.resultCode, NatPmpResultCode.NOT_AUTHORIZED);
    assert.ok('lifetime' in renew && renew.lifetime === 0 && renew.externalPort === 0, 'no mapping is reported');
    // the same internal port with another external port names the same mapping: refused, not a second lease
    const other = decodeNatPmpResponse(await c.ask(map(1, 4700, 4800, 7200), h.port));
    assert.equal(other.resultCode, NatPmpResultCode.NOT_AUTHORIZED);
    // natpmpc -a 4700 4700 udp 0: delete with the public port and lifetime 0
    const del = decodeNatPmpResponse(await c.ask(map(1, 4700, 4700, 0), h.port));
    assert.equal(del.resultCode, NatPmpResultCode.NOT_AUTHORIZED);
    const after = h.env.table.findByInternal('udp', '127.0.0.1', 4700)!;
    assert.equal(after.id, before.id);
    assert.equal(after.state, 'active');
    assert.equal(after.expiresAt, before.expiresAt, 'same expiry: not renewed');
    assert.equal(after.externalPort, 4700);
    assert.equal(h.env.table.list({ owner: '127.0.0.1', protocol: 'udp', internalPort: 4700 }).total, 1);
    assert.equal(h.env.table.findByExternal('udp', 4800), null);
    assert.ok(
      [...h.env.dataplane.entries.values()].some((e) => e.protocol === 'udp' && e.externalPort === 4700),
      'the kernel entry stays',
    );
    // delete-all (internal port 0) ends the client's NAT-PMP mappings and passes over the PCP one
    assert.equal(decodeNatPmpResponse(await c.ask(map(1, 4701, 4701, 600), h.port)).resultCode, 0);
    const all = decodeNatPmpResponse(await c.ask(map(1, 0, 0, 0), h.port));
    assert.equal(all.resultCode, 0);
    assert.equal(h.env.table.findByInternal('udp', '127.0.0.1', 4701), null);
    assert.equal(h.env.table.findByInternal('udp', '127.0.0.1', 4700)?.id, before.id, 'the PCP mapping survives');
    // its owner, with the nonce, still renews and deletes it
    const own = decodePcpResponse(
      await c.ask(mapRequest({ protocol: 17, internalPort: 4700, nonce: NONCE_A, lifetime: 0 }), h.port),
    );
    assert.equal(own.resultCode, ResultCode.SUCCESS);
    assert.equal(h.env.table.findByInternal('udp', '127.0.0.1', 4700), null);
  });
});

describe('version handling when one protocol is off (RFC 6887 §9)', () => {
  test('PCP disabled: a PCP request gets NAT-PMP UNSUPPORTED_VERSION so the client falls back', async () => {
    const h = await startPcp({ pcp: { enabled: false } });
    const c = await udpClient();
    try {
      const r = await c.ask(mapRequest(), h.port);
      assert.equal(r.length, 8);
      assert.equal(r[0], 0);
      assert.equal(r[1], 0x81);
      assert.equal(r.readUInt16BE(2), NatPmpResultCode.UNSUPPORTED_VERSION);
      assert.equal(decodeNatPmpResponse(await c.ask(ext, h.port)).resultCode, 0, 'NAT-PMP still served');
    } finally {
      c.close();
      await h.close();
    }
  });

  test('NAT-PMP disabled: a version-0 request gets PCP UNSUPP_VERSION carrying version 2', async () => {
    const h = await startPcp({ natpmp: false });
    const c = await udpClient();
    try {
      const r = decodePcpResponse(await c.ask(map(2, 4000, 4000, 60), h.port));
      assert.equal(r.version, 2);
      assert.equal(r.resultCode, ResultCode.UNSUPP_VERSION);
    } finally {
      c.close();
      await h.close();
    }
  });
});
