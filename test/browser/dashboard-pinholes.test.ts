/**
 * The dashboard with IPv6 pinholes (issue 15 item 2), in Debian's chromium: a pinhole arriving over the
 * event stream shows an IPv6 chip and bracketed endpoints, the family select narrows the table, and the
 * add-forward form creates a static pinhole from an IPv6 internal address.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { TOKEN, makeAdmin, pcpReq } from '../unit/admin-helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// under CI a missing browser is a failure (the suite would pass vacuously), elsewhere a visible skip
const skip =
  existsSync(CHROMIUM) || process.env.CI === 'true' ? false : `${CHROMIUM} not installed (apt-get install -y chromium)`;

const fixtures: { dispose(): Promise<void> }[] = [];
let browser: Browser | null = null;
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
  for (const f of fixtures) await f.dispose();
});

describe('dashboard with IPv6 pinholes', { skip }, () => {
  it('shows a pinhole live with bracketed endpoints, filters by family, adds a static pinhole by form', async () => {
    const f = await makeAdmin();
    fixtures.push(f);
    const { port } = await f.server.listen();
    const page = await browser!.newPage({ viewport: { width: 1280, height: 860 } });
    page.setDefaultTimeout(10_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForSelector('#live.on');

    const v4 = await f.table.request(pcpReq());
    const v6 = await f.table.request({
      family: 6,
      source: 'pcp',
      identity: 'internal',
      protocol: 'tcp',
      owner: '2001:db8:77::10',
      internalAddress: '2001:db8:77::10',
      internalPort: 8443,
      allowOtherPort: true,
      lifetime: 3600,
      nonce: 'ab'.repeat(12),
      description: 'web6',
    });
    assert.ok(v4.ok && v6.ok);
    const row6 = page.locator(`tr[data-id="${v6.lease.id}"]`);
    await row6.waitFor();
    assert.equal(await row6.getAttribute('data-family'), '6');
    assert.match(
      (await row6.textContent()) ?? '',
      /IPv6.*tcp.*\[2001:db8:77::10\]:8443.*\[2001:db8:77::10\]:8443.*web6/,
    );
    await page.locator(`tr[data-id="${v4.lease.id}"]`).waitFor();

    // the family select: pinholes only, then IPv4 only
    await page.selectOption('#family', '6');
    await page.locator(`tr[data-id="${v4.lease.id}"]`).waitFor({ state: 'detached' });
    assert.equal(await page.locator('#lease-rows tr').count(), 1);
    await page.selectOption('#family', '4');
    await row6.waitFor({ state: 'detached' });
    assert.equal(await page.locator('#lease-rows tr').count(), 1);
    await page.selectOption('#family', '');

    // a static pinhole from the form (the change asks for the token on loopback)
    await page.fill('#forward-form input[name=ports]', '443');
    await page.fill('#forward-form input[name=internalAddress]', '2001:DB8:77::20');
    await page.click('#forward-submit');
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#login-token', TOKEN);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#forward-msg.ok');
    assert.match((await page.textContent('#forward-msg')) ?? '', /\[2001:db8:77::20\]:443/);
    const added = f.table.list({ family: 6, source: 'static' }).leases;
    assert.deepEqual(
      added.map((l) => [l.internalAddress, l.internalPort]),
      [['2001:db8:77::20', 443]],
    );
    assert.deepEqual(errors, []);
  });
});
