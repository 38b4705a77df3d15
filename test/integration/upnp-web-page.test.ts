/**
 * A web page in a LAN browser must not be able to open a port (issue 14): what a cross-site
 * "simple request" can send (text/plain or no content type, no SOAPAction, an Origin) and what a
 * DNS-rebinding page sends (its own name in Host) change nothing and read nothing, on control,
 * eventing and descriptions. Raw HTTP over loopback sockets, so every header is exactly as written;
 * test/browser/upnp-web-page.test.ts does the same from a real chromium.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, beforeEach, test } from 'node:test';
import { captureLog, counter } from '../fuzz/mutate.js';
import { IPC1, IPC2, startUpnp, type UpnpHarness, revokeAll } from './upnp-helpers.js';

const ADD = (port: number, urn = IPC1) =>
  '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
  's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
  '<s:Body><u:AddPortMapping ' +
  `xmlns:u="${urn}"><NewRemoteHost></NewRemoteHost><NewExternalPort>${port}</NewExternalPort>` +
  '<NewProtocol>TCP</NewProtocol>' +
  '<NewInternalPort>8080</NewInternalPort><NewInternalClient>127.0.0.1</NewInternalClient><NewEnabled>1</NewEnabled>' +
  '<NewPortMappingDescription>web ' +
  'page</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration></u:AddPortMapping></s:Body></s:Envelope>';

interface Raw {
  status: number;
  headers: string;
  body: string;
}

/** one raw HTTP/1.1 request (headers exactly as given) to host:port; resolves with the parsed answer */
function raw(port: number, head: string, body = '', host = '127.0.0.1'): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host });
    let out = '';
    s.on('data', (d) => {
      out += d.toString('latin1');
    });
    const done = () => {
      const i = out.indexOf('\r\n\r\n');
      const headers = i < 0 ? out : out.slice(0, i);
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0),
        headers,
        body: i < 0 ? '' : out.slice(i + 4),
      });
    };
    s.on('end', done);
    s.on('close', done);
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy());
    s.end(
      `${head.replace(/\n/g, '\r\n')}${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ''}Connection: ` +
        `close\r\n\r\n${body}`,
    );
  });
}

/** a control point's callback server on 127.0.0.1 that counts NOTIFYs */
async function callbackServer() {
  let notified = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      notified++;
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/cb`,
    get notified() {
      return notified;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

let h: UpnpHarness;
let port: number;
let host: string;
const cap = captureLog();
before(async () => {
  h = await startUpnp({ extra: { log: cap.log } });
  port = Number(new URL(h.base).port);
  host = `127.0.0.1:${port}`;
});
after(async () => {
  await h?.close();
});
beforeEach(() => revokeAll(h));
const leases = () => h.env.table.list({ state: 'active' }).total;
const SA = `SOAPAction: "${IPC1}#AddPortMapping"\n`;

test('a browser simple request (POST text/plain, no SOAPAction, foreign Origin) to a control URL maps nothing', async () => {
  // what <form enctype="text/plain"> or fetch(url, { mode: 'no-cors', method: 'POST', body }) sends
  const r = await raw(
    port,
    `POST /igd1/ctl/IPConn HTTP/1.1\nHost: ${host}\nContent-Type: text/plain;charset=UTF-8\nOrigin: ` +
      'http://attacker.example\n',
    ADD(40000),
  );
  assert.equal(r.status, 403);
  assert.equal(leases(), 0, 'no lease');
  assert.equal(h.env.dataplane.entries.size, 0);
  // and each property of it alone is enough to refuse
  const cases: [string, string, number][] = [
    ['text/plain with a SOAPAction', `Content-Type: text/plain\n${SA}`, 415],
    ['no Content-Type (fetch with a Blob or ArrayBuffer body)', SA, 415],
    ['application/x-www-form-urlencoded', `Content-Type: application/x-www-form-urlencoded\n${SA}`, 415],
    ['multipart/form-data', `Content-Type: multipart/form-data; boundary=x\n${SA}`, 415],
    ['text/xml without SOAPAction', 'Content-Type: text/xml\n', 400],
    ['an empty SOAPAction', 'Content-Type: text/xml\nSOAPAction: ""\n', 400],
    [
      'a foreign Origin on an otherwise perfect request',
      `Content-Type: text/xml\n${SA}Origin: http://attacker.example\n`,
      403,
    ],
    ['Origin: null (sandboxed iframe, data: URL)', `Content-Type: text/xml\n${SA}Origin: null\n`, 403],
    ['an Origin naming portd itself (a rebound page)', `Content-Type: text/xml\n${SA}Origin: http://${host}\n`, 403],
  ];
  for (const [what, headers, status] of cases) {
    const x = await raw(port, `POST /igd1/ctl/IPConn HTTP/1.1\nHost: ${host}\n${headers}`, ADD(40001));
    assert.equal(x.status, status, what);
    assert.doesNotMatch(x.body, /AddPortMapping|UPnPError/, `${what}: nothing to read`);
    assert.equal(leases(), 0, `${what}: no lease`);
  }
  // the same request as a UPnP client sends it maps the port
  const ok = await raw(
    port,
    `POST /igd1/ctl/IPConn HTTP/1.1\nHost: ${host}\nContent-Type: text/xml\n${SA}`,
    ADD(40002),
  );
  assert.equal(ok.status, 200);
  assert.equal(leases(), 1);
  assert.equal(await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'upnp', kind: 'content_type' }), 4);
  assert.equal(await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'upnp', kind: 'no_soapaction' }), 2);
  assert.ok(cap.matching(/a web page could have made/).length <= 3, 'logged once per kind and client');
});

