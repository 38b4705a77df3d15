// database.driver (issue 18 item 2): postgres validates, and portd refuses to start on it until the writer drives
// the PostgreSQL store, before touching the kernel or any database.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { validateConfig } from '../../src/config/validate.js';
import { startPortd } from '../../src/main.js';

test('database.driver postgres with a url validates', () => {
  const c = validateConfig({ database: { driver: 'postgres', url: 'postgresql://portd@db.example/portd' } });
  assert.equal(c.database.driver, 'postgres');
  assert.equal(c.database.url, 'postgresql://portd@db.example/portd');
});

test('portd refuses database.driver postgres at start: not yet supported, naming the key', async (t) => {
  // a scratch state dir: were the refusal missing, nothing of the host's /var/lib/portd is touched
  const dir = mkdtempSync(join(tmpdir(), 'portd-dbdriver-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = validateConfig({
    stateDir: dir,
    dataplane: { driver: 'memory' },
    database: { driver: 'postgres', url: 'postgresql://portd@127.0.0.1:1/portd', path: join(dir, 'portd.sqlite') },
  });
  await assert.rejects(startPortd(config, pino({ level: 'silent' })), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'PORTD_CONFIG_INVALID');
    assert.match(e.message, /database\.driver: postgres is not yet supported/);
    return true;
  });
});
