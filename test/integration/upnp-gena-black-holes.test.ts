/**
 * GENA black holes on loopback (issue 14): subscribers whose callbacks accept and never answer,
 * never accept at all (a listener whose backlog is full: the SYN is dropped, connect hangs), or
 * dribble their answer a byte at a time, must not delay a well-behaved subscriber's events, and
 * cannot make portd hold more than its bounded number of NOTIFYs open.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { counter, until } from '../fuzz/mutate.js';
import { IPC1, soap, startUpnp, type UpnpHarness } from './upnp-helpers.js';

interface Event {
  seq: number;
  at: number;
  body: string;
}

async function goodSubscriber(host: string) {
  const events: Event[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      events.push({ seq: Number(req.headers['seq']), at: performance.now(), body });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    events,
    url: `http://${host}:${(server.address() as AddressInfo).port}/cb`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** accepts every connection and never answers; counts what is open at once */
async function blackHole(host: string) {
  const open = new Set<net.Socket>();
  let peak = 0;
  let accepted = 0;
  const server = net.createServer((sock) => {
    accepted++;
    open.add(sock);
    peak = Math.max(peak, open.size);
    sock.on('error', () => {});
    sock.on('close', () => open.delete(sock));
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    host,
    url: `http://${host}:${(server.address() as AddressInfo).port}/cb`,
    open,
    get peak() {
      return peak;
    },
    get accepted() {
      return accepted;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of open) s.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * a listener that never accepts: python's listen(0) and no accept(); two connections fill its
 * queue, after which the kernel drops SYNs and a connect neither completes nor fails
 */
async function neverAccepts(host: string): Promise<{ url: string; close(): void } | null> {
  let child: ChildProcess;
  try {
    child = spawn(
      'python3',
      [
        '-c',
        'import socket,sys,time\n' +
          `s=socket.socket()\ns.bind(('${host}',0))\ns.listen(0)\n` +
          'print(s.getsockname()[1],flush=True)\nsys.stdin.read()',
      ],
      { stdio: ['pipe', 'pipe', 'ignore'] },
    );
  } catch {
    return null;
  }
  const port = await new Promise<number | null>((resolve) => {
    const t = setTimeout(() => resolve(null), 5000);
    child.on('error', () => {
      clearTimeout(t);
      resolve(null);
    });
    child.stdout!.once('data', (d: Buffer) => {
      clearTimeout(t);
      resolve(Number(d.toString().trim()));
    });
  });
  if (!port) {
    child.kill('SIGKILL');
    return null;
  }
  const fillers = [net.connect(port, host), net.connect(port, host)];
  for (const f of fillers) f.on('error', () => {});
  await new Promise((r) => setTimeout(r, 100));
  return {
    url: `http://${host}:${port}/cb`,
    close() {
      for (const f of fillers) f.destroy();
      child.stdin!.end();
      child.kill('SIGKILL');
    },
  };
}

function subscribe(h: UpnpHarness, callback: string, from: string): Promise<{ status: number; sid: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(`${h.base}/igd1/evt/IPConn`);
    http
      .request(
        {
          method: 'SUBSCRIBE',
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          localAddress: from,
          agent: false,
          headers: { CALLBACK: `<${callback}>`, NT: 'upnp:event', TIMEOUT: 'Second-600' },
        },
        (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, sid: String(res.headers['sid'] ?? '') });
        },
      )
      .on('error', reject)
      .end();
  });
}

const addMapping = (h: UpnpHarness, port: number) =>
  soap(`${h.base}/igd1/ctl/IPConn`, IPC1, 'AddPortMapping', {
    NewRemoteHost: '',
    NewExternalPort: port,
    NewProtocol: 'TCP',
    NewInternalPort: port,
    NewInternalClient: '127.0.0.1',
    NewEnabled: 1,
    NewPortMappingDescription: 'g',
    NewLeaseDuration: 600,
  });

