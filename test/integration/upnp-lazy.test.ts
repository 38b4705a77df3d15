/**
 * The UPnP front-end's fastify app is built at the first HTTP connection (issue 17, footprint;
 * src/frontends/upnp/lazy-app.ts): the HTTP port is bound at start (LOCATION URLs as before), the
 * requests that arrive during the build are all answered, also one whose client half-closed after
 * sending, and later ones go to the same app.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { IPC1, field, soap, startUpnp } from './upnp-helpers.js';

/** one raw HTTP/1.1 request, the socket half-closed after it (as some clients do); resolves with the status */
function halfClosed(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let out = '';
    s.on('data', (d) => {
      out += d.toString('latin1');
    });
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0)));
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy());
    s.end(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
  });
}

test('bound at start, built at the first connection: the requests in flight during the build are all answered', async () => {
  const h = await startUpnp();
  try {
    assert.equal(h.server.app, undefined, 'no fastify app before any connection');
    const port = Number(new URL(h.base).port);
    assert.ok(port > 0);
    assert.match(h.descV1, new RegExp(`^http://127\\.0\\.0\\.1:${port}/igd1/desc\\.xml$`));
    // a TCP connection is accepted before anything is built, and builds nothing by itself being open
    await new Promise<void>((resolve, reject) => {
      const s = net.createConnection({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
    // three at once while the app is being built: a description, a SOAP action, a half-closed GET
    const [desc, add, half] = await Promise.all([
      fetch(h.descV1),
      soap(`${h.base}/igd1/ctl/IPConn`, IPC1, 'AddPortMapping', {
        NewRemoteHost: '',
        NewExternalPort: 40100,
        NewProtocol: 'TCP',
        NewInternalPort: 40100,
        NewInternalClient: '127.0.0.1',
        NewEnabled: 1,
        NewPortMappingDescription: 'lazy',
        NewLeaseDuration: 3600,
      }),
      halfClosed(port, '/igd2/desc.xml'),
    ]);
    assert.equal(desc.status, 200);
    assert.match(await desc.text(), /InternetGatewayDevice:1/);
    assert.equal(add.status, 200, add.body);
    assert.ok(h.env.table.findByExternal('tcp', 40100), 'the SOAP action made its lease');
    assert.equal(half, 200, 'the half-closed request is answered, not dropped');
    assert.ok(h.server.app, 'built');
    // later requests go straight to the built app
    const get = await soap(`${h.base}/igd1/ctl/IPConn`, IPC1, 'GetExternalIPAddress');
    assert.equal(get.status, 200);
    assert.equal(field(get.body, 'NewExternalIPAddress'), '203.0.113.1');
  } finally {
    await h.close();
  }
});

test('a WAN peer builds nothing: its connection is closed and counted', async () => {
  const h = await startUpnp({ isLanClient: (a) => a === '127.0.0.2' });
  try {
    const port = Number(new URL(h.base).port);
    assert.equal(await halfClosed(port, '/igd1/desc.xml'), 0, 'closed unanswered');
    assert.equal(h.server.app, undefined, 'still not built');
    const text = await h.env.metrics.registry.getSingleMetricAsString('portd_bad_input_total');
    assert.match(text, /kind="not_lan"\} 1$/m);
  } finally {
    await h.close();
  }
});

test('closing before any connection frees the port and builds nothing', async () => {
  const h = await startUpnp();
  const port = Number(new URL(h.base).port);
  await h.close();
  assert.equal(h.server.app, undefined);
  await new Promise<void>((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => s.close(() => resolve()));
  });
});
