/**
 * Hostile input against the UPnP front-end (issue 9 §5): SSDP and SOAP parser fuzz (mutated real
 * envelopes and searches), DTDs and entities, 10 MB bodies, slowloris, thousands of SUBSCRIBEs,
 * CallStranger, requests from outside the LAN, and floods from one LAN host while another is
 * served. Loopback only (clients bind 127.0.0.x); every loop bounded in count and time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import { decodeSearch, encodeSearchResponse, matchSearch, SsdpDecodeError } from '../../protocols/ssdp/index.js';
import { decodeSoapRequest, SoapDecodeError } from '../../protocols/upnp/index.js';
import { captureLog, counter, fuzzSeed, mutateBytes, mutateText, percentile, prng, until } from '../fuzz/mutate.js';
import { errorCodeOf, field, IPC1, IPC2, startUpnp, type UpnpHarness } from './upnp-helpers.js';
import { streamBigBody } from '../helpers/big-body.js';

const fixture = (f: string) => readFileSync(new URL(`../fixtures/upnp/${f}`, import.meta.url), 'utf8');
const ENVELOPES = ['soap-miniupnpc.xml', 'soap-nat-upnp.xml', 'soap-nat-port-mapper.xml'].map(fixture);
const SEARCHES = ['msearch-miniupnpc.txt', 'msearch-gssdp.txt'].map(fixture);
const HTTP_BITS = [
  '\r\n',
  '\n',
  '\r',
  ':',
  ' ',
  '"',
  'ST',
  'MX',
  'MAN',
  'ssdp:all',
  'upnp:rootdevice',
  '"ssdp:discover"',
  '\u0000',
  '\t',
  'urn:schemas-upnp-org:device:InternetGatewayDevice:2',
  'uuid:',
  '\r\n\r\n',
  'M-SEARCH * HTTP/1.1',
  'NOTIFY * HTTP/1.1',
  '999999',
  '-1',
  'é',
];

const envelope = (action: string, urn: string, inner: string) =>
  '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
  `s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} ` +
  `xmlns:u="${urn}">${inner}</u:${action}></s:Body></s:Envelope>`;

interface Reply {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** one HTTP request from `from` (a 127.0.0.x address), with an optional keep-alive agent */
function send(
  url: string,
  o: {
    method?: string;
    body?: string;
    headers?: Record<string, string>;
    from?: string;
    agent?: http.Agent;
    timeoutMs?: number;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      {
        method: o.method ?? 'POST',
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        headers: o.headers ?? {},
        ...(o.agent ? { agent: o.agent } : { localAddress: o.from ?? '127.0.0.1', agent: false }),
      },
      (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => {
          if (body.length < 1 << 20) body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.setTimeout(o.timeoutMs ?? 5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(o.body);
  });
}

const soapHeaders = (urn: string, action: string) => ({
  'content-type': 'text/xml; charset="utf-8"',
  soapaction: `"${urn}#${action}"`,
});
const getExternal = (h: UpnpHarness, from = '127.0.0.1') =>
  send(`${h.base}/igd1/ctl/IPConn`, {
    body: envelope('GetExternalIPAddress', IPC1, ''),
    headers: soapHeaders(IPC1, 'GetExternalIPAddress'),
    from,
  });

/** a raw TCP connection from `from`; resolves when the server closes it (or after maxMs) */
function rawConnection(port: number, from: string) {
  const sock = net.connect({ host: '127.0.0.1', port, localAddress: from });
  let data = '';
  let closedBy: 'server' | 'client' | null = null;
  sock.on('data', (d) => {
    data += d.toString('latin1');
  });
  sock.on('error', () => {
    /* reset by the server: counted as closed */
  });
  const closed = new Promise<void>((r) =>
    sock.once('close', () => {
      closedBy ??= 'server';
      r();
    }),
  );
  return {
    sock,
    closed,
    get data() {
      return data;
    },
    get closedByServer() {
      return closedBy === 'server';
    },
    destroy() {
      if (!closedBy) closedBy = 'client';
      sock.destroy();
    },
  };
}

async function udpSocket(address: string) {
  const s = createSocket('udp4');
  const inbox: string[] = [];
  s.on('message', (m) => inbox.push(m.toString('latin1')));
  await new Promise<void>((r) => s.bind(0, address, r));
  return {
    s,
    inbox,
    send: (b: Uint8Array | string, port: number) =>
      s.send(typeof b === 'string' ? Buffer.from(b, 'latin1') : b, port, '127.0.0.1'),
    close: () => s.close(),
  };
}

// ---- parsers --------------------------------------------------------------------------------

test('SSDP parser fuzz: 200,000 mutated M-SEARCHes decode or fail typed; whatever decodes can be answered without header injection', (t) => {
  const seed = fuzzSeed(0x55d9_0009);
  const r = prng(seed);
  const bytes = SEARCHES.map((s) => Buffer.from(s, 'latin1'));
  const targets = [{ nt: 'upnp:rootdevice', usn: 'uuid:x::upnp:rootdevice', location: 'http://127.0.0.1:1/d.xml' }];
  let ok = 0;
  let typed = 0;
  const untyped: string[] = [];
  for (let i = 0; i < 200_000; i++) {
    const m =
      i % 2 === 0
        ? Buffer.from(mutateText(r, r.pick(SEARCHES), SEARCHES, HTTP_BITS), 'latin1')
        : mutateBytes(r, r.pick(bytes), bytes, 5000);
    try {
      const s = decodeSearch(m);
      ok++;
      // the ST is echoed in the answer: it must never break the answer's header block
      matchSearch(s.st, targets);
      const out = Buffer.from(
        encodeSearchResponse({
          st: s.st,
          usn: 'uuid:x',
          location: 'http://127.0.0.1:1/',
          maxAge: 1800,
          date: 'x',
          server: 'x',
          bootId: 1,
          configId: 1,
        }),
      ).toString('latin1');
      if (out.split('\r\n\r\n').length !== 2 || /\r(?!\n)|(?<!\r)\n/.test(out))
        untyped.push(`header injection: ${JSON.stringify(s.st)}`);
    } catch (e) {
      if (e instanceof SsdpDecodeError) typed++;
      else if (untyped.length < 5) untyped.push(`${m.toString('hex')}: ${String(e)}`);
    }
  }
  t.diagnostic(`seed ${seed}: ${ok} decoded, ${typed} typed errors`);
  assert.deepEqual(untyped, []);
  assert.ok(ok > 10_000 && typed > 10_000, 'mutations reach both outcomes');
});

test('SOAP parser fuzz: 30,000 mutated real envelopes decode or fail typed (SoapDecodeError with a UPnP code)', (t) => {
  const seed = fuzzSeed(0x50a9_0009);
  const r = prng(seed);
  let ok = 0;
  let typed = 0;
  let slowest = 0;
  const untyped: string[] = [];
  for (let i = 0; i < 30_000; i++) {
    const body = mutateText(r, r.pick(ENVELOPES), ENVELOPES);
    const t0 = performance.now();
    try {
      decodeSoapRequest(body, r.chance(0.5) ? `"${IPC1}#AddPortMapping"` : null);
      ok++;
    } catch (e) {
      if (e instanceof SoapDecodeError && e.upnpCode >= 401 && e.upnpCode <= 402) typed++;
      else if (untyped.length < 5) untyped.push(`${JSON.stringify(body.slice(0, 300))}: ${String(e)}`);
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  t.diagnostic(`seed ${seed}: ${ok} decoded, ${typed} typed errors, slowest ${slowest.toFixed(1)} ms`);
  assert.deepEqual(untyped, []);
  assert.ok(ok > 200 && typed > 1000, 'mutations reach both outcomes');
});

// ---- live SOAP ------------------------------------------------------------------------------

test('live SOAP fuzz: 2,000 mutated envelopes: each answered 200, 500 with a UPnP error, or 4xx; server and leases intact', async (t) => {
  const seed = fuzzSeed(0x50a9_1009);
  const r = prng(seed);
  // a parser fuzz, not a rate test: the per-client and global rates are off
  const h = await startUpnp({ extra: { limits: { requestsPerSecond: 0, soapRequestsPerSecond: 0 } } });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4, localAddress: '127.0.0.1' });
  try {
    const sentinel = await h.env.table.request({
      source: 'upnp',
      identity: 'external',
      protocol: 'tcp',
      owner: '127.0.0.7',
      internalAddress: '127.0.0.7',
      internalPort: 7000,
      externalPort: 17000,
      allowOtherPort: false,
      lifetime: 3600,
      description: 'sentinel',
      actor: 'upnp:127.0.0.7',
    });
    assert.ok(sentinel.ok);
    const statuses = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      const body = mutateText(r, r.pick(ENVELOPES), ENVELOPES);
      const urn = r.pick([IPC1, IPC2]);
      const action = /<u:(\w+)/.exec(body)?.[1] ?? 'AddPortMapping';
      const path = r.pick(['/igd1/ctl/IPConn', '/igd2/ctl/IPConn', '/igd1/ctl/CmnIfCfg']);
      const res = await send(`${h.base}${path}`, { body, headers: soapHeaders(urn, action), agent });
      const code = res.status === 500 ? errorCodeOf(res.body) : null;
      const key = res.status === 500 ? `500/${code}` : String(res.status);
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
      assert.ok(
        res.status === 200 ||
          (res.status === 500 && code !== null && code >= 400 && code < 800) ||
          (res.status >= 400 && res.status < 500),
        `unexpected answer ${res.status} ${res.body.slice(0, 200)}`,
      );
    }
    t.diagnostic(`seed ${seed}: ${[...statuses].map(([k, v]) => `${k}×${v}`).join(', ')}`);
    const lease = h.env.table.get(sentinel.lease.id);
    assert.equal(lease?.state, 'active');
    assert.equal(lease?.expiresAt, sentinel.lease.expiresAt);
    assert.equal(await h.env.dataplane.count(), h.env.table.countActive().total);
    const ext = await getExternal(h);
    assert.equal(ext.status, 200);
    assert.equal(field(ext.body, 'NewExternalIPAddress'), '203.0.113.1');
  } finally {
    agent.destroy();
    await h.close();
  }
});

test('a description with control characters (escape sequences via character references) is stored without them', async () => {
  const h = await startUpnp();
  try {
    const res = await send(`${h.base}/igd1/ctl/IPConn`, {
      headers: soapHeaders(IPC1, 'AddPortMapping'),
      body: envelope(
        'AddPortMapping',
        IPC1,
        '<NewRemoteHost></NewRemoteHost><NewExternalPort>24000</NewExternalPort><NewProtocol>UDP</NewProtocol>' +
          '<NewInternalPort>24000</NewInternalPort><NewInternalClient>127.0.0.1</NewInternalClient>' +
          '<NewEnabled>1</NewEnabled>' +
          '<NewPortMappingDescription>game&#27;]0;owned&#7;&#x1b;[2J&#13;&#10;fake&#x85;</NewPortMappingDescription>' +
          '<NewLeaseDuration>600</NewLeaseDuration>',
      ),
    });
    assert.equal(res.status, 200);
    const [lease] = h.env.table.list({ owner: '127.0.0.1' }).leases;
    assert.ok(lease);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the test looks for control characters
    assert.doesNotMatch(lease.description, /[\u0000-\u001f\u007f-\u009f]/);
    assert.equal(lease.description, 'game ]0;owned  [2J  fake ');
  } finally {
    await h.close();
  }
});

test('DTDs and entities: billion laughs, XXE (file and http), parameter entities are refused with 402 before parsing; nothing is fetched', async () => {
  const cap = captureLog();
  const h = await startUpnp({ extra: { log: cap.log } });
  // an "attacker" server the XXE would make the gateway fetch from
  let fetched = 0;
  const lure = http.createServer((_q, s) => {
    fetched++;
    s.end('x');
  });
  await new Promise<void>((res) => lure.listen(0, '127.0.0.1', res));
  const lureUrl = `http://127.0.0.1:${(lure.address() as AddressInfo).port}/evil.dtd`;
  try {
    const laughs =
      '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
      Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`).join('') +
      ']>';
    const bodies = [
      laughs +
        envelope('AddPortMapping', IPC1, '<NewPortMappingDescription>&lol9;</NewPortMappingDescription>').replace(
          '<?xml version="1.0"?>',
          '',
        ),
      '<?xml version="1.0"?><!DOCTYPE s [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' +
        envelope('AddPortMapping', IPC1, '<NewPortMappingDescription>&xxe;</NewPortMappingDescription>').replace(
          '<?xml version="1.0"?>',
          '',
        ),
      '<?xml version="1.0"?><!DOCTYPE s SYSTEM ' +
        `"${lureUrl}">${envelope('GetExternalIPAddress', IPC1, '').replace('<?xml version="1.0"?>', '')}`,
      `<?xml version="1.0"?><!DOCTYPE s [<!ENTITY % p SYSTEM "${lureUrl}"> ` +
        `%p;]>${envelope('GetExternalIPAddress', IPC1, '').replace('<?xml version="1.0"?>', '')}`,
      // a declaration hidden after a comment, and one inside the body
      `<!-- hi --><!DOCTYPE s [<!ENTITY a "b">]>${envelope('GetExternalIPAddress', IPC1, '')}`,
      envelope(
        'AddPortMapping',
        IPC1,
        `<!ENTITY x SYSTEM "${lureUrl}"><NewPortMappingDescription>&x;</NewPortMappingDescription>`,
      ),
    ];
    for (const body of bodies) {
      const res = await send(`${h.base}/igd1/ctl/IPConn`, { body, headers: soapHeaders(IPC1, 'AddPortMapping') });
      assert.equal(res.status, 500, body.slice(0, 80));
      assert.equal(errorCodeOf(res.body), 402);
      assert.doesNotMatch(res.body, /root:|lollol/);
    }
    assert.equal(
      await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'upnp', kind: 'dtd' }),
      bodies.length,
    );
    assert.equal(fetched, 0, 'no external entity or DTD was fetched');
    assert.equal(h.env.table.countActive().total, 0);
    assert.equal(cap.matching(/bad SOAP request/).length, 1, `one log line for ${bodies.length} refusals`);
    assert.equal((await getExternal(h)).status, 200);
  } finally {
    await new Promise<void>((res) => lure.close(() => res()));
    await h.close();
  }
});

/** streams `total` bytes of SOAP body to the control URL (see streamBigBody) */
function bigUpload(port: number, total: number, chunked: boolean) {
  return streamBigBody({
    port,
    head:
      `POST /igd1/ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: text/xml\r\n` +
      `SOAPAction: "${IPC1}#AddPortMapping"\r\n`,
    total,
    chunked,
    fill: 'A',
  });
}

test('10 MB bodies (Content-Length and chunked, 8 at once): 413 at the 16 KiB limit, connection closed before the body is sent, memory bounded', async (t) => {
  const h = await startUpnp();
  try {
    const port = Number(new URL(h.base).port);
    const TEN_MB = 10 * 1024 * 1024;
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => bigUpload(port, TEN_MB, i % 2 === 1)));
    const rssDelta = (process.memoryUsage().rss - rss0) / 1e6;
    t.diagnostic(
      `written before the server closed: ${results.map((x) => (x.written / 1e6).toFixed(1)).join(', ')} MB; RSS ` +
        `delta ${rssDelta.toFixed(1)} MB`,
    );
    for (const x of results) {
      assert.equal(x.statusLine, 'HTTP/1.1 413 Payload Too Large');
      assert.ok(x.written < TEN_MB, 'the server closed the connection before the client could send it all');
    }
    assert.ok(rssDelta < 64, `RSS grew ${rssDelta.toFixed(1)} MB`);
    assert.equal(await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'upnp', kind: 'too_large' }), 8);
    assert.equal((await getExternal(h)).status, 200);
  } finally {
    await h.close();
  }
});

test('slowloris: 96 connections from 8 hosts dribbling headers are closed by the server within its headers timeout; a normal client is served meanwhile', async () => {
  // headers timeout 1 s, Node's check interval left at portd's default (it was Node's 30 s: the finding)
  const h = await startUpnp({ extra: { timeouts: { headers: 1000 } } });
  const port = Number(new URL(h.base).port);
  const conns = Array.from({ length: 96 }, (_, i) => rawConnection(port, `127.0.0.${20 + (i % 8)}`));
  const head = 'GET /igd1/desc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + 'a'.repeat(500);
  let i = 0;
  const drip = setInterval(() => {
    for (const c of conns) if (!c.sock.destroyed) c.sock.write(head[i % head.length]!);
    i++;
  }, 50);
  try {
    await new Promise((r) => setTimeout(r, 300));
    const served = await send(h.descV1, { method: 'GET', from: '127.0.0.9' });
    assert.equal(served.status, 200, 'a normal client is served while the slow ones hang on');
    const allClosed = await until(() => conns.every((c) => c.sock.destroyed), 6000, 50);
    assert.ok(allClosed, `${conns.filter((c) => !c.sock.destroyed).length} slow connections still open`);
    assert.ok(
      conns.every((c) => c.closedByServer),
      'closed by the server, not the test',
    );
    assert.ok(
      conns.every((c) => !c.data.includes('200 OK')),
      'none got an answer to a request it never finished',
    );
    assert.equal((await send(h.descV1, { method: 'GET', from: '127.0.0.9' })).status, 200);
  } finally {
    clearInterval(drip);
    for (const c of conns) c.destroy();
    await h.close();
  }
});

// ---- GENA -----------------------------------------------------------------------------------

/** control points' callback servers on several loopback addresses */
async function callbackServers(hosts: string[]) {
  let notified = 0;
  const servers = await Promise.all(
    hosts.map(async (host) => {
      const s = http.createServer((q, res) => {
        q.resume();
        q.on('end', () => {
          notified++;
          res.end();
        });
      });
      await new Promise<void>((r) => s.listen(0, host, r));
      return { host, s, url: `http://${host}:${(s.address() as AddressInfo).port}/cb` };
    }),
  );
  return {
    servers,
    notified: () => notified,
    close: () =>
      Promise.all(
        servers.map(
          ({ s }) =>
            new Promise<void>((r) => {
              s.closeAllConnections();
              s.close(() => r());
            }),
        ),
      ),
  };
}