test('192 black-holed subscriptions from 12 hosts (plus 16 whose connect never completes): the good subscriber gets its event while they all still hang; NOTIFYs outstanding stay bounded', async (t) => {
  // black holes time out after 8 s: the good subscriber's event must come long before that
  const h = await startUpnp({
    upnp: { maxSubscriptions: 256 },
    extra: {
      limits: { requestsPerSecond: 0, soapRequestsPerSecond: 0 },
      gena: { coalesceMs: 5, minIntervalMs: 0, notifyTimeoutMs: 8000 },
    },
  });
  const good = await goodSubscriber('127.0.0.1');
  const holes = await Promise.all(Array.from({ length: 12 }, (_, i) => blackHole(`127.0.0.${60 + i}`)));
  const never = await neverAccepts('127.0.0.90');
  try {
    assert.equal((await subscribe(h, good.url, '127.0.0.1')).status, 200);
    assert.ok(await until(() => good.events.length === 1, 3000), 'initial event');
    for (const hole of holes) {
      const r = await Promise.all(Array.from({ length: 16 }, () => subscribe(h, hole.url, hole.host)));
      assert.ok(r.every((x) => x.status === 200));
    }
    if (never) for (let i = 0; i < 16; i++) assert.equal((await subscribe(h, never.url, '127.0.0.90')).status, 200);
    else t.diagnostic('python3 not available: no never-accepting listener');
    // the black holes' initial NOTIFYs are out and hanging
    assert.ok(await until(() => holes.reduce((n, x) => n + x.open.size, 0) >= 8, 3000));
    const t0 = performance.now();
    assert.equal((await addMapping(h, 30100)).status, 200);
    assert.ok(await until(() => good.events.length === 2, 3000), 'the good subscriber got its change event');
    const ms = good.events[1]!.at - t0;
    assert.equal(good.events[1]!.seq, 1);
    assert.match(good.events[1]!.body, /<PortMappingNumberOfEntries>1<\/PortMappingNumberOfEntries>/);
    // ...while every black-holed subscription is still waiting for its deadline
    assert.equal(
      await counter(h.env.metrics, 'portd_gena_total', { kind: 'dropped' }),
      0,
      'no black hole has timed out yet',
    );
    const open = holes.reduce((n, x) => n + x.open.size, 0);
    const peak = holes.reduce((n, x) => n + x.peak, 0);
    t.diagnostic(
      `good event after ${ms.toFixed(1)} ms; black holes: ${open} connections open, peak per host ` +
        `${Math.max(...holes.map((x) => x.peak))}, accepted ${holes.reduce((n, x) => n + x.accepted, 0)}`,
    );
    // bounded: subscriptions that never answered share 16 of the 32 slots, at most 4 per host
    assert.ok(peak <= 16, `${peak} NOTIFYs held open by black holes at once`);
    assert.ok(
      holes.every((x) => x.peak <= 4),
      'at most 4 per subscriber host',
    );
    // a second change: still prompt, coalesced for the hanging ones
    assert.equal((await addMapping(h, 30101)).status, 200);
    assert.ok(await until(() => good.events.length === 3, 3000), 'the next event too');
  } finally {
    await h.close();
    never?.close();
    for (const x of holes) await x.close();
    await good.close();
  }
});

test('a callback that dribbles its answer a byte at a time is cut at the NOTIFY deadline and its subscription dropped', async () => {
  const h = await startUpnp({ extra: { gena: { coalesceMs: 5, notifyTimeoutMs: 600 } } });
  let closedAt = 0;
  let openedAt = 0;
  const timers = new Set<NodeJS.Timeout>();
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    openedAt = performance.now();
    sock.on('error', () => {});
    const status = 'HTTP/1.1 200 OK\r\nX-Pad: ' + 'x'.repeat(200);
    let i = 0;
    // a byte every 100 ms: an idle timeout never fires, only a deadline does
    const t = setInterval(() => {
      if (i < status.length && !sock.destroyed) sock.write(status[i++]!);
    }, 100);
    timers.add(t);
    sock.on('close', () => {
      clearInterval(t);
      closedAt = performance.now();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cb`;
    const sub = await subscribe(h, url, '127.0.0.1');
    assert.equal(sub.status, 200);
    assert.ok(await until(() => closedAt > 0, 4000), 'portd closed the dribbling connection');
    const held = closedAt - openedAt;
    assert.ok(held < 2000, `held ${held.toFixed(0)} ms for a 600 ms deadline`);
    assert.ok(
      await until(async () => (await counter(h.env.metrics, 'portd_gena_total', { kind: 'dropped' })) === 1, 2000),
      'subscription dropped',
    );
  } finally {
    for (const t of timers) clearInterval(t);
    await h.close();
    for (const s of socks) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
