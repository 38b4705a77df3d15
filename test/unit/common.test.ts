/**
 * The shared bottom of src/: one listen parser, one port-range formatter, one Host header splitter.
 * Each has one contract; these tests pin it, so a caller cannot grow its own variant unnoticed.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseHostHeader } from '../../src/common/host-header.js';
import { parseListen } from '../../src/common/listen.js';
import { LEASE_SOURCES } from '../../src/common/net-types.js';
import { externalPorts, formatPortRange, formatPortRanges, rangesOverlap } from '../../src/common/port-range.js';
import { parseConfig } from '../../src/config/index.js';
import { Source } from '../../src/admin/schemas.js';

describe('parseListen: an IP literal and a port, nothing else', () => {
  it('accepts IPv4 and bracketed IPv6 with a port 0-65535', () => {
    assert.deepEqual(parseListen('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseListen('0.0.0.0:0'), { host: '0.0.0.0', port: 0 });
    assert.deepEqual(parseListen('[::1]:8080'), { host: '::1', port: 8080 });
    assert.deepEqual(parseListen('[fe80::1]:65535'), { host: 'fe80::1', port: 65535 });
  });
  it('refuses names, bare ports, missing ports, bad addresses and ports past 65535', () => {
    for (const bad of [
      'localhost:8080',
      '8080',
      ':8080',
      '127.0.0.1',
      '127.0.0.1:',
      '127.0.0.1:65536',
      '127.0.0.1:123456',
      '256.1.1.1:80',
      '::1:8080',
      '[127.0.0.1]:80',
      '[::1]',
      ' 127.0.0.1:80',
      'http://127.0.0.1:80',
    ])
      assert.equal(parseListen(bad), null, bad);
  });
  it('is the contract config validation applies to admin.listen', () => {
    assert.equal(parseConfig('admin: { listen: "[::1]:9090" }').admin.listen, '[::1]:9090');
    for (const bad of ['localhost:8080', '8080'])
      assert.throws(() => parseConfig(`admin: { listen: "${bad}" }`), /admin\.listen/, bad);
  });
});

describe('formatPortRange: one text form of a port range', () => {
  it('writes a single port bare and a range with a dash', () => {
    assert.equal(formatPortRange({ start: 6112, end: 6112 }), '6112');
    assert.equal(formatPortRange({ start: 6113, end: 6119 }), '6113-6119');
    assert.equal(formatPortRange(externalPorts({ externalPort: 8443, externalPortEnd: 8443 })), '8443');
    assert.equal(formatPortRange(externalPorts({ externalPort: 1000, externalPortEnd: 1010 })), '1000-1010');
  });
  it('joins lists with a comma, or the separator asked for (nft sets)', () => {
    const rs = [
      { start: 6112, end: 6112 },
      { start: 6120, end: 6130 },
    ];
    assert.equal(formatPortRanges(rs), '6112,6120-6130');
    assert.equal(formatPortRanges(rs, ', '), '6112, 6120-6130');
    assert.equal(formatPortRanges([]), '');
  });
  it('overlap is inclusive at both ends', () => {
    assert.equal(rangesOverlap({ start: 1, end: 5 }, { start: 5, end: 9 }), true);
    assert.equal(rangesOverlap({ start: 1, end: 4 }, { start: 5, end: 9 }), false);
  });
});

describe('parseHostHeader: splits, never decides', () => {
  it('names, IPv4 and bracketed IPv6 with an optional port', () => {
    assert.deepEqual(parseHostHeader('example.org', 80), { host: 'example.org', ipv6: false, port: 80 });
    assert.deepEqual(parseHostHeader(' 192.168.1.1:5000 ', 80), { host: '192.168.1.1', ipv6: false, port: 5000 });
    assert.deepEqual(parseHostHeader('[FE80::1]:443', 80), { host: 'FE80::1', ipv6: true, port: 443 });
    assert.deepEqual(parseHostHeader('[::1]', 443), { host: '::1', ipv6: true, port: 443 });
  });
  it('refuses userinfo, paths, empty hosts and ports outside 1-65535', () => {
    for (const bad of ['', 'a@b', 'a/b', 'a b', ':80', 'a:0', 'a:65536', '[::1', '[zz]:80', 'a:b:c'])
      assert.equal(parseHostHeader(bad, 80), null, bad);
  });
});

describe('LEASE_SOURCES: the one list', () => {
  it('is what the admin API schema accepts', () => {
    assert.deepEqual([...(Source as unknown as { enum: readonly string[] }).enum], [...LEASE_SOURCES]);
  });
  it('is what docs/admin-api.md lists for the source filter', () => {
    const doc = readFileSync(new URL('../../docs/admin-api.md', import.meta.url), 'utf8');
    const listed = /`source` \(([a-z, ]+)\)/.exec(doc)?.[1]?.split(', ');
    assert.deepEqual(listed, [...LEASE_SOURCES]);
  });
});
