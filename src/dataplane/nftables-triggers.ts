/**
 * Port triggering in the kernel (pure text, no processes): see docs/triggers.md.
 *
 * One base chain `triggers` (forward hook, priority filter - 2, so before the driver's own forward
 * chain; it never accepts or drops, it only marks and counts activity) and one dynamic set per rule:
 *
 *   set trig_<rule>_active { type ipv4_addr; flags dynamic,timeout; size 4096; }   LAN hosts active on the rule
 *   set trig_<rule>_active6 { type ipv6_addr; flags dynamic,timeout; size 4096; }  the same for IPv6 hosts
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
 *     # IPv6 (issue 15): the same four with ip6 saddr/daddr and @trig_r_active6; an IPv6 opening is a
 *     # pinhole (no DNAT), so traffic through it is recognised by the forwarding bit 0x100 that portd's
 *     # forward chain sets on every WAN->LAN flow it lets in (the first packet of a flow is not counted:
 *     # this chain runs before the forward chain)
 *     iifname wan ct mark & 0x100 == 0x100 meta l4proto tcp th dport { 6113-6119 }
 *         update @trig_r_active6 { ip6 daddr timeout 600s }
 *   }
 *
 * In the inet table an `ip saddr` / `ip6 saddr` in the update statement brings its own `meta nfproto`
 * check (nft adds the dependency), so an IPv4 rule never marks an IPv6 packet and the other way round.
 * A `hosts` list of one family only leaves out the other family's firing rule.
 *
 * portd reads the firings from `conntrack -E -e NEW --mark 0x400/0x400` (flag bit 0x400, the rule id
 * in bits 16-27) and polls only the small `trig_*_active` sets to follow idleness.
 * ct mark bits 0x100 and 0x200 belong to the forwarding rules (nftables-script.ts) and are never touched.
 */
import { isIPv4 } from 'node:net';
import { canonicalIPv6, formatIPv6, maskIPv6, parseIPv6 } from '../common/ipv6.js';
import type { AddressFamily, PortRange } from '../common/net-types.js';
import { formatPortRanges } from '../common/port-range.js';
import { TRIGGER_ID_MAX, type TriggerKernelRule } from './trigger-kernel.js';

/** ct mark bit on every flow that fired a trigger (the conntrack event filter keys on it) */
export const TRIGGER_CT_FLAG = 0x400;
/** the rule id lives in these bits of the ct mark */
export const TRIGGER_ID_SHIFT = 16;
export const TRIGGER_CT_MASK = (TRIGGER_ID_MAX << TRIGGER_ID_SHIFT) | TRIGGER_CT_FLAG;
/** the chain that holds the trigger rules */
export const TRIGGER_CHAIN = 'triggers';
/**
 * The forwarding bit (nftables-script.ts PORTD_CT_MARK, not imported: that module imports this one): on
 * every WAN->LAN flow portd let in, so on every flow through an IPv6 trigger's pinholes.
 */
export const FORWARD_CT_MARK = 0x100;
/** at most this many hosts tracked per rule and family (a LAN) */
export const TRIGGER_SET_SIZE = 4096;

export interface TriggerInterfaces {
  readonly table: string;
  readonly wan: string;
  readonly lan: readonly string[];
}

const SET_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
const CIDR_RE = /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d{1,2}))?$/;
const CIDR6_RE = /^([0-9a-f:.]+)(?:\/(\d{1,3}))?$/;

export class TriggerPlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TriggerPlanError';
  }
}

/** the rule's activity set for IPv4 hosts (family 4, the default) or IPv6 hosts (`..._active6`) */
export function triggerSetName(rule: string, family: AddressFamily = 4): string {
  return family === 6 ? `trig_${rule}_active6` : `trig_${rule}_active`;
}

/** the address family of a trigger host or network (`192.168.1.0/24`, `2001:db8::/64`), or null when neither */
export function hostFamily(cidr: string): AddressFamily | null {
  const m = CIDR_RE.exec(cidr);
  if (m) return isIPv4(m[1]!) && (m[2] === undefined || Number(m[2]) <= 32) ? 4 : null;
  const m6 = CIDR6_RE.exec(cidr);
  if (!m6 || (m6[2] !== undefined && Number(m6[2]) > 128)) return null;
  const b = parseIPv6(m6[1]!);
  // canonical (RFC 5952) text only, and no host bits beyond the prefix: what config validation stores
  if (!b || formatIPv6(b) !== m6[1]) return null;
  if (m6[2] !== undefined && formatIPv6(maskIPv6(b, Number(m6[2]))) !== m6[1]) return null;
  return 6;
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
      if (hostFamily(h) === null) throw new TriggerPlanError(`bad host network ${JSON.stringify(h)} in ${r.name}`);
    }
    if (!Number.isInteger(r.idleTimeout) || r.idleTimeout < 1)
      throw new TriggerPlanError(`bad idle timeout ${r.idleTimeout} in ${r.name}`);
  }
}

const portSet = (ranges: readonly PortRange[]) => `{ ${formatPortRanges(ranges, ', ')} }`;
const ifset = (names: readonly string[]) => `{ ${names.map((n) => `"${n}"`).join(', ')} }`;

