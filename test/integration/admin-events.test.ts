import assert from 'node:assert/strict';
import http from 'node:http';
import { after, describe, it } from 'node:test';
import { TOKEN, makeAdmin, pcpReq } from '../unit/admin-helpers.js';

const fixtures: { dispose(): Promise<void> }[] = [];
after(async () => {
  for (const f of fixtures) {
    try {
      await f.dispose();
    } catch {
      /* closed already */
    }
  }
});

interface SseMessage {
  event: string | null;
  data: string | null;
  comment: string | null;
}

/** a minimal SSE reader over a real socket: collects messages, resolves waiters */
function openStream(port: number, path: string, headers: Record<string, string> = {}) {
  const messages: SseMessage[] = [];
  const waiters: { pred: (m: SseMessage) => boolean; resolve: (m: SseMessage) => void }[] = [];
  let status = 0;
  let contentType = '';
  let ended = false;
  let buf = '';
  const endWaiters: (() => void)[] = [];
  let destroy = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers }, (res) => {
      status = res.statusCode ?? 0;
      contentType = String(res.headers['content-type']);
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          for (const m of parseBlock(block)) {
            messages.push(m);
            for (const w of [...waiters])
              if (w.pred(m)) {
                waiters.splice(waiters.indexOf(w), 1);
                w.resolve(m);
              }
          }
        }
      });
      res.on('end', () => {
        ended = true;
        for (const w of endWaiters) w();
      });
      resolve();
    });
    req.on('error', reject);
    destroy = () => req.destroy();
  });
  const stream = {
    ready,
    messages,
    get status() {
      return status;
    },
    get contentType() {
      return contentType;
    },
    get ended() {
      return ended;
    },
    destroy: () => destroy(),
    next(pred: (m: SseMessage) => boolean, timeoutMs = 5000): Promise<SseMessage> {
      const have = messages.find(pred);
      if (have) return Promise.resolve(have);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`no matching SSE message within ${timeoutMs} ms; got ${JSON.stringify(messages)}`)),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (m) => {
            clearTimeout(t);
            resolve(m);
          },
        });
      });
    },
    whenEnded(timeoutMs = 5000): Promise<void> {
      if (ended) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('stream did not end')), timeoutMs);
        endWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
  return stream;
}

function parseBlock(block: string): SseMessage[] {
  const out: SseMessage[] = [];
  let event: string | null = null;
  let data: string | null = null;
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) out.push({ event: null, data: null, comment: line.slice(1).trim() });
    else if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('data: ')) data = (data === null ? '' : data + '\n') + line.slice(6);
  }
  if (event !== null || data !== null) out.push({ event, data, comment: null });
  return out;
}

describe('admin API: Server-Sent Events over a real socket', () => {
  it('streams granted and revoked events with the actor, sends heartbeats, filters by source, and ends cleanly on close', async () => {
    const f = await makeAdmin({ heartbeatMs: 50 });
    fixtures.push(f);
    const { port } = await f.server.listen();
    assert.ok(port > 0);
    const all = openStream(port, '/api/v1/events');
    const onlyStatic = openStream(port, '/api/v1/events?source=static');
    await Promise.all([all.ready, onlyStatic.ready]);
    assert.equal(all.status, 200);
    assert.match(all.contentType, /^text\/event-stream/);
    await all.next((m) => m.comment?.startsWith('heartbeat') ?? false);

    const g = await f.table.request(pcpReq());
    assert.ok(g.ok);
    const granted = await all.next((m) => m.event === 'granted');
    const e = JSON.parse(granted.data!) as {
      type: string;
      leaseId: string;
      lease: { externalPort: number; source: string };
      actor: string;
    };
    assert.equal(e.type, 'granted');
    assert.equal(e.leaseId, g.lease.id);
    assert.equal(e.lease.externalPort, 4000);
    assert.equal(e.actor, 'pcp:192.168.77.11');

    const del = await fetch(`http://127.0.0.1:${port}/api/v1/leases/${g.lease.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(del.status, 200);
    const revoked = JSON.parse((await all.next((m) => m.event === 'revoked')).data!) as {
      leaseId: string;
      actor: string;
    };
    assert.equal(revoked.leaseId, g.lease.id);
    assert.equal(revoked.actor, 'admin:ops');

    const add = await fetch(`http://127.0.0.1:${port}/api/v1/leases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({
        protocol: 'tcp',
        externalPort: 8080,
        internalAddress: '192.168.77.5',
        description: 'web',
      }),
    });
    assert.equal(add.status, 201);
    const st = JSON.parse((await onlyStatic.next((m) => m.event === 'granted')).data!) as { source: string };
    assert.equal(st.source, 'static');
    // the static-only stream never saw the pcp events
    assert.ok(!onlyStatic.messages.some((m) => m.data?.includes('"source":"pcp"')));

    await f.server.close();
    await Promise.all([all.whenEnded(), onlyStatic.whenEnded()]);
  });

  it('with auth required the stream needs the token (Bearer or the login cookie)', async () => {
    const f = await makeAdmin({ requireAuth: true, heartbeatMs: 50 });
    fixtures.push(f);
    const { port } = await f.server.listen();
    const anon = openStream(port, '/api/v1/events');
    await anon.ready;
    assert.equal(anon.status, 401);
    const login = await fetch(`http://127.0.0.1:${port}/api/v1/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: TOKEN }),
    });
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const s = openStream(port, '/api/v1/events', { cookie });
    await s.ready;
    assert.equal(s.status, 200);
    await f.table.request(pcpReq());
    await s.next((m) => m.event === 'granted');
    await f.server.close();
    await s.whenEnded();
  });

  it('a client that disconnects is unsubscribed from the lease table', async () => {
    const f = await makeAdmin({ heartbeatMs: 20 });
    fixtures.push(f);
    // count live subscriptions by wrapping the table's on()
    let live = 0;
    const on = f.table.on.bind(f.table);
    f.table.on = (fn) => {
      live++;
      const off = on(fn);
      return () => {
        live--;
        off();
      };
    };
    const { port } = await f.server.listen();
    const s = openStream(port, '/api/v1/events');
    await s.ready;
    await s.next((m) => m.comment?.startsWith('heartbeat') ?? false);
    assert.equal(live, 1);
    s.destroy();
    for (let i = 0; i < 100 && live > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(live, 0);
    const g = await f.table.request(pcpReq());
    assert.ok(g.ok);
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  });
});
