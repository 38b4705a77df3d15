/**
 * `/api/v1/triggers` on the real wiring (startPortd, memory driver, loopback): config rules listed
 * read-only, API rules created / changed / deleted and kept across a restart, firing through the API
 * (the memory driver has no packets), one host at a time with the refusal visible in the event
 * stream and the metrics, SIGHUP-style reload.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/index.js';
import type { Config } from '../../src/config/types.js';
import { startPortd, type Portd } from '../../src/main.js';

const log = pino({ level: process.env['TEST_LOG'] ?? 'silent' });
const A = '127.0.0.11';
const B = '127.0.0.12';
const dirs: string[] = [];
const running: Portd[] = [];
const tokens = new Map<string, string>();
after(async () => {
  for (const p of running) {
    try {
      await p.close();
    } catch {
      /* closed */
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function config(dir: string, triggers: string): Config {
  return parseConfig(`
interfaces: { wan: lo, lan: [lo] }
externalAddress: 192.0.2.1
listenAddresses: [127.0.0.1]
stateDir: ${dir}
database: { path: ${join(dir, 'portd.sqlite')} }
dataplane: { driver: memory }
upnp: { enabled: false }
pcp: { enabled: false }
natpmp: { enabled: false }
admin: { listen: "127.0.0.1:0" }
triggers:
${triggers}
`);
}

const FILE_RULES = `
  - name: game
    match: { protocol: udp, ports: "6112" }
    open: [{ protocol: tcp, ports: "6113-6119" }]
    idleTimeout: 120
  - preset: irc-ident
`;

async function start(dir: string, triggers = FILE_RULES) {
  const portd = await startPortd(config(dir, triggers), log);
  running.push(portd);
  const base = `http://127.0.0.1:${portd.admin.port}`;
  // changes need the admin token on loopback too: portd generated it into the state directory
  tokens.set(base, readFileSync(join(dir, 'admin-token'), 'utf8').trim());
  return { portd, base };
}

async function call<T = Record<string, unknown>>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const auth = { authorization: `Bearer ${tokens.get(base) ?? ''}` };
  const r = await fetch(base + path, {
    method,
    ...(body === undefined
      ? { headers: auth }
      : { headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify(body) }),
  });
  return { status: r.status, body: (await r.json()) as T };
}

interface View {
  name: string;
  origin: string;
  readOnly: boolean;
  state: string;
  holder: string | null;
  until: number | null;
  leases: string[];
  counters: { fired: number; renewed: number; refused: number };
  lastRefusal: { host: string; holder: { owner: string } | null } | null;
  summary: string;
  preset?: string;
  idleTimeout: number;
  error: string | null;
}

