/**
 * The dashboard's triggers panel in a real browser (Debian chromium via playwright-core) against
 * the running daemon (memory driver): rules listed with their state, live updates when a rule
 * fires and when a second host is refused, firing from the panel. Skips visibly without chromium
 * (a failure under CI=true).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { chromium, type Browser } from 'playwright-core';
import { parseConfig } from '../../src/config/index.js';
import { startPortd, type Portd } from '../../src/main.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const skip =
  existsSync(CHROMIUM) || process.env['CI'] === 'true'
    ? false
    : `${CHROMIUM} not installed (apt-get install -y chromium)`;
const A = '127.0.0.11';
const B = '127.0.0.12';

describe('dashboard triggers panel in chromium', { skip, timeout: 90_000 }, () => {
  let browser: Browser | null = null;
  let portd: Portd | null = null;
  let dir = '';
  let base = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portd-trig-dash-'));
    portd = await startPortd(
      parseConfig(`
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
  - name: game
    match: { protocol: udp, ports: "6112" }
    open: [{ protocol: tcp, ports: "6113-6119" }]
    idleTimeout: 300
`),
      pino({ level: 'silent' }),
    );
    base = `http://127.0.0.1:${portd.admin.port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });
  after(async () => {
    await browser?.close();
    await portd?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows each rule with its state and counters, live, and fires from the panel', async () => {
    const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
    // changes need the admin token on loopback too: log the browser in (the session cookie) first
    const token = readFileSync(join(dir, 'admin-token'), 'utf8').trim();
    const auth = { authorization: `Bearer ${token}` };
    assert.equal((await page.request.post(`${base}/api/v1/login`, { data: { token } })).status(), 200);
    await page.goto(base + '/');
    const row = page.locator('#trigger-table tr[data-trigger="game"]');
    await row.waitFor({ timeout: 10_000 });
    assert.equal(await row.locator('[data-state]').textContent(), 'idle');
    assert.match((await row.textContent()) ?? '', /udp 6112 -> tcp 6113-6119/);
    assert.match((await row.textContent()) ?? '', /\(config\)/);

    // a firing elsewhere (API) shows up through the event stream
    const fire = (host: string) =>
      fetch(`${base}/api/v1/triggers/game/fire`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth },
        body: JSON.stringify({ host }),
      });
    assert.equal((await fire(A)).status, 200);
    await page.waitForFunction(
      () =>
        document
          .querySelector('#trigger-table tr[data-trigger="game"] [data-state]')
          ?.textContent?.startsWith('held by 127.0.0.11'),
      null,
      { timeout: 10_000 },
    );
    assert.equal((await fire(B)).status, 409);
    await page.waitForFunction(
      () =>
        /held by trigger 127\.0\.0\.11/.test(
          document.querySelector('#trigger-table tr[data-trigger="game"]')?.textContent ?? '',
        ),
      null,
      { timeout: 10_000 },
    );
    assert.match((await row.textContent()) ?? '', /1 \/ 0 \/ 1/);
    // the lease is in the table with the trigger colour
    await page.locator('#lease-rows tr[data-source="trigger"]').first().waitFor({ timeout: 10_000 });

    // firing from the panel (after the holder's opening is revoked by the admin)
    const lease = ((await (await fetch(`${base}/api/v1/leases?source=trigger`)).json()) as { leases: { id: string }[] })
      .leases[0]!;
    assert.equal((await fetch(`${base}/api/v1/leases/${lease.id}`, { method: 'DELETE', headers: auth })).status, 200);
    await page.waitForFunction(
      () => document.querySelector('#trigger-table tr[data-trigger="game"] [data-state]')?.textContent === 'idle',
      null,
      { timeout: 10_000 },
    );
    page.once('dialog', (d) => {
      void d.accept(B);
    });
    await page.locator('button[data-fire="game"]').click();
    await page.waitForFunction(
      () =>
        document
          .querySelector('#trigger-table tr[data-trigger="game"] [data-state]')
          ?.textContent?.startsWith('held by 127.0.0.12'),
      null,
      { timeout: 10_000 },
    );
    assert.match((await page.locator('#triggers-msg').textContent()) ?? '', /game opened for 127\.0\.0\.12/);
    if (process.env['TRIGGER_SCREENSHOT'])
      await page.locator('#triggers').screenshot({ path: process.env['TRIGGER_SCREENSHOT'] });
    await page.close();
  });
});
