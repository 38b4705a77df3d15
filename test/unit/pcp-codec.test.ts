import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  classifyPacket,
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  decodePcpRequest,
  decodePcpResponse,
  encodeNatPmpResponse,
  encodePcpRequest,
  encodePcpResponse,
  errorResponseFor,
  nonceHex,
  nonceFromHex,
  NatPmpDecodeError,
  Opcode,
  PcpDecodeError,
  ResultCode,
  readAddress,
  addressBytes,
  sameAddress,
} from '../../protocols/pcp/index.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function decodeErr(b: Uint8Array, source?: string): PcpDecodeError {
  try {
    decodePcpRequest(b, source === undefined ? {} : { source });
  } catch (e) {
    assert.ok(e instanceof PcpDecodeError, `expected PcpDecodeError, got ${String(e)}`);
    return e;
  }
  assert.fail('decoded without error');
}

// A MAP request laid out by hand from RFC 6887 §7.1 and §11.1:
// version 2, opcode MAP, lifetime 7200, client 192.168.1.10, nonce 0102..0c, TCP,
// internal 8080, suggested 8080 on 0.0.0.0
const MAP_REQ = hex(`
  02 01 0000 00001c20 00000000000000000000ffff c0a8010a
  0102030405060708090a0b0c 06 000000 1f90 1f90 00000000000000000000ffff 00000000`);

test('MAP request: fixed vector decodes field by field', () => {
  const r = decodePcpRequest(MAP_REQ, { source: '192.168.1.10' });
  assert.equal(r.opcode, Opcode.MAP);
  assert.equal(r.lifetime, 7200);
  assert.equal(r.clientAddress, '192.168.1.10');
  if (r.opcode !== Opcode.MAP) return;
  assert.equal(nonceHex(r.map.nonce), '0102030405060708090a0b0c');
  assert.equal(r.map.protocol, 6);
  assert.equal(r.map.internalPort, 8080);
  assert.equal(r.map.externalPort, 8080);
  assert.equal(r.map.externalAddress, '0.0.0.0');
  assert.deepEqual(r.options, []);
  assert.equal(toHex(encodePcpRequest(r)), toHex(MAP_REQ));
});

test('MAP request with PREFER_FAILURE, FILTER and an unknown optional option', () => {
  const opts = hex(`
    02 00 0000
    03 00 0014 00 78 0050 00000000000000000000ffff cb007105
    80 00 0003 aabbcc00`);
  const b = new Uint8Array(MAP_REQ.length + opts.length);
  b.set(MAP_REQ);
  b.set(opts, MAP_REQ.length);
  const r = decodePcpRequest(b, { source: '192.168.1.10' });
  assert.deepEqual(r.options, [
    { kind: 'prefer_failure' },
    { kind: 'filter', prefixLength: 120, remotePort: 80, remoteAddress: '203.0.113.5' },
    { kind: 'other', code: 0x80, data: hex('aabbcc') },
  ]);
  assert.equal(toHex(encodePcpRequest(r)), toHex(b));
});

test('§8.3 order: under 2 octets and R bit are dropped', () => {
  assert.equal(decodeErr(hex('02')).action, 'drop');
  const r = MAP_REQ.slice();
  r[1] = 0x81;
  assert.equal(decodeErr(r).action, 'drop');
  assert.equal(classifyPacket(hex('02')), 'drop');
  assert.equal(classifyPacket(r), 'drop');
  assert.equal(classifyPacket(hex('0000')), 'natpmp');
  assert.equal(classifyPacket(MAP_REQ), 'pcp');
});

test('§8.3 order: unsupported version answered before any length check', () => {
  const e = decodeErr(hex('0101'));
  assert.equal(e.action, 'respond');
  assert.equal(e.resultCode, ResultCode.UNSUPP_VERSION);
  const res = errorResponseFor(e, 5);
  assert.ok(res);
  const bytes = encodePcpResponse(res);
  assert.equal(bytes.length, 24);
  assert.equal(bytes[0], 2, 'carries the version we support');
  assert.equal(bytes[1], 0x81);
  assert.equal(bytes[3], ResultCode.UNSUPP_VERSION);
});

test('§8.3 order: shorter than 24 dropped, then over 1100 / not multiple of 4 → MALFORMED_REQUEST', () => {
  assert.equal(decodeErr(MAP_REQ.slice(0, 20)).action, 'drop');
  const long = new Uint8Array(1104);
  long.set(MAP_REQ);
  assert.equal(decodeErr(long).resultCode, ResultCode.MALFORMED_REQUEST);
  const odd = new Uint8Array(62);
  odd.set(MAP_REQ);
  assert.equal(decodeErr(odd).resultCode, ResultCode.MALFORMED_REQUEST);
  // a too-short MAP (header only) is malformed, not dropped
  assert.equal(decodeErr(MAP_REQ.slice(0, 24)).resultCode, ResultCode.MALFORMED_REQUEST);
});

