/**
 * Hostile input against the admin API (issue 9 §5): huge and deep JSON bodies, wrong types,
 * unknown fields, prototype pollution, path traversal and junk in ids, control characters in free
 * text; every refusal answered in portd's error format, counted, and logged once per client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatLeases } from '../../src/admin/cli-commands.js';
import { counter } from '../fuzz/mutate.js';
import { streamBigBody } from '../helpers/big-body.js';
import { TOKEN, makeAdmin, pcpReq } from '../unit/admin-helpers.js';

/** changes need the token, on loopback too */
const auth = { authorization: `Bearer ${TOKEN}` };

const GOOD = {
  protocol: 'tcp',
  externalPort: 8443,
  internalAddress: '192.168.77.20',
  internalPort: 443,
  description: 'nas',
};

async function start() {
  const a = await makeAdmin({ requireAuth: false });
  const { port } = await a.server.listen();
  const base = `http://127.0.0.1:${port}`;
  const post = async (body: string, contentType = 'application/json') => {
    const res = await fetch(`${base}/api/v1/leases`, {
      method: 'POST',
      headers: { 'content-type': contentType, ...auth },
      body,
    });
    return { status: res.status, json: (await res.json()) as { code?: string; field?: string; message?: string } };
  };
  return { a, port, base, post };
}

/** streams a `total`-byte JSON body to the admin API's lease route (see streamBigBody) */
function bigJson(port: number, total: number, chunked: boolean) {
  return streamBigBody({
    port,
    head:
      `POST /api/v1/leases HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${TOKEN}\r\n` +
      'Content-Type: application/json\r\n',
    total,
    chunked,
    fill: 'a',
    prefix: '{"description":"',
  });
}

test('huge JSON (10 MB, Content-Length and chunked, 6 at once) and deeply nested JSON: 413/400 at once, nothing created, memory bounded', async (t) => {
  const { a, port, post } = await start();
  try {
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => bigJson(port, 10 * 1024 * 1024, i % 2 === 1)),
    );
    const rssDelta = (process.memoryUsage().rss - rss0) / 1e6;
    t.diagnostic(
      `written before the server answered/closed: ${results.map((r) => (r.written / 1e6).toFixed(1)).join(', ')} ` +
        `MB; RSS delta ${rssDelta.toFixed(1)} MB`,
    );
    for (const r of results) {
      assert.equal(r.statusLine, 'HTTP/1.1 413 Payload Too Large');
      assert.ok(r.written < 10 * 1024 * 1024);
    }
    assert.ok(rssDelta < 64, `RSS grew ${rssDelta.toFixed(1)} MB`);
    const deepArray = await post('['.repeat(30_000) + ']'.repeat(30_000));
    assert.equal(deepArray.status, 400);
    assert.equal(deepArray.json.code, 'PORTD_ADMIN_BAD_REQUEST');
    const deepObject = await post('{"a":'.repeat(5000) + '1' + '}'.repeat(5000));
    assert.equal(deepObject.status, 400);
    assert.equal(a.table.countActive().total, 0);
    assert.equal(
      await counter(a.metrics, 'portd_bad_input_total', { frontend: 'admin', kind: 'FST_ERR_CTP_BODY_TOO_LARGE' }),
      6,
    );
  } finally {
    await a.dispose();
  }
});

test('wrong types are refused, never coerced: "8443", [8443], 8443.5, true, {} for ports; ["tcp"] for the protocol', async () => {
  const { a, post } = await start();
  try {
    const cases: [string, unknown][] = [
      ['externalPort', '8443'],
      ['externalPort', [8443]],
      ['externalPort', 8443.5],
      ['externalPort', true],
      ['externalPort', {}],
      ['externalPort', null],
      ['internalPort', '443'],
      ['protocol', ['tcp']],
      ['protocol', 6],
      ['internalAddress', ['192.168.77.20']],
      ['internalAddress', 3232255252],
      ['lifetime', '3600'],
      ['lifetime', [3600]],
      ['description', 42],
      ['description', ['nas']],
      ['remoteAddress', ['198.51.100.7']],
      ['externalPortEnd', '8444'],
    ];
    for (const [key, value] of cases) {
      const r = await post(JSON.stringify({ ...GOOD, [key]: value }));
      assert.equal(r.status, 400, `${key}: ${JSON.stringify(value)}`);
      assert.equal(r.json.code, 'PORTD_ADMIN_BAD_REQUEST');
      assert.equal(r.json.field, key);
    }
    for (const body of ['null', '[]', '"x"', '42', 'true', '{"protocol":', '\u0000']) {
      assert.equal((await post(body)).status, 400, body);
    }
    assert.equal((await post('<xml/>', 'application/xml')).status, 415);
    assert.equal(a.table.countActive().total, 0, 'nothing was created from a coerced value');
    // the same forward with the right types works
    assert.equal((await post(JSON.stringify(GOOD))).status, 201);
  } finally {
    await a.dispose();
  }
});

