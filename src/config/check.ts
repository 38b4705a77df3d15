/**
 * Hand-written schema helpers: each reads one value at a key path, records an issue naming the
 * path and what is expected when the value is wrong, and returns the default (or a placeholder)
 * so the walk continues and every problem is reported in one go.
 */
import { isIP } from 'node:net';
import { type Issues, joinPath, show } from './errors.js';
import { ConfigValueError } from './errors.js';
import { formatCidr, parseCidr } from '../common/net.js';

export type Raw = Record<string, unknown>;

function isPlainObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** edit distance, for "did you mean" on unknown keys */
function distance(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

export function suggest(key: string, allowed: readonly string[]): string | null {
  const lower = key.toLowerCase().replace(/[-_]/g, '');
  let best: string | null = null;
  let bestD = Infinity;
  for (const a of allowed) {
    if (a.toLowerCase() === lower) return a;
    const d = distance(key.toLowerCase(), a.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = a;
    }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

/**
 * Reads a mapping. `undefined` and `null` (a YAML key with everything below it commented out)
 * count as an empty mapping, so every default applies. Unknown keys are reported with a suggestion.
 */
export function section(v: unknown, path: string, allowed: readonly string[], issues: Issues): Raw {
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) {
    issues.add(path, `must be a mapping with keys ${allowed.join(', ')}, got ${show(v)}`);
    return {};
  }
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) {
      const s = suggest(k, allowed);
      issues.add(
        joinPath(path, k),
        `unknown key${s ? ` (did you mean ${s}?)` : ''}; allowed here: ${allowed.join(', ')}`,
      );
    }
  }
  return v;
}

export interface IntOpts {
  readonly min?: number;
  readonly max?: number;
}

export function describeInt({ min, max }: IntOpts): string {
  if (min !== undefined && max !== undefined) return `must be an integer between ${min} and ${max}`;
  if (min !== undefined) return `must be an integer ≥ ${min}`;
  if (max !== undefined) return `must be an integer ≤ ${max}`;
  return 'must be an integer';
}

export function int(obj: Raw, key: string, path: string, def: number, opts: IntOpts, issues: Issues): number {
  const v = obj[key];
  if (v === undefined) return def;
  const p = joinPath(path, key);
  if (
    typeof v !== 'number' ||
    !Number.isInteger(v) ||
    (opts.min !== undefined && v < opts.min) ||
    (opts.max !== undefined && v > opts.max)
  ) {
    issues.add(
      p,
      `${describeInt(opts)}, got ` +
        `${show(v)}${typeof v === 'string' && /^\d+\s*[smhd]$/.test(v.trim()) ? ' (seconds, without a unit)' : ''}`,
    );
    return def;
  }
  return v;
}

export function bool(obj: Raw, key: string, path: string, def: boolean, issues: Issues): boolean {
  const v = obj[key];
  if (v === undefined) return def;
  if (typeof v !== 'boolean') {
    issues.add(joinPath(path, key), `must be true or false, got ${show(v)}`);
    return def;
  }
  return v;
}

export interface StrOpts {
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: RegExp;
  readonly expected?: string;
}

export function str(obj: Raw, key: string, path: string, def: string, opts: StrOpts, issues: Issues): string {
  const v = obj[key];
  if (v === undefined) return def;
  return checkStr(v, joinPath(path, key), def, opts, issues);
}

export function checkStr(v: unknown, p: string, def: string, opts: StrOpts, issues: Issues): string {
  const min = opts.minLength ?? 1;
  const what =
    opts.expected ?? (min > 1 ? `must be a string of at least ${min} characters` : 'must be a non-empty string');
  if (typeof v !== 'string' || v.length < min || (opts.pattern && !opts.pattern.test(v))) {
    issues.add(
      p,
      `${what}, got ` +
        `${typeof v === 'string' && opts.expected === undefined && min > 1 ? `${v.length} characters` : show(v)}`,
    );
    return def;
  }
  if (opts.maxLength !== undefined && v.length > opts.maxLength) {
    issues.add(p, `must be at most ${opts.maxLength} characters, got ${v.length}`);
    return def;
  }
  return v;
}

export function nullableStr(
  obj: Raw,
  key: string,
  path: string,
  def: string | null,
  opts: StrOpts,
  issues: Issues,
): string | null {
  const v = obj[key];
  if (v === undefined) return def;
  if (v === null) return null;
  return checkStr(v, joinPath(path, key), def ?? '', opts, issues);
}

export function oneOf<T extends string>(
  obj: Raw,
  key: string,
  path: string,
  def: T,
  values: readonly T[],
  issues: Issues,
): T {
  const v = obj[key];
  if (v === undefined) return def;
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    const s = typeof v === 'string' ? suggest(v, values) : null;
    issues.add(
      joinPath(path, key),
      `must be one of ${values.join(', ')}, got ${show(v)}${s ? ` (did you mean ${s}?)` : ''}`,
    );
    return def;
  }
  return v as T;
}

/** reads a list; a single scalar is not silently promoted (the message says a list is expected) */
export function list(obj: Raw, key: string, path: string, issues: Issues, what: string): unknown[] | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (v === null) return [];
  if (!Array.isArray(v)) {
    issues.add(joinPath(path, key), `must be a list of ${what}, got ${show(v)}`);
    return undefined;
  }
  return v;
}

/** runs a value parser that throws ConfigValueError and records its message under the path */
export function parseAt<T>(p: string, issues: Issues, fn: () => T): T | undefined {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ConfigValueError || e instanceof Error) {
      issues.add(p, e.message);
      return undefined;
    }
    throw e;
  }
}

export function isIpAddress(v: unknown): v is string {
  return typeof v === 'string' && isIP(v) !== 0;
}

/** a list of IPv4 networks, each in canonical form (`192.168.1.0/24`); an issue per bad entry */
export function cidrList(obj: Raw, key: string, path: string, issues: Issues): string[] {
  const out: string[] = [];
  list(obj, key, path, issues, 'IPv4 networks like 192.168.1.0/24')?.forEach((v, i) => {
    const p = joinPath(joinPath(path, key), i);
    if (typeof v !== 'string') {
      issues.add(p, `must be an IPv4 network like 192.168.1.0/24, got ${show(v)}`);
      return;
    }
    const c = parseAt(p, issues, () => parseCidr(v));
    if (c && c.family !== 4) issues.add(p, `must be an IPv4 network, got ${show(v)}`);
    else if (c) out.push(formatCidr(c));
  });
  return out;
}

/** walks a parsed document; returns the effective config and every issue found */
