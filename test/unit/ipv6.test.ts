import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  canonicalIPv6,
  classifyIPv6,
  createIPv6Memo,
  formatEndpoint,
  formatIPv6,
  ipv6InPrefix,
  isPinholeTarget,
  maskIPv6,
  parseIPv6,
  samePrefix,
  splitZone,
} from '../../src/common/ipv6.js';

describe('IPv6 helpers (src/common/ipv6.ts)', () => {
  it('parses to 16 bytes, dotted-quad tails included', () => {
    assert.deepEqual([...parseIPv6('2001:db8::1')!], [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual([...parseIPv6('::ffff:192.0.2.1')!].slice(10), [0xff, 0xff, 192, 0, 2, 1]);
    assert.deepEqual([...parseIPv6('64:ff9b::192.0.2.33')!].slice(12), [192, 0, 2, 33]);
    assert.deepEqual([...parseIPv6('::1.2.3.4')!].slice(12), [1, 2, 3, 4]);
    assert.deepEqual([...parseIPv6('::')!], new Array(16).fill(0));
    assert.deepEqual([...parseIPv6('1:2:3:4:5:6:7:8')!].slice(14), [0, 8]);
  });
  it('refuses what is not an IPv6 address', () => {
    for (const bad of [
      '',
      '192.0.2.1',
      '1::2::3',
      'fe80::1%eth0',
      '12345::',
      'g::1',
      '1:2:3:4:5:6:7:8:9',
      '[::1]',
      ' ::1',
    ])
      assert.equal(parseIPv6(bad), null, bad);
  });
  // parseIPv6 scans characters instead of calling isIPv6 (issue 15 item 9: the regular expression was most of
  // a pinhole request's extra cost): it must accept exactly what isIPv6 accepts, zones aside
  it('accepts exactly what node:net isIPv6 accepts (no zone), on address-like strings', () => {
    const group = fc.oneof(
      fc.constant('0'),
      fc.stringMatching(/^[0-9a-fA-F]{1,5}$/),
      fc.constant(''),
      fc.constant('g'),
      fc.constant('%eth0'),
      fc
        .tuple(fc.integer({ min: 0, max: 300 }), fc.nat(255), fc.oneof(fc.nat(255).map(String), fc.constant('01')))
        .map(([a, b, c]) => `${a}.${b}.${c}.9`),
    );
    fc.assert(
      fc.property(fc.array(group, { maxLength: 10 }), fc.boolean(), (groups, lead) => {
        const text = (lead ? ':' : '') + groups.join(':');
        const want = !text.includes('%') && isIPv6(text);
        assert.equal(parseIPv6(text) !== null, want, text);
      }),
      { numRuns: 20000 },
    );
  });
  // the memo is a fast path of the two (issue 15 item 9): a remembered answer must be the one the slow path gives,
  // for any spelling, valid or not, and after it forgot everything (a small limit forgets often)
  it('createIPv6Memo answers what canonicalIPv6 and isPinholeTarget answer, before and after it forgets', () => {
    const group = fc.oneof(
      fc.constant('0'),
      fc.stringMatching(/^[0-9a-fA-F]{1,4}$/),
      fc.constant(''),
      fc.constantFrom('2001', 'db8', 'fd00', 'fe80', 'ff02', 'ffff', 'g'),
      fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => `192.0.${a}.${b}`),
    );
    const text = fc.oneof(
      fc.array(group, { maxLength: 9 }).map((g) => g.join(':')),
      fc.constantFrom('::', '::1', '::ffff:192.0.2.1', 'fe80::1%eth0', '192.0.2.1', '2001:DB8::01', '2001:db8::1'),
    );
    for (const limit of [1, 3, 1024]) {
      const memo = createIPv6Memo(limit);
      fc.assert(
        fc.property(fc.array(text, { minLength: 1, maxLength: 12 }), (texts) => {
          // each text twice over: asked first (parsed) and again (remembered, unless forgotten in between)
          for (const t of [...texts, ...texts]) {
            assert.equal(memo.canonical(t), canonicalIPv6(t), t);
            assert.equal(memo.pinholeTarget(t), isPinholeTarget(t), t);
            assert.deepEqual(memo.facts(t), { canonical: canonicalIPv6(t), pinholeTarget: isPinholeTarget(t) }, t);
            assert.ok(memo.size <= limit);
          }
        }),
        { numRuns: 3000 },
      );
    }
  });
  it('formats as RFC 5952 §4 says', () => {
    const cases: [string, string][] = [
      ['2001:DB8::01', '2001:db8::1'],
      ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // §4.2.2: one zero group is not compressed
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // §4.2.3: the longest run
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // §4.2.3: the first on a tie
      ['::ffff:c000:0201', '::ffff:192.0.2.1'], // §5
      ['0:0:0:0:0:0:0:1', '::1'],
      ['fe80:0000::0abc', 'fe80::abc'],
      ['1:0:0:0:0:0:0:0', '1::'],
    ];
    for (const [input, want] of cases) assert.equal(canonicalIPv6(input), want, input);
    assert.throws(() => formatIPv6(new Uint8Array(4)), /16 bytes/);
  });
  it('round-trips random addresses through the text', () => {
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let n = 0; n < 2000; n++) {
      const b = new Uint8Array(16);
      // many zero groups, so compression is exercised
      for (let i = 0; i < 16; i += 2) {
        if (rnd() % 3 !== 0) continue;
        b[i] = rnd() & 255;
        b[i + 1] = rnd() & 255;
      }
      const text = formatIPv6(b);
      assert.deepEqual(parseIPv6(text), b, text);
      assert.equal(canonicalIPv6(text.toUpperCase()), text);
    }
  });
  it('prefix membership and masks', () => {
    assert.equal(ipv6InPrefix('2001:db8:77::5', '2001:db8:77::', 64), true);
    assert.equal(ipv6InPrefix('2001:db8:78::5', '2001:db8:77::', 64), false);
    assert.equal(ipv6InPrefix('fe80::1%eth0', 'fe80::', 10), true);
    assert.equal(ipv6InPrefix('192.0.2.1', '::', 0), false);
    assert.equal(samePrefix(parseIPv6('2001:db8::')!, parseIPv6('2001:db8:8000::')!, 33), false);
    assert.equal(samePrefix(parseIPv6('2001:db8::')!, parseIPv6('2001:db8:7fff::')!, 33), true);
    assert.equal(formatIPv6(maskIPv6(parseIPv6('2001:db8:77:1:2:3:4:5')!, 64)), '2001:db8:77:1::');
    assert.equal(formatIPv6(maskIPv6(parseIPv6('2001:db8:ffff::')!, 36)), '2001:db8:f000::');
    assert.throws(() => samePrefix(new Uint8Array(16), new Uint8Array(16), 129), /0-128/);
  });
  it('classifies and says what may be a pinhole target', () => {
    const kinds: [string, string][] = [
      ['::', 'unspecified'],
      ['::1', 'loopback'],
      ['::ffff:10.0.0.1', 'ipv4-mapped'],
      ['ff02::c', 'multicast'],
      ['fe80::1', 'link-local'],
      ['febf::1', 'link-local'],
      ['fec0::1', 'global'],
      ['fd12:3456::1', 'unique-local'],
      ['2001:db8:77::2', 'documentation'],
      ['2a00:1450::1', 'global'],
    ];
    for (const [a, k] of kinds) assert.equal(classifyIPv6(parseIPv6(a)!), k, a);
    assert.equal(isPinholeTarget('2001:db8:77::2'), true);
    assert.equal(isPinholeTarget('fd00::2'), true);
    for (const a of ['fe80::2', 'ff02::1', '::1', '::', '::ffff:192.168.77.2', '192.168.77.2', 'nonsense'])
      assert.equal(isPinholeTarget(a), false, a);
    assert.deepEqual(splitZone('fe80::1%eth0'), { address: 'fe80::1', zone: 'eth0' });
    assert.deepEqual(splitZone('2001:db8::1'), { address: '2001:db8::1', zone: null });
  });

  it('formats endpoints with IPv6 addresses in brackets', () => {
    assert.equal(formatEndpoint('2001:db8::10', 443), '[2001:db8::10]:443');
    assert.equal(formatEndpoint('2001:db8::10', '6000-6010'), '[2001:db8::10]:6000-6010');
    assert.equal(formatEndpoint('192.0.2.1', 443), '192.0.2.1:443');
  });
});