const subscribe = (h: UpnpHarness, callback: string, agent: http.Agent) =>
  send(`${h.base}/igd2/evt/IPConn`, {
    method: 'SUBSCRIBE',
    headers: { CALLBACK: `<${callback}>`, NT: 'upnp:event', TIMEOUT: 'Second-1800' },
    agent,
  });

test('thousands of SUBSCRIBEs: 3,000 from 32 hosts stop at upnp.maxSubscriptions (256), 16 per host; one host cannot lock others out; memory bounded', async (t) => {
  const cap = captureLog();
  // the rate limits (per client and global) are off: this is about the subscription caps
  const h = await startUpnp({
    upnp: { maxSubscriptions: 256 },
    extra: { limits: { requestsPerSecond: 0, soapRequestsPerSecond: 0 }, log: cap.log },
  });
  const hosts = Array.from({ length: 34 }, (_, i) => `127.0.0.${100 + i}`);
  const cps = await callbackServers(hosts);
  const agents = new Map(hosts.map((a) => [a, new http.Agent({ keepAlive: true, maxSockets: 8, localAddress: a })]));
  try {
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    // first one host alone tries 1,000: it gets its 16, and another host still gets in
    const solo = cps.servers[0]!;
    let soloOk = 0;
    for (let i = 0; i < 1000; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, () => subscribe(h, solo.url, agents.get(solo.host)!)));
      soloOk += batch.filter((x) => x.status === 200).length;
      assert.ok(batch.every((x) => x.status === 200 || x.status === 503));
    }
    assert.equal(soloOk, 16);
    assert.equal(
      (await subscribe(h, cps.servers[1]!.url, agents.get(cps.servers[1]!.host)!)).status,
      200,
      'another host is not locked out',
    );
    // then 3,000 more from 32 hosts: the global cap holds
    const statuses = new Map<number, number>();
    const many = cps.servers.slice(2);
    for (let k = 0; k < 3000; k += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, (_, j) => {
          const cp = many[(k + j) % many.length]!;
          return subscribe(h, cp.url, agents.get(cp.host)!);
        }),
      );
      for (const x of batch) statuses.set(x.status, (statuses.get(x.status) ?? 0) + 1);
    }
    const rssDelta = (process.memoryUsage().rss - rss0) / 1e6;
    const subscribed = await counter(h.env.metrics, 'portd_gena_total', { kind: 'subscribe' });
    const refused = await counter(h.env.metrics, 'portd_gena_total', { kind: 'refused' });
    t.diagnostic(
      `statuses ${[...statuses].map(([k, v]) => `${k}×${v}`).join(', ')}; subscribed ${subscribed}, refused ` +
        `${refused}; RSS delta ${rssDelta.toFixed(1)} MB; ${cps.notified()} initial NOTIFYs`,
    );
    assert.equal(subscribed, 256, 'exactly the cap');
    assert.equal(refused, 1000 + 1 + 3000 - 256, 'every other SUBSCRIBE refused and counted');
    assert.equal(statuses.get(200), 256 - 17);
    assert.ok(rssDelta < 64, `RSS grew ${rssDelta.toFixed(1)} MB`);
    // one log line per refusing client per interval, not one per SUBSCRIBE
    const lines = cap.matching(/gena refused subscription/);
    assert.ok(lines.length <= hosts.length * 2, `${lines.length} log lines for ${refused} refusals`);
    assert.ok(await until(() => cps.notified() >= 256, 5000, 20), 'each accepted subscription got its initial event');
  } finally {
    for (const a of agents.values()) a.destroy();
    await cps.close();
    await h.close();
  }
});

