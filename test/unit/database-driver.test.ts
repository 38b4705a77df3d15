// database.driver (issue 18 item 2): postgres validates, and portd opens the PostgreSQL storage first thing: a server
// it cannot reach is refused before the kernel or any SQLite file is touched, naming database.url. The runs on a
// real server: test/integration/postgres-portd.test.ts.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
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

test('portd on database.driver postgres with no server there: PORTD_DATABASE_OPEN naming database.url', async (t) => {
  // a scratch state dir: nothing of the host's /var/lib/portd is touched; port 1 on loopback refuses at once
  const dir = mkdtempSync(join(tmpdir(), 'portd-dbdriver-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = validateConfig({
    stateDir: dir,
    dataplane: { driver: 'memory' },
    database: { driver: 'postgres', url: 'postgresql://portd@127.0.0.1:1/portd', path: join(dir, 'portd.sqlite') },
  });
  await assert.rejects(startPortd(config, pino({ level: 'silent' })), (e: Error & { code?: string; hint?: string }) => {
    assert.equal(e.code, 'PORTD_DATABASE_OPEN');
    assert.match(e.message, /cannot open database postgresql:\/\/portd@127\.0\.0\.1:1\/portd/);
    assert.match(String(e.hint ?? ''), /database\.url/);
    return true;
  });
  // SQLite was not opened on the way: no file at database.path
  assert.equal(existsSync(join(dir, 'portd.sqlite')), false);
});
