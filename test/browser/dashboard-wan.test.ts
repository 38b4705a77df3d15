/**
 * The dashboard's WAN panel (issue 16 part 3), in Debian's chromium: a running portd whose STUN server (on
 * 127.0.0.1, test/lab/stun-server.mjs) sees another address shows "double NAT yes" in the header and the WAN
 * address, its kind, the learned address and what clients are told in the panel.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { parseConfig } from '../../src/config/index.js';
import { startPortd } from '../../src/main.js';
// @ts-expect-error plain JavaScript test helper, no types
import { startStunServer } from '../lab/stun-server.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// under CI a missing browser is a failure (the suite would pass vacuously), elsewhere a visible skip
const skip =
  existsSync(CHROMIUM) || process.env.CI === 'true' ? false : `${CHROMIUM} not installed (apt-get install -y chromium)`;

let browser: Browser | null = null;
const dirs: string[] = [];
before(async () => {
  if (skip) return;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    timeout: 60_000,
  });
});
after(async () => {
  await browser?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('dashboard WAN panel', { skip }, () => {
  it('shows double NAT, the WAN address and kind, the STUN-learned address and what clients are told', async () => {
    const stun = (await startStunServer({ reportAs: '198.51.100.20' })) as { port: number; close(): Promise<void> };
    const dir = mkdtempSync(join(tmpdir(), 'portd-dash-wan-'));
    dirs.push(dir);
    const portd = await startPortd(
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
stun: { servers: ["127.0.0.1:${stun.port}"], interval: 10 }
`),
      pino({ level: 'silent' }),
    );
    try {
      // the first check is under way at start: wait for its answer before the page loads the status
      const end = Date.now() + 5000;
      while (portd.wan.snapshot().stun.publicAddress === null && Date.now() < end)
        await new Promise((r) => setTimeout(r, 50));
      const page = await browser!.newPage({ viewport: { width: 1280, height: 860 } });
      page.setDefaultTimeout(10_000);
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${portd.admin.port}/`);
      await page.waitForSelector('#live.on');
      await page.waitForFunction(() => document.querySelector('#s-doublenat')?.textContent === 'yes');
      assert.equal(await page.getAttribute('#s-doublenat', 'class'), 'err');
      const panel = (await page.textContent('#wan')) ?? '';
      assert.match(panel, /address: 192\.0\.2\.1 \(documentation, 192\.0\.2\.0\/24, RFC 5737 TEST-NET-1\)/);
      assert.match(panel, new RegExp(`STUN: 198\\.51\\.100\\.20:\\d+ seen by 127\\.0\\.0\\.1:${stun.port}`));
      assert.match(panel, /double NAT: yes: .*sees 198\.51\.100\.20: another NAT is in front/);
      assert.match(panel, /clients are told: 192\.0\.2\.1 \(the WAN address: the mappings are there\)/);
      assert.deepEqual(errors, []);
      await page.close();
    } finally {
      await portd.close();
      await stun.close();
    }
  });
});
