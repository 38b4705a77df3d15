/**
 * UPnP over IPv6 on loopback (::1): HTTP descriptions and control on an IPv6 address with
 * bracketed URLs, SSDP unicast searches answered with an IPv6 LOCATION, and the IGD:2 root's
 * WANIPv6FirewallControl:1 service when pinholes are offered. Multicast on ff02::c/ff05::c needs
 * interfaces with multicast: that is the lab's (test/lab).
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { errorCodeOf, field, soap, startUpnp } from './upnp-helpers.js';

const FW6 = 'urn:schemas-upnp-org:service:WANIPv6FirewallControl:1';
const header = (text: string, name: string) => new RegExp(`^${name}: ?(.*)$`, 'mi').exec(text)?.[1]?.trim() ?? null;

const pinholes = (status = { firewallEnabled: true, inboundPinholeAllowed: true }) => ({
  directory: { idOf: () => 1, leaseOf: () => null },
  status: () => status,
  packets: async () => 0,
  outboundTimeout: (p: 'tcp' | 'udp') => (p === 'udp' ? 120 : 432000),
});

test('IPv6: descriptions, control and SSDP on [::1], with bracketed URLs', async () => {
  const h = await startUpnp({
    isLanClient: (a) => a === '127.0.0.1' || a === '::1',
    extra: {
      listen: { addresses: ['127.0.0.1/8', '::1/128'], httpPort: 0 },
      ssdp: { enabled: true, port: 0, joinMulticast: false, maxDelayMs: 20 },
      pinholes: pinholes(),
    },
  });
  const client = createSocket('udp6');
  const inbox: string[] = [];
  client.on('message', (m) => inbox.push(m.toString('latin1')));
  await new Promise<void>((r) => client.bind(0, '::1', r));
  try {
    const urls = h.server.descriptionUrls();
    const v6 = urls.find((u) => u.address === '::1');
    assert.ok(v6, JSON.stringify(urls));
    assert.match(v6.v2, /^http:\/\/\[::1\]:\d+\/igd2\/desc\.xml$/);
    const desc = await (await fetch(v6.v2)).text();
    assert.match(desc, /<serviceType>urn:schemas-upnp-org:service:WANIPv6FirewallControl:1<\/serviceType>/);
    const ctl =
      /<serviceType>urn:schemas-upnp-org:service:WANIPv6FirewallControl:1<\/serviceType>.*?<controlURL>([^<]+)/s.exec(
        desc,
      )?.[1];
    assert.ok(ctl, 'a control URL');
    const base = v6.v2.replace(/\/igd2\/desc\.xml$/, '');
    const scpdPath = /WANIPv6FirewallControl:1<\/serviceType>.*?<SCPDURL>([^<]+)/s.exec(desc)?.[1];
    const scpd = await (await fetch(`${base}${scpdPath}`)).text();
    assert.match(scpd, /<name>AddPinhole<\/name>/);
    // the IGD:1 root has no IPv6 firewall service
    assert.doesNotMatch(await (await fetch(v6.v1)).text(), /WANIPv6FirewallControl/);

    const st = await soap(`${base}${ctl}`, FW6, 'GetFirewallStatus');
    assert.equal(st.status, 200, st.body);
    assert.equal(field(st.body, 'FirewallEnabled'), '1');
    assert.equal(field(st.body, 'InboundPinholeAllowed'), '1');
    // a bad argument gets the template's error over IPv6 too
    const bad = await soap(`${base}${ctl}`, FW6, 'AddPinhole', {
      RemoteHost: '',
      RemotePort: 0,
      InternalClient: '',
      InternalPort: 80,
      Protocol: 6,
      LeaseTime: 60,
    });
    assert.equal(errorCodeOf(bad.body), 708);

    // SSDP: a unicast search to the IPv6 socket is answered with the IPv6 LOCATION
    const ssdp6 = h.server.ssdpAddresses().find((a) => a.address === '::1');
    assert.ok(ssdp6, JSON.stringify(h.server.ssdpAddresses()));
    const msearch =
      'M-SEARCH * HTTP/1.1\r\nHOST: [FF02::C]:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n' +
      'ST: urn:schemas-upnp-org:service:WANIPv6FirewallControl:1\r\n\r\n';
    client.send(Buffer.from(msearch), ssdp6.port, '::1');
    const deadline = Date.now() + 3000;
    while (inbox.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(inbox.length, 1, 'one answer: only the IGD:2 tree has the service');
    assert.equal(header(inbox[0]!, 'LOCATION'), v6.v2);
    assert.match(header(inbox[0]!, 'USN') ?? '', /::urn:schemas-upnp-org:service:WANIPv6FirewallControl:1$/);
  } finally {
    client.close();
    await h.close();
  }
});

test('IPv6: without pinholes the service is neither described nor announced; firewall off is 702', async () => {
  const off = await startUpnp({ extra: { listen: { addresses: ['127.0.0.1/8'], httpPort: 0 } } });
  try {
    assert.doesNotMatch(await (await fetch(off.descV2)).text(), /WANIPv6FirewallControl/);
  } finally {
    await off.close();
  }
  const h = await startUpnp({
    extra: { pinholes: pinholes({ firewallEnabled: false, inboundPinholeAllowed: false }) },
  });
  try {
    const desc = await (await fetch(h.descV2)).text();
    const ctl = /WANIPv6FirewallControl:1<\/serviceType>.*?<controlURL>([^<]+)/s.exec(desc)?.[1];
    const r = await soap(`${h.base}${ctl}`, FW6, 'DeletePinhole', { UniqueID: 1 });
    assert.equal(errorCodeOf(r.body), 702);
    const st = await soap(`${h.base}${ctl}`, FW6, 'GetFirewallStatus');
    assert.equal(field(st.body, 'FirewallEnabled'), '0');
  } finally {
    await h.close();
  }
});

test('IPv6: AddPinhole through the real lease table; pinholes stay out of WANIPConnection listings', async () => {
  const IPC2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';
  const h = await startUpnp({
    policy: { secureMode: false, ipv6Pinholes: true },
    extra: {
      pinholes: {
        status: () => ({ firewallEnabled: true, inboundPinholeAllowed: true }),
        packets: async () => 3,
        outboundTimeout: () => 120,
      },
    },
  });
  try {
    const desc = await (await fetch(h.descV2)).text();
    const ctl = /WANIPv6FirewallControl:1<\/serviceType>.*?<controlURL>([^<]+)/s.exec(desc)?.[1];
    const ipc = /WANIPConnection:2<\/serviceType>.*?<controlURL>([^<]+)/s.exec(desc)?.[1];
    const add = await soap(`${h.base}${ctl}`, FW6, 'AddPinhole', {
      RemoteHost: '',
      RemotePort: 0,
      InternalClient: '2001:DB8:77::0010',
      InternalPort: 27015,
      Protocol: 17,
      LeaseTime: 600,
    });
    assert.equal(add.status, 200, add.body);
    const id = field(add.body, 'UniqueID');
    assert.ok(id && Number(id) > 0, add.body);
    const [lease] = h.env.table.list({ family: 6 }).leases;
    assert.ok(lease, 'a family-6 lease');
    assert.equal(lease.internalAddress, '2001:db8:77::10');
    assert.equal(lease.externalAddress, '2001:db8:77::10');
    assert.equal(lease.externalPort, 27015);
    assert.equal(lease.source, 'upnp');
    // the same five-tuple again: the same UniqueID
    const again = await soap(`${h.base}${ctl}`, FW6, 'AddPinhole', {
      RemoteHost: '',
      RemotePort: 0,
      InternalClient: '2001:db8:77::10',
      InternalPort: 27015,
      Protocol: 17,
      LeaseTime: 1200,
    });
    assert.equal(field(again.body, 'UniqueID'), id);
    // WANIPConnection sees no IPv4 mapping
    const generic = await soap(`${h.base}${ipc}`, IPC2, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 0 });
    assert.equal(errorCodeOf(generic.body), 713, generic.body);
    const packets = await soap(`${h.base}${ctl}`, FW6, 'GetPinholePackets', { UniqueID: id! });
    assert.equal(field(packets.body, 'PinholePackets'), '3');
    const del = await soap(`${h.base}${ctl}`, FW6, 'DeletePinhole', { UniqueID: id! });
    assert.equal(del.status, 200, del.body);
    assert.equal(h.env.table.list({ family: 6 }).leases.length, 0);
    assert.equal(errorCodeOf((await soap(`${h.base}${ctl}`, FW6, 'DeletePinhole', { UniqueID: id! })).body), 704);
  } finally {
    await h.close();
  }
});

test('IPv6: the firewall status is evented: the initial event, and a change after stateChanged()', async () => {
  const events: string[] = [];
  const cb = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      events.push(body);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => cb.listen(0, '127.0.0.1', r));
  const status = { firewallEnabled: true, inboundPinholeAllowed: true };
  const h = await startUpnp({ extra: { pinholes: pinholes(status) } });
  const until = async (n: number) => {
    const deadline = Date.now() + 3000;
    while (events.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return events.length >= n;
  };
  try {
    const desc = await (await fetch(h.descV2)).text();
    const evt = /WANIPv6FirewallControl:1<\/serviceType>.*?<eventSubURL>([^<]+)/s.exec(desc)?.[1];
    assert.ok(evt, desc);
    const sub = await fetch(`${h.base}${evt}`, {
      method: 'SUBSCRIBE',
      headers: { callback: `<http://127.0.0.1:${(cb.address() as AddressInfo).port}/cb>`, nt: 'upnp:event' },
    });
    assert.equal(sub.status, 200);
    assert.ok(await until(1), 'initial event');
    assert.match(events[0]!, /<InboundPinholeAllowed>1<\/InboundPinholeAllowed>/);
    assert.match(events[0]!, /<FirewallEnabled>1<\/FirewallEnabled>/);
    // nothing changed: no event; then inbound pinholes switched off (a reload): one event with the new value
    h.server.stateChanged();
    status.inboundPinholeAllowed = false;
    h.server.stateChanged();
    assert.ok(await until(2), 'change event');
    assert.match(events[1]!, /<InboundPinholeAllowed>0<\/InboundPinholeAllowed>/);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(events.length, 2, 'one event per change');
  } finally {
    cb.closeAllConnections();
    await new Promise<void>((r) => cb.close(() => r()));
    await h.close();
  }
});
