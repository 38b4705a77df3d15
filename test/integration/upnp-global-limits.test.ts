/**
 * Issue 14 on loopback: the Server header names no kernel release (HTTP and SSDP), and the global
 * limits beside the per-client ones: limits.soapRequestsPerSecond (SOAP control + GENA from all
 * clients together) and limits.ssdpSearchesPerSecond (SSDP searches answered from all sources
 * together). Many LAN addresses (127.0.0.x, as spoofed or many-address hosts would be), each well
 * under its own per-client limit, together exceed the global one.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import http from 'node:http';
import os from 'node:os';
import { test } from 'node:test';
import { captureLog, counter, until } from '../fuzz/mutate.js';
import { IPC1, startUpnp } from './upnp-helpers.js';

const SERVER = 'Linux UPnP/1.1 portd/0.1';

function post(
  url: string,
  from: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      { method: 'POST', host: u.hostname, port: u.port, path: u.pathname, headers, localAddress: from, agent: false },
      (res) => {
        let b = '';
        res.on('data', (c) => {
          b += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const addBody = (port: number, client: string) =>
  '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>' +
  '<u:AddPortMapping ' +
  `xmlns:u="${IPC1}"><NewRemoteHost></NewRemoteHost><NewExternalPort>${port}</NewExternalPort>` +
  '<NewProtocol>UDP</NewProtocol>' +
  `<NewInternalPort>${port}</NewInternalPort><NewInternalClient>${client}</NewInternalClient>` +
  '<NewEnabled>1</NewEnabled>' +
  '<NewPortMappingDescription>g</NewPortMappingDescription><NewLeaseDuration>600</NewLeaseDuration>' +
  '</u:AddPortMapping></s:Body></s:Envelope>';

test('the Server header is "Linux UPnP/1.1 portd/0.1" on descriptions, SOAP answers, GENA and SSDP: no kernel release', async () => {
  const inbox: string[] = [];
  const udp = createSocket('udp4');
  udp.on('message', (m) => inbox.push(m.toString('latin1')));
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  const h = await startUpnp({
    extra: {
      ssdp: {
        enabled: true,
        port: 0,
        joinMulticast: false,
        notifyTarget: { address: '127.0.0.1', port: udp.address().port },
        maxDelayMs: 10,
      },
    },
  });
  try {
    const servers: (string | null)[] = [];
    const desc = await fetch(h.descV2);
    servers.push(desc.headers.get('server'));
    const soap = await post(
      `${h.base}/igd1/ctl/IPConn`,
      '127.0.0.1',
      { 'content-type': 'text/xml', soapaction: `"${IPC1}#GetExternalIPAddress"` },
      '<?xml version="1.0"?><s:Envelope ' +
        'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:GetExternalIPAddress ' +
        `xmlns:u="${IPC1}"/></s:Body></s:Envelope>`,
    );
    assert.equal(soap.status, 200);
    servers.push(String(soap.headers['server']));
    const refused = await fetch(`${h.base}/igd1/desc.xml`, { headers: { origin: 'http://attacker.example' } });
    assert.equal(refused.status, 403);
    servers.push(refused.headers.get('server'));
    const gena = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const u = new URL(`${h.base}/igd2/evt/IPConn`);
      http
        .request(
          { method: 'SUBSCRIBE', host: u.hostname, port: u.port, path: u.pathname, headers: { SID: 'uuid:nothing' } },
          (res) => {
            res.resume();
            resolve(res);
          },
        )
        .on('error', reject)
        .end();
    });
    servers.push(String(gena.headers['server']));
    const ssdpPort = h.server.ssdpAddresses()[0]!.port;
    udp.send(
      'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ' +
        'upnp:rootdevice\r\n\r\n',
      ssdpPort,
      '127.0.0.1',
    );
    assert.ok(
      await until(
        () => inbox.some((m) => m.startsWith('HTTP/1.1 200')) && inbox.some((m) => m.startsWith('NOTIFY')),
        3000,
      ),
    );
    for (const m of inbox) servers.push(/^SERVER: (.*)$/im.exec(m)?.[1]?.trim() ?? null);
    assert.ok(servers.length >= 6);
    for (const s of servers) {
      assert.equal(s, SERVER);
      assert.ok(!s.includes(os.release()), `${s} names the kernel release`);
    }
  } finally {
    udp.close();
    await h.close();
  }
});

test('limits.soapRequestsPerSecond: 12 addresses, each under its per-client rate, together exceed the global one: 503 + Retry-After, no lease for the refused, counted, one warn line', async () => {
  const cap = captureLog();
  // global 20/s (bursts of 40); per client 50/s (bursts of 200): 12 hosts × 8 requests = 96 at once
  const h = await startUpnp({ extra: { log: cap.log, limits: { soapRequestsPerSecond: 20 } } });
  try {
    const hosts = Array.from({ length: 12 }, (_, i) => `127.0.0.${20 + i}`);
    const t0 = performance.now();
    const results = await Promise.all(
      hosts.flatMap((from, i) =>
        Array.from({ length: 8 }, (_, j) => {
          const port = 30000 + i * 10 + j;
          return post(
            `${h.base}/igd1/ctl/IPConn`,
            from,
            { 'content-type': 'text/xml', soapaction: `"${IPC1}#AddPortMapping"` },
            addBody(port, from),
          ).then((r) => ({ ...r, from, port }));
        }),
      ),
    );
    const ok = results.filter((r) => r.status === 200);
    const busy = results.filter((r) => r.status === 503);
    assert.equal(ok.length + busy.length, results.length, `statuses ${[...new Set(results.map((r) => r.status))]}`);
    // the bucket holds 40 and refills 20/s while the 96 requests are served (longer on a loaded machine)
    const refill = Math.ceil(((performance.now() - t0) / 1000) * 20);
    assert.ok(ok.length >= 40 && ok.length <= 40 + refill + 1, `${ok.length} answered, bucket 40 + refill ${refill}`);
    assert.ok(busy.every((r) => r.headers['retry-after'] === '1'));
    assert.equal(
      h.env.table.list({ state: 'active' }).total,
      ok.length,
      'a lease for each answered request, none for the refused',
    );
    for (const r of busy) assert.equal(h.env.table.findByExternal('udp', r.port), null);
    assert.equal(
      await counter(h.env.metrics, 'portd_global_limit_total', { limit: 'soapRequestsPerSecond' }),
      busy.length,
    );
    assert.equal(
      await counter(h.env.metrics, 'portd_rate_limited_total', { frontend: 'upnp' }),
      0,
      'no host was over its own rate',
    );
    const lines = cap.matching(/global limit reached \(limits\.soapRequestsPerSecond 20\)/);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!['level'], 40);
  } finally {
    await h.close();
  }
});

test('limits.ssdpSearchesPerSecond: 10 sources, each under its per-source rate, together exceed the global one: the excess is ignored, counted, one warn line', async () => {
  const cap = captureLog();
  const h = await startUpnp({
    extra: {
      log: cap.log,
      limits: { ssdpSearchesPerSecond: 10 },
      ssdp: {
        enabled: true,
        port: 0,
        joinMulticast: false,
        notifyTarget: { address: '127.0.0.1', port: 9 },
        maxDelayMs: 10,
      },
    },
  });
  const sockets = await Promise.all(
    Array.from({ length: 10 }, async (_, i) => {
      const s = createSocket('udp4');
      const inbox: string[] = [];
      s.on('message', (m) => inbox.push(m.toString('latin1')));
      await new Promise<void>((r) => s.bind(0, `127.0.0.${40 + i}`, r));
      return { s, inbox };
    }),
  );
  try {
    const port = h.server.ssdpAddresses()[0]!.port;
    // one answer per search (the IGD:2 root only); 10 sources × 5 searches, under the per-source burst of 30
    const st = 'urn:schemas-upnp-org:device:InternetGatewayDevice:2';
    for (let k = 0; k < 5; k++)
      for (const x of sockets)
        x.s.send(
          `M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ${st}\r\n\r\n`,
          port,
          '127.0.0.1',
        );
    assert.ok(
      await until(
        async () => (await counter(h.env.metrics, 'portd_ssdp_messages_total', { kind: 'search' })) === 50,
        3000,
      ),
      'all 50 searches arrived',
    );
    await new Promise((r) => setTimeout(r, 300));
    const answers = sockets.reduce((n, x) => n + x.inbox.length, 0);
    const dropped = await counter(h.env.metrics, 'portd_global_limit_total', { limit: 'ssdpSearchesPerSecond' });
    // bursts of 20, refilling 10/s while the searches arrive
    assert.ok(answers >= 20 && answers <= 26, `${answers} answers`);
    assert.equal(answers + dropped, 50);
    assert.equal(
      await counter(h.env.metrics, 'portd_rate_limited_total', { frontend: 'ssdp' }),
      0,
      'no source was over its own rate',
    );
    assert.equal(cap.matching(/global limit reached \(limits\.ssdpSearchesPerSecond 10\)/).length, 1);
  } finally {
    for (const x of sockets) x.s.close();
    await h.close();
  }
});
