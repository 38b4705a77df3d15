/**
 * The admin app of a running portd is built at its first connection (issue 17, footprint): the port is
 * bound at start, the first request is answered whole (also when it arrives during the build), later
 * ones by the same server, and the process metrics exist from the first scrape on.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/index.js';
import { startPortd } from '../../src/main.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function config(dir: string, listen: string) {
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
admin: { listen: "${listen}" }
`);
}

describe('the admin app, built at the first connection', () => {
  it('binds at start, builds on the first request, answers it and the next; process metrics from the first scrape', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-admin-lazy-'));
    dirs.push(dir);
    const portd = await startPortd(config(dir, '127.0.0.1:0'), pino({ level: 'silent' }));
    try {
      assert.ok(portd.admin.port > 0);
      // nothing built yet: the process metrics are not registered
      assert.equal(portd.metrics.registry.getSingleMetric('portd_process_process_resident_memory_bytes'), undefined);
      // the port is bound: a TCP connection is accepted before anything is built
      await new Promise<void>((resolve, reject) => {
        const s = createConnection({ host: '127.0.0.1', port: portd.admin.port }, () => {
          s.destroy();
          resolve();
        });
        s.once('error', reject);
      });
      const base = `http://127.0.0.1:${portd.admin.port}`;
      // two requests at once while the app is being built: both wait and are answered
      const [m, st] = await Promise.all([fetch(`${base}/metrics`), fetch(`${base}/api/v1/status`)]);
      assert.equal(m.status, 200);
      const text = await m.text();
      assert.match(text, /^portd_process_process_resident_memory_bytes \d+/m);
      assert.match(text, /^# TYPE portd_requests_total counter/m);
      assert.equal(st.status, 200);
      const status = (await st.json()) as { frontends: { name: string; listening: string[] }[] };
      assert.deepEqual(status.frontends.find((f) => f.name === 'admin')?.listening, [`127.0.0.1:${portd.admin.port}`]);
      // later requests go straight to the built server
      const again = await fetch(`${base}/readyz`);
      assert.equal(again.status, 200);
    } finally {
      await portd.close();
    }
    // closed: the port is free again
    await new Promise<void>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(portd.admin.port, '127.0.0.1', () => s.close(() => resolve()));
    });
  });

  it('a liveness probe is answered at once without building the app; a forged Host still meets the guard', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-admin-lazy-'));
    dirs.push(dir);
    const portd = await startPortd(config(dir, '127.0.0.1:0'), pino({ level: 'silent' }));
    try {
      const base = `http://127.0.0.1:${portd.admin.port}`;
      // building the app takes 1-2 s idle and 4-6 s on a loaded machine (the faults lab's first /healthz,
      // curl -m 5, on a full disk): the probe must not wait for it
      const t0 = performance.now();
      const h = await fetch(`${base}/healthz`);
      const ms = performance.now() - t0;
      assert.equal(h.status, 200);
      assert.deepEqual(await h.json(), { ok: true });
      assert.match(h.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal((await fetch(`${base}/healthz`, { method: 'HEAD' })).status, 200);
      const built = () =>
        portd.metrics.registry.getSingleMetric('portd_process_process_resident_memory_bytes') !== undefined;
      assert.equal(built(), false, `the probe built the app (${ms.toFixed(0)} ms)`);
      // a Host the guard refuses is not answered by the shortcut: the app is built and refuses it
      const forged = await new Promise<string>((resolve, reject) => {
        const s = createConnection({ host: '127.0.0.1', port: portd.admin.port }, () =>
          s.write('GET /healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n'),
        );
        let out = '';
        s.on('data', (d) => {
          out += d.toString();
        });
        s.once('end', () => resolve(out));
        s.once('error', reject);
        s.setTimeout(30_000, () => s.destroy(new Error('no answer')));
      });
      assert.match(forged, /^HTTP\/1\.1 421 [\s\S]*PORTD_ADMIN_FORBIDDEN_HOST/);
      assert.equal(built(), true);
      // built: the app's own /healthz answers
      const again = await fetch(`${base}/healthz`);
      assert.equal(again.status, 200);
      assert.deepEqual(await again.json(), { ok: true });
    } finally {
      await portd.close();
    }
  });

  it('a port in use is an error at start, naming admin.listen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-admin-lazy-'));
    dirs.push(dir);
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as { port: number }).port;
    try {
      await assert.rejects(startPortd(config(dir, `127.0.0.1:${port}`), pino({ level: 'silent' })), (e: Error) =>
        e.message.includes(`admin API cannot listen on 127.0.0.1:${port}`),
      );
    } finally {
      busy.close();
    }
  });

  it('closing before any connection frees the port', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-admin-lazy-'));
    dirs.push(dir);
    const portd = await startPortd(config(dir, '127.0.0.1:0'), pino({ level: 'silent' }));
    const port = portd.admin.port;
    await portd.close();
    await new Promise<void>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => s.close(() => resolve()));
    });
  });
});
