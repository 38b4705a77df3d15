/** SOAP control through the real lease table: error codes, v1/v2 differences, client quirks, HTTP safety. */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, beforeEach, test } from 'node:test';
import {
  IPC1,
  IPC2,
  errorCodeOf,
  field,
  soap,
  startUpnp,
  type UpnpHarness,
  revokeAll,
  addMappingArgs,
} from './upnp-helpers.js';

let h: UpnpHarness;
before(async () => {
  h = await startUpnp();
});
after(async () => {
  await h?.close();
});
beforeEach(() => revokeAll(h));

const c1 = () => `${h.base}/igd1/ctl/IPConn`;
const c2 = () => `${h.base}/igd2/ctl/IPConn`;
const add = addMappingArgs;
const pcpLease = (port: number) =>
  h.env.table.request({
    source: 'pcp',
    identity: 'internal',
    protocol: 'tcp',
    owner: '127.0.0.9',
    internalAddress: '127.0.0.9',
    internalPort: 5555,
    externalPort: port,
    allowOtherPort: false,
    lifetime: 600,
    nonce: '00112233445566778899aabb',
  });

test('read-only actions', async () => {
  let r = await soap(c2(), IPC2, 'GetExternalIPAddress');
  assert.equal(r.status, 200);
  assert.equal(field(r.body, 'NewExternalIPAddress'), '203.0.113.1');
  assert.match(r.body, /<u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2">/);
  r = await soap(c1(), IPC1, 'GetConnectionTypeInfo');
  assert.equal(field(r.body, 'NewConnectionType'), 'IP_Routed');
  r = await soap(c1(), IPC1, 'GetNATRSIPStatus');
  assert.equal(field(r.body, 'NewNATEnabled'), '1');
  assert.equal(field(r.body, 'NewRSIPAvailable'), '0');
  r = await soap(
    `${h.base}/igd2/ctl/L3F`,
    'urn:schemas-upnp-org:service:Layer3Forwarding:1',
    'GetDefaultConnectionService',
  );
  assert.match(
    field(r.body, 'NewDefaultConnectionService') ?? '',
    /^uuid:[0-9a-f-]{36}:WANConnectionDevice:2,urn:upnp-org:serviceId:WANIPConn1$/,
  );
  r = await soap(
    `${h.base}/igd1/ctl/CmnIfCfg`,
    'urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1',
    'GetTotalPacketsReceived',
  );
  assert.equal(field(r.body, 'NewTotalPacketsReceived'), '20');
});

test('a LAN device can never change or drop the WAN link: 606', async () => {
  for (const a of ['SetConnectionType', 'RequestConnection', 'RequestTermination', 'ForceTermination']) {
    for (const [url, ns] of [
      [c1(), IPC1],
      [c2(), IPC2],
    ] as const) {
      const r = await soap(url, ns, a, a === 'SetConnectionType' ? { NewConnectionType: 'IP_Bridged' } : {});
      assert.equal(r.status, 500);
      assert.equal(errorCodeOf(r.body), 606, `${a} on ${ns}`);
    }
  }
  const r = await soap(
    `${h.base}/igd1/ctl/L3F`,
    'urn:schemas-upnp-org:service:Layer3Forwarding:1',
    'SetDefaultConnectionService',
    { NewDefaultConnectionService: 'x' },
  );
  assert.equal(errorCodeOf(r.body), 606);
});

test('secure mode: mapping to another host is 606 and leaves no lease', async () => {
  for (const [url, ns] of [
    [c1(), IPC1],
    [c2(), IPC2],
  ] as const) {
    const r = await soap(url, ns, 'AddPortMapping', add({ NewInternalClient: '127.0.0.2' }));
    assert.equal(errorCodeOf(r.body), 606);
  }
  assert.equal(h.env.table.list({ state: 'active' }).total, 0);
});

test('an empty NewInternalClient means the caller', async () => {
  const r = await soap(c1(), IPC1, 'AddPortMapping', add({ NewInternalClient: '' }));
  assert.equal(r.status, 200, r.body);
  assert.equal(h.env.table.findByExternal('tcp', 20000)?.internalAddress, '127.0.0.1');
});

test('conflicts: 718 for v1 clients; v2 clients get 729 when PCP holds the port, 718 when UPnP does', async () => {
  const g = await pcpLease(21000);
  assert.ok(g.ok);
  let r = await soap(c1(), IPC1, 'AddPortMapping', add({ NewExternalPort: 21000 }));
  assert.equal(errorCodeOf(r.body), 718);
  r = await soap(c2(), IPC2, 'AddPortMapping', add({ NewExternalPort: 21000 }));
  assert.equal(errorCodeOf(r.body), 729);
  // a v1 SOAPAction on the v2 control URL is a v1 client: 718
  r = await soap(c2(), IPC1, 'AddPortMapping', add({ NewExternalPort: 21000 }));
  assert.equal(errorCodeOf(r.body), 718);
  // held by another UPnP client
  const other = await h.env.table.request({
    source: 'upnp',
    identity: 'external',
    protocol: 'udp',
    owner: '127.0.0.3',
    internalAddress: '127.0.0.3',
    internalPort: 1,
    externalPort: 21001,
    allowOtherPort: false,
    lifetime: 600,
  });
  assert.ok(other.ok);
  r = await soap(c2(), IPC2, 'AddPortMapping', add({ NewExternalPort: 21001, NewProtocol: 'UDP' }));
  assert.equal(errorCodeOf(r.body), 718);
  // AddAnyPortMapping picks another port instead
  r = await soap(c2(), IPC2, 'AddAnyPortMapping', add({ NewExternalPort: 21000 }));
  assert.equal(r.status, 200, r.body);
  const reserved = Number(field(r.body, 'NewReservedPort'));
  assert.notEqual(reserved, 21000);
  assert.equal(h.env.table.findByExternal('tcp', reserved)?.owner, '127.0.0.1');
  // the PCP lease is untouched, and UPnP may not delete it
  r = await soap(c2(), IPC2, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: 21000, NewProtocol: 'TCP' });
  assert.equal(errorCodeOf(r.body), 714, 'PCP leases are not UPnP-visible (upnp.listAllLeases: false)');
  assert.equal(h.env.table.findByExternal('tcp', 21000)?.source, 'pcp');
});

