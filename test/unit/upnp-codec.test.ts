import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { XMLParser } from 'fast-xml-parser';
import {
  SoapDecodeError,
  UpnpErrorCode,
  decodeSoapRequest,
  encodeDeviceDescription,
  encodePortListing,
  encodePropertySet,
  encodeScpd,
  encodeSoapFault,
  encodeSoapResponse,
  igdTree,
  parseCallbackHeader,
  parseSoapActionHeader,
  parseTimeoutHeader,
  wanIpConnectionDescription,
  decodeXmlText,
} from '../../protocols/upnp/index.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/upnp/${name}`, import.meta.url), 'utf8');
const ENV = 'http://schemas.xmlsoap.org/soap/envelope/';
const IPC1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';

function failure(fn: () => unknown): { kind: string; code: number } {
  try {
    fn();
  } catch (e) {
    if (e instanceof SoapDecodeError) return { kind: e.kind, code: e.upnpCode };
    throw e;
  }
  return { kind: 'ok', code: 0 };
}

const wrap = (inner: string, pre = '<?xml version="1.0"?>') =>
  `${pre}<s:Envelope xmlns:s="${ENV}"><s:Body>${inner}</s:Body></s:Envelope>`;

test('decodes the envelopes of nat-upnp, nat-port-mapper and upnpc', () => {
  const a = decodeSoapRequest(fixture('soap-nat-upnp.xml'), `"${IPC1}#AddPortMapping"`);
  assert.equal(a.action, 'AddPortMapping');
  assert.equal(a.serviceType, 'WANIPConnection');
  assert.equal(a.version, 1);
  assert.equal(a.args.get('NewExternalPort'), '19000');
  assert.equal(a.args.get('NewRemoteHost'), '');
  assert.equal(a.args.get('NewPortMappingDescription'), 'node:nat:upnp');
  const b = decodeSoapRequest(
    fixture('soap-nat-port-mapper.xml'),
    '"urn:schemas-upnp-org:service:WANIPConnection:2#AddAnyPortMapping"',
  );
  assert.equal(b.action, 'AddAnyPortMapping');
  assert.equal(b.version, 2);
  assert.equal(b.args.get('NewPortMappingDescription'), '@achingbrain/nat-port-mapper');
  assert.equal(b.args.size, 8);
  const c = decodeSoapRequest(fixture('soap-miniupnpc.xml'), null);
  assert.equal(c.args.get('NewInternalClient'), '127.0.0.1');
});

test('namespace-aware: any prefixes, default namespace on the action, no XML declaration', () => {
  const r = decodeSoapRequest(
    `<SOAP-ENV:Envelope xmlns:SOAP-ENV="${ENV}" ` +
      `xmlns:m="${IPC1}"><SOAP-ENV:Body><m:GetExternalIPAddress/></SOAP-ENV:Body></SOAP-ENV:Envelope>`,
  );
  assert.equal(r.action, 'GetExternalIPAddress');
  assert.equal(r.serviceUrn, IPC1);
  const d = decodeSoapRequest(
    wrap(`<DeletePortMapping xmlns="${IPC1}"><NewExternalPort>1</NewExternalPort></DeletePortMapping>`, ''),
  );
  assert.equal(d.action, 'DeletePortMapping');
  assert.equal(d.args.get('NewExternalPort'), '1');
  // an Envelope in the wrong namespace is not a SOAP envelope, whatever its prefix says
  assert.deepEqual(
    failure(() =>
      decodeSoapRequest(`<s:Envelope xmlns:s="urn:evil"><s:Body><u:X xmlns:u="${IPC1}"/></s:Body></s:Envelope>`),
    ),
    { kind: 'not_envelope', code: 402 },
  );
  // an action outside any UPnP service namespace
  assert.deepEqual(
    failure(() => decodeSoapRequest(wrap('<u:X xmlns:u="urn:example:thing"/>'))),
    { kind: 'no_action', code: 401 },
  );
  assert.deepEqual(
    failure(() => decodeSoapRequest(wrap(''))),
    { kind: 'no_action', code: 401 },
  );
});

