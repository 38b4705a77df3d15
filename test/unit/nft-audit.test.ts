/**
 * nftables-audit.ts: the cheap checks that notice changes made to portd's table from outside
 * (fixtures are `nft -j` output of nft 1.0.6, captured in the namespace lab).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { auditDue, setElements, structureFingerprint } from '../../src/dataplane/nftables-audit.js';

const META = { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } };
const table = (h: number) => ({ table: { family: 'inet', name: 'portd', handle: h } });
const set = (h: number, elem?: unknown[]) => ({
  set: {
    family: 'inet',
    name: 'live_tcp',
    table: 'portd',
    type: 'inet_service',
    handle: h,
    flags: ['timeout'],
    ...(elem ? { elem } : {}),
  },
});
const chain = (h: number) => ({
  chain: {
    family: 'inet',
    table: 'portd',
    name: 'forward',
    handle: h,
    type: 'filter',
    hook: 'forward',
    prio: -1,
    policy: 'accept',
  },
});
const rule = (h: number, verdict: string) => ({
  rule: {
    family: 'inet',
    table: 'portd',
    chain: 'forward',
    handle: h,
    expr: [
      { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: '@live_tcp' } },
      { [verdict]: null },
    ],
  },
});
const doc = (...items: unknown[]) => JSON.stringify({ nftables: [META, ...items] });

describe('nftables audit: structure fingerprint', () => {
  it('ignores handles and set elements (a rebuilt table with other leases is the same structure)', () => {
    const a = structureFingerprint(doc(table(1), set(2), chain(3), rule(4, 'accept')));
    const b = structureFingerprint(
      doc(table(9), set(12, [{ elem: { val: 8080, timeout: 60, expires: 59 } }]), chain(13), rule(40, 'accept')),
    );
    assert.ok(a);
    assert.equal(a, b);
  });

  it('changes when a rule is removed, altered or added', () => {
    const base = structureFingerprint(doc(table(1), set(2), chain(3), rule(4, 'accept')));
    assert.notEqual(structureFingerprint(doc(table(1), set(2), chain(3))), base, 'flushed chain');
    assert.notEqual(structureFingerprint(doc(table(1), set(2), chain(3), rule(4, 'drop'))), base, 'altered verdict');
    assert.notEqual(
      structureFingerprint(doc(table(1), set(2), chain(3), rule(4, 'accept'), rule(5, 'drop'))),
      base,
      'extra rule',
    );
    assert.notEqual(structureFingerprint(doc(table(1), chain(3), rule(4, 'accept'))), base, 'set deleted');
  });

  it('is null when the table is missing', () => {
    assert.equal(structureFingerprint(doc()), null);
  });
});

describe('nftables audit: small sets and pacing', () => {
  it('reads the elements of the external address set', () => {
    const j = JSON.stringify({
      nftables: [
        META,
        {
          set: {
            family: 'inet',
            name: 'ext4',
            table: 'portd',
            type: 'ipv4_addr',
            handle: 5,
            elem: ['203.0.113.7', '203.0.113.1'],
          },
        },
      ],
    });
    assert.deepEqual(setElements(j), ['203.0.113.1', '203.0.113.7']);
    assert.deepEqual(
      setElements(
        JSON.stringify({
          nftables: [META, { set: { family: 'inet', name: 'ext4', table: 'portd', type: 'ipv4_addr', handle: 5 } }],
        }),
      ),
      [],
    );
  });

  it('a full element audit takes at most 1 % of the time', () => {
    assert.equal(auditDue(0, null), true);
    assert.equal(auditDue(1500, { at: 0, ms: 10 }), true, '10 ms audit: every 1 s at most');
    assert.equal(auditDue(500, { at: 0, ms: 10 }), false);
    assert.equal(auditDue(60_000, { at: 0, ms: 1000 }), false, '1 s audit (100k elements): not every minute');
    assert.equal(auditDue(100_000, { at: 0, ms: 1000 }), true, '... but every 100 s');
    // a loaded machine stretches the wall time, not the work: the cost is capped by what the size costs idle
    assert.equal(auditDue(3200, { at: 0, ms: 140, elements: 50 }), true, '50 elements, 140 ms under load: every 3.1 s');
    assert.equal(auditDue(3200, { at: 0, ms: 140 }), false, 'without the size, 140 ms counts whole');
    assert.equal(auditDue(100_000, { at: 0, ms: 1000, elements: 100_000 }), true, '100k: the measured 1 s counts');
    assert.equal(auditDue(60_000, { at: 0, ms: 9000, elements: 100_000 }), false, '100k, 9 s loaded: capped at 2 s');
    assert.equal(auditDue(205_000, { at: 0, ms: 9000, elements: 100_000 }), true);
  });
});
