/**
 * The typed dataplane model (src/dataplane/model.ts) and its two encoders for IPv6 pinholes: nft text
 * (nft-text.ts, through planBatch / planReset) and netlink bytes (nf-netlink.ts); the decoder back from
 * listings (nftables-listing.ts); the entry key, conntrack arguments and the memory driver for family 6.
 * The same encoders' IPv4 output is pinned by nft-script.test.ts and nf-netlink.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { flowDeleteArgs } from '../../src/dataplane/conntrack.js';
import { createMemoryDataplane } from '../../src/dataplane/memory.js';
import { NftPlanError, elementId, forwardElements, mappingOf, sameData } from '../../src/dataplane/model.js';
import { encodeBatch, encodeKey, netlinkCan } from '../../src/dataplane/nf-netlink.js';
import { decodeText, elementText, keyText } from '../../src/dataplane/nft-text.js';
import { ListedElements, parseTableJson } from '../../src/dataplane/nftables-listing.js';
import { NftModel, planBatch, planResetModel, renderFill } from '../../src/dataplane/nftables-plan.js';
import type { DataplaneEntry } from '../../src/dataplane/types.js';
import { entryKey } from '../../src/dataplane/types.js';

const HOST = '2001:db8:77::10';
const HOST2 = '2001:db8:77::11';
const PEER = '2001:db8:113::5';

function pin(id: string, p: Partial<DataplaneEntry> & { externalPort: number }): DataplaneEntry {
  const address = p.internalAddress ?? HOST;
  return {
    id,
    family: 6,
    protocol: 'tcp',
    externalAddress: address,
    externalPortEnd: p.externalPort,
    internalAddress: address,
    internalPort: p.externalPort,
    remoteAddress: null,
    timeoutSeconds: 60,
    ...p,
  };
}

const HOST_BYTES = [0x20, 0x01, 0x0d, 0xb8, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const PEER_BYTES = [0x20, 0x01, 0x0d, 0xb8, 0x01, 0x13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05];

describe('typed model: an IPv6 pinhole', () => {
  it('a DataplaneEntry of family 6 becomes a mapping with 16 address bytes; what the kernel cannot hold is refused', () => {
    const m = mappingOf(pin('a', { externalPort: 8080, remoteAddress: PEER }));
    assert.equal(m.family, 6);
    assert.deepEqual([...m.internal], HOST_BYTES);
    assert.deepEqual(m.remote && [...m.remote.address], PEER_BYTES);
    assert.equal(m.remote?.prefix, 128);
    // absent family = 4, with 4 bytes
    const v4 = mappingOf({ ...pin('b', { externalPort: 1 }), family: undefined, internalAddress: '192.168.77.11' });
    assert.equal(v4.family, 4);
    assert.equal(v4.internal.length, 4);
    for (const [what, e] of [
      ['an IPv4 address in family 6', pin('x', { externalPort: 1, internalAddress: '192.168.77.11' })],
      ['an IPv4 remote in family 6', pin('x', { externalPort: 1, remoteAddress: '203.0.113.2' })],
      ['translation in a pinhole', pin('x', { externalPort: 1, internalPort: 2 })],
      ['another external address', { ...pin('x', { externalPort: 1 }), externalAddress: HOST2 }],
      ['an IPv6 address in family 4', { ...pin('x', { externalPort: 1 }), family: 4 as const }],
    ] as const)
      assert.throws(() => mappingOf(e), NftPlanError, what);
  });

  it('elements: one pin6 element, a pin6_range interval, pin6_peer per port', () => {
    const text = (e: DataplaneEntry) =>
      forwardElements(mappingOf(e), e.timeoutSeconds).map((el) => [el.set, elementText(el)]);
    assert.deepEqual(text(pin('a', { externalPort: 8080 })), [['pin6', `${HOST} . tcp . 8080 timeout 60s`]]);
    assert.deepEqual(
      text(pin('r', { protocol: 'udp', externalPort: 6000, externalPortEnd: 6009, timeoutSeconds: null })),
      [['pin6_range', `${HOST} . udp . 6000-6009`]],
    );
    assert.deepEqual(text(pin('p', { externalPort: 22, externalPortEnd: 23, remoteAddress: PEER })), [
      ['pin6_peer', `${PEER} . ${HOST} . tcp . 22 timeout 60s`],
      ['pin6_peer', `${PEER} . ${HOST} . tcp . 23 timeout 60s`],
    ]);
  });

  it('nft text: a tick adds the pinhole element alone (no live port, no translation), a removal is pre-added', () => {
    const m = new NftModel();
    const a = pin('a', { externalPort: 8080 });
    let plan = planBatch('portd', m, { remove: [], add: [a] }, 0);
    assert.deepEqual(plan.commands, [`add element inet portd pin6 { ${HOST} . tcp . 8080 timeout 60s }`]);
    m.apply(plan.changes);
    plan = planBatch('portd', m, { remove: [a], add: [{ ...a, timeoutSeconds: 120 }] }, 10_000);
    assert.deepEqual(plan.commands, [
      `add element inet portd pin6 { ${HOST} . tcp . 8080 timeout 1s }`,
      `delete element inet portd pin6 { ${HOST} . tcp . 8080 }`,
      `add element inet portd pin6 { ${HOST} . tcp . 8080 timeout 120s }`,
    ]);
    assert.equal(netlinkCan(plan.steps), true);
  });

  it('nft text: a reset flushes the pinhole sets and refills them beside IPv4 leases', () => {
    const v4: DataplaneEntry = {
      id: 'v4',
      protocol: 'tcp',
      externalAddress: '203.0.113.1',
      externalPort: 8080,
      externalPortEnd: 8080,
      internalAddress: '192.168.77.11',
      internalPort: 80,
      remoteAddress: null,
      timeoutSeconds: 30,
    };
    const { model, duplicates } = planResetModel(
      [v4, pin('a', { externalPort: 8080 }), pin('b', { externalPort: 8080, internalAddress: HOST2 })],
      0,
    );
    assert.deepEqual(duplicates, [], 'two hosts may open the same port: the key is the internal endpoint');
    const cmds = renderFill('portd', model, 0);
    assert.ok(cmds.includes('flush set inet portd pin6') && cmds.includes('flush set inet portd pin6_peer'));
    assert.deepEqual(
      cmds.filter((c) => c.startsWith('add element')),
      [
        'add element inet portd fwd4 { tcp . 8080 timeout 30s : 192.168.77.11 . 80 }',
        'add element inet portd live_tcp { 8080 timeout 30s }',
        `add element inet portd pin6 { ${HOST} . tcp . 8080 timeout 60s, ${HOST2} . tcp . 8080 timeout 60s }`,
        // the IPv4 lease's outbound half; the pinholes have none
        'add element inet portd snat4 { 192.168.77.11 . tcp . 80 timeout 30s : 203.0.113.1 . 8080 }',
      ],
    );
  });

  it('netlink: the key is the address bytes, then protocol and port each padded to 4 octets', () => {
    const [single] = forwardElements(mappingOf(pin('a', { externalPort: 8080 })), 60);
    assert.deepEqual([...encodeKey(single!)], [...HOST_BYTES, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
    const [peer] = forwardElements(
      mappingOf(pin('p', { protocol: 'udp', externalPort: 443, remoteAddress: PEER })),
      60,
    );
    assert.deepEqual([...encodeKey(peer!)], [...PEER_BYTES, ...HOST_BYTES, 17, 0, 0, 0, 0x01, 0xbb, 0, 0]);
    const [range] = forwardElements(mappingOf(pin('r', { externalPort: 6000, externalPortEnd: 6009 })), 60);
    assert.equal(
      netlinkCan([{ verb: 'add', set: 'pin6_range', elements: [range!] }]),
      false,
      'intervals stay with nft',
    );
    // a batch of a pinhole: NEWSETELEM on set pin6 with the key and the timeout, no data attribute
    const b = encodeBatch('portd', [{ verb: 'add', set: 'pin6', elements: [single!] }], 1).buffer;
    const hex = b.toString('hex');
    assert.ok(hex.includes(Buffer.from('pin6\0').toString('hex')));
    assert.ok(hex.includes(Buffer.from([...HOST_BYTES, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]).toString('hex')));
    assert.ok(hex.includes(Buffer.from([0, 0, 0, 0, 0, 0, 0xea, 0x60]).toString('hex')), 'timeout 60 000 ms');
  });

  it('decoding: nft text and JSON listings of pinholes come back as the typed elements written', () => {
    const written = [
      ...forwardElements(mappingOf(pin('a', { externalPort: 8080 })), 60),
      ...forwardElements(mappingOf(pin('r', { protocol: 'udp', externalPort: 6000, externalPortEnd: 6009 })), 60),
      ...forwardElements(mappingOf(pin('p', { externalPort: 22, remoteAddress: PEER })), 60),
    ];
    for (const el of written) {
      const back = decodeText(el.set, keyText(el), null, 59);
      assert.ok(back, keyText(el));
      assert.equal(elementId(back), elementId(el));
      assert.ok(sameData(back.data, el.data));
    }
    // a non-canonical spelling in a listing is the same element
    const loud = decodeText('pin6', '2001:DB8:77:0::10 . tcp . 8080', null, null);
    assert.equal(loud && elementId(loud), elementId(written[0]!));
    // nft 1.0.6 text listing (as in `nft list set inet portd pin6_range`)
    const got: string[] = [];
    const p = new ListedElements('pin6_range', (e) => got.push(e ? keyText(e) : 'foreign'));
    p.push('table inet portd {\n\tset pin6_range {\n');
    p.push('\t\ttype ipv6_addr . inet_proto . inet_service\n\t\tflags interval,timeout\n');
    p.push(`\t\telements = { ${HOST} . udp . 6000-6009 timeout 1m expires 59s896ms }\n\t}\n}\n`);
    assert.ok(p.end());
    assert.deepEqual(got, [`${HOST} . udp . 6000-6009`]);
    // nft -j (the shape nft 1.0.6 prints), with one element planted by hand that no lease could be
    const t = parseTableJson(
      JSON.stringify({
        nftables: [
          { table: { family: 'inet', name: 'portd', handle: 3 } },
          {
            set: {
              family: 'inet',
              name: 'pin6_range',
              table: 'portd',
              elem: [{ elem: { val: { concat: [HOST, 'udp', { range: [6000, 6009] }] }, timeout: 60, expires: 59 } }],
            },
          },
          { set: { family: 'inet', name: 'pin6', table: 'portd', elem: [{ concat: ['192.168.77.11', 'tcp', 1] }] } },
        ],
      }),
      'portd',
    );
    assert.ok(t);
    assert.equal(t.foreign, 1);
    assert.deepEqual(
      t.elements.map((e) => [elementId(e), e.expires]),
      [[elementId(written[1]!), 59]],
    );
  });

  it('entry key, conntrack and the memory driver: a pinhole is known by its internal endpoint and remote', async () => {
    assert.equal(entryKey(pin('a', { externalPort: 8080 })), `6/tcp/${HOST}/8080-8080/*`);
    assert.equal(entryKey(pin('p', { externalPort: 22, remoteAddress: PEER })), `6/tcp/${HOST}/22-22/${PEER}`);
    assert.deepEqual(flowDeleteArgs([pin('a', { externalPort: 8080, remoteAddress: PEER })]), [
      ['-D', '-f', 'ipv6', '-p', 'tcp', '--orig-dst', HOST, '--orig-port-dst', '8080', '--orig-src', PEER],
    ]);
    const mem = createMemoryDataplane();
    await mem.apply({
      remove: [],
      add: [pin('a', { externalPort: 8080 }), pin('b', { externalPort: 8080, internalAddress: HOST2 })],
    });
    assert.equal(await mem.count(), 2);
    await assert.rejects(mem.apply({ remove: [], add: [pin('c', { externalPort: 8080 })] }), /exists/);
    await mem.apply({ remove: [pin('a', { externalPort: 8080 })], add: [] });
    assert.deepEqual(
      (await mem.list()).map((e) => e.id),
      ['b'],
    );
  });
});
