/**
 * ipv4ToInt (src/common/net.ts), the hand-written parser: it accepts exactly what `net.isIPv4` accepts and
 * gives the value the split-and-multiply it replaced gave.
 */
import assert from 'node:assert/strict';
import { isIPv4 } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ipv4ToInt } from '../../src/common/net.js';

/** the implementation before the hand-written one */
function reference(ip: string): number | null {
  if (!isIPv4(ip)) return null;
  let n = 0;
  for (const part of ip.split('.')) n = n * 256 + Number(part);
  return n >>> 0;
}

describe('ipv4ToInt', () => {
  it('fixed cases', () => {
    assert.equal(ipv4ToInt('0.0.0.0'), 0);
    assert.equal(ipv4ToInt('255.255.255.255'), 0xffffffff);
    assert.equal(ipv4ToInt('192.168.77.11'), 0xc0a84d0b);
    assert.equal(ipv4ToInt('10.0.0.100'), 0x0a000064);
    for (const bad of [
      '',
      '1.2.3',
      '1.2.3.4.5',
      '01.2.3.4',
      '1.2.3.04',
      '1.2.3.00',
      '256.1.1.1',
      '1.2.3.1000',
      '1..3.4',
      '.1.2.3',
      '1.2.3.',
      '1.2.3.4 ',
      ' 1.2.3.4',
      '::ffff:1.2.3.4',
      '1.2.3.a',
      '1.2.3.-4',
      '+1.2.3.4',
    ])
      assert.equal(ipv4ToInt(bad), null, bad);
  });

  it('agrees with net.isIPv4 and the split parser on addresses and near-addresses', () => {
    const part = fc.oneof(
      fc.integer({ min: 0, max: 300 }).map(String),
      fc.constantFrom('00', '01', '007', '', 'a', '-1', '1e2', ' 1'),
    );
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 6 }), (parts) => {
        const ip = parts.join('.');
        return ipv4ToInt(ip) === reference(ip);
      }),
      { numRuns: 20_000 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 16 }), (s) => ipv4ToInt(s) === reference(s)),
      { numRuns: 20_000 },
    );
  });
});
