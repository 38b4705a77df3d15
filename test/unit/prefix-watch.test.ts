import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { diffPrefixes, inPrefixes, parseIPv6Prefixes } from '../../src/dataplane/prefix-watch.js';

// `ip -j -6 addr show dev br0`, as iproute2 6.1 prints it (the `{}` is its quirk for a filtered-out entry)
const BR0 = JSON.stringify([
  {
    ifindex: 2,
    ifname: 'br0',
    addr_info: [
      {},
      { family: 'inet6', local: '2001:db8:77::1', prefixlen: 64, scope: 'global' },
      { family: 'inet6', local: '2001:db8:77::2', prefixlen: 64, scope: 'global' },
      { family: 'inet6', local: 'fd12:3456:789a:1::1', prefixlen: 64, scope: 'global', deprecated: true },
      { family: 'inet6', local: '2001:db8:78::1', prefixlen: 64, scope: 'global', tentative: true },
      { family: 'inet6', local: '2001:db8:79::1', prefixlen: 64, scope: 'global', dadfailed: true, tentative: true },
      { family: 'inet6', local: 'fe80::a862:b8ff:fec4:28cd', prefixlen: 64, scope: 'link' },
      { family: 'inet6', local: '2001:db8:7a:ff00::1', prefixlen: 56, scope: 'global' },
    ],
  },
]);

describe('prefix watch: the pure parts', () => {
  test('global and ULA prefixes, host bits cleared, each once; link-local, tentative and DAD-failed left out', () => {
    assert.deepEqual(parseIPv6Prefixes(BR0), [
      { interface: 'br0', network: '2001:db8:77::', prefixLength: 64 },
      { interface: 'br0', network: '2001:db8:7a:ff00::', prefixLength: 56 },
      { interface: 'br0', network: 'fd12:3456:789a:1::', prefixLength: 64 },
    ]);
    assert.deepEqual(parseIPv6Prefixes(''), []);
    assert.deepEqual(parseIPv6Prefixes('[]'), []);
  });

  test('diff: renumbering gives the new prefix as added and the old one as removed', () => {
    const old = [{ interface: 'br0', network: '2001:db8:77::', prefixLength: 64 }];
    const next = [{ interface: 'br0', network: '2001:db8:78::', prefixLength: 64 }];
    assert.deepEqual(diffPrefixes(old, next), { added: next, removed: old });
    assert.deepEqual(diffPrefixes(old, old), { added: [], removed: [] });
    // the same network moved to another interface is a change on both
    const moved = [{ interface: 'br1', network: '2001:db8:77::', prefixLength: 64 }];
    assert.deepEqual(diffPrefixes(old, moved), { added: moved, removed: old });
  });

  test('inPrefixes: which addresses a change leaves outside the LAN', () => {
    const lan = [{ interface: 'br0', network: '2001:db8:78::', prefixLength: 64 }];
    assert.equal(inPrefixes('2001:db8:78::11', lan), true);
    assert.equal(inPrefixes('2001:DB8:78:0:5c1e:a9f3:7b20:d411', lan), true);
    assert.equal(inPrefixes('2001:db8:77::11', lan), false);
    assert.equal(inPrefixes('192.168.1.10', lan), false);
  });
});
