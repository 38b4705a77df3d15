/**
 * glibc's malloc_trim(0), called through koffi (already portd's FFI for nf_tables netlink): it hands the
 * free pages inside malloc's heaps back to the kernel, which free() never does for the middle of a heap
 * (src/common/idle-gc.ts calls it after an idle collection; docs/benchmarks.md, "Session 7: footprint").
 * null where it cannot be had (no koffi, a libc without malloc_trim such as musl): nothing is trimmed then.
 */
import { createRequire } from 'node:module';

export function loadMallocTrim(): (() => void) | null {
  try {
    const koffi = createRequire(import.meta.url)('koffi') as {
      load(name: string): { func(sig: string): (pad: number) => number };
    };
    const trim = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)');
    return () => {
      trim(0);
    };
  } catch {
    return null;
  }
}
