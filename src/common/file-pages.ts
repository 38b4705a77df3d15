/**
 * Gives back the file pages a start touched once (issue 17, footprint): madvise(MADV_DONTNEED) on every
 * read-only private file mapping of the process that holds no page of its own (smaps `Anonymous: 0`).
 *
 * Two thirds of an idle portd's RSS are file pages: the node binary's code, its embedded JavaScript
 * sources and V8 snapshot, read while starting and never again on an idle router (45 of 63 MiB,
 * docs/benchmarks.md, "Footprint"). The kernel maps them 64 KiB at a time (fault-around) and leaves them
 * mapped until memory runs short. Dropping the mapping is what reclaim would do to a clean page: the
 * page stays in the page cache (shared with every other node, reclaimable), and a later use maps it again
 * with a minor fault. The contents cannot change: a private mapping with no anonymous page reads exactly
 * the file. A mapping with one (RELRO after relocation, anything written) is never touched: DONTNEED would
 * throw its writes away. Shared mappings are left alone as well.
 *
 * Called after an idle collection (src/common/idle-gc.ts, `trim`), when the event loop is quiet.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** Linux <asm-generic/mman-common.h> */
const MADV_DONTNEED = 4;

export interface FileMapping {
  readonly start: bigint;
  readonly length: number;
  /** resident KiB when listed */
  readonly rssKiB: number;
  readonly path: string;
}

/** the mappings of an smaps text that may be dropped: private, not writable, backed by a file, no anonymous page */
export function droppableMappings(smaps: string): FileMapping[] {
  const out: FileMapping[] = [];
  let cur: { start: bigint; end: bigint; perms: string; path: string; anon: number; rss: number } | null = null;
  const flush = () => {
    if (!cur) return;
    const ro = cur.perms === 'r--p' || cur.perms === 'r-xp';
    if (ro && cur.path.startsWith('/') && cur.anon === 0)
      out.push({ start: cur.start, length: Number(cur.end - cur.start), rssKiB: cur.rss, path: cur.path });
  };
  for (const line of smaps.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      flush();
      // anon -1 until its line is read: a mapping whose Anonymous line is missing is not dropped
      cur = {
        start: BigInt(`0x${head[1]}`),
        end: BigInt(`0x${head[2]}`),
        perms: head[3]!,
        path: head[4]!,
        anon: -1,
        rss: 0,
      };
      continue;
    }
    if (!cur) continue;
    const m = /^(Rss|Anonymous):\s+(\d+) kB/.exec(line);
    if (m?.[1] === 'Rss') cur.rss = Number(m[2]);
    else if (m) cur.anon = Number(m[2]);
  }
  flush();
  return out;
}

/**
 * a function that drops the droppable mappings of this process and returns the KiB that were resident in
 * them (0 without /proc); null without koffi or a libc.so.6
 */
export function loadDropFilePages(readSmaps = () => readFileSync('/proc/self/smaps', 'utf8')): (() => number) | null {
  try {
    const koffi = createRequire(import.meta.url)('koffi') as {
      load(name: string): { func(sig: string): (addr: bigint, len: number, advice: number) => number };
    };
    const madvise = koffi.load('libc.so.6').func('int madvise(uintptr_t addr, size_t len, int advice)');
    return () => {
      let kib = 0;
      try {
        for (const m of droppableMappings(readSmaps()))
          if (madvise(m.start, m.length, MADV_DONTNEED) === 0) kib += m.rssKiB;
      } catch {
        /* no /proc: nothing dropped */
      }
      return kib;
    };
  } catch {
    return null;
  }
}