test('entities: the five predefined and character references are decoded, nothing else is expanded; CDATA is literal', () => {
  const r = decodeSoapRequest(
    wrap(`<u:A xmlns:u="${IPC1}"><D>a &amp; b &lt;c&gt; &#65;&#x42; &unknown;</D><E><![CDATA[x &amp; <y>]]></E></u:A>`),
  );
  assert.equal(r.args.get('D'), 'a & b <c> AB &unknown;');
  assert.equal(r.args.get('E'), 'x &amp; <y>');
  assert.equal(decodeXmlText('&#0;&#xD800;'), '&#0;&#xD800;');
});

test('hostile XML is refused before parsing: billion laughs, XXE, any DOCTYPE or ENTITY', () => {
  const laughs =
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 ' +
    '"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">' +
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>' +
    wrap(
      '<u:AddPortMapping ' +
        `xmlns:u="${IPC1}"><NewPortMappingDescription>&lol3;</NewPortMappingDescription></u:AddPortMapping>`,
      '',
    );
  assert.deepEqual(
    failure(() => decodeSoapRequest(laughs)),
    { kind: 'dtd', code: 402 },
  );
  const xxe =
    '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' +
    wrap(
      '<u:AddPortMapping ' +
        `xmlns:u="${IPC1}"><NewPortMappingDescription>&xxe;</NewPortMappingDescription></u:AddPortMapping>`,
      '',
    );
  assert.deepEqual(
    failure(() => decodeSoapRequest(xxe)),
    { kind: 'dtd', code: 402 },
  );
  assert.equal(failure(() => decodeSoapRequest('<!doctype x SYSTEM "http://example.com/x.dtd"><x/>')).kind, 'dtd');
  assert.equal(failure(() => decodeSoapRequest(wrap(`<u:A xmlns:u="${IPC1}"><!ENTITY x "y"></u:A>`))).kind, 'dtd');
  // comments are fine
  assert.equal(decodeSoapRequest(wrap(`<!-- hi --><u:A xmlns:u="${IPC1}"/>`)).action, 'A');
});

test('size, depth and well-formedness limits', () => {
  assert.deepEqual(
    failure(() => decodeSoapRequest(wrap(`<u:A xmlns:u="${IPC1}"><D>${'x'.repeat(17000)}</D></u:A>`))),
    { kind: 'too_large', code: 402 },
  );
  const deep = wrap(`<u:A xmlns:u="${IPC1}">${'<a>'.repeat(40)}${'</a>'.repeat(40)}</u:A>`);
  assert.ok(['too_deep', 'malformed'].includes(failure(() => decodeSoapRequest(deep)).kind));
  assert.deepEqual(
    failure(() => decodeSoapRequest(wrap(`<u:A xmlns:u="${IPC1}"><B></u:A>`))),
    { kind: 'malformed', code: 402 },
  );
  assert.deepEqual(failure(() => decodeSoapRequest('not xml at all')).code, 402);
  const many = wrap(
    `<u:A xmlns:u="${IPC1}">${Array.from({ length: 70 }, (_, i) => `<N${i}>1</N${i}>`).join('')}</u:A>`,
  );
  assert.equal(failure(() => decodeSoapRequest(many)).kind, 'malformed');
});

test('SOAPAction with or without quotes; its action must agree with the body', () => {
  assert.deepEqual(parseSoapActionHeader(`"${IPC1}#AddPortMapping"`), {
    serviceUrn: IPC1,
    serviceType: 'WANIPConnection',
    version: 1,
    action: 'AddPortMapping',
  });
  assert.deepEqual(parseSoapActionHeader(` ${IPC1}#AddPortMapping `)?.action, 'AddPortMapping');
  assert.equal(parseSoapActionHeader('garbage'), null);
  assert.equal(parseSoapActionHeader(`"${IPC1}#"`), null);
  assert.deepEqual(
    failure(() => decodeSoapRequest(fixture('soap-nat-upnp.xml'), `"${IPC1}#DeletePortMapping"`)),
    { kind: 'action_mismatch', code: 401 },
  );
});

