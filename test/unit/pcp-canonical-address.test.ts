/**
 * The PCP front-end's one address normaliser (src/frontends/pcp/canonical-address.ts): every spelling of an
 * address a request can carry — IPv4-mapped IPv6 (RFC 6887 §5), upper case, leading zeros, a run of zero
 * groups written out — ends up as one text, so the lease owner, the internal address and a PEER's remote
 * compare equal however the client wrote them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalAddress } from '../../src/frontends/pcp/canonical-address.js';

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
});
