/**
 * Port triggering in the kernel (pure text, no processes): see docs/triggers.md.
 *
 * One base chain `triggers` (forward hook, priority filter - 2, so before the driver's own forward
 * chain; it never accepts or drops, it only marks and counts activity) and one dynamic set per rule:
 *
 *   set trig_<rule>_active { type ipv4_addr; flags dynamic,timeout; size 4096; }   LAN hosts active on the rule
 *   chain triggers {
 *     # outbound packet to a trigger port: the host is active; a new flow gets the rule's ct mark
 *     iifname {lan} oifname wan [ip saddr {hosts}] meta l4proto udp th dport { 6112 }
 *         update @trig_r_active { ip saddr timeout 600s } ct state new ct mark set ct mark | 0x00010400
 *     # the answers on that flow keep the host active too
 *     iifname wan ct mark & 0x0fff0400 == 0x00010400 update @trig_r_active { ip daddr timeout 600s }
 *     # traffic through the opened ports (both directions) keeps it active
 *     iifname wan ct status dnat meta l4proto tcp th dport { 6113-6119 }
 *         update @trig_r_active { ip daddr timeout 600s }
 *     iifname {lan} ct status dnat meta l4proto tcp th sport { 6113-6119 }
 *         update @trig_r_active { ip saddr timeout 600s }
 *   }
 *
 * portd reads the firings from `conntrack -E -e NEW --mark 0x400/0x400` (flag bit 0x400, the rule id
 * in bits 16-27) and polls only the small `trig_*_active` sets to follow idleness.
 * ct mark bits 0x100 and 0x200 belong to the forwarding rules (nftables-script.ts) and are never touched.
 */
import { isIPv4 } from 'node:net';
import type { PortRange } from '../common/net-types.js';
import { formatPortRanges } from '../common/port-range.js';
import { TRIGGER_ID_MAX, type TriggerKernelRule } from './trigger-kernel.js';

/** ct mark bit on every flow that fired a trigger (the conntrack event filter keys on it) */
export const TRIGGER_CT_FLAG = 0x400;
/** the rule id lives in these bits of the ct mark */
export const TRIGGER_ID_SHIFT = 16;
export const TRIGGER_CT_MASK = (TRIGGER_ID_MAX << TRIGGER_ID_SHIFT) | TRIGGER_CT_FLAG;
/** the chain that holds the trigger rules */
export const TRIGGER_CHAIN = 'triggers';
/** at most this many hosts tracked per rule (a LAN) */
export const TRIGGER_SET_SIZE = 4096;

export interface TriggerInterfaces {
  readonly table: string;
  readonly wan: string;
  readonly lan: readonly string[];
}

const SET_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
const CIDR_RE = /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d{1,2}))?$/;

export class TriggerPlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TriggerPlanError';
  }
}

export function triggerSetName(rule: string): string {
  return `trig_${rule}_active`;
}

export function triggerMark(id: number): number {
  return ((id & TRIGGER_ID_MAX) << TRIGGER_ID_SHIFT) | TRIGGER_CT_FLAG;
}

/** the rule id in a ct mark, or null when the mark is not a trigger mark */
export function triggerIdOfMark(mark: number): number | null {
  if ((mark & TRIGGER_CT_FLAG) === 0) return null;
  const id = (mark >>> TRIGGER_ID_SHIFT) & TRIGGER_ID_MAX;
  return id === 0 ? null : id;
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

function checkRange(r: PortRange, what: string): void {
  if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start < 1 || r.end > 65535 || r.end < r.start) {
    throw new TriggerPlanError(`bad port range ${r.start}-${r.end} in ${what}`);
  }
}

export function validateTriggerRules(rules: readonly TriggerKernelRule[]): void {
  const names = new Set<string>();
  const ids = new Set<number>();
  for (const r of rules) {
    if (!SET_NAME_RE.test(r.name)) throw new TriggerPlanError(`bad trigger name ${JSON.stringify(r.name)}`);
    if (names.has(r.name)) throw new TriggerPlanError(`trigger ${r.name} twice`);
    names.add(r.name);
    if (!Number.isInteger(r.id) || r.id < 1 || r.id > TRIGGER_ID_MAX)
      throw new TriggerPlanError(`bad trigger id ${r.id} for ${r.name}`);
    if (ids.has(r.id)) throw new TriggerPlanError(`trigger id ${r.id} twice`);
    ids.add(r.id);
    if (!['tcp', 'udp', 'both'].includes(r.match.protocol))
      throw new TriggerPlanError(`bad match protocol in ${r.name}`);
    if (r.match.ports.length === 0) throw new TriggerPlanError(`no match ports in ${r.name}`);
    for (const p of r.match.ports) checkRange(p, r.name);
    for (const o of r.open) {
      if (o.protocol !== 'tcp' && o.protocol !== 'udp') throw new TriggerPlanError(`bad open protocol in ${r.name}`);
      checkRange(o.ports, r.name);
    }
    for (const h of r.hosts) {
      const m = CIDR_RE.exec(h);
      if (!m || !isIPv4(m[1]!) || (m[2] !== undefined && Number(m[2]) > 32))
        throw new TriggerPlanError(`bad host network ${JSON.stringify(h)} in ${r.name}`);
    }
    if (!Number.isInteger(r.idleTimeout) || r.idleTimeout < 1)
      throw new TriggerPlanError(`bad idle timeout ${r.idleTimeout} in ${r.name}`);
  }
}

const portSet = (ranges: readonly PortRange[]) => `{ ${formatPortRanges(ranges, ', ')} }`;
const ifset = (names: readonly string[]) => `{ ${names.map((n) => `"${n}"`).join(', ')} }`;