// what a DNS-rebinding page's requests carry in Host (its own name, with or without our port), and
// other spellings that are not the address the connection arrived on
const FOREIGN_HOSTS = (p: number) => [
  `attacker.example:${p}`,
  'attacker.example',
  `rebind.127.0.0.1.nip.io:${p}`,
  `localhost:${p}`,
  `LOCALHOST:${p}`,
  `127.0.0.1.:${p}`, // trailing dot: a DNS name, resolved by a resolver, not an address literal
  '127.0.0.1', // no port means 80
  `127.0.0.1:${p + 1}`,
  `127.0.0.2:${p}`,
  `[::1]:${p}`,
  `[::ffff:127.0.0.1]:${p}`,
  `2130706433:${p}`,
  `0x7f000001:${p}`,
  `127.1:${p}`,
  `127.0.0.1:${p}@attacker.example`,
  `127.0.0.1:0${p}x`,
  '',
];

test('DNS rebinding: a Host other than the address and port portd listens on is refused 403 on control, eventing and descriptions; nothing changes, nothing is read', async () => {
  const cp = await callbackServer();
  try {
    const subs0 = await counter(h.env.metrics, 'portd_gena_total', { kind: 'subscribe' });
    for (const foreign of FOREIGN_HOSTS(port)) {
      const ctl = await raw(
        port,
        `POST /igd1/ctl/IPConn HTTP/1.1\nHost: ${foreign}\nContent-Type: text/xml; charset="utf-8"\n${SA}`,
        ADD(40010),
      );
      assert.equal(ctl.status, 403, `control, Host ${foreign}`);
      assert.equal(ctl.body, '', `control, Host ${foreign}: nothing to read`);
      const get = await raw(port, `GET /igd2/desc.xml HTTP/1.1\nHost: ${foreign}\n`);
      assert.equal(get.status, 403, `description, Host ${foreign}`);
      assert.doesNotMatch(get.body, /InternetGatewayDevice|uuid:/, `description, Host ${foreign}: nothing to read`);
      const scpd = await raw(port, `GET /igd2/WANIPCn.xml HTTP/1.1\nHost: ${foreign}\n`);
      assert.doesNotMatch(scpd.body, /AddPortMapping/);
      const sub = await raw(
        port,
        `SUBSCRIBE /igd2/evt/IPConn HTTP/1.1\nHost: ${foreign}\nCALLBACK: <${cp.url}>\nNT: upnp:event\nTIMEOUT: ` +
          'Second-300\n',
      );
      assert.equal(sub.status, 403, `SUBSCRIBE, Host ${foreign}`);
      assert.doesNotMatch(sub.headers, /^SID:/im);
    }
    assert.equal(leases(), 0, 'no lease');
    assert.equal(await counter(h.env.metrics, 'portd_gena_total', { kind: 'subscribe' }), subs0, 'no subscription');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(cp.notified, 0, 'no event sent');
    // our own address and port, as every client that follows the SSDP LOCATION sends it
    assert.equal((await raw(port, `GET /igd2/desc.xml HTTP/1.1\nHost: ${host}\n`)).status, 200);
    assert.equal(
      (await raw(port, `POST /igd1/ctl/IPConn HTTP/1.1\nHost: ${host}\nContent-Type: text/xml\n${SA}`, ADD(40011)))
        .status,
      200,
    );
    assert.equal(leases(), 1);
  } finally {
    await cp.close();
  }
});

