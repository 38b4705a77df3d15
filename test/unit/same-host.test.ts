import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { entryKnown, sameHost, type NeighbourEntry } from '../../src/policy/same-host.js';
import { createPolicy } from '../../src/policy/policy.js';
import { createNeighbourTable, parseNeighJson, type Neighbour } from '../../src/dataplane/neighbours.js';
import { testPolicy } from '../helpers/leases.js';

const MAC_A = 'd2:4a:10:ac:bc:4f';
const MAC_B = '6e:01:9a:22:31:07';
const STABLE = '2001:db8:77::11';
const TEMP = '2001:db8:77:0:5c1e:a9f3:7b20:d411';
const OTHER = '2001:db8:77::12';

function table(entries: Record<string, NeighbourEntry>): (a: string) => NeighbourEntry | null {
  return (a) => entries[a] ?? null;
}

describe('sameHost: one host by its link-layer address', () => {
  const t = table({
    [STABLE]: { lladdr: MAC_A, state: ['REACHABLE'] },
    [TEMP]: { lladdr: MAC_A, state: ['STALE'] },
    [OTHER]: { lladdr: MAC_B, state: ['DELAY'] },
    '2001:db8:77::66': { lladdr: null, state: ['FAILED'] },
    '2001:db8:77::67': { lladdr: MAC_A, state: ['INCOMPLETE'] },
  });

  test('same MAC: yes, either way round, any spelling', () => {
    assert.equal(sameHost(TEMP, STABLE, t).same, true);
    assert.equal(sameHost(STABLE, TEMP, t).same, true);
    assert.equal(sameHost('2001:DB8:77:0:5C1E:A9F3:7B20:D411', '2001:db8:77:0:0:0:0:11', t).same, true);
    assert.match(sameHost(TEMP, STABLE, t).reason, /share link-layer address d2:4a:10:ac:bc:4f/);
  });

  test('different MAC: no, verdict different', () => {
    const r = sameHost(TEMP, OTHER, t);
    assert.deepEqual([r.same, !r.same && r.verdict], [false, 'different']);
    assert.match(r.reason, /another host/);
  });

  test('unknown: no entry, FAILED, INCOMPLETE: no, verdict unknown, with the reason', () => {
    for (const [target, why] of [
      ['2001:db8:77::99', /no usable neighbour entry for 2001:db8:77::99$/],
      ['2001:db8:77::66', /state FAILED/],
      ['2001:db8:77::67', /state INCOMPLETE/],
    ] as const) {
      const r = sameHost(STABLE, target, t);
      assert.equal(r.same, false, target);
      assert.equal(!r.same && r.verdict, 'unknown', target);
      assert.match(r.reason, why);
    }
    const r = sameHost('2001:db8:77::99', STABLE, t);
    assert.match(r.reason, /for the requester 2001:db8:77::99/);
  });

  test('the same address is the same host without a lookup; IPv4 is not decided here', () => {
    assert.equal(sameHost('2001:db8:77::99', '2001:db8:77:0::99', () => null).same, true);
    const v4 = sameHost('192.168.1.10', '192.168.1.11', () => ({ lladdr: MAC_A, state: ['REACHABLE'] }));
    assert.equal(v4.same, false);
    assert.match(v4.reason, /not IPv6/);
  });

  test('entryKnown', () => {
    assert.equal(entryKnown({ lladdr: MAC_A, state: ['PERMANENT'] }), true);
    assert.equal(entryKnown({ lladdr: null, state: ['REACHABLE'] }), false);
    assert.equal(entryKnown(null), false);
  });
});

describe('policy: secure mode asks sameHost when owner and target differ', () => {
  const config = { ...testPolicy(), secureMode: true, rules: [] };
  const req = (owner: string, internalAddress: string) => ({
    source: 'pcp' as const,
    owner,
    internalAddress,
    internalPort: 9000,
  });

  test('without the dependency: refused as before', () => {
    const r = createPolicy(config).check(req('192.168.1.10', '192.168.1.11'), 9000, 9000);
    assert.equal(r?.reason, 'not_authorized');
  });

  test('same host: allowed; another host: refused with the reason', () => {
    const calls: string[] = [];
    const p = createPolicy(config, {
      sameHost: (a, b) => {
        calls.push(`${a}>${b}`);
        return b === '192.168.1.11' ? { same: true, reason: 'same MAC' } : { same: false, reason: 'another MAC' };
      },
    });
    assert.equal(p.check(req('192.168.1.10', '192.168.1.11'), 9000, 9000), null);
    const r = p.check(req('192.168.1.10', '192.168.1.12'), 9000, 9000);
    assert.equal(r?.reason, 'not_authorized');
    assert.match(r?.detail ?? '', /\(another MAC\)$/);
    // its own address: no question asked
    assert.equal(p.check(req('192.168.1.10', '192.168.1.10'), 9000, 9000), null);
    assert.deepEqual(calls, ['192.168.1.10>192.168.1.11', '192.168.1.10>192.168.1.12']);
  });
});

