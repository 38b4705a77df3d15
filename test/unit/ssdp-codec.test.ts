import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  SsdpDecodeError,
  decodeSearch,
  encodeNotify,
  encodeSearchResponse,
  matchSearch,
  parseTypeUrn,
  type SsdpTarget,
} from '../../protocols/ssdp/index.js';
import { advertisementsOf, igdTree } from '../../protocols/upnp/index.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/upnp/${name}`, import.meta.url));
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function kindOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof SsdpDecodeError) return e.kind;
    throw e;
  }
  return 'ok';
}

test('decodes the M-SEARCH forms of miniupnpc and GSSDP', () => {
  const a = decodeSearch(fixture('msearch-miniupnpc.txt'));
  assert.equal(a.st, 'urn:schemas-upnp-org:device:InternetGatewayDevice:1');
  assert.equal(a.mx, 2);
  assert.equal(a.host, '239.255.255.250:1900');
  const b = decodeSearch(fixture('msearch-gssdp.txt'));
  assert.equal(b.st, 'ssdp:all');
  assert.equal(b.mx, 3);
  assert.equal(b.userAgent, 'Linux/6.1 GSSDP/1.6.2');
});

test('MX is capped at 5, absent MX means answer at once, LF-only lines are accepted', () => {
  assert.equal(
    decodeSearch(enc('M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: ssdp:all\r\nMX: 120\r\n\r\n')).mx,
    5,
  );
  assert.equal(decodeSearch(enc('M-SEARCH * HTTP/1.1\nMAN: "ssdp:discover"\nST: upnp:rootdevice\n\n')).mx, null);
});

test('refuses what is not a well-formed search, by kind', () => {
  assert.equal(
    kindOf(() => decodeSearch(enc('NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n\r\n'))),
    'not_search',
  );
  assert.equal(
    kindOf(() => decodeSearch(enc('HTTP/1.1 200 OK\r\nST: x\r\n\r\n'))),
    'not_search',
  );
  assert.equal(
    kindOf(() => decodeSearch(enc('M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMX: 1\r\n\r\n'))),
    'bad_man',
  );
  assert.equal(
    kindOf(() => decodeSearch(enc('M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n\r\n'))),
    'missing_st',
  );
  assert.equal(
    kindOf(() => decodeSearch(enc('M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: ssdp:all\r\nMX: soon\r\n\r\n'))),
    'bad_mx',
  );
  assert.equal(
    kindOf(() => decodeSearch(enc('M-SEARCH / HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: ssdp:all\r\n\r\n'))),
    'malformed',
  );
  assert.equal(
    kindOf(() => decodeSearch(new Uint8Array(0))),
    'malformed',
  );
  // a lone CR inside the ST value would be echoed into the response's ST header
  assert.equal(
    kindOf(() => decodeSearch(enc('M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: ssdp:all\rX-Evil: 1\r\n\r\n'))),
    'malformed',
  );
  const big = 'M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: ssdp:all\r\nX-PAD: ' + 'a'.repeat(5000) + '\r\n\r\n';
  assert.equal(
    kindOf(() => decodeSearch(enc(big))),
    'too_large',
  );
  const many =
    'M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: ssdp:all\r\n' +
    Array.from({ length: 40 }, (_, i) => `X-${i}: 1\r\n`).join('') +
    '\r\n';
  assert.equal(
    kindOf(() => decodeSearch(enc(many))),
    'malformed',
  );
});

test('a duplicate ST header cannot widen a search: the first one counts', () => {
  const s = decodeSearch(
    enc('M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: upnp:rootdevice\r\nST: ssdp:all\r\n\r\n'),
  );
  assert.equal(s.st, 'upnp:rootdevice');
});