test('unknown fields and prototype pollution are refused; Object.prototype untouched', async () => {
  const { a, post } = await start();
  try {
    for (const extra of [
      '{"evil":1,',
      '{"__proto__":{"polluted":1},',
      '{"constructor":{"prototype":{"polluted":1}},',
      '{"owner":"10.0.0.1",',
      '{"source":"upnp",',
      '{"readOnly":true,',
    ]) {
      const r = await post(JSON.stringify(GOOD).replace('{', extra));
      assert.equal(r.status, 400, extra);
      assert.equal(r.json.code, 'PORTD_ADMIN_BAD_REQUEST');
    }
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    assert.equal(a.table.countActive().total, 0);
  } finally {
    await a.dispose();
  }
});

test("path traversal and junk in lease ids: 400/404 in portd's format, never 500; leases and files untouched", async () => {
  const { a, base } = await start();
  try {
    const held = await a.table.request(pcpReq());
    assert.ok(held.ok);
    const victim = join(a.dir, 'victim.txt');
    writeFileSync(victim, 'x');
    const ids = [
      '..%2F..%2Fetc%2Fpasswd',
      '..%2f..%2f..%2f' + encodeURIComponent(victim),
      '%2e%2e%2f%2e%2e',
      '..\\..\\windows',
      '%00',
      '%00' + held.lease.id,
      encodeURIComponent(`${held.lease.id}' OR '1'='1`),
      encodeURIComponent(`${held.lease.id}%`),
      '*',
      '%25',
      '%',
      '%E0%A4%A',
      'a'.repeat(129),
      'a'.repeat(5000),
      encodeURIComponent('../' + held.lease.id),
      encodeURIComponent(held.lease.id.toUpperCase()),
      encodeURIComponent(' ' + held.lease.id),
    ];
    for (const id of ids) {
      for (const method of ['GET', 'DELETE']) {
        const res = await fetch(`${base}/api/v1/leases/${id}`, { method, headers: auth });
        assert.ok([400, 404, 414].includes(res.status), `${method} ${id.slice(0, 40)} → ${res.status}`);
        const body = (await res.json()) as { code: string };
        assert.match(body.code, /^PORTD_/, "portd's error format, also for the router's own errors");
      }
    }
    assert.equal(a.table.get(held.lease.id)?.state, 'active', 'the lease whose id was played with is still there');
    assert.ok(existsSync(victim));
    const internalErrors = await counter(a.metrics, 'portd_requests_total', { frontend: 'admin', result: '500' });
    assert.equal(internalErrors, 0);
  } finally {
    await a.dispose();
  }
});

test('control characters in free text are refused by the API, and what a LAN device stored is shown escaped by `portd leases`', async () => {
  const { a, base, post } = await start();
  try {
    const r = await post(JSON.stringify({ ...GOOD, description: 'nas\u001b]0;owned\u0007\u001b[2J' }));
    assert.equal(r.status, 400);
    assert.equal(r.json.field, 'description');
    const held = await a.table.request(pcpReq({ description: 'game\u001b[2J\u202eevil\r\nfake line' }));
    assert.ok(held.ok);
    const revoke = await fetch(`${base}/api/v1/leases/${held.lease.id}?reason=${encodeURIComponent('x\u001b[31m')}`, {
      method: 'DELETE',
      headers: auth,
    });
    assert.equal(revoke.status, 400);
    const out = formatLeases([held.lease], Date.now());
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the test looks for control characters
    assert.doesNotMatch(out, /[\u0000-\u0009\u000b-\u001f\u007f\u202e]/, 'no control character reaches the terminal');
    assert.match(out, /game\\x1b\[2J\\u202eevil\\x0d\\x0afake line/);
    assert.equal(out.trimEnd().split('\n').length, 2, 'a header and one row: the description cannot add lines');
  } finally {
    await a.dispose();
  }
});

test('200 bad requests from one client: every one counted, one log line', async () => {
  const { a, post } = await start();
  try {
    const before = a.lines.length;
    for (let i = 0; i < 200; i++) await post(JSON.stringify({ ...GOOD, externalPort: i % 2 ? 'x' : 70000 + i }));
    const counted = await counter(a.metrics, 'portd_bad_input_total', { frontend: 'admin' });
    assert.equal(counted, 200);
    const logged = a.lines.slice(before).filter((l) => /bad request/.test(String(l['msg'])));
    assert.equal(logged.length, 1);
    assert.equal(await counter(a.metrics, 'portd_requests_total', { frontend: 'admin', result: '400' }), 200);
  } finally {
    await a.dispose();
  }
});
