/**
 * The long-lived `nft -i` child (src/dataplane/nftables-runner.ts), driven against a stand-in `nft`
 * (a shell script that answers like `nft -i`: nothing on success, an error for what it cannot parse,
 * and that records its environment at each start). No root, no kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NftInteractive } from '../../src/dataplane/nftables-runner.js';

function fakeNft(dir: string): { path: string; starts: () => string[]; lines: () => string[] } {
  const path = join(dir, 'nft');
  const startLog = join(dir, 'starts');
  const lineLog = join(dir, 'lines');
  writeFileSync(
    path,
    `#!/bin/sh
echo "HOME=$HOME" >> '${startLog}'
while IFS= read -r line; do
  echo "$line" >> '${lineLog}'
  case "$line" in
    add*|delete*) ;;
    bad*) printf 'Error: Could not process rule: No such file or directory\\n%s\\n^^^\\n' "$line" >&2 ;;
    *) printf 'Error: syntax error, unexpected string\\n%s\\n^^^^^^^^^\\n' "$line" >&2 ;;
  esac
done
`,
  );
  chmodSync(path, 0o755);
  const read = (f: string) => {
    try {
      return readFileSync(f, 'utf8').trim().split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  return { path, starts: () => read(startLog), lines: () => read(lineLog) };
}

test('nft -i runs with a HOME where no history file can be read or written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portd-nfti-'));
  const fake = fakeNft(dir);
  const nft = new NftInteractive({}, fake.path, 5_000);
  try {
    await nft.run('add element inet portd fwd4 { tcp . 1 : 192.168.77.2 . 1 }');
    assert.deepEqual(fake.starts(), ['HOME=/dev/null']);
  } finally {
    nft.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('nft -i is replaced after maxLines lines, between batches, and every batch still gets its own outcome', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portd-nfti-'));
  const fake = fakeNft(dir);
  // each batch is two lines (the batch and its marker): a new child every 3 batches
  const nft = new NftInteractive({}, fake.path, 5_000, 6);
  try {
    for (let i = 0; i < 7; i++) await nft.run(`add element inet portd fwd4 { tcp . ${i} : 192.168.77.2 . 1 }`);
    await assert.rejects(nft.run('bad element'), /No such file or directory/);
    await nft.run('delete element inet portd fwd4 { tcp . 1 }');
    assert.equal(fake.starts().length, 3, 'batches 1-3, 4-6, 7-9 each in their own child');
    const batches = fake.lines().filter((l) => !l.startsWith('portd_marker_'));
    assert.equal(batches.length, 9, 'no batch lost or repeated across the replacements');
  } finally {
    nft.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