test('§8.3 order: unknown opcode beats address mismatch; mismatch beats bad options', () => {
  const unk = MAP_REQ.slice();
  unk[1] = 9;
  const e1 = decodeErr(unk, '10.0.0.1');
  assert.equal(e1.resultCode, ResultCode.UNSUPP_OPCODE);
  const withBadOpt = new Uint8Array(MAP_REQ.length + 4);
  withBadOpt.set(MAP_REQ);
  withBadOpt.set(hex('01000010'), MAP_REQ.length); // THIRD_PARTY claiming 16 octets that are not there
  assert.equal(decodeErr(withBadOpt, '10.0.0.1').resultCode, ResultCode.ADDRESS_MISMATCH);
  assert.equal(decodeErr(withBadOpt, '192.168.1.10').resultCode, ResultCode.MALFORMED_OPTION);
});

test('options: unknown mandatory → UNSUPP_OPTION, unknown optional ignored, duplicates → MALFORMED_OPTION', () => {
  const add = (o: string) => {
    const x = hex(o);
    const b = new Uint8Array(MAP_REQ.length + x.length);
    b.set(MAP_REQ);
    b.set(x, MAP_REQ.length);
    return b;
  };
  assert.equal(decodeErr(add('7f000000')).resultCode, ResultCode.UNSUPP_OPTION);
  assert.deepEqual(decodePcpRequest(add('ff000000')).options, [{ kind: 'other', code: 255, data: new Uint8Array(0) }]);
  assert.equal(decodeErr(add('02000000 02000000')).resultCode, ResultCode.MALFORMED_OPTION);
  assert.equal(
    decodeErr(add('02000004 00000000')).resultCode,
    ResultCode.MALFORMED_OPTION,
    'PREFER_FAILURE has no data',
  );
  // FILTER with a prefix length that makes no sense for an IPv4 peer
  assert.equal(
    decodeErr(add('03000014 00 10 0050 00000000000000000000ffff cb007105')).resultCode,
    ResultCode.MALFORMED_OPTION,
  );
  // PREFER_FAILURE is not defined for PEER: an unknown mandatory option there
  const peer = encodePcpRequest({
    version: 2,
    opcode: Opcode.PEER,
    lifetime: 60,
    clientAddress: '192.168.1.10',
    options: [],
    peer: {
      nonce: new Uint8Array(12),
      protocol: 6,
      internalPort: 1000,
      externalPort: 0,
      externalAddress: '0.0.0.0',
      remotePort: 80,
      remoteAddress: '203.0.113.5',
    },
  });
  const p2 = new Uint8Array(peer.length + 4);
  p2.set(peer);
  p2.set(hex('02000000'), peer.length);
  assert.equal(decodeErr(p2).resultCode, ResultCode.UNSUPP_OPTION);
});

test('MAP semantic checks: protocol 0 with a port, port 0 with a lifetime', () => {
  const a = MAP_REQ.slice();
  a[36] = 0; // protocol 0, internal port 8080
  assert.equal(decodeErr(a).resultCode, ResultCode.MALFORMED_REQUEST);
  const b = MAP_REQ.slice();
  b[40] = 0;
  b[41] = 0; // internal port 0 with lifetime 7200
  assert.equal(decodeErr(b).resultCode, ResultCode.MALFORMED_REQUEST);
  const c = b.slice();
  c[4] = 0;
  c[5] = 0;
  c[6] = 0;
  c[7] = 0; // ...with lifetime 0 it is a delete of all ports
  const r = decodePcpRequest(c);
  assert.equal(r.lifetime, 0);
});

test('error response copies the MAP opcode data (RFC 6887 §8.3)', () => {
  const e = decodeErr(MAP_REQ, '10.9.9.9');
  const res = errorResponseFor(e, 77);
  assert.ok(res);
  const bytes = encodePcpResponse(res);
  assert.equal(bytes.length, 60);
  assert.equal(bytes[3], ResultCode.ADDRESS_MISMATCH);
  assert.equal(toHex(bytes.slice(24)), toHex(MAP_REQ.slice(24)));
  const d = decodePcpResponse(bytes);
  assert.equal(d.epoch, 77);
  assert.equal(d.lifetime, 1800, 'long lifetime error');
});