test('CallStranger: callbacks to another host (other loopback address, mixed lists, userinfo tricks) are refused 412 and nothing is sent', async () => {
  const cap = captureLog();
  const h = await startUpnp({ extra: { log: cap.log } });
  const victim = await callbackServers(['127.0.0.66']);
  const own = await callbackServers(['127.0.0.1']);
  const agent = new http.Agent({ keepAlive: true, localAddress: '127.0.0.1' });
  try {
    const v = victim.servers[0]!;
    const port = new URL(v.url).port;
    const tricks = [
      v.url,
      `${own.servers[0]!.url}><${v.url}`,
      `http://127.0.0.1@127.0.0.66:${port}/cb`,
      `http://127.0.0.66:${port}/cb#@127.0.0.1`,
      `http://2130706498:${port}/cb`, // 127.0.0.66 as one integer
      `http://[::ffff:127.0.0.66]:${port}/cb`,
      `http://0x7f000042:${port}/cb`,
    ];
    for (const cb of tricks) {
      const r = await subscribe(h, cb, agent);
      assert.equal(r.status, 412, cb);
    }
    assert.equal(
      await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'upnp', kind: 'gena_callback' }),
      tricks.length,
    );
    // a change event goes out to subscribers: still nothing reaches the victim
    await h.env.table.request({
      source: 'upnp',
      identity: 'external',
      protocol: 'udp',
      owner: '127.0.0.1',
      internalAddress: '127.0.0.1',
      internalPort: 5000,
      externalPort: 25000,
      allowOtherPort: false,
      lifetime: 600,
      description: 'x',
      actor: 'upnp:127.0.0.1',
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(victim.notified(), 0);
    assert.equal(cap.matching(/CallStranger/).length, 1, `one log line for ${tricks.length} refusals`);
    assert.equal(
      (await subscribe(h, own.servers[0]!.url, agent)).status,
      200,
      'a callback to the subscriber itself works',
    );
  } finally {
    agent.destroy();
    await victim.close();
    await own.close();
    await h.close();
  }
});

