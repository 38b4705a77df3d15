import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Attribute,
  MessageClass,
  Method,
  StunDecodeError,
  decodeBindingResponse,
  decodeStunMessage,
  encodeBindingRequest,
  encodeStunMessage,
  messageType,
  xorMappedAddressV4,
} from '../../protocols/stun/index.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// RFC 5769 §2.2 and §2.3: sample Binding responses (SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT)
const RFC5769_TX = hex('b7e7a701bc34d686fa87dfae');
const RFC5769_V4 = hex(`0101 003c 2112 a442 b7e7 a701 bc34 d686 fa87 dfae 8022 000b 7465 7374 2076 6563 746f 7220
  0020 0008 0001 a147 e112 a643 0008 0014 2b91 f599 fd9e 90c3 8c74 89f9 2af9 ba53 f06b e7d7 8028 0004 c07d 4c96`);
const RFC5769_V6 = hex(`0101 0048 2112 a442 b7e7 a701 bc34 d686 fa87 dfae 8022 000b 7465 7374 2076 6563 746f 7220
  0020 0014 0002 a147 0113 a9fa a5d3 f179 bc25 f4b5 bed2 b9d9 0008 0014 a382 954e 4be6 7bf1 1784 c97c 8292 c275
  bfe3 ed41 8028 0004 c8fb 0b4c`);

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof StunDecodeError, `not a StunDecodeError: ${String(e)}`);
    return e.reason;
  }
  assert.fail('decoded without error');
}

function success(tx: Uint8Array, attributes: { type: number; value: Uint8Array }[], fingerprint = false) {
  return encodeStunMessage(
    { method: Method.BINDING, class: MessageClass.SUCCESS_RESPONSE, transactionId: tx, attributes },
    { fingerprint },
  );
}

const TX = hex('0102030405060708090a0b0c');

test('RFC 5769 sample IPv4 and IPv6 responses decode, fingerprint checked', () => {
  assert.deepEqual(decodeBindingResponse(RFC5769_V4, RFC5769_TX), {
    kind: 'success',
    mapped: { family: 4, address: '192.0.2.1', port: 32853 },
    via: 'xor-mapped-address',
  });
  const v6 = decodeBindingResponse(RFC5769_V6, RFC5769_TX);
  assert.equal(v6.kind === 'success' && v6.mapped.address, '2001:db8:1234:5678:11:2233:4455:6677');
  // one bit flipped in the SOFTWARE value: the fingerprint no longer matches
  const bad = RFC5769_V4.slice();
  bad[24]! ^= 1;
  assert.equal(
    reason(() => decodeBindingResponse(bad, RFC5769_TX)),
    'fingerprint',
  );
});

test('Binding request: type 0x0001, length 0, magic cookie, the transaction id; with FINGERPRINT', () => {
  assert.equal(toHex(encodeBindingRequest(TX)), '000100002112a442' + toHex(TX));
  const fp = encodeBindingRequest(TX, { fingerprint: true });
  assert.equal(fp.length, 28);
  assert.equal(toHex(fp.subarray(0, 4)), '00010008');
  const m = decodeStunMessage(fp);
  assert.equal(m.method, Method.BINDING);
  assert.equal(m.class, MessageClass.REQUEST);
  assert.deepEqual(
    m.attributes.map((a) => a.type),
    [Attribute.FINGERPRINT],
  );
  assert.equal(messageType(Method.BINDING, MessageClass.SUCCESS_RESPONSE), 0x0101);
  assert.equal(messageType(Method.BINDING, MessageClass.ERROR_RESPONSE), 0x0111);
  assert.throws(() => encodeBindingRequest(new Uint8Array(8)), RangeError);
});

test('XOR-MAPPED-ADDRESS preferred; MAPPED-ADDRESS (RFC 3489 servers) used when it is the only one', () => {
  const mapped = hex('0001 1234 c6336407'); // 198.51.100.7:4660
  const both = success(TX, [
    { type: Attribute.MAPPED_ADDRESS, value: mapped },
    { type: Attribute.XOR_MAPPED_ADDRESS, value: xorMappedAddressV4('203.0.113.9', 40000) },
  ]);
  assert.deepEqual(decodeBindingResponse(both, TX), {
    kind: 'success',
    mapped: { family: 4, address: '203.0.113.9', port: 40000 },
    via: 'xor-mapped-address',
  });
  const old = success(TX, [
    { type: Attribute.SOURCE_ADDRESS, value: mapped },
    { type: Attribute.MAPPED_ADDRESS, value: mapped },
    { type: 0x802b, value: mapped }, // RESPONSE-ORIGIN (RFC 5780): comprehension-optional, ignored
  ]);
  assert.deepEqual(decodeBindingResponse(old, TX), {
    kind: 'success',
    mapped: { family: 4, address: '198.51.100.7', port: 4660 },
    via: 'mapped-address',
  });
});

