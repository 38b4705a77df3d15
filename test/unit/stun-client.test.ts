/**
 * The STUN client on 127.0.0.1 (test/lab/stun-server.mjs): RFC 8489 §6.2.1 retransmission bounded in count and
 * time, a name that does not resolve is a failed server and the next one is asked, an error response ends the
 * transaction at once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { createStunClient } from '../../src/dataplane/stun-client.js';
import { createMetrics } from '../../src/metrics.js';
// @ts-expect-error plain JavaScript test helper, no types
import { startStunServer } from '../lab/stun-server.mjs';

interface StunServer {
  port: number;
  requests: { from: string; port: number }[];
  close(): Promise<void>;
}
const log = pino({ level: 'silent' });

test('a silent server: Rc requests at rto, 2·rto, … then 16·rto of silence, one timeout', async () => {
  const silent = (await startStunServer({ mode: 'silent' })) as StunServer;
  const metrics = createMetrics();
  try {
    const client = createStunClient({
      servers: [`127.0.0.1:${silent.port}`],
      rtoMs: 20,
      transmissions: 3,
      log,
      metrics,
    });
    const t0 = performance.now();
    const o = await client.check();
    const ms = performance.now() - t0;
    assert.equal(o.ok, false);
    assert.equal(silent.requests.length, 3);
    // sent at 0, 20, 60; given up 16 × 20 ms after the last: ≈ 380 ms
    assert.ok(ms >= 370 && ms < 2000, `${ms} ms`);
    assert.match(await metrics.registry.metrics(), /^portd_stun_requests_total\{result="timeout"\} 1$/m);
  } finally {
    await silent.close();
  }
});

test('an unresolvable name and an error response fail their server; the next one answers', async () => {
  const error = (await startStunServer({ mode: 'error' })) as StunServer;
  const good = (await startStunServer({ reportAs: '198.51.100.7' })) as StunServer;
  const metrics = createMetrics();
  try {
    const client = createStunClient({
      servers: ['stun.example.invalid:3478', `127.0.0.1:${error.port}`, `127.0.0.1:${good.port}`],
      rtoMs: 500,
      transmissions: 7,
      log,
      metrics,
      // no DNS traffic from a test: the resolver is injected
      resolve: async (host) => {
        if (host === '127.0.0.1') return host;
        throw new Error(`getaddrinfo ENOTFOUND ${host}`);
      },
    });
    const t0 = performance.now();
    const o = await client.check();
    assert.ok(o.ok, JSON.stringify(o));
    assert.equal(o.mapped.address, '198.51.100.7');
    assert.equal(o.server, `127.0.0.1:${good.port}`);
    // the error response ended its transaction at once: no retransmission, no 39.5 s wait
    assert.equal(error.requests.length, 1);
    assert.ok(performance.now() - t0 < 2000);
    const text = await metrics.registry.metrics();
    for (const r of ['resolve_error', 'error_response', 'success'])
      assert.match(text, new RegExp(`^portd_stun_requests_total\\{result="${r}"\\} 1$`, 'm'));
  } finally {
    await error.close();
    await good.close();
  }
});