test('identical repeats renew; the owner may move its own mapping to another internal port', async () => {
  for (let i = 0; i < 3; i++) assert.equal((await soap(c1(), IPC1, 'AddPortMapping', add())).status, 200);
  assert.equal(h.env.table.list({ state: 'active' }).total, 1);
  const id = h.env.table.findByExternal('tcp', 20000)!.id;
  const r = await soap(c1(), IPC1, 'AddPortMapping', add({ NewInternalPort: 2001 }));
  assert.equal(r.status, 200, r.body);
  const l = h.env.table.findByExternal('tcp', 20000)!;
  assert.equal(l.id, id);
  assert.equal(l.internalPort, 2001);
  assert.equal(h.env.table.list({ state: 'active' }).total, 1);
});

test('argument errors: 716 wildcard external port, 732/402 internal port 0, 402 bad protocol, reserved port 718', async () => {
  assert.equal(errorCodeOf((await soap(c1(), IPC1, 'AddPortMapping', add({ NewExternalPort: 0 }))).body), 716);
  assert.equal(errorCodeOf((await soap(c2(), IPC2, 'AddPortMapping', add({ NewExternalPort: 0 }))).body), 716);
  assert.equal(errorCodeOf((await soap(c2(), IPC2, 'AddPortMapping', add({ NewInternalPort: 0 }))).body), 732);
  assert.equal(errorCodeOf((await soap(c1(), IPC1, 'AddPortMapping', add({ NewInternalPort: 0 }))).body), 402);
  assert.equal(errorCodeOf((await soap(c1(), IPC1, 'AddPortMapping', add({ NewProtocol: 'SCTP' }))).body), 402);
  assert.equal(errorCodeOf((await soap(c1(), IPC1, 'AddPortMapping', add({ NewExternalPort: 70000 }))).body), 402);
  assert.equal(errorCodeOf((await soap(c1(), IPC1, 'AddPortMapping', add({ NewLeaseDuration: 'forever' }))).body), 402);
  assert.equal(
    errorCodeOf((await soap(c1(), IPC1, 'AddPortMapping', add({ NewRemoteHost: 'example.com' }))).body),
    402,
  );
  assert.equal(
    errorCodeOf((await soap(c1(), IPC1, 'AddPortMapping', add({ NewExternalPort: 22 }))).body),
    718,
    'reserved port',
  );
  assert.equal(h.env.table.list({ state: 'active' }).total, 0);
});