describe('triggers admin API on the running daemon (memory driver)', () => {
  it('lists config rules read-only, manages API rules, fires, refuses a second host visibly, persists', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-trig-api-'));
    dirs.push(dir);
    const { portd, base } = await start(dir);

    const list = await call<{ triggers: View[] }>(base, 'GET', '/api/v1/triggers');
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.triggers.map((t) => [t.name, t.origin, t.readOnly, t.state]),
      [
        ['game', 'config', true, 'idle'],
        ['irc-ident', 'config', true, 'idle'],
      ],
    );
    assert.equal(list.body.triggers[0]!.summary, 'udp 6112 -> tcp 6113-6119');
    assert.equal(list.body.triggers[1]!.preset, 'irc-ident');

    // config rules are read-only
    assert.equal(
      (
        await call(base, 'PUT', '/api/v1/triggers/game', {
          match: { protocol: 'udp', ports: '6112' },
          open: [{ protocol: 'tcp', ports: '6113' }],
        })
      ).status,
      403,
    );
    const del = await call<{ code: string }>(base, 'DELETE', '/api/v1/triggers/game');
    assert.equal(del.status, 403);
    assert.equal(del.body.code, 'PORTD_TRIGGER_READ_ONLY');

    // validation with key paths
    const bad = await call<{ code: string; field: string; issues: { path: string; message: string }[] }>(
      base,
      'POST',
      '/api/v1/triggers',
      {
        name: 'x',
        match: { protocol: 'udp', ports: '6112' },
        open: [{ protocol: 'tcp', ports: '6115-6120' }],
        idleTimeout: 0,
      },
    );
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'PORTD_ADMIN_BAD_REQUEST');
    const paths = bad.body.issues.map((i) => i.path).sort();
    assert.deepEqual(paths, ['idleTimeout', 'match.ports', 'open[0].ports']);
    assert.equal(
      (
        await call(base, 'POST', '/api/v1/triggers', {
          name: 'game',
          match: { protocol: 'tcp', ports: '1' },
          open: [{ protocol: 'tcp', ports: '2000' }],
        })
      ).status,
      409,
    );

    // create, fire, second host refused with the holder named
    const created = await call<{ trigger: View }>(base, 'POST', '/api/v1/triggers', {
      name: 'voice',
      match: { protocol: 'tcp', ports: '4099' },
      open: [
        { protocol: 'tcp', ports: '5191' },
        { protocol: 'udp', ports: '5191-5195' },
      ],
      idleTimeout: 60,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.trigger.origin, 'api');

    const events: string[] = [];
    const ac = new AbortController();
    const sse = fetch(`${base}/api/v1/events?source=trigger`, { signal: ac.signal })
      .then(async (r) => {
        const reader = r.body!.getReader();
        const dec = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          events.push(dec.decode(value));
        }
      })
      .catch(() => {
        /* aborted */
      });
    await new Promise((r) => setTimeout(r, 50));

    const fired = await call<{
      result: string;
      leases: { source: string; rule: string; owner: string; externalPort: number; externalPortEnd: number }[];
      trigger: View;
    }>(base, 'POST', '/api/v1/triggers/voice/fire', { host: A });
    assert.equal(fired.status, 200, JSON.stringify(fired.body));
    assert.equal(fired.body.result, 'granted');
    assert.deepEqual(
      fired.body.leases.map((l) => [l.source, l.rule, l.owner, l.externalPort, l.externalPortEnd]),
      [
        ['trigger', 'voice', A, 5191, 5191],
        ['trigger', 'voice', A, 5191, 5195],
      ],
    );
    assert.equal(fired.body.trigger.state, 'held');
    assert.equal(fired.body.trigger.holder, A);
    assert.ok(fired.body.trigger.until! > Date.now() + 50_000);

    const refused = await call<{ code: string; holder: { owner: string; source: string } }>(
      base,
      'POST',
      '/api/v1/triggers/voice/fire',
      { host: B },
    );
    assert.equal(refused.status, 409);
    assert.equal(refused.body.code, 'PORTD_LEASE_CONFLICT');
    assert.equal(refused.body.holder.owner, A);
    const again = await call<{ result: string }>(base, 'POST', '/api/v1/triggers/voice/fire', { host: A });
    assert.equal(again.body.result, 'renewed');

    const one = await call<{ trigger: View }>(base, 'GET', '/api/v1/triggers/voice');
    const {
      fired: f,
      renewed: rn,
      refused: rf,
      lastHost,
    } = one.body.trigger.counters as View['counters'] & { lastHost: string };
    assert.deepEqual([f, rn, rf, lastHost], [1, 1, 1, A]);
    assert.equal(one.body.trigger.lastRefusal?.host, B);
    assert.equal(one.body.trigger.lastRefusal?.holder?.owner, A);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /portd_trigger_firings_total\{rule="voice",result="conflict"\} 1/);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await sse;
    const stream = events.join('');
    assert.match(stream, /event: granted/);
    assert.match(
      stream,
      new RegExp(
        `event: refused\\ndata: .*"owner":"${B.replace(/\./g, '\\.')}".*held by trigger lease \\w+ of ` +
          `${A.replace(/\./g, '\\.')}`,
      ),
    );

    // host not allowed / unknown rule / bad host
    const fr = await call<{ code: string }>(base, 'POST', '/api/v1/triggers/nope/fire', { host: A });
    assert.equal(fr.status, 404);
    assert.equal((await call(base, 'POST', '/api/v1/triggers/voice/fire', { host: 'x' })).status, 400);

    // PUT: change the idle timeout (same ports: the opening stays)
    const put = await call<{ trigger: View }>(base, 'PUT', '/api/v1/triggers/voice', {
      match: { protocol: 'tcp', ports: '4099' },
      open: [
        { protocol: 'tcp', ports: '5191' },
        { protocol: 'udp', ports: '5191-5195' },
      ],
      idleTimeout: 90,
    });
    assert.equal(put.status, 200);
    assert.equal(put.body.trigger.idleTimeout, 90);
    assert.equal(put.body.trigger.holder, A);

    // a restart keeps the API rule, its counters and its opening
    await portd.close();
    running.splice(running.indexOf(portd), 1);
    const second = await start(dir);
    const after2 = await call<{ trigger: View }>(second.base, 'GET', '/api/v1/triggers/voice');
    assert.equal(after2.status, 200);
    assert.equal(after2.body.trigger.idleTimeout, 90);
    assert.equal(after2.body.trigger.counters.fired, 1);
    assert.equal(after2.body.trigger.holder, A);

    // a reload that adds a file rule overlapping the API rule: the file wins, the API rule is reported, not in force
    await second.portd.reload(
      config(
        dir,
        FILE_RULES +
          `
  - name: voip
    match: { protocol: tcp, ports: "4100" }
    open: [{ protocol: udp, ports: "5193" }]
`,
      ),
    );
    const l2 = await call<{ triggers: View[] }>(second.base, 'GET', '/api/v1/triggers');
    const voice = l2.body.triggers.find((t) => t.name === 'voice')!;
    assert.equal(voice.state, 'error');
    assert.match(voice.error ?? '', /overlaps udp 5193 opened by trigger "voip"/);
    assert.equal(voice.holder, null, 'its opening closed');
    const leases = await call<{ leases: { rule: string; state: string; endReason: string }[] }>(
      second.base,
      'GET',
      '/api/v1/leases?source=trigger&state=ended',
    );
    assert.ok(leases.body.leases.filter((l) => l.rule === 'voice').every((l) => l.endReason === 'revoked'));
    // deleting the stored rule works
    assert.equal((await call(second.base, 'DELETE', '/api/v1/triggers/voice')).status, 200);
    assert.equal((await call(second.base, 'GET', '/api/v1/triggers/voice')).status, 404);
    // the OpenAPI document lists the routes
    const doc = await call<{ paths: Record<string, unknown> }>(second.base, 'GET', '/api/v1/openapi.json');
    assert.ok(doc.body.paths['/api/v1/triggers'] && doc.body.paths['/api/v1/triggers/{name}/fire']);
  });
});
