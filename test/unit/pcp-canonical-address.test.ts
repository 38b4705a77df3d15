/**
 * The PCP front-end's one address normaliser (src/frontends/pcp/canonical-address.ts): every spelling of an
 * address a request can carry — IPv4-mapped IPv6 (RFC 6887 §5), upper case, leading zeros, a run of zero
 * groups written out — ends up as one text, so the lease owner, the internal address and a PEER's remote
 * compare equal however the client wrote them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalAddress, createCanonicalAddress } from '../../src/frontends/pcp/canonical-address.js';

describe('canonicalAddress', () => {
  it('gives an IPv4-mapped IPv6 address and its dotted quad the same text', () => {
    for (const mapped of [
      '::ffff:192.168.77.10',
      '::FFFF:192.168.77.10',
      '0:0:0:0:0:ffff:c0a8:4d0a',
      '::ffff:c0a8:4d0a',
    ])
      assert.equal(canonicalAddress(mapped), '192.168.77.10', mapped);
    assert.equal(canonicalAddress('192.168.77.10'), '192.168.77.10');
    assert.equal(canonicalAddress('::ffff:192.168.77.10'), canonicalAddress('192.168.77.10'));
  });

  it('gives every textual form of one IPv6 address the RFC 5952 text', () => {
    const forms = [
      '2001:db8:77::10',
      '2001:DB8:77::10',
      '2001:0db8:0077:0000:0000:0000:0000:0010',
      '2001:db8:77:0:0:0::10',
    ];
    for (const f of forms) assert.equal(canonicalAddress(f), '2001:db8:77::10', f);
    assert.equal(canonicalAddress('fe80:0:0:0:0:0:0:1'), 'fe80::1');
  });

  it('keeps IPv4 and IPv6 apart, and returns text that is no address as given', () => {
    assert.notEqual(canonicalAddress('::192.168.77.10'), '192.168.77.10');
    assert.equal(canonicalAddress('not-an-address'), 'not-an-address');
  });
  // the handler's remembered form is a fast path of canonicalAddress (issue 15 item 9): the same answer for every
  // spelling, asked once or again, and after it forgot (a small limit forgets often)
  it('createCanonicalAddress answers what canonicalAddress answers, before and after it forgets', () => {
    const group = fc.oneof(
      fc.constant('0'),
      fc.stringMatching(/^[0-9a-fA-F]{1,4}$/),
      fc.constant(''),
      fc.constantFrom('ffff', 'FFFF', '2001', 'DB8', 'fe80', 'g'),
      fc.tuple(fc.nat(300), fc.nat(255)).map(([a, b]) => `192.168.${a}.${b}`),
    );
    const text = fc.oneof(
      fc.array(group, { maxLength: 9 }).map((g) => g.join(':')),
      fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => `10.0.${a}.${b}`),
      fc.constantFrom('::ffff:192.168.77.10', '::FFFF:c0a8:4d0a', 'fe80::1%eth0', '192.168.077.10', 'not-an-address'),
    );
    for (const limit of [1, 4, 1024]) {
      const canon = createCanonicalAddress(limit);
      fc.assert(
        fc.property(fc.array(text, { minLength: 1, maxLength: 12 }), (texts) => {
          for (const t of [...texts, ...texts]) assert.equal(canon(t), canonicalAddress(t), t);
        }),
        { numRuns: 3000 },
      );
    }
  });
});