test('SUBSCRIBE / renewal / UNSUBSCRIBE with an Origin or a foreign Host are refused 403 and change nothing', async () => {
  const cp = await callbackServer();
  try {
    const path = '/igd2/evt/IPConn';
    const subs0 = await counter(h.env.metrics, 'portd_gena_total', { kind: 'subscribe' });
    for (const extra of ['Origin: http://attacker.example\n', 'Origin: null\n', `Origin: http://${host}\n`]) {
      const r = await raw(
        port,
        `SUBSCRIBE ${path} HTTP/1.1\nHost: ${host}\n${extra}CALLBACK: <${cp.url}>\nNT: upnp:event\n`,
      );
      assert.equal(r.status, 403, extra);
    }
    assert.equal(await counter(h.env.metrics, 'portd_gena_total', { kind: 'subscribe' }), subs0);
    const ok = await raw(
      port,
      `SUBSCRIBE ${path} HTTP/1.1\nHost: ${host}\nCALLBACK: <${cp.url}>\nNT: upnp:event\nTIMEOUT: Second-300\n`,
    );
    assert.equal(ok.status, 200);
    const sid = /^SID: (.*)$/im.exec(ok.headers)?.[1]?.trim() ?? '';
    assert.match(sid, /^uuid:/);
    // a page that learnt the SID can neither end nor renew it
    for (const [hostHeader, extra] of [
      ['attacker.example', ''],
      [host, 'Origin: http://attacker.example\n'],
    ] as const) {
      assert.equal(
        (await raw(port, `UNSUBSCRIBE ${path} HTTP/1.1\nHost: ${hostHeader}\n${extra}SID: ${sid}\n`)).status,
        403,
      );
      assert.equal(
        (
          await raw(
            port,
            `SUBSCRIBE ${path} HTTP/1.1\nHost: ${hostHeader}\n${extra}SID: ${sid}\nTIMEOUT: Second-1800\n`,
          )
        ).status,
        403,
      );
    }
    assert.equal(await counter(h.env.metrics, 'portd_gena_total', { kind: 'unsubscribe' }), 0);
    assert.equal(await counter(h.env.metrics, 'portd_gena_total', { kind: 'renew' }), 0);
    assert.equal(
      (await raw(port, `UNSUBSCRIBE ${path} HTTP/1.1\nHost: ${host}\nSID: ${sid}\n`)).status,
      200,
      'still subscribed: the owner ends it',
    );
  } finally {
    await cp.close();
  }
});

test('IPv6: Host must be the bracketed literal of the listening address (any spelling of it) and its port', async () => {
  const v6 = await startUpnp({
    isLanClient: (a) => a === '::1',
    extra: { listen: { addresses: ['::1'], httpPort: 0 } },
  });
  try {
    const p = v6.server.httpAddresses()[0]!.port;
    const get = (hostHeader: string) => raw(p, `GET /igd1/desc.xml HTTP/1.1\nHost: ${hostHeader}\n`, '', '::1');
    for (const ok of [`[::1]:${p}`, `[0:0:0:0:0:0:0:1]:${p}`, `[0::1]:${p}`])
      assert.equal((await get(ok)).status, 200, ok);
    for (const bad of [
      `[::1]`,
      `::1:${p}`,
      `[::2]:${p}`,
      `127.0.0.1:${p}`,
      `[::1%25lo]:${p}`,
      `localhost:${p}`,
      `ip6-localhost:${p}`,
    ])
      assert.equal((await get(bad)).status, 403, bad);
    const add = await raw(
      p,
      `POST /igd2/ctl/IPConn HTTP/1.1\nHost: [::1]:${p}\nContent-Type: text/xml\nSOAPAction: ` +
        `"${IPC2}#GetExternalIPAddress"\n`,
      ADD(1)
        .replace(/AddPortMapping/g, 'GetExternalIPAddress')
        .replace(/<NewRemoteHost>.*<\/NewLeaseDuration>/, '')
        .replace(IPC1, IPC2),
      '::1',
    );
    assert.equal(add.status, 200);
  } finally {
    await v6.close();
  }
});
