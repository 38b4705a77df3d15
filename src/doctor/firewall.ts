/**
 * What would the firewall do with a packet? A small evaluator over `nft -j list ruleset` (pure: the JSON in,
 * a verdict out) for `portd doctor`: does every base chain on a hook accept (or let pass) a flow that portd
 * forwarded, or a packet to a front-end port arriving on the WAN interface?
 *
 * Each match is true, false, `varies` (it depends on the flow: ports, addresses, sets — a rule like
 * `tcp dport 22 accept` accepts some forwarded flows, not all of them) or `unknown` (an expression this
 * evaluator cannot read, e.g. an iptables-nft `xt` match). A `varies` rule is taken as not matching: the
 * question is whether *every* such flow gets through. An `unknown` rule is skipped and remembered, so the
 * answer can say it is not certain.
 *
 * Base chains on one hook are independent (nft(8), "BASE CHAINS"): an accept ends only its own chain, a
 * drop is final. So a packet passes when every base chain on the hook ends in accept.
 */
import { ipInCidr } from '../common/net.js';

/** the packet (and its conntrack entry) the chains are asked about; undefined fields vary per flow */
export interface PacketModel {
  readonly iifname?: string;
  readonly oifname?: string;
  readonly l4proto?: 'tcp' | 'udp';
  readonly dport?: number;
  readonly daddr?: string;
  readonly ctState?: 'new' | 'established';
  /** conntrack status bits known to be set; every other bit known clear */
  readonly ctStatus?: readonly string[];
  /** the conntrack mark when this chain sees the packet; undefined: unknown */
  readonly ctMark?: number;
}

export interface RuleRef {
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly handle: number | null;
  /** the rule in nft's syntax (approximately, for messages) */
  readonly text: string;
}

export interface BaseChain {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly hook: string;
  readonly prio: number;
  readonly policy: 'accept' | 'drop';
}

export interface ChainVerdict {
  readonly chain: BaseChain;
  readonly verdict: 'accept' | 'drop';
  /** the rule that decided; null: the chain's policy */
  readonly by: RuleRef | null;
  /** rules before the verdict this evaluator could not read (the verdict may not hold) */
  readonly unknown: readonly RuleRef[];
}

type Tri = true | false | 'varies' | 'unknown';

interface Rule {
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly handle: number | null;
  readonly expr: readonly unknown[];
}

export interface Ruleset {
  readonly chains: readonly (BaseChain | { family: string; table: string; name: string; hook?: undefined })[];
  readonly rules: ReadonlyMap<string, readonly Rule[]>;
  readonly tables: readonly { family: string; name: string }[];
}

const chainKey = (family: string, table: string, chain: string) => `${family}\u0000${table}\u0000${chain}`;

/** parses `nft -j list ruleset` output (the parsed JSON document); throws on a shape that is not nft's */
export function parseRuleset(doc: unknown): Ruleset {
  const items = (doc as { nftables?: unknown })?.nftables;
  if (!Array.isArray(items)) throw new Error('not nft JSON: no "nftables" array');
  const chains: Ruleset['chains'][number][] = [];
  const rules = new Map<string, Rule[]>();
  const tables: { family: string; name: string }[] = [];
  for (const it of items as Record<string, Record<string, unknown>>[]) {
    if (it['table']) tables.push({ family: String(it['table']['family']), name: String(it['table']['name']) });
    const c = it['chain'];
    if (c) {
      const base = {
        family: String(c['family']),
        table: String(c['table']),
        name: String(c['name']),
      };
      if (typeof c['hook'] === 'string')
        chains.push({
          ...base,
          hook: c['hook'],
          prio: Number(c['prio'] ?? 0),
          policy: c['policy'] === 'drop' ? 'drop' : 'accept',
        });
      else chains.push(base);
    }
    const r = it['rule'];
    if (r) {
      const k = chainKey(String(r['family']), String(r['table']), String(r['chain']));
      const list = rules.get(k) ?? [];
      list.push({
        family: String(r['family']),
        table: String(r['table']),
        chain: String(r['chain']),
        handle: typeof r['handle'] === 'number' ? r['handle'] : null,
        expr: Array.isArray(r['expr']) ? r['expr'] : [],
      });
      rules.set(k, list);
    }
  }
  return { chains, rules, tables };
}

