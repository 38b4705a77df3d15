import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { startAdmin } from '../../src/admin/index.js';
import { parseConfig } from '../../src/config/index.js';
import { createMemoryDataplane } from '../../src/dataplane/memory.js';
import { createSystemClock } from '../../src/leases/clock.js';
import { createLeaseTable } from '../../src/leases/table.js';
import { createMetrics } from '../../src/metrics.js';
import { createPolicy } from '../../src/policy/policy.js';

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('startAdmin (the wiring main.ts uses)', () => {
  it('listens on admin.listen, lists itself among front-ends, answers readyz from the database and the dataplane', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-admin-start-'));
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const config = parseConfig(`
interfaces: { wan: lo, lan: [lo] }
externalAddress: 192.0.2.1
listenAddresses: [127.0.0.1]
stateDir: ${dir}
database: { path: ${join(dir, 'portd.sqlite')} }
dataplane: { driver: memory }
admin: { listen: "127.0.0.1:0" }
`);
    const log = pino({ level: 'silent' });
    let healthy = true;
    const mem = createMemoryDataplane();
    const dataplane = {
      ...mem,
      health: () =>
        healthy ? mem.health() : { ok: false, lastReconcileAt: null, lastDrift: 0, detail: 'nft exited 1' },
    };
    const metrics = createMetrics();
    const clock = createSystemClock();
    const leases = createLeaseTable({
      database: config.database,
      dataplane,
      policy: createPolicy(config.policy),
      clock,
      log,
      metrics,
      externalAddress: '192.0.2.1',
    });
    cleanup.push(() => leases.close());
    const admin = await startAdmin({
      config,
      leases,
      dataplane,
      metrics,
      log,
      clock,
      startedAt: Date.now(),
      version: '9.9.9',
      env: {},
      pcpEpoch: () => 7,
      frontends: () => [{ name: 'pcp', listening: ['127.0.0.1:5351'] }],
    });
    cleanup.push(() => admin.close());
    assert.equal(admin.address, '127.0.0.1');
    assert.ok(admin.port > 0);
    assert.equal(admin.authRequired, false);
    // loopback too: a token for changes, generated into the state directory, readable by portd's user only
    assert.equal(admin.token.origin, 'generated');
    assert.equal(admin.token.path, join(dir, 'admin-token'));
    assert.equal(statSync(join(dir, 'admin-token')).mode & 0o777, 0o600);
    assert.equal(readFileSync(join(dir, 'admin-token'), 'utf8').trim(), admin.token.value);
    const base = `http://127.0.0.1:${admin.port}`;
    const status = (await (await fetch(`${base}/api/v1/status`)).json()) as {
      version: string;
      pcpEpoch: number;
      frontends: { name: string; listening: string[] }[];
      externalAddress: string;
    };
    assert.equal(status.version, '9.9.9');
    assert.equal(status.pcpEpoch, 7);
    assert.equal(status.externalAddress, '192.0.2.1');
    assert.deepEqual(status.frontends, [
      { name: 'pcp', listening: ['127.0.0.1:5351'] },
      { name: 'admin', listening: [`127.0.0.1:${admin.port}`] },
    ]);
    const ok = await fetch(`${base}/readyz`);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { ok: true, detail: 'database ok, dataplane memory ok' });
    healthy = false;
    const bad = await fetch(`${base}/readyz`);
    assert.equal(bad.status, 503);
    assert.deepEqual(await bad.json(), { ok: false, detail: 'dataplane (memory): nft exited 1' });
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  });
});