test('a scan of junk requests: every refusal is a 4xx, counted in portd_bad_input_total, and logged once per kind', async () => {
  const cap = captureLog();
  const h = await startUpnp({ extra: { log: cap.log } });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2, localAddress: '127.0.0.1' });
  try {
    const evt = `${h.base}/igd2/evt/IPConn`;
    const junk: { url: string; method: string; headers?: Record<string, string> }[] = [];
    for (let i = 0; i < 20; i++) {
      junk.push({ url: `${h.base}/cgi-bin/${i}/../../etc/passwd`, method: 'GET' });
      junk.push({ url: `${h.base}/igd1/ctl/IPConn`, method: 'GET' });
      junk.push({ url: evt, method: 'SUBSCRIBE', headers: { CALLBACK: '<http://127.0.0.1:1/>', NT: 'upnp:other' } });
      junk.push({ url: evt, method: 'SUBSCRIBE', headers: { SID: `uuid:${i}`, TIMEOUT: 'Second-60' } });
      junk.push({ url: evt, method: 'UNSUBSCRIBE', headers: {} });
      junk.push({ url: evt, method: 'SUBSCRIBE', headers: { CALLBACK: 'http://no-brackets/', NT: 'upnp:event' } });
    }
    const before = await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'upnp' });
    for (const j of junk) {
      const r = await send(j.url, { method: j.method, ...(j.headers ? { headers: j.headers } : {}), agent });
      assert.ok(r.status >= 400 && r.status < 500, `${j.method} ${j.url} → ${r.status}`);
    }
    const after = await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'upnp' });
    assert.equal(after - before, junk.length, 'every refusal counted');
    const refusalLines = cap.lines.filter(
      (l) => Number(l['level']) >= 30 && /unknown path|refused/.test(String(l['msg'])),
    );
    assert.ok(refusalLines.length <= 5, `${refusalLines.length} log lines for ${junk.length} refusals`);
  } finally {
    agent.destroy();
    await h.close();
  }
});