export function baseChains(rs: Ruleset, hook: string, families: readonly string[] = ['ip', 'inet']): BaseChain[] {
  return rs.chains
    .filter((c): c is BaseChain => c.hook === hook && families.includes(c.family))
    .sort((a, b) => a.prio - b.prio);
}

// ---------- rendering (messages only) ----------

function show(v: unknown, quote = false): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return quote && !v.startsWith('@') ? JSON.stringify(v) : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.map((x) => show(x, quote)).join(',');
  const o = v as Record<string, unknown>;
  if ('meta' in o)
    return `meta ${String((o['meta'] as { key: string }).key)}`.replace(/^meta (iifname|oifname|iif|oif)$/, '$1');
  if ('ct' in o) {
    const c = o['ct'] as { key: string; dir?: string };
    return `ct ${c.dir ? `${c.dir} ` : ''}${c.key}`;
  }
  if ('payload' in o) {
    const p = o['payload'] as { protocol: string; field: string };
    return `${p.protocol} ${p.field}`;
  }
  if ('&' in o) {
    const [a, b] = o['&'] as [unknown, unknown];
    return `${show(a)} & ${typeof b === 'number' ? `0x${b.toString(16)}` : show(b)}`;
  }
  if ('|' in o) {
    const [a, b] = o['|'] as [unknown, unknown];
    return `${show(a)} | ${typeof b === 'number' ? `0x${b.toString(16)}` : show(b)}`;
  }
  if ('set' in o) return `{ ${(o['set'] as unknown[]).map((x) => show(x, quote)).join(', ')} }`;
  if ('prefix' in o) {
    const p = o['prefix'] as { addr: string; len: number };
    return `${p.addr}/${p.len}`;
  }
  if ('range' in o) return (o['range'] as unknown[]).map((x) => show(x)).join('-');
  return JSON.stringify(v);
}

function showStatement(s: unknown): string {
  if (!s || typeof s !== 'object') return String(s);
  const o = s as Record<string, unknown>;
  if ('match' in o) {
    const m = o['match'] as { op: string; left: unknown; right: unknown };
    const l = show(m.left);
    const right =
      typeof m.right === 'number' && /mark/.test(l)
        ? `0x${m.right.toString(16)}`
        : show(m.right, /^[io]if(name)?$/.test(l));
    if (m.op === '==' && /&/.test(l)) return `${l} == ${right}`;
    return m.op === '==' || m.op === 'in' ? `${l} ${right}` : `${l} ${m.op} ${right}`;
  }
  for (const v of ['accept', 'drop', 'return', 'continue']) if (v in o) return v;
  if ('reject' in o) return 'reject';
  if ('jump' in o) return `jump ${(o['jump'] as { target: string }).target}`;
  if ('goto' in o) return `goto ${(o['goto'] as { target: string }).target}`;
  if ('counter' in o) return 'counter';
  if ('vmap' in o) {
    const v = o['vmap'] as { key: unknown; data: unknown };
    return `${show(v.key)} vmap ${showVmapData(v.data)}`;
  }
  return Object.keys(o)[0] ?? '?';
}

function showVmapData(d: unknown): string {
  const items = (d as { set?: unknown[] })?.set;
  if (!Array.isArray(items)) return show(d);
  return `{ ${items.map((p) => (Array.isArray(p) ? `${show(p[0])} : ${showStatement(p[1])}` : show(p))).join(', ')} }`;
}

export function ruleText(expr: readonly unknown[]): string {
  return expr.map(showStatement).join(' ');
}

