import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogGate } from '../../src/common/log-gate.js';
import { createRateLimiter, natPmpCodeFor, parseConntrackLine, pcpCodeFor } from '../../src/frontends/pcp/index.js';
import type { Refusal } from '../../src/leases/types.js';
import { NatPmpResultCode, ResultCode } from '../../protocols/pcp/index.js';

test('token bucket: a burst of one second, then the sustained rate; clients are independent', () => {
  let now = 0;
  const rl = createRateLimiter({ rate: 10, now: () => now });
  let ok = 0;
  for (let i = 0; i < 30; i++) if (rl.take('a')) ok++;
  assert.equal(ok, 10);
  assert.equal(rl.take('b'), true, 'another client has its own bucket');
  now += 500;
  ok = 0;
  for (let i = 0; i < 30; i++) if (rl.take('a')) ok++;
  assert.equal(ok, 5, 'half a second refills half the bucket');
});

test('token bucket: rate 0 means no limit; idle buckets are forgotten', () => {
  let now = 0;
  const off = createRateLimiter({ rate: 0, now: () => now });
  for (let i = 0; i < 1000; i++) assert.equal(off.take('x'), true);
  const rl = createRateLimiter({ rate: 1, now: () => now, maxClients: 3 });
  for (const k of ['a', 'b', 'c']) rl.take(k);
  assert.equal(rl.take('d'), false, 'full table of active clients: newcomers wait');
  now += 2000;
  assert.equal(rl.take('d'), true, 'after the others went idle');
  assert.equal(rl.size(), 1);
});

test('log gate: one line per key per interval, counting the suppressed', () => {
  let now = 0;
  const g = createLogGate({ intervalMs: 1000, now: () => now });
  assert.equal(g.pass('a'), 0);
  assert.equal(g.pass('a'), null);
  assert.equal(g.pass('a'), null);
  assert.equal(g.pass('b'), 0);
  now = 1000;
  assert.equal(g.pass('a'), 2);
});

test('refusal → PCP result codes (documented in docs/pcp.md)', () => {
  const r = (reason: Refusal['reason']): Refusal =>
    (reason === 'conflict'
      ? {
          ok: false,
          reason,
          holder: { id: 'x', source: 'upnp', owner: '1.2.3.4', externalPort: 1, externalPortEnd: 1 },
        }
      : { ok: false, reason, detail: '' }) as Refusal;
  assert.equal(pcpCodeFor(r('conflict'), true), ResultCode.CANNOT_PROVIDE_EXTERNAL);
  assert.equal(pcpCodeFor(r('no_port'), true), ResultCode.CANNOT_PROVIDE_EXTERNAL);
  assert.equal(pcpCodeFor(r('no_port'), false), ResultCode.NO_RESOURCES);
  assert.equal(pcpCodeFor(r('quota'), false), ResultCode.USER_EX_QUOTA);
  assert.equal(pcpCodeFor(r('not_authorized'), false), ResultCode.NOT_AUTHORIZED);
  assert.equal(pcpCodeFor(r('denied'), false), ResultCode.NOT_AUTHORIZED);
  assert.equal(pcpCodeFor(r('reserved'), false), ResultCode.CANNOT_PROVIDE_EXTERNAL);
  assert.equal(pcpCodeFor(r('unavailable'), false), ResultCode.NO_RESOURCES);
  assert.equal(pcpCodeFor(r('invalid'), false), ResultCode.MALFORMED_REQUEST);
  assert.equal(natPmpCodeFor(r('quota')), NatPmpResultCode.OUT_OF_RESOURCES);
  assert.equal(natPmpCodeFor(r('not_authorized')), NatPmpResultCode.NOT_AUTHORIZED);
});

test('conntrack -L line: the reply tuple gives the external endpoint', () => {
  const line =
    'tcp      6 431999 ESTABLISHED src=192.168.77.11 dst=203.0.113.5 sport=40000 dport=80 src=203.0.113.5 ' +
    'dst=203.0.113.1 sport=80 dport=40123 [ASSURED] mark=0 use=1';
  assert.deepEqual(parseConntrackLine(line), { externalAddress: '203.0.113.1', externalPort: 40123, timeout: 431999 });
  const udp =
    'udp      17 29 src=192.168.77.11 dst=203.0.113.5 sport=5000 dport=53 [UNREPLIED] src=203.0.113.5 ' +
    'dst=203.0.113.1 sport=53 dport=5000 mark=0 use=1';
  assert.deepEqual(parseConntrackLine(udp), { externalAddress: '203.0.113.1', externalPort: 5000, timeout: 29 });
  assert.equal(parseConntrackLine('conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.'), null);
});