test('never throws anything but SoapDecodeError on arbitrary input', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 2000 }), (s) => {
      try {
        decodeSoapRequest(s);
      } catch (e) {
        assert.ok(e instanceof SoapDecodeError, String(e));
      }
    }),
    { numRuns: 1000 },
  );
  const parts = [
    '<s:Envelope xmlns:s="' + ENV + '">',
    '</s:Envelope>',
    '<s:Body>',
    '</s:Body>',
    `<u:A xmlns:u="${IPC1}">`,
    '</u:A>',
    '<B>',
    '</B>',
    '&amp;',
    '&#x41;',
    '<![CDATA[x]]>',
    '<!--c-->',
    '<?pi x?>',
    'text',
    '<',
    '>',
    '&',
  ];
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...parts), { maxLength: 20 }), (xs) => {
      try {
        decodeSoapRequest(xs.join(''));
      } catch (e) {
        assert.ok(e instanceof SoapDecodeError, String(e));
      }
    }),
    { numRuns: 2000 },
  );
});

const parser = new XMLParser({ ignoreAttributes: false, processEntities: true });

test('response and fault envelopes parse back, with the UPnPError clients look for', () => {
  const r = parser.parse(encodeSoapResponse(IPC1, 'GetExternalIPAddress', [['NewExternalIPAddress', '203.0.113.1']]));
  assert.equal(r['s:Envelope']['s:Body']['u:GetExternalIPAddressResponse'].NewExternalIPAddress, '203.0.113.1');
  assert.equal(r['s:Envelope']['s:Body']['u:GetExternalIPAddressResponse']['@_xmlns:u'], IPC1);
  const f = parser.parse(encodeSoapFault(UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS));
  const err = f['s:Envelope']['s:Body']['s:Fault'].detail.UPnPError;
  assert.equal(err.errorCode, 729);
  assert.equal(err.errorDescription, 'ConflictWithOtherMechanisms');
  assert.equal(f['s:Envelope']['s:Body']['s:Fault'].faultstring, 'UPnPError');
  // a description with markup stays text
  const d = encodeSoapResponse(IPC1, 'X', [['D', '<b>&']]);
  assert.match(d, /<D>&lt;b&gt;&amp;<\/D>/);
  // CDATA values cannot be closed early
  const c = encodeSoapResponse(IPC1, 'X', [['L', { cdata: 'a]]>b' }]]);
  assert.match(c, /<L><!\[CDATA\[a\]\]\]\]><!\[CDATA\[>b\]\]><\/L>/);
});

test('port listing document (GetListOfPortMappings)', () => {
  const xml = encodePortListing([
    {
      remoteHost: '',
      externalPort: 1234,
      protocol: 'TCP',
      internalPort: 80,
      internalClient: '192.168.1.5',
      enabled: true,
      description: 'a<b',
      leaseTime: 60,
    },
  ]);
  const p = parser.parse(xml);
  const e = p['p:PortMappingList']['p:PortMappingEntry'];
  assert.equal(e['p:NewExternalPort'], 1234);
  assert.equal(e['p:NewInternalClient'], '192.168.1.5');
  assert.equal(e['p:NewDescription'], 'a<b');
  assert.equal(e['p:NewLeaseTime'], 60);
  assert.equal(p['p:PortMappingList']['@_xmlns:p'], 'urn:schemas-upnp-org:gw:WANIPConnection');
});

const uuids = (p: string) => ({
  igd: `${p}0000000-0000-0000-0000-000000000001`,
  wanDevice: `${p}0000000-0000-0000-0000-000000000002`,
  wanConnectionDevice: `${p}0000000-0000-0000-0000-000000000003`,
});
const info = { friendlyName: 'Home <GW>', manufacturer: 'portd', modelName: 'portd', presentationURL: null };

