import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLanAddresses } from '../../src/dataplane/address-monitor.js';

// `ip -j addr show dev br0` (iproute2 6.1), with a tentative and a DAD-failed address and ip's `{}` quirk
const JSON_OUT = JSON.stringify([
  {
    ifname: 'br0',
    addr_info: [
      { family: 'inet', local: '192.168.77.1', prefixlen: 24, scope: 'global' },
      { family: 'inet', local: '127.0.0.2', prefixlen: 8, scope: 'host' },
      { family: 'inet6', local: '2001:db8:77::1', prefixlen: 64, scope: 'global' },
      { family: 'inet6', local: '2001:db8:77::9', prefixlen: 64, scope: 'global', tentative: true },
      { family: 'inet6', local: '2001:db8:77::a', prefixlen: 64, scope: 'global', dadfailed: true, tentative: true },
      { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' },
      {},
    ],
  },
]);

test('parseLanAddresses: bindable IPv4 and IPv6 addresses, link-local with its zone, tentative ones left out', () => {
  assert.deepEqual(parseLanAddresses(JSON_OUT), [
    { interface: 'br0', address: '192.168.77.1', family: 4, prefixLength: 24 },
    { interface: 'br0', address: '2001:db8:77::1', family: 6, prefixLength: 64 },
    { interface: 'br0', address: 'fe80::1%br0', family: 6, prefixLength: 64 },
  ]);
  assert.deepEqual(parseLanAddresses(''), []);
});
