import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { preflight } from '../../src/dataplane/preflight.js';
import { ErrorCode, PortdError } from '../../src/errors.js';

/** fake nft binaries: the preflight only looks at exit codes and messages */
describe('nftables preflight', () => {
  let dir: string;
  const fake = (name: string, body: string) => {
    const p = join(dir, name);
    writeFileSync(p, `#!/bin/sh\n${body}\n`);
    chmodSync(p, 0o755);
    return p;
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portd-preflight-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('nft missing -> PORTD_NFT_MISSING with a hint', async () => {
    await assert.rejects(preflight({ nftPath: join(dir, 'no-such-nft') }), (e: unknown) => {
      assert.ok(e instanceof PortdError);
      assert.equal(e.code, ErrorCode.NFT_MISSING);
      assert.match(e.hint ?? '', /apt-get install nftables/);
      return true;
    });
  });

  test('no CAP_NET_ADMIN -> PORTD_NO_CAP_NET_ADMIN', async () => {
    const nft = fake(
      'nft-eperm',
      'case "$1" in --version) echo "nftables v1.0.6"; exit 0;; esac\ncat >/dev/null; echo "Error: Could not ' +
        'process rule: Operation not permitted" >&2; exit 1',
    );
    await assert.rejects(preflight({ nftPath: nft }), (e: unknown) => {
      assert.ok(e instanceof PortdError);
      assert.equal(e.code, ErrorCode.NO_CAP_NET_ADMIN);
      assert.match(e.hint ?? '', /CAP_NET_ADMIN/);
      return true;
    });
  });

  test('working nft: the scratch table is added and deleted in one transaction; a missing conntrack is a warning', async () => {
    const log = join(dir, 'script.txt');
    const nft = fake('nft-ok', `case "$1" in --version) echo "nftables v1.0.6"; exit 0;; esac\ncat > ${log}; exit 0`);
    const r = await preflight({ nftPath: nft, table: 'portd', conntrackPath: join(dir, 'no-conntrack') });
    assert.equal(r.nftVersion, 'nftables v1.0.6');
    assert.equal(r.conntrack, false);
    assert.equal(r.warnings.length, 1);
    const { readFileSync } = await import('node:fs');
    assert.equal(readFileSync(log, 'utf8'), 'add table inet portd_preflight\ndelete table inet portd_preflight\n');
  });
});
