/**
 * src/common/file-pages.ts: which mappings may be dropped (read-only, private, a file's, no anonymous page),
 * and one real run: a child's file-backed RSS falls after the drop, and the code it dropped still runs.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { droppableMappings } from '../../src/common/file-pages.js';

const entry = (head: string, rss: number, anon: number | null) =>
  `${head}\nSize:               1024 kB\nRss:                ${rss} kB\n` +
  (anon === null ? '' : `Anonymous:          ${anon} kB\n`) +
  'VmFlags: rd mr mw me dw sd\n';

describe('file pages', () => {
  it('lists only read-only private file mappings with no anonymous page', () => {
    const smaps = [
      entry('00400000-00b6f000 r--p 00000000 08:01 123 /usr/bin/node', 4000, 0),
      entry('00b72000-025fe000 r-xp 00772000 08:01 123 /usr/bin/node', 20000, 0),
      // RELRO after relocation: written pages, DONTNEED would lose them
      entry('0563a000-0563e000 r--p 05239000 08:01 123 /usr/bin/node', 16, 16),
      entry('0563e000-0565c000 rw-p 0523d000 08:01 123 /usr/bin/node', 120, 40),
      entry('7f0000000000-7f0000100000 rw-p 00000000 00:00 0 ', 900, 900),
      entry('7f0000200000-7f0000300000 r--s 00000000 08:01 77 /var/lib/portd/portd.db-shm', 32, 0),
      entry('7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]', 8, 0),
      // no Anonymous line: not known to be clean
      entry('7f0000400000-7f0000500000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6', 1200, null),
      entry('7f0000600000-7f0000700000 r-xp 00000000 08:01 98 /usr/lib/x86_64-linux-gnu/libm.so.6', 300, 0),
    ].join('');
    assert.deepEqual(
      droppableMappings(smaps).map((m) => [m.start.toString(16), m.length, m.rssKiB, m.path]),
      [
        ['400000', 0xb6f000 - 0x400000, 4000, '/usr/bin/node'],
        ['b72000', 0x25fe000 - 0xb72000, 20000, '/usr/bin/node'],
        ['7f0000600000', 0x100000, 300, '/usr/lib/x86_64-linux-gnu/libm.so.6'],
      ],
    );
  });

  it("drops a real process's file pages, and the dropped code runs again", () => {
    const script = `
      import { createHash } from 'node:crypto';
      import { readFileSync } from 'node:fs';
      import { loadDropFilePages } from './src/common/file-pages.ts';
      const file = () => Number(/RssFile:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
      const drop = loadDropFilePages();
      const before = file();
      const kib = drop();
      const after = file();
      // code and data of the node binary that were dropped: hashing, JSON, a new module
      const hash = createHash('sha256').update('portd').digest('hex');
      const { gzipSync, gunzipSync } = await import('node:zlib');
      const back = gunzipSync(gzipSync(Buffer.from(JSON.stringify({ hash })))).toString();
      console.log(JSON.stringify({ before, kib, after, hash: JSON.parse(back).hash }));
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as { before: number; kib: number; after: number; hash: string };
    assert.equal(out.hash, createHash('sha256').update('portd').digest('hex'), 'the child computes after the drop');
    assert.ok(out.kib > 10 * 1024, `dropped ${out.kib} KiB`);
    assert.ok(out.after < out.before - 10 * 1024, `RssFile ${out.before} -> ${out.after} KiB`);
  });
});