test('never 724-727: remote hosts, port translation and lease durations are all supported', async () => {
  let r = await soap(
    c1(),
    IPC1,
    'AddPortMapping',
    add({ NewRemoteHost: '198.51.100.7', NewExternalPort: 22000, NewInternalPort: 3000, NewLeaseDuration: 0 }),
  );
  assert.equal(r.status, 200, r.body);
  const l = h.env.table.findByExternal('tcp', 22000)!;
  assert.equal(l.remoteAddress, '198.51.100.7');
  assert.equal(l.internalPort, 3000);
  r = await soap(c1(), IPC1, 'GetSpecificPortMappingEntry', {
    NewRemoteHost: '198.51.100.7',
    NewExternalPort: 22000,
    NewProtocol: 'TCP',
  });
  assert.equal(field(r.body, 'NewInternalPort'), '3000');
  assert.equal(field(r.body, 'NewLeaseDuration'), '604800');
  r = await soap(c2(), IPC2, 'AddPortMapping', add({ NewExternalPort: 22001, NewLeaseDuration: 99999999 }));
  assert.equal(r.status, 200, r.body);
  assert.equal(h.env.table.findByExternal('tcp', 22001)!.expiresAt, h.env.clock.now() + 604800 * 1000);
});

test('lookups: 714 for no such entry, 713 for an index past the end', async () => {
  await soap(c1(), IPC1, 'AddPortMapping', add());
  let r = await soap(c1(), IPC1, 'GetSpecificPortMappingEntry', {
    NewRemoteHost: '',
    NewExternalPort: 20000,
    NewProtocol: 'TCP',
  });
  assert.equal(field(r.body, 'NewInternalClient'), '127.0.0.1');
  assert.equal(field(r.body, 'NewPortMappingDescription'), 'test');
  r = await soap(c1(), IPC1, 'GetSpecificPortMappingEntry', {
    NewRemoteHost: '',
    NewExternalPort: 20000,
    NewProtocol: 'UDP',
  });
  assert.equal(errorCodeOf(r.body), 714);
  r = await soap(c1(), IPC1, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 0 });
  assert.equal(field(r.body, 'NewExternalPort'), '20000');
  assert.equal(field(r.body, 'NewProtocol'), 'TCP');
  r = await soap(c1(), IPC1, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 1 });
  assert.equal(errorCodeOf(r.body), 713);
  r = await soap(c1(), IPC1, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 'x' });
  assert.equal(errorCodeOf(r.body), 402);
  r = await soap(c1(), IPC1, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: 20001, NewProtocol: 'TCP' });
  assert.equal(errorCodeOf(r.body), 714);
});

test('DeletePortMapping with an empty NewProtocol deletes whatever this client holds on that port', async () => {
  await soap(c2(), IPC2, 'AddPortMapping', add({ NewExternalPort: 23000 }));
  await soap(c2(), IPC2, 'AddPortMapping', add({ NewExternalPort: 23000, NewProtocol: 'UDP' }));
  assert.equal(h.env.table.list({ state: 'active' }).total, 2);
  const r = await soap(c2(), IPC2, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: 23000, NewProtocol: '' });
  assert.equal(r.status, 200, r.body);
  assert.match(
    r.body,
    new RegExp(
      '<u:DeletePortMappingResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2">' +
        '</u:DeletePortMappingResponse>',
    ),
  );
  assert.equal(h.env.table.list({ state: 'active' }).total, 0);
});

test("secure mode: deleting another client's mapping is 606 and it stays", async () => {
  const other = await h.env.table.request({
    source: 'upnp',
    identity: 'external',
    protocol: 'tcp',
    owner: '127.0.0.3',
    internalAddress: '127.0.0.3',
    internalPort: 1,
    externalPort: 24000,
    allowOtherPort: false,
    lifetime: 600,
  });
  assert.ok(other.ok);
  const r = await soap(c1(), IPC1, 'DeletePortMapping', {
    NewRemoteHost: '',
    NewExternalPort: 24000,
    NewProtocol: 'TCP',
  });
  assert.equal(errorCodeOf(r.body), 606);
  assert.ok(h.env.table.findByExternal('tcp', 24000));
});

