/**
 * Outbound source NAT of mapped internal endpoints (issue 16 part 1) in the typed model and the plan: every
 * IPv4 lease's internal endpoint leaves from its external one (RFC 4787 REQ-1, RFC 6887 §11), several leases on
 * one internal endpoint share one kernel element, a pinhole has none, and the elements follow a new WAN address.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mappingOf, snatElements } from '../../src/dataplane/model.js';
import { decodeText, elementText } from '../../src/dataplane/nft-text.js';
import { encodeData, encodeKey, netlinkCan } from '../../src/dataplane/nf-netlink.js';
import {
  NftModel,
  modelElements,
  planBatch,
  renderSnatFill,
  withExternalAddress,
} from '../../src/dataplane/nftables-plan.js';
import type { DataplaneEntry } from '../../src/dataplane/types.js';
import { entryKey } from '../../src/dataplane/types.js';

function e(id: string, p: Partial<DataplaneEntry> & { externalPort: number }): DataplaneEntry {
  return {
    id,
    protocol: 'udp',
    externalAddress: '203.0.113.1',
    externalPortEnd: p.externalPort,
    internalAddress: '192.168.77.10',
    internalPort: 3074,
    remoteAddress: null,
    timeoutSeconds: 600,
    ...p,
  };
}

const snatOf = (cmds: readonly string[]) => cmds.filter((c) => c.includes(' snat4'));

function applied(m: NftModel, batch: { remove: DataplaneEntry[]; add: DataplaneEntry[] }, now: number): string[] {
  const plan = planBatch('portd', m, batch, now);
  m.apply(plan.changes);
  return plan.commands;
}

describe('outbound SNAT elements', () => {
  test('two consoles on internal udp 3074: each leaves from its own external port', () => {
    const m = new NftModel();
    const cmds = applied(
      m,
      {
        remove: [],
        add: [e('a', { externalPort: 3074 }), e('b', { externalPort: 3075, internalAddress: '192.168.77.11' })],
      },
      0,
    );
    assert.deepEqual(snatOf(cmds), [
      'add element inet portd snat4 { 192.168.77.10 . udp . 3074 timeout 600s : 203.0.113.1 . 3074, ' +
        '192.168.77.11 . udp . 3074 timeout 600s : 203.0.113.1 . 3075 }',
    ]);
  });

  test('a range maps 1:1: a port offset per port, kept ports as one interval', () => {
    const shifted = snatElements(
      mappingOf(e('r', { externalPort: 6000, externalPortEnd: 6010, internalPort: 5000 })),
      60,
    );
    assert.equal(shifted.length, 11);
    assert.equal(elementText(shifted[0]!), '192.168.77.10 . udp . 5000 timeout 60s : 203.0.113.1 . 6000');
    assert.equal(elementText(shifted[10]!), '192.168.77.10 . udp . 5010 timeout 60s : 203.0.113.1 . 6010');
    const kept = snatElements(mappingOf(e('k', { externalPort: 6112, externalPortEnd: 6119, internalPort: 6112 })), 60);
    assert.deepEqual(kept.map(elementText), ['192.168.77.10 . udp . 6112-6119 timeout 60s : 203.0.113.1']);
  });

  test('an IPv6 pinhole and an unknown external address translate nothing', () => {
    const pin: DataplaneEntry = {
      ...e('p', { externalPort: 3074 }),
      family: 6,
      externalAddress: '2001:db8:77::10',
      internalAddress: '2001:db8:77::10',
    };
    assert.deepEqual(snatElements(mappingOf(pin), 60), []);
    assert.deepEqual(snatElements(mappingOf(e('z', { externalPort: 3074, externalAddress: '0.0.0.0' })), 60), []);
    const m = new NftModel();
    assert.deepEqual(snatOf(applied(m, { remove: [], add: [pin] }, 0)), []);
  });

  test('two leases on one internal endpoint share one element: unfiltered, then the lowest external port wins', () => {
    const m = new NftModel();
    const high = e('high', { externalPort: 4000 });
    const filtered = e('filtered', { externalPort: 3000, remoteAddress: '203.0.113.50' });
    let cmds = applied(m, { remove: [], add: [filtered] }, 0);
    assert.deepEqual(snatOf(cmds), [
      'add element inet portd snat4 { 192.168.77.10 . udp . 3074 timeout 600s : 203.0.113.1 . 3000 }',
    ]);
    // the unfiltered lease takes over the outbound element (the old one is touched and deleted in the same tick)
    cmds = applied(m, { remove: [], add: [high] }, 1000);
    assert.deepEqual(snatOf(cmds), [
      'add element inet portd snat4 { 192.168.77.10 . udp . 3074 timeout 1s : 203.0.113.1 . 3000 }',
      'delete element inet portd snat4 { 192.168.77.10 . udp . 3074 }',
      'add element inet portd snat4 { 192.168.77.10 . udp . 3074 timeout 600s : 203.0.113.1 . 4000 }',
    ]);
    // a lease that loses costs the element nothing
    const low = e('low', { externalPort: 4500, remoteAddress: '203.0.113.51' });
    assert.deepEqual(snatOf(applied(m, { remove: [], add: [low] }, 2000)), []);
    // the winner goes: the next one is written, nothing is left pointing at the released port
    cmds = applied(m, { remove: [high], add: [] }, 3000);
    assert.deepEqual(
      snatOf(cmds).at(-1),
      'add element inet portd snat4 { 192.168.77.10 . udp . 3074 timeout 597s : 203.0.113.1 . 3000 }',
    );
    // every holder gone: only the touch and the delete
    cmds = applied(m, { remove: [filtered, low], add: [] }, 4000);
    assert.equal(snatOf(cmds).filter((c) => c.startsWith('add') && !c.includes('timeout 1s')).length, 0);
    assert.ok(cmds.includes('delete element inet portd snat4 { 192.168.77.10 . udp . 3074 }'));
    assert.equal([...modelElements(m, 4000)].length, 0);
  });

  test('a renewal rewrites the element with the new timeout', () => {
    const m = new NftModel();
    const a = e('a', { externalPort: 3075 });
    applied(m, { remove: [], add: [a] }, 0);
    const cmds = applied(m, { remove: [a], add: [{ ...a, timeoutSeconds: 1200 }] }, 10_000);
    assert.equal(
      snatOf(cmds).at(-1),
      'add element inet portd snat4 { 192.168.77.10 . udp . 3074 timeout 1200s : 203.0.113.1 . 3075 }',
    );
  });

  test('a reset holds one element per shared endpoint; a new WAN address rewrites the SNAT maps only', () => {
    const m = new NftModel();
    for (const x of [e('a', { externalPort: 3074 }), e('b', { externalPort: 3080 })])
      m.set(entryKey(x), { entry: x, deadline: 600_000 });
    const els = [...modelElements(m, 0)].filter((el) => el.set === 'snat4');
    assert.deepEqual(els.map(elementText), ['192.168.77.10 . udp . 3074 timeout 600s : 203.0.113.1 . 3074']);
    assert.equal(withExternalAddress(m, '203.0.113.1'), null);
    const moved = withExternalAddress(m, '203.0.113.2')!;
    assert.deepEqual(renderSnatFill('portd', moved, 0), [
      'flush map inet portd snat4',
      'flush map inet portd snat4_range',
      'add element inet portd snat4 { 192.168.77.10 . udp . 3074 timeout 600s : 203.0.113.2 . 3074 }',
    ]);
    assert.equal(moved.get('udp/3074-3074/*')?.deadline, 600_000);
  });

  test('netlink and listing: snat4 is written over netlink (address, protocol, port padded to 4 octets); the range is not', () => {
    const [el] = snatElements(mappingOf(e('a', { externalPort: 3075 })), 60);
    assert.equal(encodeKey(el!).toString('hex'), 'c0a84d0a' + '11000000' + '0c020000');
    assert.equal(encodeData('snat4', el!.data).toString('hex'), 'cb007101' + '0c030000');
    assert.equal(netlinkCan([{ verb: 'add', set: 'snat4', elements: [el!] }]), true);
    assert.equal(netlinkCan([{ verb: 'add', set: 'snat4_range', elements: [] }]), false);
    const back = decodeText('snat4', '192.168.77.10 . udp . 3074', '203.0.113.1 . 3075', 59);
    const { timeout: _t, ...want } = el!;
    assert.deepEqual(back, { ...want, expires: 59 });
  });
});