describe('neighbour table: parse, cache, probe, bound', () => {
  const log = pino({ level: 'silent' });
  test('parseNeighJson: ip -j -6 neigh output, canonical addresses, lower-case MACs, no lladdr when failed', () => {
    const json = JSON.stringify([
      { dst: 'fe80::d04a:10ff:feac:bc4f', lladdr: 'D2:4A:10:AC:BC:4F', state: ['DELAY'] },
      { dst: '2001:DB8:77:0:0:0:0:11', dev: 'br0', lladdr: MAC_A, router: null, state: ['REACHABLE'] },
      { dst: '2001:db8:77::66', state: ['FAILED'] },
      { dst: 'not an address', lladdr: MAC_B, state: ['STALE'] },
    ]);
    assert.deepEqual(parseNeighJson(json, 'br0'), [
      { address: 'fe80::d04a:10ff:feac:bc4f', dev: 'br0', lladdr: MAC_A, state: ['DELAY'] },
      { address: STABLE, dev: 'br0', lladdr: MAC_A, state: ['REACHABLE'] },
      { address: '2001:db8:77::66', dev: 'br0', lladdr: null, state: ['FAILED'] },
    ]);
    assert.deepEqual(parseNeighJson('', 'br0'), []);
  });

  test('ensure probes a missing target once, reads again, and then finds it; a fresh cache is not re-read', async () => {
    let t = 0;
    let kernel: Neighbour[] = [{ address: STABLE, dev: 'br0', lladdr: MAC_A, state: ['REACHABLE'] }];
    let reads = 0;
    const probed: string[] = [];
    const n = createNeighbourTable({
      interfaces: ['br0'],
      log,
      now: () => t,
      probeWaitMs: 1,
      read: async () => {
        reads++;
        return kernel;
      },
      probe: (a) => {
        probed.push(a);
        kernel = [...kernel, { address: TEMP, dev: 'br0', lladdr: MAC_A, state: ['REACHABLE'] }];
      },
    });
    await n.ensure([STABLE, TEMP]);
    assert.deepEqual(probed, [TEMP]);
    assert.equal(reads, 2);
    assert.equal(sameHost(STABLE, TEMP, n.lookup).same, true);
    await n.ensure([STABLE, TEMP]);
    assert.equal(reads, 2, 'fresh and complete: no read');
    t += 6000;
    await n.ensure([STABLE]);
    assert.equal(reads, 3, 'stale: read again');
  });

  test('a host that does not answer stays unknown; probes are bounded per second', async () => {
    const probed: string[] = [];
    const n = createNeighbourTable({
      interfaces: ['br0'],
      log,
      now: () => 0,
      probeWaitMs: 1,
      probesPerSecond: 3,
      read: async () => [],
      probe: (a) => probed.push(a),
    });
    const targets = Array.from({ length: 10 }, (_, i) => `2001:db8:77::${i + 100}`);
    await n.ensure(targets);
    assert.equal(probed.length, 3);
    assert.equal(sameHost(STABLE, targets[0]!, n.lookup).same, false);
  });

  test('at most maxEntries are kept; a failed entry on one interface yields to a usable one on another', async () => {
    const big: Neighbour[] = Array.from({ length: 50 }, (_, i) => ({
      address: `2001:db8:77::${(i + 1).toString(16)}`,
      dev: 'br0',
      lladdr: MAC_B,
      state: ['STALE'],
    }));
    const n = createNeighbourTable({ interfaces: ['br0'], log, maxEntries: 10, read: async () => big });
    await n.refresh();
    assert.equal(n.entries().length, 10);
    const two = createNeighbourTable({
      interfaces: ['lan1', 'lan2'],
      log,
      read: async (dev) =>
        dev === 'lan1'
          ? [{ address: OTHER, dev, lladdr: null, state: ['FAILED'] }]
          : [{ address: OTHER, dev, lladdr: MAC_B, state: ['REACHABLE'] }],
    });
    await two.refresh();
    assert.equal(two.lookup(OTHER)?.lladdr, MAC_B);
  });
});