test('v2 range actions: GetListOfPortMappings and DeletePortMappingRange, 730 and 733', async () => {
  for (const p of [25000, 25001, 25002])
    await soap(c2(), IPC2, 'AddPortMapping', add({ NewExternalPort: p, NewInternalPort: p }));
  let r = await soap(c2(), IPC2, 'GetListOfPortMappings', {
    NewStartPort: 25001,
    NewEndPort: 25002,
    NewProtocol: 'TCP',
    NewManage: 1,
    NewNumberOfPorts: 0,
  });
  assert.equal(r.status, 200, r.body);
  const listing = /<NewPortListing><!\[CDATA\[([\s\S]*)\]\]><\/NewPortListing>/.exec(r.body)?.[1] ?? '';
  assert.deepEqual(
    [...listing.matchAll(/<p:NewExternalPort>(\d+)<\/p:NewExternalPort>/g)].map((m) => Number(m[1])),
    [25001, 25002],
  );
  r = await soap(c2(), IPC2, 'GetListOfPortMappings', {
    NewStartPort: 25000,
    NewEndPort: 25002,
    NewProtocol: 'TCP',
    NewManage: 0,
    NewNumberOfPorts: 1,
  });
  assert.equal([...r.body.matchAll(/p:PortMappingEntry>/g)].length, 2, 'NewNumberOfPorts bounds the list');
  r = await soap(c2(), IPC2, 'GetListOfPortMappings', {
    NewStartPort: 25002,
    NewEndPort: 25000,
    NewProtocol: 'TCP',
    NewManage: 1,
    NewNumberOfPorts: 0,
  });
  assert.equal(errorCodeOf(r.body), 733);
  r = await soap(c2(), IPC2, 'GetListOfPortMappings', {
    NewStartPort: 1,
    NewEndPort: 65535,
    NewProtocol: 'UDP',
    NewManage: 1,
    NewNumberOfPorts: 0,
  });
  assert.equal(errorCodeOf(r.body), 730);
  r = await soap(c2(), IPC2, 'DeletePortMappingRange', {
    NewStartPort: 25000,
    NewEndPort: 25001,
    NewProtocol: 'TCP',
    NewManage: 0,
  });
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(
    h.env.table.list({ state: 'active' }).leases.map((l) => l.externalPort),
    [25002],
  );
  r = await soap(c2(), IPC2, 'DeletePortMappingRange', {
    NewStartPort: 25000,
    NewEndPort: 25001,
    NewProtocol: 'TCP',
    NewManage: 0,
  });
  assert.equal(errorCodeOf(r.body), 730);
  // v1 service has no such actions
  r = await soap(c1(), IPC1, 'GetListOfPortMappings', {
    NewStartPort: 1,
    NewEndPort: 2,
    NewProtocol: 'TCP',
    NewManage: 1,
    NewNumberOfPorts: 0,
  });
  assert.equal(errorCodeOf(r.body), 401);
});

test('service versions: any version up to ours, nothing newer, nothing of another service', async () => {
  assert.equal((await soap(c2(), IPC1, 'GetExternalIPAddress')).status, 200);
  assert.equal(errorCodeOf((await soap(c1(), IPC2, 'GetExternalIPAddress')).body), 401);
  assert.equal(
    errorCodeOf((await soap(c2(), 'urn:schemas-upnp-org:service:WANIPConnection:3', 'GetExternalIPAddress')).body),
    401,
  );
  assert.equal(
    errorCodeOf((await soap(c2(), 'urn:schemas-upnp-org:service:WANPPPConnection:1', 'GetExternalIPAddress')).body),
    401,
  );
  assert.equal(errorCodeOf((await soap(c2(), IPC2, 'NoSuchAction')).body), 401);
});

/** raw HTTP/1.1 over a socket, for what fetch will not send */
function raw(request: string | Buffer): Promise<string> {
  const url = new URL(h.base);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(url.port), url.hostname);
    let out = '';
    s.on('data', (d) => {
      out += d.toString();
    });
    s.on('end', () => resolve(out));
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy());
    s.end(request);
  });
}

const envelope = (action: string, ns = IPC1, decl = true) =>
  `${decl ? '<?xml version="1.0"?>' : ''}<s:Envelope ` +
  `xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:${action} ` +
  `xmlns:u="${ns}"></u:${action}></s:Body></s:Envelope>`;

