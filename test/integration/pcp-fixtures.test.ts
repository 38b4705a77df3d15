/**
 * Replays the bytes real NAT-PMP clients sent (test/fixtures/natpmp-client-packets.json, captured by
 * test/fixtures/capture-natpmp.ts from natpmpc and @achingbrain/nat-port-mapper) to portd's server on
 * loopback, in order, and checks each answer and the lease table after it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXTERNAL, startPcp, udpClient, type Harness, type UdpClient } from './pcp-helpers.js';

const fixtures = JSON.parse(
  readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../fixtures/natpmp-client-packets.json'), 'utf8'),
) as { packets: { origin: string; step: string; hex: string }[] };
const packet = (origin: RegExp, step: RegExp, n = 0): Buffer => {
  const all = fixtures.packets.filter((p) => origin.test(p.origin) && step.test(p.step));
  const p = all[n];
  assert.ok(p, `fixture ${origin} ${step} #${n}`);
  return Buffer.from(p.hex, 'hex');
};

describe('captured NAT-PMP client packets, replayed', () => {
  let h: Harness;
  let c: UdpClient;
  before(async () => {
    h = await startPcp({
      policy: {
        lifetime: {
          pcp: { min: 120, max: 86400 },
          natpmp: { min: 120, max: 7200 },
          upnp: { min: 1, max: 604800 },
          trigger: { min: 1, max: 86400 },
        },
      },
    });
    c = await udpClient();
  });
  after(async () => {
    c.close();
    await h.close();
  });

  test('natpmpc: external address request, then a TCP map for 4000 with 3600 s', async () => {
    const addr = await c.ask(packet(/^natpmpc/, /tcp 3600/, 0), h.port);
    assert.equal(addr.length, 12);
    assert.deepEqual([addr[0], addr[1], addr.readUInt16BE(2)], [0, 128, 0]);
    assert.equal([...addr.subarray(8, 12)].join('.'), EXTERNAL);
    const map = await c.ask(packet(/^natpmpc/, /tcp 3600/, 1), h.port);
    assert.equal(map.length, 16);
    assert.deepEqual(
      [map[1], map.readUInt16BE(2), map.readUInt16BE(8), map.readUInt16BE(10), map.readUInt32BE(12)],
      [130, 0, 4000, 4000, 3600],
    );
    const lease = h.env.table.findByInternal('tcp', '127.0.0.1', 4000);
    assert.equal(lease?.source, 'natpmp');
    assert.equal(lease?.externalPort, 4000);
  });

  test('natpmpc: a UDP delete (lifetime 0) of a mapping that does not exist succeeds', async () => {
    const del = await c.ask(packet(/^natpmpc/, /delete/, 1), h.port);
    assert.deepEqual([del[1], del.readUInt16BE(2), del.readUInt16BE(8), del.readUInt32BE(12)], [129, 0, 4001, 0]);
    assert.equal(h.env.table.findByInternal('udp', '127.0.0.1', 4001), null);
  });

  test('nat-port-mapper: its UDP map asks for 3,600,000 s (milliseconds sent as seconds): granted, clamped to 7200', async () => {
    const map = await c.ask(packet(/nat-port-mapper/, /^map/, 0), h.port);
    assert.deepEqual([map[1], map.readUInt16BE(2), map.readUInt16BE(8)], [129, 0, 4300]);
    assert.equal(map.readUInt32BE(12), 7200);
    const lease = h.env.table.findByInternal('udp', '127.0.0.1', 4300);
    assert.equal(lease?.requestedLifetime, 3_600_000);
    const ip = await c.ask(packet(/nat-port-mapper/, /externalIp/, 0), h.port);
    assert.equal([...ip.subarray(8, 12)].join('.'), EXTERNAL);
  });

  test('nat-port-mapper: its unmap says TCP, so the UDP mapping stays (the client bug, tolerated)', async () => {
    const del = await c.ask(packet(/nat-port-mapper/, /^unmap/, 0), h.port);
    assert.deepEqual([del[1], del.readUInt16BE(2), del.readUInt32BE(12)], [130, 0, 0]);
    assert.ok(h.env.table.findByInternal('udp', '127.0.0.1', 4300), 'the UDP lease was not touched');
    assert.ok(h.env.table.findByInternal('tcp', '127.0.0.1', 4000), 'nor the TCP lease of another client port');
  });
});
