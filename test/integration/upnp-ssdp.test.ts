/**
 * SSDP on loopback: lo has no multicast, so the test sends unicast M-SEARCHes to portd's per-address
 * socket and receives NOTIFYs on a unicast socket (ssdp.notifyTarget). Multicast is covered in the lab.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { test } from 'node:test';
import { generateUuids } from '../../src/frontends/upnp/index.js';
import { startUpnp } from './upnp-helpers.js';

async function udp(address = '127.0.0.1') {
  const socket = createSocket('udp4');
  const inbox: { text: string; from: string; port: number }[] = [];
  socket.on('message', (m, r) => inbox.push({ text: m.toString('latin1'), from: r.address, port: r.port }));
  await new Promise<void>((r) => socket.bind(0, address, r));
  return {
    socket,
    inbox,
    port: () => socket.address().port,
    send: (s: string | Buffer, port: number) =>
      new Promise<void>((r) => socket.send(typeof s === 'string' ? Buffer.from(s) : s, port, '127.0.0.1', () => r())),
    async until(pred: () => boolean, ms = 3000) {
      const deadline = Date.now() + ms;
      while (!pred() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return pred();
    },
    close: () => new Promise<void>((r) => (socket as Socket).close(() => r())),
  };
}

const header = (text: string, name: string) => new RegExp(`^${name}: ?(.*)$`, 'mi').exec(text)?.[1]?.trim() ?? null;
const search = (st: string, mx = 1) =>
  `M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: ${mx}\r\nST: ${st}\r\n\r\n`;

test('M-SEARCH answers, NOTIFY alive on start and byebye on close, outsiders ignored', async () => {
  const notifies = await udp();
  const client = await udp();
  const outsider = await udp('127.0.0.2');
  const h = await startUpnp({
    isLanClient: (a) => a === '127.0.0.1',
    extra: {
      ssdp: {
        enabled: true,
        port: 0,
        joinMulticast: false,
        notifyTarget: { address: '127.0.0.1', port: notifies.port() },
        maxDelayMs: 50,
      },
      bootId: 42,
      configId: 7,
    },
  });
  try {
    const port = h.server.ssdpAddresses()[0]!.port;
    // alive: 10 targets per root device
    assert.ok(await notifies.until(() => notifies.inbox.length >= 20));
    const alive = notifies.inbox.filter((m) => header(m.text, 'NTS') === 'ssdp:alive');
    assert.equal(alive.length, 20);
    assert.ok(
      alive.every((m) => header(m.text, 'BOOTID.UPNP.ORG') === '42' && header(m.text, 'CONFIGID.UPNP.ORG') === '7'),
    );
    assert.ok(alive.every((m) => header(m.text, 'CACHE-CONTROL') === 'max-age=1800'));
    assert.deepEqual([...new Set(alive.map((m) => header(m.text, 'LOCATION')))].sort(), [h.descV1, h.descV2]);

    await client.send(search('urn:schemas-upnp-org:device:InternetGatewayDevice:1'), port);
    assert.ok(await client.until(() => client.inbox.length >= 1));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(client.inbox.length, 1);
    const r = client.inbox[0]!.text;
    assert.match(r, /^HTTP\/1\.1 200 OK\r\n/);
    assert.equal(header(r, 'ST'), 'urn:schemas-upnp-org:device:InternetGatewayDevice:1');
    assert.equal(header(r, 'LOCATION'), h.descV1);
    assert.match(header(r, 'USN') ?? '', /^uuid:[0-9a-f-]{36}::urn:schemas-upnp-org:device:InternetGatewayDevice:1$/);
    assert.equal(header(r, 'EXT'), '');
    assert.equal(header(r, 'BOOTID.UPNP.ORG'), '42');

    client.inbox.length = 0;
    await client.send(search('urn:schemas-upnp-org:service:WANIPConnection:2'), port);
    assert.ok(await client.until(() => client.inbox.length >= 1));
    assert.equal(header(client.inbox[0]!.text, 'LOCATION'), h.descV2);

    client.inbox.length = 0;
    await client.send(search('ssdp:all', 3), port);
    assert.ok(await client.until(() => client.inbox.length >= 20));

    // what we don't offer, malformed datagrams, and searches from outside the LAN get nothing
    client.inbox.length = 0;
    await client.send(search('urn:schemas-upnp-org:service:WANPPPConnection:1'), port);
    await client.send('M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n', port);
    await client.send(Buffer.alloc(9000, 0x41), port);
    await outsider.send(search('ssdp:all'), port);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(client.inbox.length, 0);
    assert.equal(outsider.inbox.length, 0);
    const bad = (await h.env.metrics.badInput.get()).values.filter((v) => v.labels.frontend === 'ssdp');
    assert.deepEqual(bad.map((v) => v.labels.kind).sort(), ['bad_man', 'not_lan', 'too_large']);

    notifies.inbox.length = 0;
  } finally {
    await h.close();
  }
  assert.ok(await notifies.until(() => notifies.inbox.length >= 20));
  assert.ok(notifies.inbox.every((m) => header(m.text, 'NTS') === 'ssdp:byebye'));
  await Promise.all([notifies.close(), client.close(), outsider.close()]);
});

test('CONFIGID.UPNP.ORG follows the descriptions: the same for the same configuration, another when the friendly name changes', async () => {
  const uuids = generateUuids();
  const configIdOf = async (friendlyName: string) => {
    const h = await startUpnp({ upnp: { friendlyName }, extra: { uuids } });
    try {
      const xml = await (await fetch(h.descV2)).text();
      const m = /<root xmlns="urn:schemas-upnp-org:device-1-0" configId="(\d+)">/.exec(xml);
      assert.ok(m, xml.slice(0, 200));
      assert.match(xml, new RegExp(`<friendlyName>${friendlyName}</friendlyName>`));
      return Number(m[1]);
    } finally {
      await h.close();
    }
  };
  const a = await configIdOf('Gateway A');
  assert.ok(a >= 0 && a <= 16777215);
  assert.equal(await configIdOf('Gateway A'), a);
  assert.notEqual(await configIdOf('Gateway B'), a);
});