function setDef(table: string, rule: string): string {
  return (
    `add set inet ${table} ${triggerSetName(rule)} { type ipv4_addr; flags dynamic,timeout; size ` +
    `${TRIGGER_SET_SIZE}; }`
  );
}

/** the rules of one trigger in the `triggers` chain */
export function triggerRuleLines(o: TriggerInterfaces, r: TriggerKernelRule): string[] {
  const T = `inet ${o.table}`;
  const S = `@${triggerSetName(r.name)}`;
  const t = `timeout ${r.idleTimeout}s`;
  const lan = ifset(o.lan);
  const wan = `"${o.wan}"`;
  const mark = hex(triggerMark(r.id));
  const l4 = r.match.protocol === 'both' ? 'meta l4proto { tcp, udp }' : `meta l4proto ${r.match.protocol}`;
  const hosts = r.hosts.length > 0 ? `ip saddr { ${r.hosts.join(', ')} } ` : '';
  const out = [
    `add rule ${T} ${TRIGGER_CHAIN} iifname ${lan} oifname ${wan} ${hosts}${l4} th dport ` +
      `${portSet(r.match.ports)} update ${S} { ip saddr ${t} } ct state new ct mark set ct mark | ${mark}`,
    `add rule ${T} ${TRIGGER_CHAIN} iifname ${wan} ct mark & ${hex(TRIGGER_CT_MASK)} == ${mark} update ${S} { ip ` +
      `daddr ${t} }`,
  ];
  for (const p of ['tcp', 'udp'] as const) {
    const ranges = r.open.filter((x) => x.protocol === p).map((x) => x.ports);
    if (ranges.length === 0) continue;
    out.push(
      `add rule ${T} ${TRIGGER_CHAIN} iifname ${wan} ct status dnat meta l4proto ${p} th dport ` +
        `${portSet(ranges)} update ${S} { ip daddr ${t} }`,
    );
    out.push(
      `add rule ${T} ${TRIGGER_CHAIN} iifname ${lan} ct status dnat meta l4proto ${p} th sport ` +
        `${portSet(ranges)} update ${S} { ip saddr ${t} }`,
    );
  }
  return out;
}

/**
 * The trigger structure, idempotent like the driver's renderInit: chain (re)created and flushed,
 * one set per rule (existing elements are kept), the rules rewritten. `removed` names sets to delete
 * (rules that went away); deleting after the flush is safe because nothing refers to them any more.
 */
export function renderTriggers(
  o: TriggerInterfaces,
  rules: readonly TriggerKernelRule[],
  removed: readonly string[] = [],
): string[] {
  validateTriggerRules(rules);
  const T = `inet ${o.table}`;
  const cmds = [
    `add chain ${T} ${TRIGGER_CHAIN} { type filter hook forward priority filter - 2; policy accept; }`,
    `flush chain ${T} ${TRIGGER_CHAIN}`,
  ];
  const keep = new Set(rules.map((r) => r.name));
  for (const name of removed) {
    if (keep.has(name) || !SET_NAME_RE.test(name)) continue;
    cmds.push(setDef(o.table, name), `delete set ${T} ${triggerSetName(name)}`);
  }
  for (const r of rules) cmds.push(setDef(o.table, r.name));
  for (const r of rules) cmds.push(...triggerRuleLines(o, r));
  return cmds;
}

/** `add element` for one host (a firing that did not come from a packet, e.g. the admin API) */
export function renderTouch(table: string, rule: string, host: string, seconds: number): string[] {
  if (!SET_NAME_RE.test(rule)) throw new TriggerPlanError(`bad trigger name ${JSON.stringify(rule)}`);
  if (!isIPv4(host)) throw new TriggerPlanError(`bad host ${host}`);
  const s = Math.max(1, Math.ceil(seconds));
  // delete + add: the only way to change an existing element's timeout
  return [
    `add element inet ${table} ${triggerSetName(rule)} { ${host} timeout ${s}s }`,
    `delete element inet ${table} ${triggerSetName(rule)} { ${host} }`,
    `add element inet ${table} ${triggerSetName(rule)} { ${host} timeout ${s}s }`,
  ];
}

/** `1h2m3s456ms` -> ms */
export function parseNftDuration(s: string): number | null {
  const re = /(\d+)(ms|d|h|m|s)/g;
  let total = 0;
  let seen = 0;
  for (const m of s.matchAll(re)) {
    seen += m[0].length;
    const n = Number(m[1]);
    total +=
      m[2] === 'ms'
        ? n
        : m[2] === 's'
          ? n * 1000
          : m[2] === 'm'
            ? n * 60_000
            : m[2] === 'h'
              ? n * 3_600_000
              : n * 86_400_000;
  }
  return seen === s.length && seen > 0 ? total : null;
}

/**
 * Parses `nft list set inet T trig_<rule>_active` (text: it carries milliseconds, JSON only whole
 * seconds) into host -> remaining ms. Elements without a timeout count as active for ever (null).
 */
export function parseActivity(text: string): Map<string, number | null> {
  const out = new Map<string, number | null>();
  const m = /elements = \{([\s\S]*?)\}/.exec(text);
  if (!m) return out;
  for (const raw of m[1]!.split(',')) {
    const el = raw.trim();
    if (!el) continue;
    const addr = /^(\d+\.\d+\.\d+\.\d+)/.exec(el)?.[1];
    if (!addr) continue;
    const exp = /expires (\S+)/.exec(el)?.[1];
    out.set(addr, exp === undefined ? null : (parseNftDuration(exp) ?? 0));
  }
  return out;
}
