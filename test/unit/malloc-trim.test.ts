/**
 * src/common/malloc-trim.ts: glibc's malloc_trim(0) through koffi gives freed malloc memory back to the kernel.
 * A child process frees 64 MiB of 16 KiB blocks with a live block after each (holes in the middle of malloc's
 * heap, which free() keeps) and its RSS drops only after the trim.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { loadMallocTrim } from '../../src/common/malloc-trim.js';

describe('malloc_trim', () => {
  it('loads on glibc and is callable', () => {
    const trim = loadMallocTrim();
    assert.equal(typeof trim, 'function', 'this Debian machine has glibc and koffi');
    trim!();
  });

  it('gives freed malloc memory back (RSS of a child before and after)', () => {
    const script = `
      import { createRequire } from 'node:module';
      import { loadMallocTrim } from './src/common/malloc-trim.ts';
      const koffi = createRequire(import.meta.url)('koffi');
      const libc = koffi.load('libc.so.6');
      const malloc = libc.func('void *malloc(size_t)');
      const free = libc.func('void free(void *)');
      const memset = libc.func('void *memset(void *, int, size_t)');
      const rss = () => process.memoryUsage.rss();
      // 64 MiB in 16 KiB blocks (under the mmap threshold: they come from the heap), touched, each followed by a
      // small live block: freed, they cannot merge, so free() keeps every one of them (holes in the heap)
      const blocks = [];
      const pins = [];
      for (let i = 0; i < 4096; i++) {
        const b = malloc(16384); memset(b, 1, 16384); blocks.push(b);
        const p = malloc(64); memset(p, 1, 64); pins.push(p);
      }
      for (const b of blocks) free(b);
      const freed = rss();
      loadMallocTrim()();
      const trimmed = rss();
      console.log(JSON.stringify({ freed, trimmed }));
      for (const p of pins) free(p);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as { freed: number; trimmed: number };
    const MiB = 1024 * 1024;
    assert.ok(out.trimmed < out.freed - 32 * MiB, `RSS ${(out.freed / MiB) | 0} -> ${(out.trimmed / MiB) | 0} MiB`);
  });
});
