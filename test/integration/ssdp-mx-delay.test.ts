/**
 * SSDP answers go out at once, whatever the search's MX (issue 16 part 2): probing clients such as Tailscale
 * wait 250 ms for the answer. `upnp.ssdpMxDelay: true` restores UDA 1.1 §1.3.3's random delay within MX.
 * Loopback, unicast M-SEARCH to portd's per-address socket (lo has no multicast); the random source is pinned
 * near its top so a delay, when there is one, is close to the whole MX.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { test } from 'node:test';
import { startUpnp } from './upnp-helpers.js';

const MSEARCH_MX3 =
  'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 3\r\n' +
  'ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n';

/** sends one M-SEARCH and resolves with the first answer and its delay, or null after `waitMs` */
async function searchOnce(port: number, waitMs: number): Promise<{ text: string; ms: number } | null> {
  const socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  try {
    return await new Promise((resolve) => {
      const t0 = performance.now();
      const timer = setTimeout(() => resolve(null), waitMs);
      socket.once('message', (m) => {
        clearTimeout(timer);
        resolve({ text: m.toString('latin1'), ms: performance.now() - t0 });
      });
      socket.send(Buffer.from(MSEARCH_MX3), port, '127.0.0.1');
    });
  } finally {
    socket.close();
  }
}

const ssdp = { enabled: true, port: 0, joinMulticast: false, random: () => 0.99 };

test('an M-SEARCH with MX 3 is answered at once by default (well before 1 s)', async () => {
  const h = await startUpnp({ extra: { ssdp } });
  try {
    assert.equal(h.config.upnp.ssdpMxDelay, false, 'the default');
    const r = await searchOnce(h.server.ssdpAddresses()[0]!.port, 1000);
    assert.ok(r, 'no answer within 1 s');
    assert.match(r.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(r.text, /\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n/i);
    // a correctness bound for "no MX delay", not a timing bench (bench/probes.ts measures)
    assert.ok(r.ms < 500, `answered after ${r.ms.toFixed(0)} ms`);
  } finally {
    await h.close();
  }
});

test('upnp.ssdpMxDelay: true restores the random delay within MX', async () => {
  const h = await startUpnp({ upnp: { ssdpMxDelay: true }, extra: { ssdp } });
  try {
    const port = h.server.ssdpAddresses()[0]!.port;
    const r = await searchOnce(port, 4500);
    assert.ok(r, 'no answer within 4.5 s');
    assert.match(r.text, /^HTTP\/1\.1 200 OK\r\n/);
    // random() 0.99 of MX 3 s
    assert.ok(r.ms > 2500, `answered after ${r.ms.toFixed(0)} ms: no delay`);
  } finally {
    await h.close();
  }
});