function ref(r: Rule): RuleRef {
  return { family: r.family, table: r.table, chain: r.chain, handle: r.handle, text: ruleText(r.expr) };
}

// ---------- matching ----------

type Value = { kind: 'known'; v: string | number } | { kind: 'varies' } | { kind: 'unknown' } | { kind: 'none' };

const known = (v: string | number | undefined): Value => (v === undefined ? { kind: 'varies' } : { kind: 'known', v });

/** the value of a match's left side for this packet; `none` when the expression implies another protocol */
function leftValue(left: unknown, p: PacketModel): Value {
  if (!left || typeof left !== 'object') return { kind: 'unknown' };
  const o = left as Record<string, unknown>;
  if ('meta' in o) {
    const key = (o['meta'] as { key: string }).key;
    if (key === 'iifname' || key === 'iif') return known(p.iifname);
    if (key === 'oifname' || key === 'oif') return known(p.oifname);
    if (key === 'l4proto' || key === 'protocol')
      return key === 'l4proto' ? known(p.l4proto) : { kind: 'known', v: 'ip' };
    if (key === 'nfproto') return { kind: 'known', v: 'ipv4' };
    if (key === 'mark' || key === 'skuid' || key === 'skgid' || key === 'cgroup') return { kind: 'varies' };
    return { kind: 'unknown' };
  }
  if ('ct' in o) {
    const c = o['ct'] as { key: string; dir?: string };
    if (c.key === 'state') return known(p.ctState);
    if (c.key === 'mark' && !c.dir) return known(p.ctMark);
    if (c.key === 'status') return { kind: 'unknown' }; // flags: handled by matchStatus
    return { kind: 'varies' }; // addresses, ports, zones, helpers of this flow
  }
  if ('payload' in o) {
    const pl = o['payload'] as { protocol?: string; field?: string; base?: string };
    const proto = pl.protocol;
    if (proto === 'ip6' || proto === 'icmp' || proto === 'icmpv6' || proto === 'sctp' || proto === 'dccp')
      return { kind: 'none' };
    if ((proto === 'tcp' || proto === 'udp') && p.l4proto && proto !== p.l4proto) return { kind: 'none' };
    if (proto === 'tcp' || proto === 'udp' || proto === 'th')
      return pl.field === 'dport' ? known(p.dport) : { kind: 'varies' };
    if (proto === 'ip') {
      if (pl.field === 'protocol') return known(p.l4proto);
      if (pl.field === 'daddr') return known(p.daddr);
      return { kind: 'varies' };
    }
    return { kind: 'unknown' };
  }
  if ('&' in o) {
    const [a, mask] = o['&'] as [unknown, unknown];
    const base = leftValue(a, p);
    if (base.kind !== 'known' || typeof base.v !== 'number' || typeof mask !== 'number') return base;
    return { kind: 'known', v: (base.v & mask) >>> 0 };
  }
  return { kind: 'unknown' };
}

