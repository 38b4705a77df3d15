/**
 * Reading nft's set listings (nftables-listing.ts: ListedElements, ListedTable, durationSeconds on plain text;
 * countSetElements on JSON). Fixtures are `nft list map|set inet portd <name>` output of nft 1.0.6, captured
 * in a namespace from a table written by renderInit + renderFill (single ports, a range, a range with
 * a port offset, peer-filtered leases, static leases without a timeout).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ElementSet } from '../../src/dataplane/model.js';
import { dataText, keyText } from '../../src/dataplane/nft-text.js';
import {
  ListedElements,
  ListedTable,
  countSetElements,
  durationSeconds,
} from '../../src/dataplane/nftables-listing.js';

const FWD4 = `table inet portd {
\tmap fwd4 {
\t\ttype inet_proto . inet_service : ipv4_addr . inet_service
\t\tflags timeout
\t\telements = { udp . 80 : 192.168.77.10 . 80,
\t\t\t     udp . 7000 timeout 1d1h expires 1d59m59s988ms : 192.168.77.10 . 9000,
\t\t\t     udp . 7001 timeout 1d1h expires 1d59m59s988ms : 192.168.77.10 . 9001,
\t\t\t     udp . 7002 timeout 1d1h expires 1d59m59s988ms : 192.168.77.10 . 9002,
\t\t\t     tcp . 8080 timeout 1h expires 59m59s988ms : 192.168.77.10 . 80 }
\t}
}
`;
const FWD4_RANGE = `table inet portd {
\tmap fwd4_range {
\t\ttype inet_proto . inet_service : ipv4_addr
\t\tflags interval,timeout
\t\telements = { tcp . 6000-6009 timeout 1h expires 59m59s980ms : 192.168.77.10 }
\t}
}
`;
const FWD4_PEER = `table inet portd {
\tmap fwd4_peer {
\t\ttype ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
\t\tflags timeout
\t\telements = { 203.0.113.9 . udp . 5000 : 192.168.77.10 . 5000,
\t\t\t     203.0.113.9 . udp . 5001 : 192.168.77.10 . 5001,
\t\t\t     203.0.113.9 . tcp . 4000 timeout 1h expires 59m59s972ms : 192.168.77.10 . 4000 }
\t}
}
`;
const LIVE_TCP = `table inet portd {
\tset live_tcp {
\t\ttype inet_service
\t\tflags timeout
\t\telements = { 4000 timeout 1h expires 59m59s968ms, 8080 timeout 1h expires 59m59s968ms }
\t}
}
`;
const LIVE_UDP_RANGE = `table inet portd {
\tset live_udp_range {
\t\ttype inet_service
\t\tflags interval,timeout
\t\telements = { 5000-5001, 7000-7002 timeout 1d1h expires 1d59m59s956ms }
\t}
}
`;
const EMPTY = `table inet portd {
\tset live_udp {
\t\ttype inet_service
\t\tflags timeout
\t}
}
`;

interface Listed {
  readonly set: ElementSet;
  readonly key: string;
  readonly data: string | null;
  readonly expires: number | null;
}

/**
 * feeds `text` to a parser in pieces of `size` characters; each typed element comes back as nft's text of it
 * (the text encoder's), so the fixture's own text is the expectation; an element that does not decode is null
 */
function parse(set: ElementSet, text: string, size: number): { elements: (Listed | null)[]; whole: boolean } {
  const elements: (Listed | null)[] = [];
  const p = new ListedElements(set, (e) =>
    elements.push(e && { set: e.set, key: keyText(e), data: dataText(e.data), expires: e.expires }),
  );
  for (let i = 0; i < text.length; i += size) p.push(text.slice(i, i + size));
  return { elements, whole: p.end() };
}