// ---- outside the LAN ------------------------------------------------------------------------

test('WAN side: with the LAN set to 127.0.0.2/32, HTTP from 127.0.0.1 is closed unanswered and M-SEARCH gets silence; both counted, logged once', async () => {
  const cap = captureLog();
  const h = await startUpnp({
    isLanClient: (a) => a === '127.0.0.2',
    extra: {
      log: cap.log,
      ssdp: {
        enabled: true,
        port: 0,
        joinMulticast: false,
        notifyTarget: { address: '127.0.0.1', port: 9 },
        maxDelayMs: 20,
      },
    },
  });
  const port = Number(new URL(h.base).port);
  const ssdpPort = h.server.ssdpAddresses()[0]!.port;
  const wanUdp = await udpSocket('127.0.0.1');
  const lanUdp = await udpSocket('127.0.0.2');
  try {
    const conns = Array.from({ length: 20 }, () => rawConnection(port, '127.0.0.1'));
    for (const c of conns) c.sock.write(`POST /igd1/ctl/IPConn HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
    await Promise.all(conns.map((c) => Promise.race([c.closed, new Promise((r) => setTimeout(r, 3000))])));
    assert.ok(
      conns.every((c) => c.closedByServer && c.data === ''),
      'closed without a byte of answer',
    );
    assert.equal(await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'upnp', kind: 'not_lan' }), 20);

    const search = SEARCHES[0]!;
    for (let i = 0; i < 20; i++) wanUdp.send(search, ssdpPort);
    assert.ok(
      await until(
        async () =>
          (await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'ssdp', kind: 'not_lan' })) === 20,
        3000,
      ),
    );
    lanUdp.send(search, ssdpPort);
    assert.ok(await until(() => lanUdp.inbox.length > 0, 3000), 'the LAN client is answered');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(wanUdp.inbox.length, 0, 'the WAN side hears nothing');
    assert.equal(cap.matching(/outside the LAN/).length, 2, 'one line for HTTP, one for SSDP');
    assert.equal((await getExternal(h, '127.0.0.2')).status, 200);
  } finally {
    wanUdp.close();
    lanUdp.close();
    await h.close();
  }
});

// ---- floods ---------------------------------------------------------------------------------

test('SSDP flood: 2,000 ssdp:all searches from one host are rate-limited; another host is still answered', async (t) => {
  const cap = captureLog();
  const h = await startUpnp({
    extra: {
      log: cap.log,
      ssdp: {
        enabled: true,
        port: 0,
        joinMulticast: false,
        notifyTarget: { address: '127.0.0.1', port: 9 },
        maxDelayMs: 300,
      },
    },
  });
  const ssdpPort = h.server.ssdpAddresses()[0]!.port;
  const flooder = await udpSocket('127.0.0.5');
  const other = await udpSocket('127.0.0.6');
  try {
    const all =
      'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 5\r\nST: ssdp:all\r\n\r\n';
    for (let i = 0; i < 2000; i++) {
      flooder.send(all, ssdpPort);
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    // like real control points, the other host repeats its search until answered (UDP: the kernel may
    // drop datagrams of anyone while the socket queue is full of the flood)
    let tries = 0;
    for (; tries < 10 && other.inbox.length === 0; tries++) {
      other.send(SEARCHES[0]!, ssdpPort);
      await until(() => other.inbox.length > 0, 300);
    }
    t.diagnostic(`other host answered after ${tries} search(es)`);
    assert.ok(other.inbox.length > 0, 'the other host is answered');
    const limited = await counter(h.env.metrics, 'portd_rate_limited_total', { frontend: 'ssdp' });
    const searches = await counter(h.env.metrics, 'portd_ssdp_messages_total', { kind: 'search' });
    t.diagnostic(
      `${searches} searches reached the server, ${limited} rate-limited, ${flooder.inbox.length} answers to the ` +
        'flooder',
    );
    assert.ok(limited >= searches - 40, `${limited} of ${searches} searches rate-limited`);
    await until(() => false, 500);
    // the flooder got at most its burst's worth of answers (30 searches, 64 pending answers at a time)
    assert.ok(flooder.inbox.length <= 30 * 20, `${flooder.inbox.length} answers to the flooder`);
    assert.ok(cap.matching(/search rate/).length === 1);
  } finally {
    flooder.close();
    other.close();
    await h.close();
  }
});

/**
 * a worker thread that hammers SOAP from `from` over `conns` keep-alive connections and also opens `extraConns` idle
 * connections
 */
function httpFlood(url: string, from: string, ms: number, conns: number, extraConns: number) {
  const code = `
    const { parentPort, workerData: w } = require('node:worker_threads');
    const http = require('node:http');
    const net = require('node:net');
    const agent = new http.Agent({ keepAlive: true, maxSockets: w.conns, localAddress: w.from });
    const u = new URL(w.url);
    const statuses = {};
    let inflight = 0, sent = 0, refusedConns = 0;
    const idle = [];
    // once the request connections are up, try to hold many more
    setTimeout(() => {
      for (let i = 0; i < w.extraConns; i++) {
        const s = net.connect({ host: u.hostname, port: Number(u.port), localAddress: w.from });
        s.on('error', () => {}); s.on('close', () => { if (Date.now() < end) refusedConns++; });
        idle.push(s);
      }
    }, 300);
    const end = Date.now() + w.ms;
    const one = () => {
      inflight++; sent++;
      const req = http.request({ method: 'POST', host: u.hostname, port: u.port, path: u.pathname, agent,
        headers: { 'content-type': 'text/xml', soapaction: '"' + w.urn + '#GetExternalIPAddress"' } }, (res) => {
        res.resume();
        res.on('end', () => { statuses[res.statusCode] = (statuses[res.statusCode] || 0) + 1; inflight--; pump(); });
      });
      req.on('error', () => { statuses.error = (statuses.error || 0) + 1; inflight--; pump(); });
      req.end(w.body);
    };
    const pump = () => {
      if (Date.now() >= end) {
        if (inflight === 0) {
          for (const s of idle) s.destroy();
          agent.destroy();
          setTimeout(() => parentPort.postMessage({ sent, statuses, refusedConns }), 50);
        }
        return;
      }
      while (inflight < w.conns * 2) one();
    };
    pump();`;
  return new Promise<{ sent: number; statuses: Record<string, number>; refusedConns: number }>((resolve, reject) => {
    const worker = new Worker(code, {
      eval: true,
      workerData: { url, from, ms, conns, extraConns, urn: IPC1, body: envelope('GetExternalIPAddress', IPC1, '') },
    });
    worker.once('message', (m: { sent: number; statuses: Record<string, number>; refusedConns: number }) => {
      resolve(m);
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

test('HTTP flood: 127.0.0.5 hammers SOAP and opens 200 connections for 3 s; 127.0.0.6 maps ports throughout; the flood is slowed, counted, logged once', async (t) => {
  const cap = captureLog();
  const h = await startUpnp({ extra: { log: cap.log } });
  const ctl = `${h.base}/igd1/ctl/IPConn`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: '127.0.0.6' });
  const map = async (port: number) => {
    const t0 = performance.now();
    const res = await send(ctl, {
      agent,
      headers: soapHeaders(IPC1, 'AddPortMapping'),
      body: envelope(
        'AddPortMapping',
        IPC1,
        `<NewRemoteHost></NewRemoteHost><NewExternalPort>${port}</NewExternalPort><NewProtocol>TCP</NewProtocol>` +
          `<NewInternalPort>${port}</NewInternalPort><NewInternalClient>127.0.0.6</NewInternalClient>` +
          '<NewEnabled>1</NewEnabled>' +
          `<NewPortMappingDescription>good</NewPortMappingDescription><NewLeaseDuration>600</NewLeaseDuration>`,
      ),
    });
    return { ok: res.status === 200, ms: performance.now() - t0 };
  };
  try {
    const calm: number[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await map(30000 + i);
      assert.ok(r.ok);
      calm.push(r.ms);
    }
    const floodRun = httpFlood(ctl, '127.0.0.5', 3000, 16, 200);
    await new Promise((r) => setTimeout(r, 300));
    const busy: number[] = [];
    let answered = 0;
    for (let i = 0; i < 40; i++) {
      const r = await map(31000 + i);
      if (r.ok) {
        answered++;
        busy.push(r.ms);
      }
      await new Promise((res) => setTimeout(res, 40));
    }
    const f = await floodRun;
    const limited = await counter(h.env.metrics, 'portd_rate_limited_total', { frontend: 'upnp' });
    const fig = (s: number[]) => `p50 ${percentile(s, 50).toFixed(2)} ms, p99 ${percentile(s, 99).toFixed(2)} ms`;
    t.diagnostic(`calm: 30/30 answered, ${fig(calm)}`);
    t.diagnostic(`under flood: ${answered}/40 answered, ${fig(busy)}`);
    t.diagnostic(
      `flood: ${f.sent} requests in 3 s, statuses ${JSON.stringify(f.statuses)}, ${f.refusedConns} extra ` +
        `connections closed, ${limited} rate-limited`,
    );
    assert.equal(answered, 40, 'every request of the other host was answered');
    assert.equal(h.env.table.list({ owner: '127.0.0.6' }).total, 70);
    // the flooder is slowed to its rate: a burst of 200 plus 50/s for the flood's 3 s (with slack),
    // each of its requests answered in the end (held, not refused: it has few in flight)
    assert.ok((f.statuses['200'] ?? 0) <= 200 + 50 * 4, `flooder got ${f.statuses['200']} answers`);
    assert.equal(f.statuses['200'], f.sent, 'held, not refused');
    assert.ok(f.refusedConns >= 200 - 16, 'connections past the per-host cap were closed');
    assert.ok(limited > 0);
    assert.equal(cap.matching(/over its request rate/).length, 1);
    assert.equal(cap.matching(/too many connections/).length, 1);
  } finally {
    agent.destroy();
    await h.close();
  }
});
