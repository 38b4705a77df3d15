/**
 * Shared by the hostile-input suites (test/integration/hostile-*.test.ts): a seeded PRNG so every
 * failure can be replayed (the seed is printed), byte and text mutators that start from real
 * clients' packets, and small readers for metrics and log lines.
 */
import type { Metrics } from '../../src/metrics.js';
import pino, { type Logger } from 'pino';

/** xorshift32: fast, deterministic, good enough to drive mutations */
export function prng(seed: number) {
  let x = seed >>> 0 || 0x9e3779b9;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return {
    seed,
    u32: next,
    /** integer in [0, n) */
    int: (n: number): number => (n <= 0 ? 0 : next() % n),
    chance: (p: number): boolean => next() / 0x100000000 < p,
    pick<T>(xs: readonly T[]): T {
      return xs[next() % xs.length]!;
    },
    bytes(n: number): Uint8Array {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = next() & 0xff;
      return b;
    },
  };
}
export type Prng = ReturnType<typeof prng>;

/** the seed of a run: PORTD_FUZZ_SEED to replay one, else fixed per suite (reproducible by default) */
export function fuzzSeed(fallback: number): number {
  const s = process.env['PORTD_FUZZ_SEED'];
  return s && /^\d+$/.test(s) ? Number(s) : fallback;
}

/** 1-6 mutations of a byte string: bit flips, byte sets, truncation, extension, splices, interesting values */
export function mutateBytes(r: Prng, seed: Uint8Array, others: readonly Uint8Array[], maxLen = 1200): Uint8Array {
  let b: Uint8Array = seed.slice();
  const n = 1 + r.int(6);
  for (let k = 0; k < n; k++) {
    const op = r.int(10);
    if (op <= 2 && b.length > 0) {
      const i = r.int(b.length);
      b[i] = b[i]! ^ (1 << r.int(8)); // bit flip
    } else if (op === 3 && b.length > 0) {
      b[r.int(b.length)] = r.pick([0, 1, 2, 3, 0x7f, 0x80, 0x81, 0xfe, 0xff, r.u32() & 0xff]); // interesting byte
    } else if (op === 4 && b.length > 0) {
      b = b.slice(0, r.int(b.length + 1)); // truncate
    } else if (op === 5) {
      const tail = r.bytes(r.chance(0.5) ? 4 * (1 + r.int(8)) : r.int(64)); // extend (often by whole 32-bit words)
      const c = new Uint8Array(b.length + tail.length);
      c.set(b);
      c.set(tail, b.length);
      b = c;
    } else if (op === 6 && others.length > 0) {
      const o = r.pick(others); // splice: head of this, tail of another
      const cut = r.int(b.length + 1);
      const from = r.int(o.length + 1);
      const c = new Uint8Array(cut + o.length - from);
      c.set(b.subarray(0, cut));
      c.set(o.subarray(from), cut);
      b = c;
    } else if (op === 7 && b.length >= 2) {
      const i = r.int(b.length - 1); // a 16-bit field (lengths, ports) set to an edge value
      const v = r.pick([0, 1, 3, 4, 0x7fff, 0x8000, 0xfffc, 0xffff, r.u32() & 0xffff]);
      b[i] = v >> 8;
      b[i + 1] = v & 0xff;
    } else if (op === 8 && b.length >= 8) {
      const from = r.int(b.length - 3); // duplicate a 4-octet-aligned region (repeated options)
      const len = Math.min(b.length - from, 4 * (1 + r.int(6)));
      const c = new Uint8Array(b.length + len);
      c.set(b);
      c.set(b.subarray(from, from + len), b.length);
      b = c;
    } else if (b.length > 0) {
      b.fill(r.u32() & 0xff, r.int(b.length)); // overwrite the rest
    }
  }
  return b.length > maxLen ? b.subarray(0, maxLen) : b;
}

const XML_BITS = [
  '<',
  '>',
  '/',
  '&',
  ';',
  ':',
  '"',
  "'",
  '=',
  ' ',
  '!',
  '?',
  '[',
  ']',
  '-',
  '#',
  'x',
  '\n',
  '\r',
  '\t',
  '\u0000',
  '<!DOCTYPE a [<!ENTITY e "x">]>',
  '&e;',
  '&amp;',
  '&#x0;',
  '&#1114112;',
  '<![CDATA[',
  ']]>',
  '<!--',
  '-->',
  '<?x ?>',
  'xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"',
  'xmlns="http://schemas.xmlsoap.org/soap/envelope/"',
  's:',
  'u:',
  '</s:Body>',
  '<s:Body>',
  '</s:Envelope>',
  '<NewExternalPort>',
  '</NewExternalPort>',
  '\uFFFF',
  '\uD800',
  '😀',
  'é',
];

/** 1-8 text mutations of an XML or HTTP text, with XML-significant fragments */
export function mutateText(
  r: Prng,
  seed: string,
  others: readonly string[],
  bits: readonly string[] = XML_BITS,
): string {
  let s = seed;
  const n = 1 + r.int(8);
  for (let k = 0; k < n; k++) {
    const p = r.int(s.length + 1);
    const op = r.int(7);
    if (op === 0)
      s = s.slice(0, p) + s.slice(p + 1 + r.int(16)); // delete
    else if (op <= 2)
      s = s.slice(0, p) + r.pick(bits) + s.slice(p); // insert a significant fragment
    else if (op === 3) {
      const q = r.int(s.length);
      s = s.slice(0, p) + s.slice(q, q + r.int(40)) + s.slice(p);
    } // duplicate
    else if (op === 4)
      s = s.slice(0, p) + String.fromCharCode(r.int(0x10000)) + s.slice(p + 1); // replace a character
    else if (op === 5 && others.length > 0) {
      const o = r.pick(others);
      s = s.slice(0, p) + o.slice(r.int(o.length));
    } // splice
    else
      s =
        s.slice(0, p) +
        s.slice(p).replace(/[a-zA-Z]/, (c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())); // case flip
  }
  return s;
}

/** sum of a counter's values whose labels include `labels` */
export async function counter(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  let sum = 0;
  for (const v of values) {
    const l = v.labels as Record<string, string | number>;
    if (Object.entries(labels).every(([k, want]) => String(l[k]) === want)) sum += v.value;
  }
  return sum;
}

/** a pino logger whose lines land in `lines` (parsed), to count what a flood writes to the log */
export function captureLog(level: pino.Level = 'info'): {
  log: Logger;
  lines: Record<string, unknown>[];
  matching(re: RegExp): Record<string, unknown>[];
} {
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level },
    {
      write(s: string) {
        lines.push(JSON.parse(s) as Record<string, unknown>);
      },
    },
  );
  return { log, lines, matching: (re) => lines.filter((l) => re.test(String(l['msg']))) };
}

/** p-th percentile (0..100) of samples, nearest rank */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** wait until `cond` holds, polling every `stepMs`, at most `maxMs`; returns whether it held */
export async function until(cond: () => boolean | Promise<boolean>, maxMs: number, stepMs = 5): Promise<boolean> {
  const end = Date.now() + maxMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