function ifnameMatches(pattern: string, name: string): boolean {
  return pattern.endsWith('*') && !pattern.endsWith('\\*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
}

/** does the known value v equal / fall inside one right-hand element? */
function elementMatches(el: unknown, v: string | number, isIfname: boolean): Tri {
  if (typeof el === 'string' && el.startsWith('@')) return 'varies'; // a named set: its elements are not listed here
  if (typeof el === 'string' || typeof el === 'number') {
    if (isIfname && typeof el === 'string' && typeof v === 'string') return ifnameMatches(el, v);
    return String(el) === String(v);
  }
  if (el && typeof el === 'object') {
    const o = el as Record<string, unknown>;
    if ('prefix' in o && typeof v === 'string') {
      const pr = o['prefix'] as { addr: string; len: number };
      try {
        return ipInCidr(v, `${pr.addr}/${pr.len}`);
      } catch {
        return 'unknown';
      }
    }
    if ('range' in o) {
      const [lo, hi] = o['range'] as [unknown, unknown];
      if (typeof v === 'number' && typeof lo === 'number' && typeof hi === 'number') return v >= lo && v <= hi;
      return 'unknown';
    }
    if ('set' in o) return anyOf(o['set'] as unknown[], v, isIfname);
    if ('elem' in o) return elementMatches((o['elem'] as { val: unknown }).val, v, isIfname);
  }
  return 'unknown';
}

function anyOf(items: readonly unknown[], v: string | number, isIfname: boolean): Tri {
  let r: Tri = false;
  for (const it of items) {
    const m = elementMatches(it, v, isIfname);
    if (m === true) return true;
    if (m === 'unknown') r = 'unknown';
    else if (m === 'varies' && r === false) r = 'varies';
  }
  return r;
}

function not(t: Tri): Tri {
  return t === true ? false : t === false ? true : t;
}

/** `ct status dnat` and friends: flags, any of which set */
function matchStatus(op: string, right: unknown, p: PacketModel): Tri {
  if (!p.ctStatus) return 'varies';
  const flags = Array.isArray(right)
    ? right
    : (right as { set?: unknown[] })?.set
      ? (right as { set: unknown[] }).set
      : [right];
  if (!flags.every((f) => typeof f === 'string')) return 'unknown';
  const any = (flags as string[]).some((f) => p.ctStatus!.includes(f));
  if (op === 'in' || op === '==') return any;
  if (op === '!=') return !any;
  return 'unknown';
}

function evalMatch(m: { op?: string; left?: unknown; right?: unknown }, p: PacketModel): Tri {
  const op = m.op ?? '==';
  const left = m.left as Record<string, unknown> | undefined;
  if (left && 'ct' in left && (left['ct'] as { key: string }).key === 'status' && !(left['ct'] as { dir?: string }).dir)
    return matchStatus(op, m.right, p);
  const lv = leftValue(m.left, p);
  if (lv.kind === 'none') return false; // e.g. `icmp type echo-request` for a TCP packet
  if (lv.kind === 'varies') return 'varies';
  if (lv.kind === 'unknown') return 'unknown';
  const v = lv.v;
  const isIfname = !!left && 'meta' in left && /^(iif|oif)(name)?$/.test((left['meta'] as { key: string }).key);
  const right = m.right;
  if (op === '==' || op === 'in' || op === '!=') {
    const r = Array.isArray(right) ? anyOf(right, v, isIfname) : elementMatches(right, v, isIfname);
    return op === '!=' ? not(r) : r;
  }
  if (typeof v === 'number' && typeof right === 'number') {
    if (op === '<') return v < right;
    if (op === '>') return v > right;
    if (op === '<=') return v <= right;
    if (op === '>=') return v >= right;
  }
  return 'unknown';
}

// ---------- chains ----------

type Outcome =
  | { kind: 'accept' | 'drop'; by: RuleRef }
  | { kind: 'fallthrough' }
  /** a verdict from a vmap whose key varies, etc.: nothing certain about this rule */
  | { kind: 'unknown'; by: RuleRef };

const VERDICTS = ['accept', 'drop', 'reject', 'jump', 'goto', 'return', 'continue', 'queue'] as const;

interface EvalState {
  readonly rs: Ruleset;
  readonly p: PacketModel;
  readonly unknown: RuleRef[];
  depth: number;
}

function verdictOf(s: Record<string, unknown>): (typeof VERDICTS)[number] | null {
  for (const v of VERDICTS) if (v in s) return v;
  return null;
}

function applyVerdict(st: EvalState, rule: Rule, stmt: Record<string, unknown>): Outcome | 'next' {
  const v = verdictOf(stmt);
  if (v === 'accept') return { kind: 'accept', by: ref(rule) };
  if (v === 'drop' || v === 'reject') return { kind: 'drop', by: ref(rule) };
  if (v === 'return') return { kind: 'fallthrough' };
  if (v === 'continue') return 'next';
  if (v === 'queue') return { kind: 'unknown', by: ref(rule) };
  if (v === 'jump' || v === 'goto') {
    const target = (stmt[v] as { target: string }).target;
    const r = evalChain(st, rule.family, rule.table, target);
    if (r.kind === 'fallthrough') return v === 'goto' ? r : 'next';
    return r;
  }
  return 'next';
}

function evalRule(st: EvalState, rule: Rule): Outcome | 'next' {
  let uncertain = false;
  for (const e of rule.expr) {
    if (!e || typeof e !== 'object') continue;
    const s = e as Record<string, unknown>;
    if ('match' in s) {
      const t = evalMatch(s['match'] as { op?: string; left?: unknown; right?: unknown }, st.p);
      if (t === false || t === 'varies') return 'next';
      if (t === 'unknown') uncertain = true;
      continue;
    }
    if ('vmap' in s) {
      const vm = s['vmap'] as { key: unknown; data: unknown };
      const items = (vm.data as { set?: unknown[] })?.set;
      if (!Array.isArray(items)) return remember(st, rule);
      let hit: Record<string, unknown> | null = null;
      let unsure = false;
      for (const pair of items) {
        if (!Array.isArray(pair)) continue;
        const t = evalMatch({ op: '==', left: vm.key, right: pair[0] }, st.p);
        if (t === true) {
          hit = pair[1] as Record<string, unknown>;
          break;
        }
        if (t !== false) unsure = true;
      }
      if (unsure && !hit) {
        // the key varies per flow (e.g. `tcp dport vmap`): no verdict for every flow, but not unreadable either
        return 'next';
      }
      if (!hit) return 'next';
      if (uncertain) return remember(st, rule);
      return applyVerdict(st, rule, hit);
    }
    const v = verdictOf(s);
    if (v) {
      if (uncertain) return remember(st, rule);
      return applyVerdict(st, rule, s);
    }
    // statements that only act (counter, log, mangle, set update, nat) pass on; the few that filter do not
    if ('limit' in s || 'quota' in s) return 'next';
    if ('xt' in s) uncertain = true;
  }
  return 'next';
}

function remember(st: EvalState, rule: Rule): 'next' {
  st.unknown.push(ref(rule));
  return 'next';
}

function evalChain(st: EvalState, family: string, table: string, chain: string): Outcome {
  if (st.depth > 16) return { kind: 'fallthrough' }; // the kernel refuses deeper jumps anyway
  st.depth++;
  try {
    for (const rule of st.rs.rules.get(chainKey(family, table, chain)) ?? []) {
      const r = evalRule(st, rule);
      if (r === 'next') continue;
      if (r.kind === 'unknown') {
        st.unknown.push(r.by);
        continue;
      }
      return r;
    }
    return { kind: 'fallthrough' };
  } finally {
    st.depth--;
  }
}

/** what one base chain does with the packet */
export function evaluateBaseChain(rs: Ruleset, chain: BaseChain, p: PacketModel): ChainVerdict {
  const st: EvalState = { rs, p, unknown: [], depth: 0 };
  const r = evalChain(st, chain.family, chain.table, chain.name);
  if (r.kind === 'accept' || r.kind === 'drop') return { chain, verdict: r.kind, by: r.by, unknown: st.unknown };
  return { chain, verdict: chain.policy, by: null, unknown: st.unknown };
}

/** every base chain on the hook (of the given tables or all), in priority order, with its verdict */
export function evaluateHook(
  rs: Ruleset,
  hook: string,
  packet: (chain: BaseChain) => PacketModel,
  filter: (chain: BaseChain) => boolean = () => true,
): ChainVerdict[] {
  return baseChains(rs, hook)
    .filter(filter)
    .map((c) => evaluateBaseChain(rs, c, packet(c)));
}
