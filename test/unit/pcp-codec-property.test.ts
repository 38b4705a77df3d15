import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isIP } from 'node:net';
import {
  addressBytes,
  readAddress,
  writeAddress,
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  decodePcpRequest,
  decodePcpResponse,
  encodeNatPmpRequest,
  encodeNatPmpResponse,
  encodePcpRequest,
  encodePcpResponse,
  errorResponseFor,
  isDecodeError,
  NatPmpDecodeError,
  PcpDecodeError,
} from '../../protocols/pcp/index.js';
import type { MapData, PcpOption, PcpRequest, PcpResponse } from '../../protocols/pcp/index.js';

const RUNS = 3000;

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((t) => t.join('.'));
// canonical IPv6 text from 16 random octets, avoiding the IPv4-mapped range (which reads back as IPv4)
const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => {
  const g: string[] = [];
  for (let i = 0; i < 8; i++) g.push((((b[2 * i] ?? 0) << 8) | (b[2 * i + 1] ?? 0)).toString(16));
  g[0] = '2001';
  return g.join(':');
});
const address = fc.oneof(ipv4, ipv6);
const port = fc.nat(65535);
const nonce = fc.uint8Array({ minLength: 12, maxLength: 12 });

const mapData: fc.Arbitrary<MapData> = fc.record({
  nonce,
  protocol: fc.constantFrom(6, 17),
  internalPort: fc.integer({ min: 1, max: 65535 }),
  externalPort: port,
  externalAddress: ipv4,
});

const mapOption: fc.Arbitrary<PcpOption> = fc.oneof(
  fc.record({ kind: fc.constant('third_party' as const), address: ipv4 }),
  fc.record({
    kind: fc.constant('filter' as const),
    prefixLength: fc.integer({ min: 96, max: 128 }),
    remotePort: port,
    remoteAddress: ipv4,
  }),
  fc.record({
    kind: fc.constant('other' as const),
    code: fc.integer({ min: 128, max: 255 }),
    data: fc.uint8Array({ maxLength: 12 }),
  }),
);

/** fast-check builds null-prototype records; compare plain copies */
const plain = <T>(x: T): T => structuredClone(x);

const mapRequest: fc.Arbitrary<PcpRequest> = fc
  .record({
    lifetime: fc.integer({ min: 1, max: 0xffffffff }),
    clientAddress: ipv4,
    map: mapData,
    preferFailure: fc.boolean(),
    others: fc.array(mapOption, { maxLength: 4 }),
  })
  .map(({ lifetime, clientAddress, map, preferFailure, others }) => {
    const thirdParties = others.filter((o) => o.kind === 'third_party').slice(0, 1);
    const options: PcpOption[] = [...thirdParties, ...others.filter((o) => o.kind !== 'third_party')];
    if (preferFailure) options.push({ kind: 'prefer_failure' });
    return { version: 2 as const, opcode: 1 as const, lifetime, clientAddress, map, options };
  });

test('property: any byte string decodes to a request or a typed error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1200 }), fc.option(address, { nil: undefined }), (b, source) => {
      try {
        decodePcpRequest(b, source === undefined ? {} : { source });
      } catch (e) {
        if (!(e instanceof PcpDecodeError)) throw e;
        const res = errorResponseFor(e, 1);
        if (res) encodePcpResponse(res); // the error answer itself must encode
      }
      try {
        decodeNatPmpRequest(b);
      } catch (e) {
        if (!(e instanceof NatPmpDecodeError)) throw e;
      }
      try {
        decodePcpResponse(b);
      } catch (e) {
        if (!isDecodeError(e)) throw e;
      }
      try {
        decodeNatPmpResponse(b);
      } catch (e) {
        if (!isDecodeError(e)) throw e;
      }
    }),
    { numRuns: RUNS },
  );
});

test('property: valid-looking PCP headers with random tails never throw anything untyped', () => {
  const headered = fc
    .tuple(fc.constantFrom(0, 1, 2), fc.uint8Array({ minLength: 22, maxLength: 22 }), fc.uint8Array({ maxLength: 140 }))
    .map(([op, head, tail]) => {
      const len = (24 + tail.length) & ~3;
      const b = new Uint8Array(len);
      b[0] = 2;
      b[1] = op;
      b.set(head, 2);
      b.set(tail.slice(0, len - 24), 24);
      b.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 10], 8);
      return b;
    });
  fc.assert(
    fc.property(headered, (b) => {
      try {
        const r = decodePcpRequest(b, { source: '192.168.1.10' });
        // whatever decodes also re-encodes to the same octets, up to reserved fields and padding
        const again = decodePcpRequest(encodePcpRequest(r), { source: '192.168.1.10' });
        assert.deepEqual(again, r);
      } catch (e) {
        if (!(e instanceof PcpDecodeError)) throw e;
      }
    }),
    { numRuns: RUNS },
  );
});

test('property: MAP request round trip', () => {
  fc.assert(
    fc.property(mapRequest, (req) => {
      const back = decodePcpRequest(encodePcpRequest(req), { source: req.clientAddress });
      assert.deepEqual(back, plain(req));
    }),
    { numRuns: RUNS },
  );
});

