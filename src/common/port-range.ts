import type { PortRange } from './net-types.js';

/**
 * The one text form of a port range, in messages, logs, the CLI and nft sets: `6112` for a
 * single port, `6113-6119` for a range. (Parsing it back, with config errors, is src/config/ports.ts.)
 */
export function formatPortRange(r: PortRange): string {
  return r.start === r.end ? String(r.start) : `${r.start}-${r.end}`;
}

/** a list of ranges joined by `sep`: `6112,6120-6130` */
export function formatPortRanges(rs: readonly PortRange[], sep = ','): string {
  return rs.map(formatPortRange).join(sep);
}

/** the external port range of a lease or a dataplane entry */
export function externalPorts(l: { readonly externalPort: number; readonly externalPortEnd: number }): PortRange {
  return { start: l.externalPort, end: l.externalPortEnd };
}

export function rangesOverlap(a: PortRange, b: PortRange): boolean {
  return a.start <= b.end && b.start <= a.end;
}
