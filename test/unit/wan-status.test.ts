/**
 * The WAN side (issue 16 part 3): the double-NAT verdict from the WAN address's kind and STUN, and the one
 * reporting decision (what UPnP GetExternalIPAddress and NAT-PMP tell clients), on a fixed clock.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { classifyAddress } from '../../src/common/address-kind.js';
import { validateConfig, ConfigError } from '../../src/config/index.js';
import { parseStunServer } from '../../src/config/stun.js';
import { createWanStatus, type WanStatusSnapshot } from '../../src/dataplane/wan-status.js';
import { createFixedClock } from '../../src/leases/clock.js';
import { checkDoubleNat } from '../../src/doctor/checks.js';
import type { DoctorFacts } from '../../src/doctor/types.js';

function make(stunEnabled: boolean) {
  const clock = createFixedClock();
  const lines: { level: number; msg: string; doubleNat?: string }[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const wan = createWanStatus({ clock, log, stunEnabled, stunMaxAgeMs: 900_000 });
  const changes: WanStatusSnapshot[] = [];
  wan.onChange((s) => changes.push(s));
  return { clock, wan, lines, changes };
}

test('classification: RFC 1918, RFC 6598 shared, documentation, public', () => {
  assert.equal(classifyAddress('10.1.2.3').kind, 'private');
  assert.equal(classifyAddress('172.31.255.1').kind, 'private');
  assert.equal(classifyAddress('192.168.1.1').kind, 'private');
  assert.equal(classifyAddress('100.64.77.2').kind, 'shared');
  assert.equal(classifyAddress('100.128.0.1').kind, 'public');
  assert.equal(classifyAddress('203.0.113.1').kind, 'documentation');
  assert.equal(classifyAddress('8.8.8.8').kind, 'public');
});

test('a private or shared WAN address is double NAT without STUN; the lab WAN (documentation) counts as public', () => {
  const { wan, changes, lines } = make(false);
  wan.setWanAddress('100.64.77.2');
  let s = wan.snapshot();
  assert.equal(s.doubleNat, 'yes');
  assert.equal(s.kind, 'shared');
  assert.match(s.why, /100\.64\.0\.0\/10.*carrier-grade NAT/);
  wan.setWanAddress('192.168.178.20');
  assert.match(wan.snapshot().why, /private.*another NAT/);
  wan.setWanAddress('203.0.113.2');
  s = wan.snapshot();
  assert.equal(s.doubleNat, 'no');
  assert.equal(s.kind, 'documentation');
  assert.match(s.why, /documentation .*counted as public.*no STUN servers configured/);
  // one log line and one listener call per change of the verdict: yes (first), then no; not for yes → yes
  assert.deepEqual(
    changes.map((c) => c.doubleNat),
    ['yes', 'no'],
  );
  assert.deepEqual(
    lines.filter((l) => /double NAT/.test(l.msg)).map((l) => `${l.msg}: ${l.doubleNat}`),
    ['double NAT detected: yes', 'double NAT state changed: no'],
  );
});

test('with STUN: unknown until an answer; same address = no, another = yes; stale or for an old WAN address = unknown', () => {
  const { clock, wan } = make(true);
  assert.equal(wan.snapshot().doubleNat, 'unknown'); // no WAN address
  wan.setWanAddress('198.51.100.10');
  assert.equal(wan.snapshot().doubleNat, 'unknown');
  wan.stunFailed('stun.example:3478: no answer to 7 requests');
  assert.match(wan.snapshot().why, /no STUN server has answered.*no answer to 7/);
  wan.stunLearned({ server: 'stun.example:3478', address: '198.51.100.10', port: 40000 });
  let s = wan.snapshot();
  assert.equal(s.doubleNat, 'no');
  assert.equal(s.stun.publicAddress, '198.51.100.10');
  assert.equal(s.stun.learnedAt, clock.now());
  wan.stunLearned({ server: 'stun.example:3478', address: '192.0.2.77', port: 1 });
  s = wan.snapshot();
  assert.equal(s.doubleNat, 'yes');
  assert.match(s.why, /sees 192\.0\.2\.77: another NAT/);
  // 15 minutes later the answer is too old to count
  clock.advance(900_001);
  assert.equal(wan.snapshot().doubleNat, 'unknown');
  assert.equal(wan.snapshot().stun.publicAddress, null);
  // an answer learned for the previous WAN address does not count for the new one
  wan.stunLearned({ server: 'stun.example:3478', address: '192.0.2.77', port: 1 });
  wan.setWanAddress('198.51.100.11');
  assert.equal(wan.snapshot().doubleNat, 'unknown');
});

test('reporting: the WAN address, never the STUN address; the upstream public address while chaining holds mappings', () => {
  const { wan } = make(true);
  assert.equal(wan.reportedAddress(), '0.0.0.0');
  wan.setWanAddress('100.64.77.2');
  wan.stunLearned({ server: '203.0.113.1:3478', address: '203.0.113.2', port: 5000 });
  assert.equal(wan.snapshot().doubleNat, 'yes');
  assert.equal(wan.reportedAddress(), '100.64.77.2');
  assert.match(wan.snapshot().reportedBecause, /the mappings are there/);
  wan.setUpstreamAddress('203.0.113.2');
  assert.equal(wan.reportedAddress(), '203.0.113.2');
  assert.equal(wan.snapshot().upstreamAddress, '203.0.113.2');
  assert.match(wan.snapshot().reportedBecause, /upstream chaining/);
  wan.setUpstreamAddress(null);
  assert.equal(wan.reportedAddress(), '100.64.77.2');
});

test('config stun: defaults off; servers checked with the key named in the error', () => {
  const d = validateConfig({});
  assert.deepEqual(d.stun, { servers: [], interval: 300, rto: 500, transmissions: 7 });
  const c = validateConfig({ stun: { servers: ['127.0.0.1:3478', 'stun.example.net'], interval: 60 } });
  assert.deepEqual(c.stun?.servers, ['127.0.0.1:3478', 'stun.example.net:3478']);
  assert.throws(
    () => validateConfig({ stun: { servers: ['127.0.0.1:99999', '[::1]:3478', 42], interval: 5, srv: 1 } }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      const text = e.message;
      for (const k of ['stun.servers[0]', 'stun.servers[1]', 'stun.servers[2]', 'stun.interval', 'stun.srv'])
        assert.ok(text.includes(k), `${k} in: ${text}`);
      return true;
    },
  );
  assert.throws(() => validateConfig({ stun: { servers: '127.0.0.1:3478' } }), /stun\.servers.*list/);
  assert.equal(parseStunServer('1.2.3'), null);
  assert.deepEqual(parseStunServer('192.0.2.1:19302'), { host: '192.0.2.1', port: 19302 });
});

test('doctor: one double-NAT line with what to do, from the same verdict (STUN when configured)', () => {
  const f = (addresses: string[], stun: DoctorFacts['stun'], config: Record<string, unknown> = {}) =>
    checkDoubleNat({ config: validateConfig(config), wan: { addresses }, stun } as unknown as DoctorFacts);
  const cgn = f(['100.64.77.2'], null);
  assert.equal(cgn.status, 'warn');
  assert.match(cgn.message, /^double NAT: .*100\.64\.0\.0\/10.*carrier-grade NAT/);
  assert.match(cgn.fix!, /ask the ISP .*chain each mapping to the upstream NAT/);
  const home = f(['192.168.178.20'], null);
  assert.match(home.fix!, /DMZ/);
  const pub = f(['198.51.100.10'], null);
  assert.equal(pub.status, 'ok');
  assert.match(pub.message, /no STUN servers configured/);
  const cfg = { stun: { servers: ['192.0.2.53:3478'] } };
  const seen = f(['198.51.100.10'], { ok: true, server: '192.0.2.53:3478', address: '203.0.113.9', port: 1 }, cfg);
  assert.equal(seen.status, 'warn');
  assert.match(seen.message, /STUN server 192\.0\.2\.53:3478 sees 203\.0\.113\.9/);
  const same = f(['198.51.100.10'], { ok: true, server: '192.0.2.53:3478', address: '198.51.100.10', port: 1 }, cfg);
  assert.equal(same.status, 'ok');
  const silent = f(['198.51.100.10'], { ok: false, error: '192.0.2.53:3478: no answer to 3 requests' }, cfg);
  assert.equal(silent.status, 'warn');
  assert.match(silent.message, /unknown.*no answer to 3 requests/);
  assert.match(silent.fix!, /stun\.servers/);
});