test('property: MAP/PEER response round trip', () => {
  const response: fc.Arbitrary<PcpResponse> = fc.oneof(
    fc.record({
      version: fc.constant(2),
      opcode: fc.constant(1),
      resultCode: fc.nat(13),
      lifetime: fc.nat(),
      epoch: fc.nat(),
      map: mapData,
      options: fc.array(mapOption, { maxLength: 3 }),
    }),
    fc.record({
      version: fc.constant(2),
      opcode: fc.constant(2),
      resultCode: fc.nat(13),
      lifetime: fc.nat(),
      epoch: fc.nat(),
      peer: fc.record({
        nonce,
        protocol: fc.constantFrom(6, 17),
        internalPort: port,
        externalPort: port,
        externalAddress: ipv4,
        remotePort: port,
        remoteAddress: ipv4,
      }),
      options: fc.constant([]),
    }),
  );
  fc.assert(
    fc.property(response, (res) => {
      assert.deepEqual(decodePcpResponse(encodePcpResponse(res)), plain(res));
    }),
    { numRuns: RUNS },
  );
});

test('property: NAT-PMP request/response round trip', () => {
  const req = fc.oneof(
    fc.constant({ opcode: 0 as const }),
    fc.record({
      opcode: fc.constantFrom(1 as const, 2 as const),
      internalPort: port,
      externalPort: port,
      lifetime: fc.nat(),
    }),
  );
  fc.assert(
    fc.property(req, (r) => {
      assert.deepEqual(decodeNatPmpRequest(encodeNatPmpRequest(r)), plain(r));
    }),
    { numRuns: RUNS },
  );
  const res = fc.oneof(
    fc.record({ opcode: fc.constant(0 as const), resultCode: fc.nat(5), epoch: fc.nat(), externalAddress: ipv4 }),
    fc.record({
      opcode: fc.constantFrom(1 as const, 2 as const),
      resultCode: fc.nat(5),
      epoch: fc.nat(),
      internalPort: port,
      externalPort: port,
      lifetime: fc.nat(),
    }),
  );
  fc.assert(
    fc.property(res, (r) => {
      assert.deepEqual(decodeNatPmpResponse(encodeNatPmpResponse(r)), plain(r));
    }),
    { numRuns: RUNS },
  );
});

// addressBytes scans characters (issue 15 item 9: split-and-regex parsing was a pinhole request's extra cost):
// it accepts a dotted quad (leading zeros allowed) or IPv6 text with an optional zone, as node:net says
test('property: addressBytes accepts the IPv4 and IPv6 text node:net accepts, and round-trips it', () => {
  const group = fc.oneof(
    fc.constant('0'),
    fc.stringMatching(/^[0-9a-fA-F]{1,5}$/),
    fc.constant(''),
    fc.constant('g'),
    fc.tuple(fc.integer({ min: 0, max: 300 }), fc.nat(255), fc.nat(255)).map(([a, b, c]) => `${a}.${b}.${c}.9`),
  );
  fc.assert(
    fc.property(fc.array(group, { maxLength: 10 }), fc.boolean(), fc.boolean(), (groups, lead, zone) => {
      const text = (lead ? ':' : '') + groups.join(':') + (zone && groups.length > 1 ? '%eth0' : '');
      const bytes = addressBytes(text);
      assert.equal(bytes !== null, isIP(text) !== 0, text);
      if (bytes) assert.deepEqual(addressBytes(readAddress(bytes, 0)), bytes, text);
    }),
    { numRuns: 20000 },
  );
  assert.deepEqual([...addressBytes('010.1.2.3')!].slice(10), [0xff, 0xff, 10, 1, 2, 3]);
  assert.equal(addressBytes('1.2.3.4%eth0'), null);
});

// writeAddress parses into the message in place (issue 15 item 9): the octets it writes must be addressBytes', over
// whatever the buffer held before, and nothing else of the buffer may change; text that is no address throws
test('property: writeAddress writes what addressBytes gives, in place, and touches nothing else', () => {
  const group = fc.oneof(
    fc.constant('0'),
    fc.stringMatching(/^[0-9a-fA-F]{1,5}$/),
    fc.constant(''),
    fc.constant('g'),
    fc.tuple(fc.integer({ min: 0, max: 300 }), fc.nat(255), fc.nat(255)).map(([a, b, c]) => `${a}.${b}.${c}.9`),
  );
  const text = fc.oneof(
    fc.tuple(fc.array(group, { maxLength: 10 }), fc.boolean()).map(([g, lead]) => (lead ? ':' : '') + g.join(':')),
    fc.constantFrom('::', '::1', '::ffff:192.0.2.1', 'fe80::1%eth0', '192.0.2.1', '0.0.0.0', '2001:db8::1'),
  );
  fc.assert(
    fc.property(text, fc.uint8Array({ minLength: 16, maxLength: 40 }), fc.nat(24), (t, before, at) => {
      const offset = Math.min(at, before.length - 16);
      const b = Uint8Array.from(before);
      const want = addressBytes(t);
      if (want === null) {
        assert.throws(() => writeAddress(b, offset, t), TypeError, t);
        return;
      }
      writeAddress(b, offset, t);
      assert.deepEqual(b.subarray(offset, offset + 16), want, t);
      assert.deepEqual(b.subarray(0, offset), before.subarray(0, offset));
      assert.deepEqual(b.subarray(offset + 16), before.subarray(offset + 16));
    }),
    { numRuns: 20000 },
  );
  assert.throws(() => writeAddress(new Uint8Array(20), 8, '::1'), RangeError);
});
