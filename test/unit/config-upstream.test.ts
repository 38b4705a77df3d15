/** `upstream` (src/config/upstream.ts): defaults, accepted values, and errors that name the key */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, validateConfig } from '../../src/config/index.js';

function issuesOf(doc: unknown): string[] {
  try {
    validateConfig(doc, 'test');
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map((i) => `${i.path}: ${i.message}`);
    throw e;
  }
  return [];
}

describe('config upstream', () => {
  test('off by default, with the documented defaults', () => {
    assert.deepEqual(validateConfig({}).upstream, { mode: 'off', server: null, timeout: 1500, probeInterval: 60 });
  });

  test('every mode and an IPv4 server are accepted', () => {
    for (const mode of ['off', 'auto', 'pcp', 'natpmp', 'upnp'])
      assert.equal(validateConfig({ upstream: { mode, server: '100.64.0.1' } }).upstream?.mode, mode);
    assert.equal(validateConfig({ upstream: { mode: 'pcp', server: '100.64.0.1' } }).upstream?.server, '100.64.0.1');
  });

  test('errors name the key', () => {
    assert.match(issuesOf({ upstream: { mode: 'pmp' } }).join('\n'), /^upstream\.mode: must be one of off, auto/m);
    assert.match(issuesOf({ upstream: { server: 'router.lan' } }).join('\n'), /^upstream\.server: must be null/m);
    assert.match(issuesOf({ upstream: { timeout: 5 } }).join('\n'), /^upstream\.timeout: /m);
    assert.match(issuesOf({ upstream: { probeInterval: 0 } }).join('\n'), /^upstream\.probeInterval: /m);
    assert.match(issuesOf({ upstream: { servr: null } }).join('\n'), /^upstream\.servr: /m);
  });
});
