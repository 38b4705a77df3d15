import type { PortRange } from '../common/net-types.js';
import { formatPortRange, rangesOverlap } from '../common/port-range.js';
import { ConfigValueError, show } from './errors.js';

export interface PortParseOptions {
  /** lowest port allowed (1 for forwards and triggers, 0 in policy rules where `0-65535` means all) */
  readonly min?: number;
}

const RANGE = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/;

/** parses one port or range: `6112`, `"6113-6119"`. Throws ConfigValueError saying what is expected. */
export function parsePortRange(value: unknown, opts: PortParseOptions = {}): PortRange {
  const min = opts.min ?? 1;
  const expected = `must be a port (${min}-65535) or a range like "6113-6119"`;
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < min || value > 65535)
      throw new ConfigValueError(`${expected}, got ${show(value)}`);
    return { start: value, end: value };
  }
  if (typeof value !== 'string') throw new ConfigValueError(`${expected}, got ${show(value)}`);
  const m = RANGE.exec(value);
  if (!m) throw new ConfigValueError(`${expected}, got ${show(value)}`);
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  for (const p of [start, end]) {
    if (p < min || p > 65535) throw new ConfigValueError(`${expected}: port ${p} is out of range ${min}-65535`);
  }
  if (end < start) throw new ConfigValueError(`range ${show(value)} is reversed (empty): write "${end}-${start}"`);
  return { start, end };
}

/**
 * Parses a port list: `"6112"`, `"6112,6120-6130"`, `6112`, or a YAML list of those.
 * Rejects empty lists and ranges that overlap one another within the list.
 */
export function parsePortRanges(value: unknown, opts: PortParseOptions = {}): PortRange[] {
  let parts: unknown[];
  if (typeof value === 'string') parts = value.split(',');
  else if (typeof value === 'number') parts = [value];
  else if (Array.isArray(value)) parts = value.flatMap((v) => (typeof v === 'string' ? v.split(',') : [v]));
  else
    throw new ConfigValueError(
      `must be a port list like "6112,6120-6130" or a list of ports/ranges, got ${show(value)}`,
    );
  if (parts.length === 0 || (parts.length === 1 && typeof parts[0] === 'string' && parts[0].trim() === '')) {
    throw new ConfigValueError('must name at least one port or range, got an empty list');
  }
  const ranges = parts.map((p) => parsePortRange(typeof p === 'string' ? p.trim() : p, opts));
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      if (rangesOverlap(ranges[i]!, ranges[j]!)) {
        throw new ConfigValueError(
          `ranges ${formatPortRange(ranges[i]!)} and ${formatPortRange(ranges[j]!)} overlap within the list`,
        );
      }
    }
  }
  return ranges;
}

/** the reserved ports that fall inside a range */
export function reservedIn(r: PortRange, reserved: readonly number[]): number[] {
  return reserved.filter((p) => p >= r.start && p <= r.end);
}