describe('nft text listings', () => {
  it('durationSeconds reads nft durations', () => {
    assert.equal(durationSeconds('1d59m59s988ms'), 86400 + 59 * 60 + 59.988);
    assert.equal(durationSeconds('59m'), 3540);
    assert.equal(durationSeconds('2h'), 7200);
    assert.equal(durationSeconds('7200s'), 7200);
    assert.equal(durationSeconds('0ms'), 0);
  });

  it('reads keys, data and seconds left from a map, in any chunking', () => {
    for (const size of [1, 7, 64, 100_000]) {
      const { elements, whole } = parse('fwd4', FWD4, size);
      assert.ok(whole, `chunks of ${size}`);
      assert.deepEqual(
        elements.map((e) => [e!.set, e!.key, e!.data]),
        [
          ['fwd4', 'udp . 80', '192.168.77.10 . 80'],
          ['fwd4', 'udp . 7000', '192.168.77.10 . 9000'],
          ['fwd4', 'udp . 7001', '192.168.77.10 . 9001'],
          ['fwd4', 'udp . 7002', '192.168.77.10 . 9002'],
          ['fwd4', 'tcp . 8080', '192.168.77.10 . 80'],
        ],
        `chunks of ${size}`,
      );
      assert.equal(elements[0]!.expires, null, 'a static lease has no timeout');
      assert.equal(elements[4]!.expires, 59 * 60 + 59.988);
    }
  });

  it('reads ranges, peer keys and plain sets', () => {
    assert.deepEqual(
      parse('fwd4_range', FWD4_RANGE, 13).elements.map((e) => [e!.key, e!.data]),
      [['tcp . 6000-6009', '192.168.77.10']],
    );
    assert.deepEqual(
      parse('fwd4_peer', FWD4_PEER, 13).elements.map((e) => [e!.key, e!.data, e!.expires]),
      [
        ['203.0.113.9 . udp . 5000', '192.168.77.10 . 5000', null],
        ['203.0.113.9 . udp . 5001', '192.168.77.10 . 5001', null],
        ['203.0.113.9 . tcp . 4000', '192.168.77.10 . 4000', 59 * 60 + 59.972],
      ],
    );
    assert.deepEqual(
      parse('live_tcp', LIVE_TCP, 5).elements.map((e) => [e!.key, e!.data]),
      [
        ['4000', null],
        ['8080', null],
      ],
    );
    assert.deepEqual(
      parse('live_udp_range', LIVE_UDP_RANGE, 5).elements.map((e) => [e!.key, e!.expires]),
      [
        ['5000-5001', null],
        ['7000-7002', 86400 + 59 * 60 + 59.956],
      ],
    );
  });

  it('an empty set is whole with no elements; a listing cut short is not whole', () => {
    assert.deepEqual(parse('live_udp', EMPTY, 8), { elements: [], whole: true });
    const cut = parse('fwd4', FWD4.slice(0, FWD4.indexOf('udp . 7001')), 16);
    assert.equal(cut.whole, false);
  });

  it('ListedTable reads every element set of one table listing, skips chains and other sets, in any chunking', () => {
    const body = (t: string) => t.slice(t.indexOf('\n') + 1, t.lastIndexOf('}\n'));
    const table = `table inet portd {
${body(FWD4)}
\tset trig_game_active {
\t\ttype ipv4_addr
\t\tflags timeout
\t\telements = { 192.168.77.10 timeout 5m expires 4m }
\t}

${body(FWD4_RANGE)}
\tset live_tcp {
\t\ttype inet_service
\t\tflags timeout
\t}

\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat - 10; policy accept;
\t\ttcp dport { 1, 2 } accept
\t}
}
`;
    for (const size of [1, 5, 64, 100_000]) {
      const got: string[] = [];
      const p = new ListedTable((set, e) => got.push(`${set}:${e ? keyText(e) : 'foreign'}`));
      for (let i = 0; i < table.length; i += size) p.push(table.slice(i, i + size));
      const seen = p.end();
      assert.ok(seen, `chunks of ${size}`);
      assert.deepEqual([...seen].sort(), ['fwd4', 'fwd4_range', 'live_tcp'], `chunks of ${size}`);
      assert.deepEqual(got, [
        'fwd4:udp . 80',
        'fwd4:udp . 7000',
        'fwd4:udp . 7001',
        'fwd4:udp . 7002',
        'fwd4:tcp . 8080',
        'fwd4_range:tcp . 6000-6009',
      ]);
    }
    // cut inside a set: not whole
    const p = new ListedTable(() => {});
    p.push(table.slice(0, table.indexOf('udp . 7001')));
    assert.equal(p.end(), null);
  });

  it('countSetElements counts the elements of a JSON set listing', () => {
    const meta = { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } };
    const set = (elem?: unknown[]) =>
      JSON.stringify({
        nftables: [
          meta,
          {
            set: {
              family: 'inet',
              name: 'live_tcp',
              table: 'portd',
              type: 'inet_service',
              handle: 5,
              flags: ['timeout'],
              ...(elem ? { elem } : {}),
            },
          },
        ],
      });
    assert.equal(
      countSetElements(set([{ elem: { val: 4000, timeout: 3600, expires: 3599 } }, 8080, { range: [6000, 6009] }])),
      3,
    );
    assert.equal(countSetElements(set()), 0);
  });
});