test('never throws anything but SsdpDecodeError on arbitrary bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 6000 }), (bytes) => {
      try {
        decodeSearch(bytes);
      } catch (e) {
        assert.ok(e instanceof SsdpDecodeError);
      }
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(
      fc.array(
        fc.constantFrom(
          'M-SEARCH * HTTP/1.1',
          'MAN: "ssdp:discover"',
          'ST: ssdp:all',
          'MX: 2',
          'MX: x',
          ':',
          'ST:',
          '\u00ff: 1',
          '',
        ),
        { maxLength: 12 },
      ),
      (lines) => {
        try {
          decodeSearch(enc(lines.join('\r\n') + '\r\n\r\n'));
        } catch (e) {
          assert.ok(e instanceof SsdpDecodeError);
        }
      },
    ),
    { numRuns: 2000 },
  );
  // whatever ST is accepted can be echoed into a response without breaking its headers
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (st) => {
      let s;
      try {
        s = decodeSearch(enc(`M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: ${st}\r\n\r\n`));
      } catch (e) {
        assert.ok(e instanceof SsdpDecodeError);
        return;
      }
      const out = dec(
        encodeSearchResponse({
          st: s.st,
          usn: 'u',
          location: 'l',
          maxAge: 1800,
          date: 'd',
          server: 's',
          bootId: 1,
          configId: 1,
        }),
      );
      assert.equal(out.split('\r\n').length, 12);
    }),
    { numRuns: 2000 },
  );
});

const v1 = igdTree(
  1,
  {
    igd: 'aaaaaaaa-0000-0000-0000-000000000001',
    wanDevice: 'aaaaaaaa-0000-0000-0000-000000000002',
    wanConnectionDevice: 'aaaaaaaa-0000-0000-0000-000000000003',
  },
  '/igd1',
  'x',
);
const v2 = igdTree(
  2,
  {
    igd: 'bbbbbbbb-0000-0000-0000-000000000001',
    wanDevice: 'bbbbbbbb-0000-0000-0000-000000000002',
    wanConnectionDevice: 'bbbbbbbb-0000-0000-0000-000000000003',
  },
  '/igd2',
  'x',
);
const targets: SsdpTarget[] = [
  ...advertisementsOf(v1).map((a) => ({ ...a, location: 'v1' })),
  ...advertisementsOf(v2).map((a) => ({ ...a, location: 'v2' })),
];

test('each root announces rootdevice, 3 uuids, 3 device types and 3 service types', () => {
  assert.equal(advertisementsOf(v1).length, 10);
  assert.deepEqual(
    advertisementsOf(v1).filter((a) => a.nt === 'upnp:rootdevice'),
    [{ nt: 'upnp:rootdevice', usn: 'uuid:aaaaaaaa-0000-0000-0000-000000000001::upnp:rootdevice' }],
  );
});

test('search matching: v1 searches get the IGD:1 root, v2 searches the IGD:2 root, versions below ours answer with the searched ST', () => {
  const where = (st: string) => matchSearch(st, targets).map((m) => `${m.target.location} ${m.st} ${m.target.usn}`);
  assert.deepEqual(where('urn:schemas-upnp-org:device:InternetGatewayDevice:1'), [
    'v1 urn:schemas-upnp-org:device:InternetGatewayDevice:1 ' +
      'uuid:aaaaaaaa-0000-0000-0000-000000000001::urn:schemas-upnp-org:device:InternetGatewayDevice:1',
  ]);
  assert.deepEqual(where('urn:schemas-upnp-org:device:InternetGatewayDevice:2'), [
    'v2 urn:schemas-upnp-org:device:InternetGatewayDevice:2 ' +
      'uuid:bbbbbbbb-0000-0000-0000-000000000001::urn:schemas-upnp-org:device:InternetGatewayDevice:2',
  ]);
  assert.deepEqual(
    where('urn:schemas-upnp-org:service:WANIPConnection:1').map((s) => s.split(' ')[0]),
    ['v1'],
  );
  assert.deepEqual(
    where('urn:schemas-upnp-org:service:WANIPConnection:2').map((s) => s.split(' ')[0]),
    ['v2'],
  );
  assert.equal(where('urn:schemas-upnp-org:service:WANIPConnection:3').length, 0);
  assert.equal(
    where('urn:schemas-upnp-org:service:WANPPPConnection:1').length,
    0,
    'never answer for a service we do not offer',
  );
  assert.deepEqual(
    where('urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1').map((s) => s.split(' ')[0]),
    ['v1', 'v2'],
  );
  assert.deepEqual(
    where('upnp:rootdevice').map((s) => s.split(' ')[0]),
    ['v1', 'v2'],
  );
  assert.deepEqual(where('uuid:bbbbbbbb-0000-0000-0000-000000000003'), [
    'v2 uuid:bbbbbbbb-0000-0000-0000-000000000003 uuid:bbbbbbbb-0000-0000-0000-000000000003',
  ]);
  assert.equal(where('ssdp:all').length, 20);
  assert.equal(where('urn:example-com:device:InternetGatewayDevice:1').length, 0);
});