test('HTTP quirks: SOAPAction without quotes, any charset, application/xml, chunked body, no XML declaration', async () => {
  const body = envelope('GetExternalIPAddress', IPC1, false);
  const host = new URL(h.base).host;
  for (const [ct, sa] of [
    ['text/xml', `${IPC1}#GetExternalIPAddress`],
    ['text/xml; charset=ISO-8859-1', `"${IPC1}#GetExternalIPAddress"`],
    ['application/xml', `"${IPC1}#GetExternalIPAddress"`],
    ['TEXT/XML;charset="utf-8"', `"${IPC1}#GetExternalIPAddress"`],
  ]) {
    const out = await raw(
      `POST /igd1/ctl/IPConn HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ${ct}\r\nSOAPAction: ` +
        `${sa}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    assert.match(out, /^HTTP\/1\.1 200/, ct);
    assert.match(out, /<NewExternalIPAddress>203\.0\.113\.1<\/NewExternalIPAddress>/);
  }
  const half = Math.floor(body.length / 2);
  const chunked =
    `${half.toString(16)}\r\n${body.slice(0, half)}\r\n` +
    `${(body.length - half).toString(16)}\r\n${body.slice(half)}\r\n` +
    '0\r\n\r\n';
  const out = await raw(
    `POST /igd1/ctl/IPConn HTTP/1.1\r\nHost: ${host}\r\nContent-Type: text/xml\r\nTransfer-Encoding: ` +
      `chunked\r\nSOAPAction: "${IPC1}#GetExternalIPAddress"\r\nConnection: close\r\n\r\n${chunked}`,
  );
  assert.match(out, /^HTTP\/1\.1 200/);
  assert.match(out, /203\.0\.113\.1/);
});

test('HTTP safety: bodies over 16 KiB are refused, DTDs never parsed, unknown paths 404', async () => {
  const big = envelope('GetExternalIPAddress').replace(
    '</u:GetExternalIPAddress>',
    `<Pad>${'x'.repeat(17 * 1024)}</Pad></u:GetExternalIPAddress>`,
  );
  let res = await fetch(c1(), {
    method: 'POST',
    headers: { 'content-type': 'text/xml', soapaction: `"${IPC1}#GetExternalIPAddress"` },
    body: big,
  });
  assert.equal(res.status, 413);
  const laughs =
    '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>' +
    envelope('AddPortMapping')
      .replace('</u:AddPortMapping>', '<NewPortMappingDescription>&b;</NewPortMappingDescription></u:AddPortMapping>')
      .replace('<?xml version="1.0"?>', '');
  res = await fetch(c1(), {
    method: 'POST',
    headers: { 'content-type': 'text/xml', soapaction: `"${IPC1}#AddPortMapping"` },
    body: laughs,
  });
  assert.equal(res.status, 500);
  assert.equal(errorCodeOf(await res.text()), 402);
  assert.equal(h.env.table.list({ state: 'active' }).total, 0);
  assert.equal(
    (await h.env.metrics.badInput.get()).values.some((v) => v.labels.kind === 'dtd' && v.value >= 1),
    true,
  );
  res = await fetch(`${h.base}/etc/passwd`);
  assert.equal(res.status, 404);
  res = await fetch(h.descV2);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/xml/);
});

test('only LAN clients are answered: the connection of anyone else is closed without a reply', async () => {
  const lan = await startUpnp({ isLanClient: (a) => a === '127.0.0.5' });
  try {
    const url = new URL(lan.descV1);
    const out = await new Promise<string>((resolve) => {
      const s = net.connect({ port: Number(url.port), host: '127.0.0.1', localAddress: '127.0.0.1' });
      let d = '';
      s.on('data', (x) => {
        d += x.toString();
      });
      s.on('close', () => resolve(d));
      s.on('error', () => resolve(d));
      s.setTimeout(3000, () => s.destroy());
      s.write(`GET /igd1/desc.xml HTTP/1.1\r\nHost: x\r\n\r\n`);
    });
    assert.equal(out, '');
    const ok = await new Promise<number>((resolve, reject) => {
      http
        .get(
          { host: '127.0.0.1', port: Number(url.port), path: '/igd1/desc.xml', localAddress: '127.0.0.5' },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        )
        .on('error', reject);
    });
    assert.equal(ok, 200);
  } finally {
    await lan.close();
  }
});
