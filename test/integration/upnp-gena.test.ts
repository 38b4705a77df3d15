/**
 * GENA eventing on loopback: SUBSCRIBE/renew/UNSUBSCRIBE, initial event, change events, CallStranger, caps, dead
 * callbacks.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { IPC2, soap, startUpnp, type UpnpHarness } from './upnp-helpers.js';

interface Event {
  sid: string;
  seq: number;
  nt: string;
  nts: string;
  body: string;
}

/** a control point's callback server on 127.0.0.1 */
async function callbackServer() {
  const events: Event[] = [];
  let waiter: (() => void) | null = null;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      events.push({
        sid: String(req.headers['sid']),
        seq: Number(req.headers['seq']),
        nt: String(req.headers['nt']),
        nts: String(req.headers['nts']),
        body,
      });
      res.writeHead(200).end();
      waiter?.();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    events,
    port,
    url: `http://127.0.0.1:${port}/cb`,
    /** wait until `n` events arrived (bounded) */
    async wait(n: number, ms = 3000) {
      const deadline = Date.now() + ms;
      while (events.length < n && Date.now() < deadline)
        await new Promise<void>((r) => {
          waiter = r;
          setTimeout(r, 50);
        });
      return events.length >= n;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

function request(
  method: string,
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ method, host: u.hostname, port: u.port, path: u.pathname, headers }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, headers: res.headers });
    });
    req.on('error', reject);
    req.end();
  });
}

let h: UpnpHarness;
before(async () => {
  h = await startUpnp({ upnp: { maxSubscriptions: 3 } });
});
after(async () => {
  await h?.close();
});

const evt = () => `${h.base}/igd2/evt/IPConn`;
const value = (body: string, name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(body)?.[1] ?? null;

test('subscribe, initial event, change events on AddPortMapping/DeletePortMapping, renew, unsubscribe', async () => {
  const cp = await callbackServer();
  try {
    const sub = await request('SUBSCRIBE', evt(), { CALLBACK: `<${cp.url}>`, NT: 'upnp:event', TIMEOUT: 'Second-300' });
    assert.equal(sub.status, 200);
    const sid = String(sub.headers['sid']);
    assert.match(sid, /^uuid:[0-9a-f-]{36}$/);
    assert.equal(sub.headers['timeout'], 'Second-300');
    assert.ok(await cp.wait(1));
    const first = cp.events[0]!;
    assert.equal(first.sid, sid);
    assert.equal(first.seq, 0);
    assert.equal(first.nt, 'upnp:event');
    assert.equal(first.nts, 'upnp:propchange');
    assert.equal(value(first.body, 'PortMappingNumberOfEntries'), '0');
    assert.equal(value(first.body, 'ExternalIPAddress'), '203.0.113.1');
    assert.equal(value(first.body, 'ConnectionStatus'), 'Connected');

    const r = await soap(`${h.base}/igd2/ctl/IPConn`, IPC2, 'AddPortMapping', {
      NewRemoteHost: '',
      NewExternalPort: 30000,
      NewProtocol: 'TCP',
      NewInternalPort: 3000,
      NewInternalClient: '127.0.0.1',
      NewEnabled: 1,
      NewPortMappingDescription: 'g',
      NewLeaseDuration: 600,
    });
    assert.equal(r.status, 200);
    assert.ok(await cp.wait(2));
    assert.equal(cp.events[1]!.seq, 1);
    assert.equal(value(cp.events[1]!.body, 'PortMappingNumberOfEntries'), '1');
    await soap(`${h.base}/igd2/ctl/IPConn`, IPC2, 'DeletePortMapping', {
      NewRemoteHost: '',
      NewExternalPort: 30000,
      NewProtocol: 'TCP',
    });
    assert.ok(await cp.wait(3));
    assert.equal(value(cp.events[2]!.body, 'PortMappingNumberOfEntries'), '0');

    const renew = await request('SUBSCRIBE', evt(), { SID: sid, TIMEOUT: 'Second-600' });
    assert.equal(renew.status, 200);
    assert.equal(renew.headers['sid'], sid);
    assert.equal(renew.headers['timeout'], 'Second-600');
    assert.equal(
      (await request('SUBSCRIBE', evt(), { SID: sid, NT: 'upnp:event', CALLBACK: `<${cp.url}>` })).status,
      400,
    );
    assert.equal((await request('UNSUBSCRIBE', evt(), { SID: sid })).status, 200);
    assert.equal((await request('UNSUBSCRIBE', evt(), { SID: sid })).status, 412);
    assert.equal((await request('SUBSCRIBE', evt(), { SID: sid })).status, 412);
  } finally {
    await cp.close();
  }
});

test('CallStranger: a callback to any other host is refused, and nothing is sent there', async () => {
  const cp = await callbackServer();
  try {
    const other = `http://127.0.0.2:${cp.port}/cb`;
    const r = await request('SUBSCRIBE', evt(), { CALLBACK: `<${other}>`, NT: 'upnp:event' });
    assert.equal(r.status, 412);
    const mixed = await request('SUBSCRIBE', evt(), { CALLBACK: `<${cp.url}><${other}>`, NT: 'upnp:event' });
    assert.equal(mixed.status, 412);
    assert.equal((await request('SUBSCRIBE', evt(), { NT: 'upnp:event' })).status, 412, 'no CALLBACK');
    assert.equal(
      (await request('SUBSCRIBE', evt(), { CALLBACK: `<${cp.url}>`, NT: 'upnp:other' })).status,
      412,
      'bad NT',
    );
    assert.equal(await cp.wait(1, 300), false);
  } finally {
    await cp.close();
  }
});

test('subscriptions are capped (upnp.maxSubscriptions) and dead callbacks are dropped', async () => {
  const cp = await callbackServer();
  const sids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await request('SUBSCRIBE', evt(), { CALLBACK: `<${cp.url}>`, NT: 'upnp:event' });
    assert.equal(r.status, 200);
    sids.push(String(r.headers['sid']));
  }
  assert.equal((await request('SUBSCRIBE', evt(), { CALLBACK: `<${cp.url}>`, NT: 'upnp:event' })).status, 503);
  assert.ok(await cp.wait(3));
  await cp.close();
  // the control point is gone: the next change event fails and the subscriptions are dropped
  await soap(`${h.base}/igd2/ctl/IPConn`, IPC2, 'AddPortMapping', {
    NewRemoteHost: '',
    NewExternalPort: 30001,
    NewProtocol: 'UDP',
    NewInternalPort: 3000,
    NewInternalClient: '127.0.0.1',
    NewEnabled: 1,
    NewPortMappingDescription: 'g',
    NewLeaseDuration: 600,
  });
  const deadline = Date.now() + 3000;
  let renewed = 200;
  while (Date.now() < deadline) {
    renewed = (await request('SUBSCRIBE', evt(), { SID: sids[0]! })).status;
    if (renewed === 412) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(renewed, 412);
  const cp2 = await callbackServer();
  try {
    assert.equal(
      (await request('SUBSCRIBE', evt(), { CALLBACK: `<${cp2.url}>`, NT: 'upnp:event' })).status,
      200,
      'room again after the drop',
    );
  } finally {
    await cp2.close();
  }
});
