/**
 * nftables-script.ts tableOnly: the driver reads its table's handle and structure from a terse listing of
 * the whole ruleset (`nft -t -j list ruleset`), the one listing nft 1.0.6 answers without loading every
 * set element; other tables in it must not count.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { structureFingerprint } from '../../src/dataplane/nftables-audit.js';
import { parseTablesJson, tableOnly } from '../../src/dataplane/nftables-listing.js';

// shape of `nft -t -j list ruleset` (nft 1.0.6), trimmed: the host's own table, then ours
const RULESET = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
    { table: { family: 'inet', name: 'fw4', handle: 1 } },
    {
      chain: {
        family: 'inet',
        table: 'fw4',
        name: 'input',
        handle: 1,
        type: 'filter',
        hook: 'input',
        prio: 0,
        policy: 'accept',
      },
    },
    { table: { family: 'ip', name: 'portd', handle: 3 } },
    { table: { family: 'inet', name: 'portd', handle: 7 } },
    {
      map: {
        family: 'inet',
        name: 'fwd4',
        table: 'portd',
        type: ['inet_proto', 'inet_service'],
        handle: 1,
        map: 'ipv4_addr . inet_service',
        flags: ['timeout'],
      },
    },
    {
      chain: {
        family: 'inet',
        table: 'portd',
        name: 'forward',
        handle: 5,
        type: 'filter',
        hook: 'forward',
        prio: -1,
        policy: 'accept',
      },
    },
    { rule: { family: 'inet', table: 'portd', chain: 'forward', handle: 9, expr: [{ accept: null }] } },
  ],
});

describe('nftables: our table out of the whole ruleset', () => {
  it('keeps only inet <table> items: its handle, sets, chains and rules', () => {
    const ours = tableOnly(RULESET, 'portd');
    assert.equal(parseTablesJson(ours, 'portd'), 7);
    const kinds = (JSON.parse(ours) as { nftables: Record<string, unknown>[] }).nftables.map((i) => Object.keys(i)[0]);
    assert.deepEqual(kinds, ['table', 'map', 'chain', 'rule']);
  });

  it('a change in another table leaves our fingerprint alone; a change in ours does not', () => {
    const base = structureFingerprint(tableOnly(RULESET, 'portd'));
    const other = RULESET.replace('"policy":"accept"}}', '"policy":"drop"}}'); // fw4's chain comes first
    assert.notEqual(other, RULESET);
    assert.equal(structureFingerprint(tableOnly(other, 'portd')), base);
    const ourRule = RULESET.replace('[{"accept":null}]', '[{"drop":null}]');
    assert.notEqual(structureFingerprint(tableOnly(ourRule, 'portd')), base);
  });

  it('no table of ours: no handle, no structure', () => {
    const none = tableOnly(RULESET, 'other');
    assert.equal(parseTablesJson(none, 'other'), null);
    assert.equal(structureFingerprint(none), null);
  });
});
