/**
 * The warm-up before `portd ready` (src/warmup.ts, the `warmup` key): the request paths really run (every scratch
 * request succeeds), and nothing of them is left where anyone could see it: no lease, event or request in the
 * running portd's table and metrics, no file, no timer or socket left open.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/index.js';
import { startPortd } from '../../src/main.js';
import { warmUp } from '../../src/warmup.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function config(dir: string, warmup: number, frontends = true) {
  return parseConfig(`
interfaces: { wan: lo, lan: [lo] }
externalAddress: 192.0.2.1
listenAddresses: [127.0.0.1]
stateDir: ${dir}
warmup: ${warmup}
database: { path: ${join(dir, 'portd.sqlite')} }
dataplane: { driver: memory }
upnp: { enabled: ${frontends}, httpPort: 0, ssdp: false }
pcp: { enabled: ${frontends}, port: 0 }
natpmp: { enabled: ${frontends} }
admin: { listen: "127.0.0.1:0" }
`);
}

/** handles and timers of this process, by kind (what a warm-up could leave behind) */
const resources = () => process.getActiveResourcesInfo().sort().join(',');

describe('warm-up before ready', () => {
  it('runs PCP, NAT-PMP and SOAP requests that all succeed, and leaves no file, timer or socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-warmup-'));
    dirs.push(dir);
    const before = resources();
    const r = await warmUp({ config: config(dir, 64), requests: 64, budgetMs: 60_000 });
    // 64 MAPs, 32 renewals, 64 deletes; 16 NAT-PMP MAPs and their deletes; 64 SOAP adds and deletes
    assert.equal(r.pcp, 64 + 32 + 64 + 32);
    assert.equal(r.soap, 64);
    assert.equal(r.succeeded, r.pcp + r.soap);
    assert.deepEqual(readdirSync(dir), []);
    assert.equal(resources(), before);
  });

  it('does nothing for front-ends that are off, nor when the key is 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-warmup-'));
    dirs.push(dir);
    assert.deepEqual(await warmUp({ config: config(dir, 64, false), requests: 64, budgetMs: 60_000 }), {
      pcp: 0,
      soap: 0,
      succeeded: 0,
      ms: 0,
    });
    assert.equal((await warmUp({ config: config(dir, 0), requests: 0, budgetMs: 60_000 })).pcp, 0);
  });

  it('stops at its time budget', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-warmup-'));
    dirs.push(dir);
    const r = await warmUp({ config: config(dir, 100_000), requests: 100_000, budgetMs: 50 });
    assert.ok(r.pcp > 0 && r.pcp < 100_000, `${r.pcp} requests`);
    assert.ok(r.ms < 5_000, `${r.ms} ms`);
  });

  it('a portd started with it holds no lease, event or counted request from it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-warmup-'));
    dirs.push(dir);
    const lines: { msg: string; pcp?: number; succeeded?: number }[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const portd = await startPortd(config(dir, 64), log);
    try {
      const warmed = lines.find((l) => l.msg === 'request paths warmed up');
      assert.ok(warmed && warmed.pcp! > 0 && warmed.succeeded! > 0, JSON.stringify(warmed));
      assert.equal(portd.leases.countActive().total, 0);
      assert.equal(portd.leases.list({ state: 'all' }).total, 0);
      assert.ok(!lines.some((l) => l.msg === 'lease granted'));
      const requests = await portd.metrics.registry.getSingleMetric('portd_requests_total')!.get();
      assert.deepEqual(requests.values, []);
      assert.ok(!existsSync(join(dir, ':memory:')));
    } finally {
      await portd.close();
    }
  });
});