test('error response: ERROR-CODE class and number, reason phrase', () => {
  const e = encodeStunMessage({
    method: Method.BINDING,
    class: MessageClass.ERROR_RESPONSE,
    transactionId: TX,
    attributes: [{ type: Attribute.ERROR_CODE, value: hex('00000400' + Buffer.from('Bad Request').toString('hex')) }],
  });
  assert.deepEqual(decodeBindingResponse(e, TX), { kind: 'error', code: 400, reason: 'Bad Request' });
  const noCode = encodeStunMessage({ method: Method.BINDING, class: MessageClass.ERROR_RESPONSE, transactionId: TX });
  assert.equal(
    reason(() => decodeBindingResponse(noCode, TX)),
    'bad_error_code',
  );
  const badClass = encodeStunMessage({
    method: Method.BINDING,
    class: MessageClass.ERROR_RESPONSE,
    transactionId: TX,
    attributes: [{ type: Attribute.ERROR_CODE, value: hex('00000700') }],
  });
  assert.equal(
    reason(() => decodeBindingResponse(badClass, TX)),
    'bad_error_code',
  );
});

test('hostile and malformed responses: each a typed reason, never another exception', () => {
  const ok = success(TX, [{ type: Attribute.XOR_MAPPED_ADDRESS, value: xorMappedAddressV4('203.0.113.9', 1) }]);
  const cases: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'length'],
    ['19 octets', ok.subarray(0, 19), 'length'],
    ['a jumbo datagram', new Uint8Array(4000), 'length'],
    ['wrong cookie', Uint8Array.from([...ok.subarray(0, 4), 0, 0, 0, 0, ...ok.subarray(8)]), 'not_stun'],
    ['top bits set (RTP/DTLS)', Uint8Array.from([0x81, ...ok.subarray(1)]), 'not_stun'],
    [
      'length says more than sent',
      Uint8Array.from([...ok.subarray(0, 2), 0, 0x40, ...ok.subarray(4)]),
      'header_length',
    ],
    [
      'length not a multiple of 4',
      Uint8Array.from([...ok.subarray(0, 2), 0, 0x0a, ...ok.subarray(4, 30)]),
      'header_length',
    ],
    [
      'attribute longer than the message',
      Uint8Array.from([...ok.subarray(0, 22), 0x00, 0xff, ...ok.subarray(24)]),
      'attribute_bounds',
    ],
    ['a request, not a response', encodeBindingRequest(TX), 'unexpected_type'],
    [
      'another transaction',
      success(hex('ffffffffffffffffffffffff'), [
        { type: Attribute.XOR_MAPPED_ADDRESS, value: xorMappedAddressV4('1.2.3.4', 1) },
      ]),
      'transaction',
    ],
    ['no address at all', success(TX, []), 'no_address'],
    [
      'unknown comprehension-required attribute',
      success(TX, [
        { type: 0x0033, value: new Uint8Array(4) },
        { type: Attribute.XOR_MAPPED_ADDRESS, value: xorMappedAddressV4('1.2.3.4', 1) },
      ]),
      'unknown_required',
    ],
    [
      'address family 3',
      success(TX, [{ type: Attribute.XOR_MAPPED_ADDRESS, value: hex('0003 0000 00000000') }]),
      'bad_address',
    ],
    [
      'IPv4 family, 16 octets',
      success(TX, [{ type: Attribute.MAPPED_ADDRESS, value: new Uint8Array([0, 1, 0, 0, ...new Uint8Array(16)]) }]),
      'bad_address',
    ],
    ['address of 2 octets', success(TX, [{ type: Attribute.MAPPED_ADDRESS, value: new Uint8Array(2) }]), 'bad_address'],
    [
      'FINGERPRINT not last',
      success(TX, [
        { type: Attribute.FINGERPRINT, value: new Uint8Array(4) },
        { type: Attribute.XOR_MAPPED_ADDRESS, value: xorMappedAddressV4('1.2.3.4', 1) },
      ]),
      'fingerprint',
    ],
  ];
  for (const [name, bytes, want] of cases)
    assert.equal(
      reason(() => decodeBindingResponse(bytes, TX)),
      want,
      name,
    );
  // a correct FINGERPRINT passes
  const fp = success(TX, [{ type: Attribute.XOR_MAPPED_ADDRESS, value: xorMappedAddressV4('203.0.113.9', 1) }], true);
  assert.equal(decodeBindingResponse(fp, TX).kind, 'success');
});

test('fuzz: random and mutated datagrams decode or fail with a StunDecodeError, nothing else (bounded)', () => {
  let seed = 0x5eed;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const base = success(
    TX,
    [
      { type: Attribute.SOFTWARE, value: Buffer.from('x') },
      { type: Attribute.XOR_MAPPED_ADDRESS, value: xorMappedAddressV4('203.0.113.9', 3478) },
    ],
    true,
  );
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    let b: Uint8Array;
    if (i % 2 === 0) {
      b = base.slice(0, 20 + (rnd() % (base.length - 19)));
      for (let k = rnd() % 4; k >= 0; k--) b[rnd() % b.length]! ^= 1 << (rnd() % 8);
    } else {
      b = Uint8Array.from({ length: rnd() % 80 }, () => rnd() & 0xff);
      if (b.length >= 8) b.set([0x21, 0x12, 0xa4, 0x42], 4);
    }
    try {
      decodeBindingResponse(b, TX);
      decoded++;
    } catch (e) {
      if (!(e instanceof StunDecodeError)) throw e;
    }
  }
  assert.ok(decoded < 20_000);
});
