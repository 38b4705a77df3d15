/**
 * The gateway's own listening ports from /proc/net/{tcp,udp}{,6}: real text captured in a namespace
 * (test/fixtures/proc-net/README.md says which socket is which line).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { createLocalPorts, parseProcNet } from '../../src/dataplane/local-ports.js';
import { ipv4ToInt } from '../../src/common/net.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'proc-net');
const fixture = (f: string) => readFileSync(join(DIR, f), 'latin1');
const WAN = '203.0.113.1';

describe('parseProcNet', () => {
  test('tcp: LISTEN sockets with their IPv4 address; established connections are left out', () => {
    const s = parseProcNet(fixture('tcp'), 'tcp', true);
    assert.deepEqual(
      s.map((x) => [x.port, x.ipv4]).sort((a, b) => a[0]! - b[0]!),
      [
        [2222, 0],
        [5000, ipv4ToInt('192.168.77.1')],
        [5432, ipv4ToInt('127.0.0.1')],
        [8443, ipv4ToInt(WAN)],
      ],
    );
  });
  test('tcp6: [::] is the IPv4 wildcard, [::ffff:a.b.c.d] that IPv4 address, [::1] no IPv4 at all', () => {
    const s = parseProcNet(fixture('tcp6'), 'tcp', true);
    assert.deepEqual(
      s.map((x) => [x.port, x.ipv4]).sort((a, b) => a[0]! - b[0]!),
      [
        [631, null],
        [7070, 0],
        [8080, ipv4ToInt(WAN)],
        [9090, 0],
      ],
    );
  });
  test('udp: unconnected (bound) sockets only; a connected one is left out', () => {
    const s = parseProcNet(fixture('udp'), 'udp', true);
    assert.deepEqual(
      s.map((x) => [x.port, x.ipv4]).sort((a, b) => a[0]! - b[0]!),
      [
        [53, ipv4ToInt('127.0.0.1')],
        [4500, ipv4ToInt(WAN)],
        [5351, ipv4ToInt('192.168.77.1')],
        [51820, 0],
      ],
    );
    assert.ok(!s.some((x) => x.port === 40000), 'the connected socket');
  });
  test('udp6: wildcard, IPv4-mapped and loopback', () => {
    const s = parseProcNet(fixture('udp6'), 'udp', true);
    assert.deepEqual(
      s.map((x) => [x.port, x.ipv4]).sort((a, b) => a[0]! - b[0]!),
      [
        [323, null],
        [1194, ipv4ToInt(WAN)],
        [51821, 0],
      ],
    );
  });
  test('a big-endian kernel prints words in network order', () => {
    const s = parseProcNet(
      '  sl  local_address ...\n   0: CB007101:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     ' +
        '0        0 1 1\n',
      'tcp',
      false,
    );
    assert.deepEqual(s, [{ protocol: 'tcp', port: 8080, ipv4: ipv4ToInt(WAN) }]);
  });
  test('garbage and truncated lines are skipped, never thrown on', () => {
    for (const t of [
      '',
      '\n\n',
      'x: y z',
      '   0: 0000:0050',
      '   0: 00000000:ZZZZ 00000000:0000 0A',
      '   0: 00000000:0000 00000000:0000 0A',
      '   0: 0000:0050 00000000:0000 0A',
    ]) {
      assert.deepEqual(parseProcNet(t, 'tcp', true), []);
    }
  });
});

describe('createLocalPorts', () => {
  const files: Record<string, string> = {
    '/p/tcp': fixture('tcp'),
    '/p/tcp6': fixture('tcp6'),
    '/p/udp': fixture('udp'),
    '/p/udp6': fixture('udp6'),
  };
  const make = (extra: { now?: () => number; reads?: string[]; ext?: string[] } = {}) =>
    createLocalPorts({
      externalAddresses: () => extra.ext ?? [WAN],
      procNet: '/p',
      now: extra.now ?? (() => 0),
      readFile: (p) => {
        extra.reads?.push(p);
        const t = files[p];
        if (t === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
        return t;
      },
    });

  test('wildcard and WAN-address sockets block their port; LAN and loopback ones do not', () => {
    const lp = make();
    assert.deepEqual(lp.snapshot(), { tcp: [2222, 7070, 8080, 8443, 9090], udp: [1194, 4500, 51820, 51821] });
    for (const p of [5000, 5432, 631]) assert.equal(lp.inUse('tcp', p), false, `tcp ${p}`);
    for (const p of [53, 5351, 323, 40000]) assert.equal(lp.inUse('udp', p), false, `udp ${p}`);
    assert.equal(lp.inUse('udp', 2222), false, 'the protocol matters');
    assert.equal(lp.inUse('tcp', 2222), true);
  });
  test('a socket on another (old) WAN address does not block', () => {
    const lp = make({ ext: ['203.0.113.99'] });
    assert.equal(lp.inUse('tcp', 8443), false);
    assert.equal(lp.inUse('tcp', 2222), true);
  });
  test('the tables are read at most once per ttl: the first time at once, later in the background', async () => {
    let t = 0;
    const reads: string[] = [];
    const lp = make({ now: () => t, reads });
    for (let p = 1; p < 2000; p++) lp.inUse('tcp', p);
    assert.equal(reads.length, 4);
    t = 999;
    lp.inUse('udp', 1);
    assert.equal(reads.length, 4);
    // stale: the last reading answers, a new one is started (once)
    t = 1000;
    files['/p/tcp'] = fixture('tcp').replace('00000000:08AE', '00000000:08AF');
    assert.equal(lp.inUse('tcp', 2222), true);
    lp.inUse('tcp', 1);
    assert.equal(reads.length, 8);
    await new Promise((r) => setImmediate(r));
    assert.equal(lp.inUse('tcp', 2222), false);
    assert.equal(lp.inUse('tcp', 2223), true);
    // much too old: read before answering
    files['/p/tcp'] = fixture('tcp');
    t = 10_000;
    assert.equal(lp.inUse('tcp', 2222), true);
    assert.equal(reads.length, 12);
  });
  test('a kernel without IPv6 (no tcp6/udp6) is fine', () => {
    delete files['/p/tcp6'];
    const lp = make();
    assert.equal(lp.inUse('tcp', 2222), true);
    assert.equal(lp.inUse('tcp', 9090), false);
    files['/p/tcp6'] = fixture('tcp6');
  });

  // a speed figure, not a timed assertion (the guide: speed is measured in bench/): it failed at 52.9 ms against a
  // 50 ms bound on a loaded machine. What is asserted is the parse of 10,000 lines; the time is printed only
  test('10k sockets: every listening one found (parse time printed)', () => {
    const line = (i: number) =>
      `${String(i).padStart(5)}: ` +
      `${((0x0100007f + (i << 8)) >>> 0).toString(16).toUpperCase().padStart(8, '0')}:` +
      `${(1024 + i).toString(16).toUpperCase().padStart(4, '0')} ` +
      `00000000:0000 ${i % 3 === 0 ? '0A' : '01'} 00000000:00000000 00:00000000 00000000     0        0 ` +
      `${20000 + i} 1 000000004223e17c 100 0 0 10 0\n`;
    const text =
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n' +
      Array.from({ length: 10_000 }, (_, i) => line(i)).join('');
    for (let i = 0; i < 5; i++) parseProcNet(text, 'tcp', true);
    const t0 = performance.now();
    const n = 20;
    let found = 0;
    for (let i = 0; i < n; i++) found = parseProcNet(text, 'tcp', true).length;
    const ms = (performance.now() - t0) / n;
    assert.equal(found, 3334);
    process.stdout.write(
      `# parseProcNet: 10,000 lines (${(text.length / 1024).toFixed(0)} KiB) in ${ms.toFixed(2)} ms\n`,
    );
  });
});
