/**
 * The UPnP IGD upstream client (src/upstream/upnp-client.ts) against a scripted IGD on loopback: SSDP answer
 * (unicast search to the configured server), description, SOAP. Hostile answers: a description or SOAP body
 * over its size cap, a LOCATION on another host, a SOAP server that never answers, a fault code.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, test } from 'node:test';
import pino from 'pino';
import { createUpnpClient } from '../../src/upstream/upnp-client.js';

const log = pino({ level: 'silent' });
const SERVICE = 'urn:schemas-upnp-org:service:WANIPConnection:1';

async function fakeIgd() {
  const state = {
    description: '' as string,
    soap: (action: string, body: string): { status: number; body: string } | null => {
      void body;
      if (action === 'GetExternalIPAddress')
        return {
          status: 200,
          body: envelope(
            `<u:${action}Response xmlns:u="${SERVICE}">` +
              `<NewExternalIPAddress>198.51.100.9</NewExternalIPAddress></u:${action}Response>`,
          ),
        };
      return { status: 200, body: envelope(`<u:${action}Response xmlns:u="${SERVICE}"/>`) };
    },
    location: (port: number) => `http://127.0.0.1:${port}/desc.xml`,
    actions: [] as string[],
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'Content-Type': 'text/xml' });
        res.end(state.description);
        return;
      }
      const action =
        String(req.headers['soapaction'] ?? '')
          .replace(/^"|"$/g, '')
          .split('#')[1] ?? '';
      state.actions.push(action);
      const r = state.soap(action, body);
      if (!r) return; // never answers
      res.writeHead(r.status, { 'Content-Type': 'text/xml' });
      res.end(r.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const httpPort = (server.address() as AddressInfo).port;
  state.description = description('/ctl');
  const ssdp = createSocket('udp4');
  await new Promise<void>((r) => ssdp.bind(0, '127.0.0.1', r));
  ssdp.on('message', (_m, rinfo) => {
    const text =
      'HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n' +
      `LOCATION: ${state.location(httpPort)}\r\n\r\n`;
    ssdp.send(text, rinfo.port, rinfo.address);
  });
  return {
    state,
    ssdpPort: () => ssdp.address().port,
    async close() {
      ssdp.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function description(control: string): string {
  return (
    '<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><serviceList><service>' +
    `<serviceType>${SERVICE}</serviceType><controlURL>${control}</controlURL></service></serviceList></device></root>`
  );
}
function envelope(inner: string): string {
  return (
    '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">' +
    `<s:Body>${inner}</s:Body></s:Envelope>`
  );
}
function fault(code: number): string {
  return envelope(
    '<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>' +
      `<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode>` +
      '<errorDescription>x</errorDescription></UPnPError></detail></s:Fault>',
  );
}

describe('UPnP IGD upstream client (loopback)', () => {
  let igd: Awaited<ReturnType<typeof fakeIgd>>;
  beforeEach(async () => {
    igd = await fakeIgd();
  });
  afterEach(async () => {
    await igd.close();
  });
  const connect = () =>
    createUpnpClient({
      interface: 'lo',
      localAddress: '127.0.0.1',
      server: '127.0.0.1',
      timeoutMs: 600,
      log,
      ssdpPort: igd.ssdpPort(),
    });
  const req = {
    protocol: 'tcp' as const,
    internalPort: 7000,
    suggestedPort: 7000,
    lifetime: 600,
    nonce: null,
    description: 'x',
  };

  test('finds the IGD, reads its external address, maps and deletes', async () => {
    const c = await connect();
    assert.ok(c);
    const m = await c.map(req, 600);
    assert.deepEqual(m, { ok: true, externalAddress: '198.51.100.9', externalPort: 7000, lifetime: 600, epoch: null });
    assert.equal((await c.unmap({ ...req, externalPort: 7000 }, 600)).ok, true);
    assert.deepEqual(igd.state.actions, ['GetExternalIPAddress', 'AddPortMapping', 'DeletePortMapping']);
  });

  test('a UPnP fault is a neutral refusal; a SOAP answer that never comes is unavailable within the bound', async () => {
    const c = (await connect())!;
    igd.state.soap = () => ({ status: 500, body: fault(718) });
    const r = await c.map(req, 600);
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.reason, 'cannot_provide_external');
    igd.state.soap = () => null;
    const t0 = Date.now();
    const s = await c.map(req, 300);
    assert.equal(!s.ok && s.reason, 'unavailable');
    assert.ok(Date.now() - t0 < 1000);
  });

  test('hostile: an oversized SOAP answer is refused', async () => {
    const c = (await connect())!;
    igd.state.soap = (a) => ({
      status: 200,
      body: envelope(`<u:${a}Response xmlns:u="${SERVICE}">${'x'.repeat(20_000)}</u:${a}Response>`),
    });
    const r = await c.map(req, 600);
    assert.equal(!r.ok && r.reason, 'unavailable');
  });

  test('hostile: an oversized description, or a LOCATION on another host, finds no IGD', async () => {
    igd.state.description = description('/ctl') + ' '.repeat(70 * 1024);
    assert.equal(await connect(), null, 'description over 64 KiB');
    igd.state.description = description('/ctl');
    igd.state.location = (port) => `http://127.0.0.2:${port}/desc.xml`;
    assert.equal(await connect(), null, 'the description must come from the device that answered');
  });
});
