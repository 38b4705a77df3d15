import { ErrorCode, PortdError } from '../errors.js';

/** one problem in a configuration: the key path and what is expected */
export interface ConfigIssue {
  /** e.g. `policy.lifetime.pcp.max`, `triggers[1].open[0].ports` */
  readonly path: string;
  /** e.g. `must be an integer ≥ 1, got "1h"` */
  readonly message: string;
}

export function formatIssue(i: ConfigIssue): string {
  return i.path ? `${i.path}: ${i.message}` : i.message;
}

/**
 * A configuration (or an API-created trigger) was rejected. Lists every problem, not just the
 * first, so an operator fixes the file in one go.
 */
export class ConfigError extends PortdError {
  readonly issues: readonly ConfigIssue[];
  readonly sourceName: string;
  constructor(issues: readonly ConfigIssue[], sourceName = 'configuration') {
    const n = issues.length;
    super(
      ErrorCode.CONFIG_INVALID,
      `${sourceName}: ${n} problem${n === 1 ? '' : 's'}\n${issues.map((i) => `  - ${formatIssue(i)}`).join('\n')}`,
      'every key, its type and default are listed in docs/configuration.md',
    );
    this.name = 'ConfigError';
    this.issues = Object.freeze(issues.map((i) => Object.freeze({ ...i })));
    this.sourceName = sourceName;
  }
}

/**
 * Thrown by the small value parsers (`parsePortRanges`, `parsePolicyRule`, `parseCidr`...):
 * the message says what is expected, without a key path; validators attach the path.
 */
export class ConfigValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigValueError';
  }
}

/** collects issues while walking a document */
export class Issues {
  readonly list: ConfigIssue[] = [];
  add(path: string, message: string): void {
    this.list.push({ path, message });
  }
  /** adds a "missing key" issue; undefined, so `v === undefined ? issues.required(…) : parse(v)` is one expression */
  required(path: string, message: string): undefined {
    this.add(path, message);
    return undefined;
  }
  get count(): number {
    return this.list.length;
  }
}

/** joins key paths: `join('a', 'b')` → `a.b`, `join('a', 0)` → `a[0]`, `join('', 'b')` → `b` */
export function joinPath(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  return base ? `${base}.${key}` : key;
}

/** a short rendering of a bad value for messages: `"1h"`, `12`, `null`, `[1,2]`, `an object` */
export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (Array.isArray(v)) {
    const s = JSON.stringify(v);
    return s.length > 60 ? `a list of ${v.length}` : s;
  }
  if (v instanceof Date) return `a date (${JSON.stringify(v.toISOString())})`;
  return 'a mapping';
}