test('a v2-only tree answers a v1 search with the v1 ST (UDA 1.1 §1.3.3)', () => {
  const only2 = advertisementsOf(v2).map((a) => ({ ...a, location: 'v2' }));
  const m = matchSearch('urn:schemas-upnp-org:device:InternetGatewayDevice:1', only2);
  assert.equal(m.length, 1);
  assert.equal(m[0]!.st, 'urn:schemas-upnp-org:device:InternetGatewayDevice:1');
  assert.equal(m[0]!.target.nt, 'urn:schemas-upnp-org:device:InternetGatewayDevice:2');
});

test('parseTypeUrn', () => {
  assert.deepEqual(parseTypeUrn('urn:schemas-upnp-org:service:WANIPConnection:2'), {
    domain: 'schemas-upnp-org',
    kind: 'service',
    type: 'WANIPConnection',
    version: 2,
  });
  assert.equal(parseTypeUrn('urn:schemas-upnp-org:service:WANIPConnection'), null);
  assert.equal(parseTypeUrn('uuid:1'), null);
});

test('search response and NOTIFY bytes carry the UDA 1.1 headers', () => {
  const r = dec(
    encodeSearchResponse({
      st: 'upnp:rootdevice',
      usn: 'uuid:x::upnp:rootdevice',
      location: 'http://192.168.1.1:5000/igd2/desc.xml',
      maxAge: 1800,
      date: 'Thu, 01 Jan 2026 00:00:00 GMT',
      server: 'Linux/6 UPnP/1.1 portd/0.1',
      bootId: 7,
      configId: 1,
    }),
  );
  assert.equal(
    r,
    'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nDATE: Thu, 01 Jan 2026 00:00:00 GMT\r\nEXT: \r\nLOCATION: ' +
      'http://192.168.1.1:5000/igd2/desc.xml\r\n' +
      'SERVER: Linux/6 UPnP/1.1 portd/0.1\r\nST: upnp:rootdevice\r\nUSN: ' +
      'uuid:x::upnp:rootdevice\r\nBOOTID.UPNP.ORG: 7\r\nCONFIGID.UPNP.ORG: 1\r\n\r\n',
  );
  const alive = dec(
    encodeNotify({
      nts: 'ssdp:alive',
      nt: 'uuid:x',
      usn: 'uuid:x',
      location: 'http://a/',
      maxAge: 1800,
      server: 's',
      bootId: 7,
      configId: 1,
    }),
  );
  assert.match(alive, /^NOTIFY \* HTTP\/1\.1\r\nHOST: 239\.255\.255\.250:1900\r\n/);
  assert.match(alive, /\r\nNTS: ssdp:alive\r\n/);
  assert.match(alive, /\r\nCACHE-CONTROL: max-age=1800\r\n/);
  assert.match(alive, /\r\nBOOTID\.UPNP\.ORG: 7\r\nCONFIGID\.UPNP\.ORG: 1\r\n\r\n$/);
  const bye = dec(encodeNotify({ nts: 'ssdp:byebye', nt: 'uuid:x', usn: 'uuid:x', bootId: 7, configId: 1 }));
  assert.match(bye, /\r\nNTS: ssdp:byebye\r\n/);
  assert.doesNotMatch(bye, /LOCATION|CACHE-CONTROL/);
});

test('a value with a line break cannot inject a header', () => {
  assert.throws(
    () =>
      encodeSearchResponse({
        st: 'ssdp:all\r\nX: 1',
        usn: 'u',
        location: 'l',
        maxAge: 1800,
        date: 'd',
        server: 's',
        bootId: 1,
        configId: 1,
      }),
    TypeError,
  );
});
