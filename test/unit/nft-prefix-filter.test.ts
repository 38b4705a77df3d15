/**
 * A pinhole whose remote filter is a prefix (PCP FILTER < /128, RFC 6887 §13.3) in the typed model: the
 * pin6_net interval set, the prefix in its key text, and the listing read back to the same element (so the
 * audit finds it, not a stale one); a /128 filter stays in pin6_peer (netlink-writable); IPv4 keeps one
 * whole address.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { elementId, forwardElements, mappingOf } from '../../src/dataplane/model.js';
import { decodeText, keyText, stepCommands } from '../../src/dataplane/nft-text.js';
import type { DataplaneEntry } from '../../src/dataplane/types.js';

const pinhole = (over: Partial<DataplaneEntry> = {}): DataplaneEntry => ({
  id: 'p1',
  family: 6,
  protocol: 'tcp',
  externalAddress: '2001:db8:77::11',
  externalPort: 8443,
  externalPortEnd: 8443,
  internalAddress: '2001:db8:77::11',
  internalPort: 8443,
  remoteAddress: '2001:db8:113::2',
  remotePrefix: 64,
  timeoutSeconds: 600,
  ...over,
});

test('a /64 remote filter: one pin6_net element, the network as the key, the prefix in its text', () => {
  const [el, ...more] = forwardElements(mappingOf(pinhole()), 600);
  assert.equal(more.length, 0);
  assert.equal(el!.set, 'pin6_net');
  assert.equal(el!.remotePrefix, 64);
  assert.equal(keyText(el!), '2001:db8:113::/64 . 2001:db8:77::11 . tcp . 8443');
  assert.deepEqual(stepCommands('portd', [{ verb: 'add', set: 'pin6_net', elements: [el!] }]), [
    'add element inet portd pin6_net { 2001:db8:113::/64 . 2001:db8:77::11 . tcp . 8443 timeout 600s }',
  ]);
  // as `nft list set` prints it back (text and JSON's prefix object give the same value): the same element id
  const back = decodeText('pin6_net', '2001:db8:113::/64 . 2001:db8:77::11 . tcp . 8443', null, 590);
  assert.ok(back);
  assert.equal(elementId(back), elementId(el!));
  // another prefix length of the same network is another element
  const [elShort] = forwardElements(mappingOf(pinhole({ remotePrefix: 40 })), 600);
  assert.notEqual(elementId(elShort!), elementId(el!));
  assert.equal(keyText(elShort!), '2001:db8:100::/40 . 2001:db8:77::11 . tcp . 8443');
});

test('a whole address (/128 or none given) stays in pin6_peer; IPv4 keeps one whole address', () => {
  for (const remotePrefix of [128, null, undefined]) {
    const [el] = forwardElements(mappingOf(pinhole({ remotePrefix })), 600);
    assert.equal(el!.set, 'pin6_peer', String(remotePrefix));
    assert.equal(keyText(el!), '2001:db8:113::2 . 2001:db8:77::11 . tcp . 8443');
  }
  const [v4] = forwardElements(
    mappingOf({
      id: 'm1',
      protocol: 'tcp',
      externalAddress: '203.0.113.1',
      externalPort: 8080,
      externalPortEnd: 8080,
      internalAddress: '192.168.77.11',
      internalPort: 80,
      remoteAddress: '203.0.113.2',
      remotePrefix: 24,
      timeoutSeconds: 60,
    }),
    60,
  );
  assert.equal(v4!.set, 'fwd4_peer');
  assert.equal(keyText(v4!), '203.0.113.2 . tcp . 8080');
  assert.throws(() => mappingOf(pinhole({ remotePrefix: 0 })), /bad remote prefix/);
});
