/**
 * Pinhole packet counters (UPnP GetPinholePackets, issue 15): the pinhole sets are declared with
 * `counter`, so nft lists `counter packets N bytes M` in each element, in text before the timeout
 * and in JSON beside it. Both listings must still decode the element (else the audit would call
 * every pinhole stale), and the JSON gives the count per element id. Listings as nft 1.0.6 prints them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { elementId } from '../../src/dataplane/model.js';
import { ListedElements, parseSetCounters } from '../../src/dataplane/nftables-listing.js';
import { entryElements } from '../../src/dataplane/nftables-plan.js';
import type { DataplaneEntry } from '../../src/dataplane/types.js';

const pinhole: DataplaneEntry = {
  id: 'p1',
  family: 6,
  protocol: 'udp',
  externalAddress: '2001:db8::10',
  externalPort: 3478,
  externalPortEnd: 3478,
  internalAddress: '2001:db8::10',
  internalPort: 3478,
  remoteAddress: null,
  timeoutSeconds: 600,
};

describe('pinhole counters in nft listings', () => {
  it('the text listing decodes an element with a counter, its expiry kept', () => {
    const got: unknown[] = [];
    const p = new ListedElements('pin6', (e) => got.push(e && { id: elementId(e), expires: e.expires }));
    p.push(
      'table inet portd {\n\tset pin6 {\n\t\ttype ipv6_addr . inet_proto . inet_service\n' +
        '\t\tflags timeout\n\t\tcounter\n' +
        '\t\telements = { 2001:db8::10 . udp . 3478 counter packets 7 bytes 420 timeout 10m expires 9m59s808ms }\n' +
        '\t}\n}\n',
    );
    assert.equal(p.end(), true);
    assert.deepEqual(got, [{ id: elementId(entryElements(pinhole, null)[0]!), expires: 599.808 }]);
  });

  it('the JSON listing gives the packets per element id', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        {
          set: {
            family: 'inet',
            name: 'pin6',
            table: 'portd',
            elem: [
              { elem: { val: { concat: ['2001:db8::10', 'udp', 3478] }, timeout: 600, counter: { packets: 7 } } },
              { elem: { val: { concat: ['2001:db8::20', 'tcp', 80] }, timeout: 600, counter: { packets: 1 } } },
            ],
            stmt: [{ counter: null }],
          },
        },
      ],
    });
    const c = parseSetCounters(json, 'pin6');
    assert.equal(c.get(elementId(entryElements(pinhole, null)[0]!)), 7);
    assert.equal(c.size, 2);
    assert.equal(parseSetCounters(json, 'pin6_peer').size, 0, 'another set: nothing');
  });
});
