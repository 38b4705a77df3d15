import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkNetAdmin, hasCapability, parseCapabilities, readCapabilities } from '../../src/capabilities.js';

const status = (eff: string, amb: string, uid = '1000\t1000\t1000\t1000') =>
  `Name:\tnode\nUid:\t${uid}\nCapInh:\t0000000000001000\nCapPrm:\t${eff}\nCapEff:\t${eff}\n` +
  `CapBnd:\t000001ffffffffff\nCapAmb:\t${amb}\n`;

test('parses the Cap lines of /proc/self/status: CAP_NET_ADMIN is bit 12', () => {
  const s = parseCapabilities(status('0000000000001000', '0000000000001000'));
  assert.ok(s);
  assert.equal(s.effective, 0x1000n);
  assert.equal(s.euid, 1000);
  assert.equal(hasCapability(s.effective, 'NET_ADMIN'), true);
  assert.equal(hasCapability(s.effective, 'NET_RAW'), false);
  assert.deepEqual(checkNetAdmin(s), { ok: true });
});

test('a user without CAP_NET_ADMIN, or with it but not ambient, is told what to do', () => {
  const none = checkNetAdmin(parseCapabilities(status('0000000000000000', '0000000000000000')));
  assert.equal(none.ok, false);
  assert.equal(!none.ok && none.problem, 'not_effective');
  assert.match(!none.ok ? none.message : '', /CAP_NET_ADMIN/);
  assert.match(!none.ok ? none.hint : '', /AmbientCapabilities=CAP_NET_ADMIN/);
  const notAmbient = checkNetAdmin(parseCapabilities(status('0000000000001000', '0000000000000000')));
  assert.equal(!notAmbient.ok && notAmbient.problem, 'not_ambient');
  // root needs no ambient set
  const root = checkNetAdmin(parseCapabilities(status('000001ffffffffff', '0000000000000000', '0\t0\t0\t0')));
  assert.deepEqual(root, { ok: true });
});

test('garbage or missing lines give null, and null is reported, never thrown', () => {
  assert.equal(parseCapabilities(''), null);
  assert.equal(parseCapabilities(status('zz', '0')), null);
  assert.equal(checkNetAdmin(null).ok, false);
  assert.ok(readCapabilities('/proc/self/status'));
  assert.equal(readCapabilities('/nonexistent/status'), null);
});
