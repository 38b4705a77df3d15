import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createLanClients, lanIPv6Prefixes, type InterfaceAddress } from '../../src/policy/lan-clients.js';

const v6 = (address: string, cidr: string, scopeid = 0): InterfaceAddress => ({
  address,
  family: 'IPv6',
  cidr,
  scopeid,
});
const table: NodeJS.Dict<InterfaceAddress[]> = {
  'br-lan': [
    { address: '192.168.1.1', family: 'IPv4', cidr: '192.168.1.1/24' },
    v6('2001:db8:77::1', '2001:db8:77::1/64'),
    v6('fd00:1:2:3::1', 'fd00:1:2:3::1/64'),
    v6('fe80::1', 'fe80::1/64', 4),
  ],
  eth0: [v6('2001:db8:113::1', '2001:db8:113::1/64'), v6('fe80::2', 'fe80::2/64', 2)],
};

describe('LAN clients: IPv4 and IPv6', () => {
  const lan = createLanClients({ ipv4: ['192.168.1.1/24'], interfaces: ['br-lan'], read: () => table });

  test('IPv4 and IPv4-mapped sources inside the LAN network count, others do not', () => {
    assert.equal(lan.isLanClient('192.168.1.20'), true);
    assert.equal(lan.isLanClient('::ffff:192.168.1.20'), true);
    assert.equal(lan.isLanClient('192.168.2.20'), false);
    assert.equal(lan.isLanClient('203.0.113.5'), false);
  });

  test("global and unique-local sources inside a LAN interface's prefix count, any spelling", () => {
    assert.equal(lan.isLanClient('2001:db8:77::11'), true);
    assert.equal(lan.isLanClient('2001:DB8:77:0:5c1e:a9f3:7b20:d411'), true);
    assert.equal(lan.isLanClient('fd00:1:2:3:aaaa::1'), true);
    // the WAN's prefix, another prefix, another /64 next door
    assert.equal(lan.isLanClient('2001:db8:113::2'), false);
    assert.equal(lan.isLanClient('2001:db8:78::11'), false);
    assert.equal(lan.isLanClient('fd00:1:2:4::1'), false);
  });

  test('link-local counts only with the zone of a LAN interface (name or index)', () => {
    assert.equal(lan.isLanClient('fe80::d04a:10ff:feac:bc4f%br-lan'), true);
    assert.equal(lan.isLanClient('fe80::d04a:10ff:feac:bc4f%4'), true);
    assert.equal(lan.isLanClient('fe80::d04a:10ff:feac:bc4f%eth0'), false, 'arrived on the WAN');
    assert.equal(lan.isLanClient('fe80::d04a:10ff:feac:bc4f%2'), false, 'the WAN index');
    assert.equal(lan.isLanClient('fe80::d04a:10ff:feac:bc4f'), false, 'no zone: cannot tell');
  });

  test('never LAN: loopback, unspecified, multicast, garbage', () => {
    for (const a of ['::1', '::', 'ff02::1%br-lan', 'not-an-address', '', '127.0.0.1', '2001:db8:77::1::2'])
      assert.equal(lan.isLanClient(a), false, a);
  });

  test('refresh follows a renumbered LAN: the old prefix stops counting, the new one starts', () => {
    const live: NodeJS.Dict<InterfaceAddress[]> = { 'br-lan': [v6('2001:db8:77::1', '2001:db8:77::1/64')] };
    const l = createLanClients({ ipv4: [], interfaces: ['br-lan'], read: () => live });
    assert.equal(l.isLanClient('2001:db8:77::11'), true);
    live['br-lan'] = [v6('2001:db8:99::1', '2001:db8:99::1/64')];
    assert.equal(l.isLanClient('2001:db8:77::11'), true, 'until refreshed');
    l.refresh();
    assert.equal(l.isLanClient('2001:db8:77::11'), false);
    assert.equal(l.isLanClient('2001:db8:99::11'), true);
    assert.deepEqual(l.ipv6Prefixes(), [{ interface: 'br-lan', network: '2001:db8:99::', prefixLength: 64 }]);
  });

  test('no LAN interfaces (configured listen addresses): no IPv6 source is LAN', () => {
    const l = createLanClients({ ipv4: ['127.0.0.1/8'], interfaces: [], read: () => table });
    assert.equal(l.isLanClient('2001:db8:77::11'), false);
    assert.equal(l.isLanClient('127.0.0.1'), true);
  });

  test('lanIPv6Prefixes: global and ULA prefixes of the named interfaces, host bits cleared, each once', () => {
    const t = { ...table, 'br-lan': [...table['br-lan']!, v6('2001:db8:77::2', '2001:db8:77::2/64')] };
    assert.deepEqual(lanIPv6Prefixes(t, ['br-lan']), [
      { interface: 'br-lan', network: '2001:db8:77::', prefixLength: 64 },
      { interface: 'br-lan', network: 'fd00:1:2:3::', prefixLength: 64 },
    ]);
  });

  // isLanClient remembers its answer per source until the next refresh (issue 15 item 9): it must answer as a
  // fresh instance on the same interfaces would, asked again or after a renumbering
  test('remembered answers are the ones a fresh instance gives, across refreshes', () => {
    const renumbered: NodeJS.Dict<InterfaceAddress[]> = {
      'br-lan': [v6('2001:db8:78::1', '2001:db8:78::1/64'), v6('fe80::1', 'fe80::1/64', 7)],
    };
    const source = fc.constantFrom(
      '192.168.1.20',
      '::ffff:192.168.1.20',
      '10.0.0.1',
      '2001:db8:77::11',
      '2001:DB8:77::11',
      '2001:db8:78::11',
      'fd00:1:2:3::9',
      'fe80::9%br-lan',
      'fe80::9%4',
      'fe80::9%7',
      'fe80::9',
      '::1',
      'nonsense',
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(source, fc.constant('refresh')), { maxLength: 40 }), (steps) => {
        let current = table;
        const read = () => current;
        const lan = createLanClients({ ipv4: ['192.168.1.1/24'], interfaces: ['br-lan'], read });
        for (const step of steps) {
          if (step === 'refresh') {
            current = current === table ? renumbered : table;
            lan.refresh();
            continue;
          }
          const fresh = createLanClients({ ipv4: ['192.168.1.1/24'], interfaces: ['br-lan'], read });
          assert.equal(lan.isLanClient(step), fresh.isLanClient(step), step);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