test('device descriptions: IGD:1 lists only :1 services, IGD:2 the :2 ones; config text is escaped; presentationURL only when given', () => {
  const d1 = encodeDeviceDescription(igdTree(1, uuids('a'), '/igd1', 'x'), info, 1);
  const d2 = encodeDeviceDescription(
    igdTree(2, uuids('b'), '/igd2', 'x'),
    { ...info, presentationURL: 'http://192.168.1.1:8080/' },
    3,
  );
  assert.match(d1, /urn:schemas-upnp-org:device:InternetGatewayDevice:1/);
  assert.match(d1, /urn:schemas-upnp-org:service:WANIPConnection:1/);
  assert.doesNotMatch(d1, /:2</);
  assert.doesNotMatch(d1, /presentationURL/);
  assert.match(d1, /<friendlyName>Home &lt;GW&gt;<\/friendlyName>/);
  assert.match(d2, /<root xmlns="urn:schemas-upnp-org:device-1-0" configId="3">/);
  assert.match(d2, /urn:schemas-upnp-org:device:WANConnectionDevice:2/);
  assert.match(d2, /urn:schemas-upnp-org:service:WANIPConnection:2/);
  assert.match(d2, /urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1/);
  assert.match(d2, /urn:schemas-upnp-org:service:Layer3Forwarding:1/);
  assert.match(d2, /<presentationURL>http:\/\/192\.168\.1\.1:8080\/<\/presentationURL>/);
  const p = parser.parse(d2);
  const conn = p.root.device.deviceList.device.deviceList.device;
  assert.equal(conn.UDN, 'uuid:b0000000-0000-0000-0000-000000000003');
  assert.equal(conn.serviceList.service.controlURL, '/igd2/ctl/IPConn');
});

test('SCPDs: v2 adds AddAnyPortMapping, GetListOfPortMappings, DeletePortMappingRange', () => {
  const s1 = encodeScpd(wanIpConnectionDescription(1));
  const s2 = encodeScpd(wanIpConnectionDescription(2));
  for (const a of [
    'AddPortMapping',
    'DeletePortMapping',
    'GetGenericPortMappingEntry',
    'GetSpecificPortMappingEntry',
    'GetExternalIPAddress',
    'ForceTermination',
  ]) {
    assert.match(s1, new RegExp(`<name>${a}</name>`));
    assert.match(s2, new RegExp(`<name>${a}</name>`));
  }
  for (const a of ['AddAnyPortMapping', 'GetListOfPortMappings', 'DeletePortMappingRange']) {
    assert.doesNotMatch(s1, new RegExp(`<name>${a}</name>`));
    assert.match(s2, new RegExp(`<name>${a}</name>`));
  }
  // every related state variable exists
  for (const v of [1, 2] as const) {
    const d = wanIpConnectionDescription(v);
    const vars = new Set(d.stateVariables.map((x) => x.name));
    for (const a of d.actions)
      for (const arg of a.arguments) assert.ok(vars.has(arg.relatedStateVariable), `${a.name}.${arg.name}`);
  }
  assert.match(s2, /<stateVariable sendEvents="yes"><name>PortMappingNumberOfEntries<\/name>/);
});

test('GENA codecs: CALLBACK, TIMEOUT, propertyset', () => {
  assert.deepEqual(
    parseCallbackHeader('<http://192.168.1.5:49152/evt>')?.map((u) => u.href),
    ['http://192.168.1.5:49152/evt'],
  );
  assert.equal(parseCallbackHeader('<http://a/><http://b/>')?.length, 2);
  assert.equal(parseCallbackHeader('http://a/'), null);
  assert.equal(parseCallbackHeader('<ftp://a/>'), null);
  assert.equal(parseCallbackHeader('<http://a/> junk'), null);
  assert.equal(parseTimeoutHeader('Second-300'), 300);
  assert.equal(parseTimeoutHeader('infinite'), 'infinite');
  assert.equal(parseTimeoutHeader('Second-infinite'), 'infinite');
  assert.equal(parseTimeoutHeader('soon'), null);
  const p = parser.parse(
    encodePropertySet([
      ['PortMappingNumberOfEntries', 3],
      ['ExternalIPAddress', '203.0.113.1'],
    ]),
  );
  assert.deepEqual(p['e:propertyset']['e:property'], [
    { PortMappingNumberOfEntries: 3 },
    { ExternalIPAddress: '203.0.113.1' },
  ]);
});