function setDef(table: string, rule: string, family: AddressFamily): string {
  return (
    `add set inet ${table} ${triggerSetName(rule, family)} { type ${family === 6 ? 'ipv6_addr' : 'ipv4_addr'}; ` +
    `flags dynamic,timeout; size ${TRIGGER_SET_SIZE}; }`
  );
}

/** the rules of one trigger in the `triggers` chain: IPv4 first, then IPv6 */
export function triggerRuleLines(o: TriggerInterfaces, r: TriggerKernelRule): string[] {
  const T = `inet ${o.table}`;
  const t = `timeout ${r.idleTimeout}s`;
  const lan = ifset(o.lan);
  const wan = `"${o.wan}"`;
  const mark = hex(triggerMark(r.id));
  const l4 = r.match.protocol === 'both' ? 'meta l4proto { tcp, udp }' : `meta l4proto ${r.match.protocol}`;
  const out: string[] = [];
  for (const family of [4, 6] as const) {
    const S = `@${triggerSetName(r.name, family)}`;
    const ip = family === 6 ? 'ip6' : 'ip';
    const mine = r.hosts.filter((h) => hostFamily(h) === family);
    // hosts of the other family only: no host of this family may fire the rule
    if (r.hosts.length > 0 && mine.length === 0) continue;
    const hosts = mine.length > 0 ? `${ip} saddr { ${mine.join(', ')} } ` : '';
    out.push(
      `add rule ${T} ${TRIGGER_CHAIN} iifname ${lan} oifname ${wan} ${hosts}${l4} th dport ` +
        `${portSet(r.match.ports)} update ${S} { ${ip} saddr ${t} } ct state new ct mark set ct mark | ${mark}`,
      `add rule ${T} ${TRIGGER_CHAIN} iifname ${wan} ct mark & ${hex(TRIGGER_CT_MASK)} == ${mark} update ${S} { ` +
        `${ip} daddr ${t} }`,
    );
    // IPv4 openings are DNAT'd; IPv6 ones are pinholes, whose flows carry the forwarding bit instead
    const through = family === 6 ? `ct mark & ${hex(FORWARD_CT_MARK)} == ${hex(FORWARD_CT_MARK)}` : 'ct status dnat';
    for (const p of ['tcp', 'udp'] as const) {
      const ranges = r.open.filter((x) => x.protocol === p).map((x) => x.ports);
      if (ranges.length === 0) continue;
      out.push(
        `add rule ${T} ${TRIGGER_CHAIN} iifname ${wan} ${through} meta l4proto ${p} th dport ` +
          `${portSet(ranges)} update ${S} { ${ip} daddr ${t} }`,
        `add rule ${T} ${TRIGGER_CHAIN} iifname ${lan} ${through} meta l4proto ${p} th sport ` +
          `${portSet(ranges)} update ${S} { ${ip} saddr ${t} }`,
      );
    }
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
    for (const f of [4, 6] as const) cmds.push(setDef(o.table, name, f), `delete set ${T} ${triggerSetName(name, f)}`);
  }
  for (const r of rules) cmds.push(setDef(o.table, r.name, 4), setDef(o.table, r.name, 6));
  for (const r of rules) cmds.push(...triggerRuleLines(o, r));
  return cmds;
}

/** `add element` for one host (a firing that did not come from a packet, e.g. the admin API) */
export function renderTouch(table: string, rule: string, host0: string, seconds: number): string[] {
  if (!SET_NAME_RE.test(rule)) throw new TriggerPlanError(`bad trigger name ${JSON.stringify(rule)}`);
  const v6 = isIPv4(host0) ? null : canonicalIPv6(host0);
  if (!isIPv4(host0) && v6 === null) throw new TriggerPlanError(`bad host ${host0}`);
  const host = v6 ?? host0;
  const set = triggerSetName(rule, v6 === null ? 4 : 6);
  const s = Math.max(1, Math.ceil(seconds));
  // delete + add: the only way to change an existing element's timeout
  return [
    `add element inet ${table} ${set} { ${host} timeout ${s}s }`,
    `delete element inet ${table} ${set} { ${host} }`,
    `add element inet ${table} ${set} { ${host} timeout ${s}s }`,
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
 * Parses `nft list set inet T trig_<rule>_active` or `..._active6` (text: it carries milliseconds, JSON
 * only whole seconds) into host -> remaining ms, IPv6 hosts in canonical text. Elements without a timeout
 * count as active for ever (null).
 */
export function parseActivity(text: string): Map<string, number | null> {
  const out = new Map<string, number | null>();
  const m = /elements = \{([\s\S]*?)\}/.exec(text);
  if (!m) return out;
  for (const raw of m[1]!.split(',')) {
    const el = raw.trim();
    if (!el) continue;
    const word = /^(\S+)/.exec(el)?.[1] ?? '';
    const addr = isIPv4(word) ? word : canonicalIPv6(word);
    if (!addr) continue;
    const exp = /expires (\S+)/.exec(el)?.[1];
    out.set(addr, exp === undefined ? null : (parseNftDuration(exp) ?? 0));
  }
  return out;
}
