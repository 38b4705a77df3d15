/**
 * Trigger rules as portd runs them: the validated TriggerConfig (src/config/triggers.ts), where it
 * came from, and the id carried in the ct mark of the flows that fire it.
 */
import type { TriggerConfig } from '../config/types.js';
import { formatPortRange, formatPortRanges } from '../common/port-range.js';
import { inPrefix } from '../common/net.js';
import { ipv6InPrefix } from '../common/ipv6.js';
import { TRIGGER_ID_MAX, type TriggerKernelRule } from '../dataplane/trigger-kernel.js';

/** config-file rules are read-only through the API; API rules live in the database */
export type TriggerOrigin = 'config' | 'api';

export interface TriggerRule {
  readonly config: TriggerConfig;
  readonly origin: TriggerOrigin;
  /** 1..4095, in the ct mark (dataplane/trigger-kernel.ts) */
  readonly id: number;
}

export { type TriggerDocument, triggerToDocument as toDocument } from '../config/triggers.js';

/** may this LAN host (IPv4 or IPv6) fire the rule? (empty hosts = any; a network matches its own family only) */
export function hostAllowed(t: TriggerConfig, host: string): boolean {
  if (t.hosts.length === 0) return true;
  const v6 = host.includes(':');
  return t.hosts.some((c) => {
    const [net, len] = c.split('/');
    if (net!.includes(':') !== v6) return false;
    return v6
      ? ipv6InPrefix(host, net!, len === undefined ? 128 : Number(len))
      : inPrefix(host, net!, len === undefined ? 32 : Number(len));
  });
}

/** FNV-1a: a rule keeps its id across restarts as long as its name does (ids only need to be unique at a time) */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return (h % TRIGGER_ID_MAX) + 1;
}

/**
 * Ids for a set of names: a name that already has one keeps it; a new name gets its hash, or the
 * next free id. Deterministic for the same names in the same order.
 */
export function assignIds(
  names: readonly string[],
  previous: ReadonlyMap<string, number> = new Map(),
): Map<string, number> {
  const out = new Map<string, number>();
  const used = new Set<number>();
  for (const n of names) {
    const p = previous.get(n);
    if (p !== undefined && !used.has(p)) {
      out.set(n, p);
      used.add(p);
    }
  }
  for (const n of names) {
    if (out.has(n)) continue;
    let id = hashName(n);
    for (let i = 0; i < TRIGGER_ID_MAX && used.has(id); i++) id = (id % TRIGGER_ID_MAX) + 1;
    if (used.has(id)) throw new Error(`more than ${TRIGGER_ID_MAX} trigger rules`);
    out.set(n, id);
    used.add(id);
  }
  return out;
}

export function toKernelRule(r: TriggerRule): TriggerKernelRule {
  const t = r.config;
  return {
    name: t.name,
    id: r.id,
    match: { protocol: t.match.protocol, ports: t.match.ports.map((p) => ({ start: p.start, end: p.end })) },
    open: t.open.map((o) => ({ protocol: o.protocol, ports: { start: o.ports.start, end: o.ports.end } })),
    hosts: [...t.hosts],
    idleTimeout: t.idleTimeout,
  };
}

/** what a rule opens, for logs and the dashboard: `tcp 6113-6119, udp 6113-6119` */
export function describeOpen(t: TriggerConfig): string {
  return t.open.map((o) => `${o.protocol} ${formatPortRange(o.ports)}`).join(', ');
}

export function describeMatch(t: TriggerConfig): string {
  return `${t.match.protocol} ${formatPortRanges(t.match.ports)}`;
}