test('MAP response: fixed vector', () => {
  const res = encodePcpResponse({
    version: 2,
    opcode: Opcode.MAP,
    resultCode: 0,
    lifetime: 3600,
    epoch: 1234,
    options: [],
    map: {
      nonce: nonceFromHex('0102030405060708090a0b0c'),
      protocol: 17,
      internalPort: 5000,
      externalPort: 5001,
      externalAddress: '192.0.2.1',
    },
  });
  assert.equal(
    toHex(res),
    toHex(
      hex(`
    02 81 00 00 00000e10 000004d2 000000000000000000000000
    0102030405060708090a0b0c 11 000000 1388 1389 00000000000000000000ffff c0000201`),
    ),
  );
});

test('ANNOUNCE request and unsolicited response', () => {
  const req = hex('0200 0000 00000000 00000000000000000000ffff c0a8010a');
  const r = decodePcpRequest(req, { source: '192.168.1.10' });
  assert.equal(r.opcode, Opcode.ANNOUNCE);
  const res = encodePcpResponse({ version: 2, opcode: 0, resultCode: 0, lifetime: 0, epoch: 0, options: [] });
  assert.equal(toHex(res), '0280' + '00'.repeat(22));
});

test('addresses: IPv4-mapped, IPv6 compression, equality across spellings', () => {
  assert.equal(readAddress(addressBytes('2001:db8::1')!, 0), '2001:db8::1');
  assert.equal(readAddress(addressBytes('::')!, 0), '::');
  assert.equal(
    readAddress(addressBytes('fe80:0:0:1:0:0:0:1')!, 0),
    'fe80:0:0:1::1',
    'the longest zero run is compressed',
  );
  assert.equal(readAddress(addressBytes('::ffff:10.1.2.3')!, 0), '10.1.2.3');
  assert.ok(sameAddress('::ffff:127.0.0.1', '127.0.0.1'));
  assert.equal(addressBytes('1.2.3'), null);
  assert.equal(addressBytes('1::2::3'), null);
});

test('NAT-PMP: the natpmpc capture decodes as natpmpc meant it', () => {
  const fx = JSON.parse(readFileSync(new URL('../fixtures/pcp/natpmpc.json', import.meta.url), 'utf8')) as {
    packets: { name: string; hex: string }[];
  };
  const [ext, map, , del] = fx.packets.map((p) => decodeNatPmpRequest(hex(p.hex)));
  assert.deepEqual(ext, { opcode: 0 });
  assert.deepEqual(map, { opcode: 2, internalPort: 4000, externalPort: 4000, lifetime: 3600 });
  assert.deepEqual(del, { opcode: 2, internalPort: 4000, externalPort: 4000, lifetime: 0 });
});

test('NAT-PMP: the nat-port-mapper capture carries milliseconds as seconds', () => {
  const fx = JSON.parse(readFileSync(new URL('../fixtures/pcp/nat-port-mapper.json', import.meta.url), 'utf8')) as {
    packets: { name: string; hex: string }[];
  };
  const first = decodeNatPmpRequest(hex(fx.packets[0]!.hex));
  assert.deepEqual(first, { opcode: 1, internalPort: 4000, externalPort: 4000, lifetime: 3_600_000 });
});

test('NAT-PMP: errors and responses (RFC 6886 §3.5, errata 3618)', () => {
  const v = (() => {
    try {
      decodeNatPmpRequest(hex('0100'));
    } catch (e) {
      return e;
    }
  })();
  assert.ok(v instanceof NatPmpDecodeError);
  assert.equal(v.resultCode, 1);
  const u = (() => {
    try {
      decodeNatPmpRequest(hex('0003'));
    } catch (e) {
      return e;
    }
  })();
  assert.ok(u instanceof NatPmpDecodeError && u.resultCode === 5 && u.opcode === 3);
  const short = (() => {
    try {
      decodeNatPmpRequest(hex('00020000'));
    } catch (e) {
      return e;
    }
  })();
  assert.ok(short instanceof NatPmpDecodeError && short.action === 'drop');
  const hdr = encodeNatPmpResponse({ opcode: 0, resultCode: 1, epoch: 9, headerOnly: true });
  assert.equal(toHex(hdr), '0080000100000009');
  const ext = encodeNatPmpResponse({ opcode: 0, resultCode: 0, epoch: 9, externalAddress: '192.0.2.1' });
  assert.equal(toHex(ext), '0080000000000009c0000201');
  const map = encodeNatPmpResponse({
    opcode: 2,
    resultCode: 0,
    epoch: 9,
    internalPort: 4000,
    externalPort: 4001,
    lifetime: 3600,
  });
  assert.equal(toHex(map), '00820000000000090fa00fa100000e10');
  assert.deepEqual(decodeNatPmpResponse(map), {
    opcode: 2,
    resultCode: 0,
    epoch: 9,
    internalPort: 4000,
    externalPort: 4001,
    lifetime: 3600,
  });
});
