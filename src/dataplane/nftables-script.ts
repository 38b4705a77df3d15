/**
 * Pure nft script generation for the nftables driver: no processes, no clocks (the caller passes `now`).
 *
 * Kernel layout (one table, `table inet <name>`; see docs/nftables.md):
 *   fwd4        proto . port           -> addr . port   single ports
 *   fwd4_range  proto . port-range     -> addr          ranges that keep their port numbers (dnat to an
 *                                                       address keeps the port)
 *   fwd4_peer   remote . proto . port  -> addr . port   leases filtered to one remote peer (ranges expanded
 *                                                       per port)
 *   live_{tcp,udp}[_range]                              external ports that have a lease now (flows of ended
 *                                                       leases are dropped)
 *   ext4                                                our external address(es)
 * Ranges whose internal port differs from the external one are expanded into per-port fwd4 elements
 * (nft 1.0.6 has no port-offset dnat).
 */
import { isIPv4 } from 'node:net';
import type { DataplaneBatch, DataplaneEntry } from './types.js';
import { entryKey } from './types.js';
import { renderTriggers } from './nftables-triggers.js';
import type { TriggerKernelRule } from './trigger-kernel.js';

/** ct mark bit set on every flow portd forwarded; the drop rule and the hairpin masquerade key on it */
export const PORTD_CT_MARK = 0x100;
/** ct mark bit on hairpin flows (LAN -> external address -> LAN), set in forward, masqueraded in postrouting
 *  (postrouting cannot see the input interface, so the decision is made in forward) */
export const PORTD_CT_MARK_HAIRPIN = 0x200;
/** refuse to expand a range with a port offset / peer filter into more elements than this */
export const MAX_EXPANDED_PORTS = 4096;

export type FwdSet = 'fwd4' | 'fwd4_range' | 'fwd4_peer';
export type LiveSet = 'live_tcp' | 'live_udp' | 'live_tcp_range' | 'live_udp_range';
export type ElementSet = FwdSet | LiveSet;
export const FWD_SETS: readonly FwdSet[] = ['fwd4', 'fwd4_range', 'fwd4_peer'];
export const LIVE_SETS: readonly LiveSet[] = ['live_tcp', 'live_udp', 'live_tcp_range', 'live_udp_range'];

export interface NftElement {
  readonly set: ElementSet;
  /** the key as nft writes it, e.g. `tcp . 8080` */
  readonly key: string;
  /** map data, e.g. `192.168.77.11 . 80`; null for sets */
  readonly data: string | null;
  readonly timeout: number | null;
}

export interface RulesetOptions {
  readonly table: string;
  readonly wan: string;
  readonly lan: readonly string[];
  readonly hairpin: boolean;
  readonly frontendPorts: { readonly tcp: readonly number[]; readonly udp: readonly number[] };
  /** port-trigger rules (nftables-triggers.ts): when set, the `triggers` chain and sets are part of the structure */
  readonly triggers?: readonly TriggerKernelRule[];
}

/**
 * what the driver believes is in the kernel: one entry per lease, with its kernel deadline (ms on the caller's clock)
 */
export interface ModelEntry {
  readonly entry: DataplaneEntry;
  /** null = no timeout */
  readonly deadline: number | null;
}

/** the driver's view of the kernel, indexed so a tick costs O(batch), not O(table) */
export class NftModel {
  readonly entries = new Map<string, ModelEntry>();
  /** live element -> the entry key holding it, or a Set when several do (peer-filtered leases on one
   *  port): one Set per lease was ≈ 15 MB at 100k leases, almost all with one holder. Single-port live
   *  elements are keyed by a number (a `live_tcp/8080` string per lease was three heap objects) */
  private readonly liveHolders = new Map<number | string, string | Set<string>>();
  get size(): number {
    return this.entries.size;
  }
  get(k: string): ModelEntry | undefined {
    return this.entries.get(k);
  }
  hasLive(id: string): boolean {
    return this.liveHolders.has(liveSlot(id));
  }
  /** entry keys holding a live element */
  holders(id: string): readonly string[] {
    const h = this.liveHolders.get(liveSlot(id));
    return h === undefined ? [] : typeof h === 'string' ? [h] : [...h];
  }
  /** every live element id with its holders */
  *live(): Generator<[string, readonly string[]]> {
    for (const [slot, h] of this.liveHolders) yield [slotId(slot), typeof h === 'string' ? [h] : [...h]];
  }
  set(k: string, m: ModelEntry): void {
    this.delete(k);
    this.entries.set(k, m);
    const id = entrySlot(m.entry);
    const h = this.liveHolders.get(id);
    if (h === undefined) this.liveHolders.set(id, k);
    else if (typeof h === 'string') {
      if (h !== k) this.liveHolders.set(id, new Set([h, k]));
    } else h.add(k);
  }
  delete(k: string): void {
    const m = this.entries.get(k);
    if (!m) return;
    this.entries.delete(k);
    const id = entrySlot(m.entry);
    const h = this.liveHolders.get(id);
    if (h === undefined) return;
    if (typeof h === 'string') {
      if (h === k) this.liveHolders.delete(id);
      return;
    }
    h.delete(k);
    if (h.size === 1) this.liveHolders.set(id, h.values().next().value as string);
    else if (h.size === 0) this.liveHolders.delete(id);
  }
  clear(): void {
    this.entries.clear();
    this.liveHolders.clear();
  }
  apply(changes: ModelChanges): void {
    for (const k of changes.delete) this.delete(k);
    for (const [k, m] of changes.set) this.set(k, m);
  }
  /** drops entries whose kernel timeout has passed (the kernel dropped them on its own); returns how many */
  pruneExpired(now: number): number {
    let n = 0;
    for (const [k, m] of this.entries)
      if (m.deadline !== null && m.deadline <= now) {
        this.delete(k);
        n++;
      }
    return n;
  }
}

/**
 * the live-holder map's key for a live element: a number for a single port (tcp 0-65535, udp 65536-131071), else its id
 */
function entrySlot(e: Pick<DataplaneEntry, 'protocol' | 'externalPort' | 'externalPortEnd'>): number | string {
  return e.externalPortEnd === e.externalPort ? (e.protocol === 'udp' ? 65536 : 0) + e.externalPort : liveId(liveOf(e));
}
function liveSlot(id: string): number | string {
  if (id.startsWith('live_tcp/')) {
    const p = Number(id.slice(9));
    if (Number.isInteger(p)) return p;
  }
  if (id.startsWith('live_udp/')) {
    const p = Number(id.slice(9));
    if (Number.isInteger(p)) return 65536 + p;
  }
  return id;
}
function slotId(slot: number | string): string {
  return typeof slot === 'string' ? slot : slot >= 65536 ? `live_udp/${slot - 65536}` : `live_tcp/${slot}`;
}

export interface ModelChanges {
  readonly delete: readonly string[];
  readonly set: readonly (readonly [string, ModelEntry])[];
}

function liveId(lv: { set: LiveSet; key: string }): string {
  return `${lv.set}/${lv.key}`;
}

export class NftPlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NftPlanError';
  }
}

const TABLE_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const IFNAME_RE = /^[A-Za-z0-9_.:@+-]{1,15}$/;

export function validateRulesetOptions(o: RulesetOptions): void {
  if (!TABLE_RE.test(o.table))
    throw new NftPlanError(`bad table name ${JSON.stringify(o.table)} (letters, digits, _; max 32)`);
  for (const i of [o.wan, ...o.lan])
    if (!IFNAME_RE.test(i)) throw new NftPlanError(`bad interface name ${JSON.stringify(i)}`);
  if (o.lan.length === 0) throw new NftPlanError('at least one LAN interface is needed');
  for (const p of [...o.frontendPorts.tcp, ...o.frontendPorts.udp]) checkPort(p);
}

function checkPort(p: number): void {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new NftPlanError(`bad port ${p}`);
}

function checkEntry(e: DataplaneEntry): void {
  if (e.protocol !== 'tcp' && e.protocol !== 'udp')
    throw new NftPlanError(`bad protocol ${String(e.protocol)} in ${e.id}`);
  checkPort(e.externalPort);
  checkPort(e.externalPortEnd);
  checkPort(e.internalPort);
  if (e.externalPortEnd < e.externalPort)
    throw new NftPlanError(`bad range ${e.externalPort}-${e.externalPortEnd} in ${e.id}`);
  if (e.internalPort + (e.externalPortEnd - e.externalPort) > 65535)
    throw new NftPlanError(`internal range past 65535 in ${e.id}`);
  if (!isIPv4(e.internalAddress)) throw new NftPlanError(`bad internal address ${e.internalAddress} in ${e.id}`);
  if (e.remoteAddress !== null && !isIPv4(e.remoteAddress))
    throw new NftPlanError(`bad remote address ${e.remoteAddress} in ${e.id}`);
  if (e.timeoutSeconds !== null && !(Number.isFinite(e.timeoutSeconds) && e.timeoutSeconds > 0))
    throw new NftPlanError(`bad timeout ${e.timeoutSeconds} in ${e.id}`);
  const width = e.externalPortEnd - e.externalPort + 1;
  if (width > 1 && (e.remoteAddress !== null || e.internalPort !== e.externalPort) && width > MAX_EXPANDED_PORTS) {
    throw new NftPlanError(
      `range of ${width} ports with a port offset or peer filter exceeds ${MAX_EXPANDED_PORTS} in ${e.id}`,
    );
  }
}

/** an element's timeout as written to the kernel: whole seconds, at least 1 (both transports round alike) */
export function timeoutSeconds(t: number): number {
  return Math.max(1, Math.ceil(t));
}

function timeoutText(t: number | null): string {
  return t === null ? '' : ` timeout ${timeoutSeconds(t)}s`;
}

/** the forwarding elements of one lease (without timeout: the caller sets it) */
export function fwdElements(e: DataplaneEntry, timeout: number | null): NftElement[] {
  const p = e.protocol;
  const width = e.externalPortEnd - e.externalPort + 1;
  if (width === 1 && e.remoteAddress === null) {
    return [
      { set: 'fwd4', key: `${p} . ${e.externalPort}`, data: `${e.internalAddress} . ${e.internalPort}`, timeout },
    ];
  }
  if (e.remoteAddress === null && e.internalPort === e.externalPort) {
    return [
      { set: 'fwd4_range', key: `${p} . ${e.externalPort}-${e.externalPortEnd}`, data: e.internalAddress, timeout },
    ];
  }
  const out: NftElement[] = [];
  for (let i = 0; i < width; i++) {
    const ext = e.externalPort + i;
    const int = e.internalPort + i;
    out.push(
      e.remoteAddress === null
        ? { set: 'fwd4', key: `${p} . ${ext}`, data: `${e.internalAddress} . ${int}`, timeout }
        : {
            set: 'fwd4_peer',
            key: `${e.remoteAddress} . ${p} . ${ext}`,
            data: `${e.internalAddress} . ${int}`,
            timeout,
          },
    );
  }
  return out;
}

/** the live-port element a lease holds (shared by leases on the same ports, e.g. several peer-filtered ones) */
export function liveOf(e: Pick<DataplaneEntry, 'protocol' | 'externalPort' | 'externalPortEnd'>): {
  set: LiveSet;
  key: string;
} {
  return e.externalPortEnd === e.externalPort
    ? { set: e.protocol === 'tcp' ? 'live_tcp' : 'live_udp', key: String(e.externalPort) }
    : {
        set: e.protocol === 'tcp' ? 'live_tcp_range' : 'live_udp_range',
        key: `${e.externalPort}-${e.externalPortEnd}`,
      };
}

function remainingSeconds(deadline: number | null, now: number): number | null {
  return deadline === null ? null : Math.max(1, Math.ceil((deadline - now) / 1000));
}

function deadlineOf(e: DataplaneEntry, now: number): number | null {
  // whole ms (the kernel's timeout starts at `now` or later, so this is never past it): a small integer is
  // stored in the entry itself, a fractional one is a heap number per lease
  return e.timeoutSeconds === null ? null : Math.floor(now) + Math.ceil(e.timeoutSeconds) * 1000;
}

function elemText(el: NftElement): string {
  return el.data === null ? `${el.key}${timeoutText(el.timeout)}` : `${el.key}${timeoutText(el.timeout)} : ${el.data}`;
}

/**
 * one `add`/`delete` of elements of one set: what a tick writes, in order (rendered by stepCommands, or sent over
 * netlink)
 */
export interface ElementStep {
  readonly verb: 'add' | 'delete';
  readonly set: ElementSet;
  readonly elements: readonly NftElement[];
}

/** groups elements per set into steps, in a fixed set order */
function grouped(verb: 'add' | 'delete', els: readonly NftElement[]): ElementStep[] {
  const order: ElementSet[] = [...FWD_SETS, ...LIVE_SETS];
  const by = new Map<ElementSet, NftElement[]>();
  for (const el of els) {
    const list = by.get(el.set);
    if (list) list.push(el);
    else by.set(el.set, [el]);
  }
  const out: ElementStep[] = [];
  for (const s of order) {
    const list = by.get(s);
    if (list && list.length > 0) out.push({ verb, set: s, elements: list });
  }
  return out;
}

/** the steps as nft commands: `verb element inet T set { a, b }` */
export function stepCommands(table: string, steps: readonly ElementStep[]): string[] {
  return steps.map(
    (st) =>
      `${st.verb} element inet ${table} ${st.set} { ` +
      `${st.elements.map((el) => (st.verb === 'add' ? elemText(el) : el.key)).join(', ')} }`,
  );
}

function ifset(names: readonly string[]): string {
  return `{ ${names.map((n) => `"${n}"`).join(', ')} }`;
}

/**
 * Idempotent structure: creates what is missing, keeps existing elements, rewrites our chains' rules.
 * `add` of an existing set with the same definition is a no-op; a different definition fails the batch
 * (the driver then recreates the table).
 */
export function renderInit(o: RulesetOptions): string[] {
  validateRulesetOptions(o);
  const T = `inet ${o.table}`;
  const M = `0x${PORTD_CT_MARK.toString(16)}`;
  const lan = ifset(o.lan);
  const wan = `"${o.wan}"`;
  const notLan = o.hairpin ? '' : `iifname != ${lan} `;
  const cmds = [
    `add table ${T}`,
    `add map ${T} fwd4 { type inet_proto . inet_service : ipv4_addr . inet_service; flags timeout; }`,
    `add map ${T} fwd4_range { type inet_proto . inet_service : ipv4_addr; flags interval,timeout; }`,
    `add map ${T} fwd4_peer { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags timeout; }`,
    `add set ${T} ext4 { type ipv4_addr; }`,
    `add set ${T} live_tcp { type inet_service; flags timeout; }`,
    `add set ${T} live_udp { type inet_service; flags timeout; }`,
    `add set ${T} live_tcp_range { type inet_service; flags interval,timeout; }`,
    `add set ${T} live_udp_range { type inet_service; flags interval,timeout; }`,
    `add chain ${T} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `add chain ${T} forward { type filter hook forward priority filter - 1; policy accept; }`,
    `add chain ${T} input { type filter hook input priority filter - 1; policy accept; }`,
    `flush chain ${T} prerouting`,
    `flush chain ${T} postrouting`,
    `flush chain ${T} forward`,
    `flush chain ${T} input`,
    // peer-filtered first: a peer lease wins over an open one on the same port
    `add rule ${T} prerouting ${notLan}ip daddr @ext4 dnat ip to ip saddr . meta l4proto . th dport map @fwd4_peer`,
    `add rule ${T} prerouting ${notLan}ip daddr @ext4 dnat ip to meta l4proto . th dport map @fwd4`,
    `add rule ${T} prerouting ${notLan}ip daddr @ext4 dnat ip to meta l4proto . th dport map @fwd4_range`,
  ];
  // flows of ended leases: drop marked flows whose external port is no longer live (holds when portd is dead)
  for (const p of ['tcp', 'udp'] as const) {
    cmds.push(
      `add rule ${T} forward ct mark & ${M} == ${M} meta l4proto ${p} ct original proto-dst != @live_${p} ct ` +
        `original proto-dst != @live_${p}_range drop`,
    );
  }
  // mark new flows that portd forwarded (original destination: our address, a live port)
  for (const p of ['tcp', 'udp'] as const) {
    for (const s of [`live_${p}`, `live_${p}_range`]) {
      cmds.push(
        `add rule ${T} forward ct status dnat ct state new ct original ip daddr @ext4 meta l4proto ${p} ct ` +
          `original proto-dst @${s} ct mark set ct mark | ${M}`,
      );
    }
  }
  if (o.hairpin) {
    const H = `0x${PORTD_CT_MARK_HAIRPIN.toString(16)}`;
    cmds.push(
      `add rule ${T} forward iifname ${lan} oifname ${lan} ct state new ct mark & ${M} == ${M} ct mark set ct ` +
        `mark | ${H}`,
    );
    cmds.push(`add rule ${T} postrouting ct mark & ${H} == ${H} masquerade`);
  }
  cmds.push(`add rule ${T} forward ct mark & ${M} == ${M} accept`);
  if (o.frontendPorts.tcp.length > 0)
    cmds.push(`add rule ${T} input iifname ${wan} tcp dport { ${[...new Set(o.frontendPorts.tcp)].join(', ')} } drop`);
  if (o.frontendPorts.udp.length > 0)
    cmds.push(`add rule ${T} input iifname ${wan} udp dport { ${[...new Set(o.frontendPorts.udp)].join(', ')} } drop`);
  if (o.triggers) cmds.push(...renderTriggers(o, o.triggers));
  return cmds;
}

/** recreate the table from scratch in one batch (used when our table's definitions conflict, e.g. an older layout) */
export function renderRecreate(o: RulesetOptions): string[] {
  return [`add table inet ${o.table}`, `delete table inet ${o.table}`, ...renderInit(o)];
}

export function renderExternalAddresses(table: string, addresses: readonly string[]): string[] {
  for (const a of addresses) if (!isIPv4(a)) throw new NftPlanError(`bad external address ${a}`);
  const out = [`flush set inet ${table} ext4`];
  if (addresses.length > 0) out.push(`add element inet ${table} ext4 { ${[...new Set(addresses)].join(', ')} }`);
  return out;
}

export interface BatchPlan {
  /** the writes as nft commands, rendered when read (a tick sent over netlink never needs them) */
  readonly commands: string[];
  /** the same writes as element steps (for the netlink transport) */
  readonly steps: readonly ElementStep[];
  /** to apply to the model once the kernel accepted the commands */
  readonly changes: ModelChanges;
  /** element operations written */
  readonly elements: number;
}

/**
 * One writer tick. Every element the tick removes or renews is first `add`ed with the data it holds
 * (a no-op when present, and it makes the following delete safe when the kernel already expired
 * it), then deleted; then the new elements are added with fresh timeouts. So a late removal cannot
 * fail the tick, a renewal replaces the timeout atomically, and an element with different data
 * (drift) fails the batch instead of being overwritten. Brand-new keys are plain adds (the common
 * case, 2-3x cheaper in nft). Live-port elements are rewritten whenever their holders change, with
 * the longest remaining timeout among the holders.
 */
export function planBatch(table: string, model: NftModel, batch: DataplaneBatch, now: number): BatchPlan {
  const removed = new Set<string>();
  const added = new Map<string, ModelEntry>();
  const touched = new Map<string, NftElement>(); // element id -> element as the kernel holds it (for the pre-add)
  const touchedLive = new Map<string, { set: LiveSet; key: string }>();
  const newEls: NftElement[] = [];
  const liveOfRemovals = new Set<string>();
  const touch = (el: NftElement) => {
    const id = `${el.set}/${el.key}`;
    if (!touched.has(id)) touched.set(id, { ...el, timeout: 1 });
  };
  for (const e of batch.remove) {
    checkEntry(e);
    const k = entryKey(e);
    if (removed.has(k)) continue;
    removed.add(k);
    // the data the kernel holds is what we added; fall back to the caller's view
    const src = model.get(k)?.entry ?? e;
    for (const el of fwdElements(src, 1)) touch(el);
    const lv = liveOf(src);
    touchedLive.set(liveId(lv), lv);
    liveOfRemovals.add(liveId(lv));
  }
  for (const e of batch.add) {
    checkEntry(e);
    const k = entryKey(e);
    const held = model.get(k);
    // an entry past its kernel deadline is gone from the kernel even if the model was not pruned yet
    if (added.has(k) || (held !== undefined && (held.deadline === null || held.deadline > now) && !removed.has(k))) {
      throw new NftPlanError(
        `element ${k} exists (lease ${(added.get(k) ?? model.get(k))?.entry.id}); remove it first`,
      );
    }
    added.set(k, { entry: e, deadline: deadlineOf(e, now) });
    // a key we never held (or held and removed in this tick) needs no pre-add: plain add, and the
    // kernel refuses it if an element with other data is there (drift). An entry past its deadline
    // may still linger in the kernel for a moment: touch it like a removal.
    const touchIt = removed.has(k) || held !== undefined;
    for (const el of fwdElements(e, e.timeoutSeconds)) {
      if (touchIt) touch(el);
      newEls.push(el);
    }
    const lv = liveOf(e);
    touchedLive.set(liveId(lv), lv);
  }
  const addedByLive = new Map<string, ModelEntry[]>();
  for (const m of added.values()) {
    const id = liveId(liveOf(m.entry));
    const list = addedByLive.get(id);
    if (list) list.push(m);
    else addedByLive.set(id, [m]);
  }
  const liveEls: NftElement[] = [];
  for (const [id, lv] of touchedLive) {
    if (model.hasLive(id) || liveOfRemovals.has(id)) touch({ set: lv.set, key: lv.key, data: null, timeout: 1 });
    const holders: ModelEntry[] = [];
    for (const k of model.holders(id)) {
      const m = model.get(k);
      if (m && !removed.has(k) && !added.has(k) && (m.deadline === null || m.deadline > now)) holders.push(m);
    }
    holders.push(...(addedByLive.get(id) ?? []));
    if (holders.length === 0) continue;
    const deadline = holders.some((h) => h.deadline === null)
      ? null
      : Math.max(...holders.map((h) => h.deadline as number));
    liveEls.push({ set: lv.set, key: lv.key, data: null, timeout: remainingSeconds(deadline, now) });
  }
  const pre = [...touched.values()];
  const steps = [...grouped('add', pre), ...grouped('delete', pre), ...grouped('add', [...newEls, ...liveEls])];
  return {
    get commands() {
      return stepCommands(table, steps);
    },
    steps,
    changes: { delete: [...removed], set: [...added] },
    elements: pre.length * 2 + newEls.length + liveEls.length,
  };
}

/**
 * Reconcile: rewrite the structure (idempotent init), empty every lease map and live set and
 * fill them with exactly `entries`, in one batch. The external address set is kept.
 */
export function planReset(
  o: RulesetOptions,
  entries: readonly DataplaneEntry[],
  now: number,
): { commands: string[]; model: NftModel; duplicates: string[] } {
  const { model, duplicates } = planResetModel(entries, now);
  return { commands: [...renderInit(o), ...renderFill(o.table, model, now)], model, duplicates };
}

/** the model a reset to `entries` leaves (the script: renderInit + renderFillLines) */
export function planResetModel(
  entries: readonly DataplaneEntry[],
  now: number,
): { model: NftModel; duplicates: string[] } {
  const model = new NftModel();
  const duplicates: string[] = [];
  for (const e of entries) {
    checkEntry(e);
    const k = entryKey(e);
    if (model.get(k)) duplicates.push(k);
    model.set(k, { entry: e, deadline: deadlineOf(e, now) });
  }
  return { model, duplicates };
}

/** flush every lease map and live set, then add the model's elements with their remaining timeouts */
export function renderFill(table: string, model: NftModel, now: number): string[] {
  return [...renderFillLines(table, model, now, Infinity)];
}

/**
 * renderFill one command at a time, at most `chunk` elements per command, so a fill of 100k leases
 * never exists as one string or one array of element objects (the driver writes it to a file as it comes)
 */
export function* renderFillLines(table: string, model: NftModel, now: number, chunk = 2048): Generator<string> {
  for (const s of FWD_SETS) yield `flush map inet ${table} ${s}`;
  for (const s of LIVE_SETS) yield `flush set inet ${table} ${s}`;
  const order: ElementSet[] = [...FWD_SETS, ...LIVE_SETS];
  const pending = new Map<ElementSet, string[]>(order.map((s) => [s, []]));
  const command = (s: ElementSet, list: string[]) => `add element inet ${table} ${s} { ${list.join(', ')} }`;
  function* put(el: NftElement): Generator<string> {
    const list = pending.get(el.set)!;
    list.push(elemText(el));
    if (list.length >= chunk) {
      yield command(el.set, list);
      pending.set(el.set, []);
    }
  }
  for (const m of model.entries.values())
    for (const el of fwdElements(m.entry, remainingSeconds(m.deadline, now))) yield* put(el);
  for (const [, holders] of model.live()) {
    let first: ModelEntry | undefined;
    let deadline: number | null = -Infinity;
    for (const k of holders) {
      const m = model.get(k);
      if (!m) continue;
      first ??= m;
      deadline = deadline === null || m.deadline === null ? null : Math.max(deadline, m.deadline);
    }
    if (!first) continue;
    const lv = liveOf(first.entry);
    yield* put({ set: lv.set, key: lv.key, data: null, timeout: remainingSeconds(deadline, now) });
  }
  for (const s of order) {
    const list = pending.get(s)!;
    if (list.length > 0) yield command(s, list);
  }
}

// ---------- reading the kernel back (nft -j list table) ----------

export interface KernelElement {
  readonly set: ElementSet;
  readonly key: string;
  readonly data: string | null;
  /** seconds left; null = no timeout */
  readonly expires: number | null;
}

export interface KernelTable {
  readonly handle: number;
  readonly elements: KernelElement[];
  readonly ext4: string[];
}

function scalar(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (v && typeof v === 'object' && 'range' in v) {
    const r = (v as { range: unknown[] }).range;
    return `${String(r[0])}-${String(r[1])}`;
  }
  if (v && typeof v === 'object' && 'prefix' in v) {
    const p = (v as { prefix: { addr: string; len: number } }).prefix;
    return `${p.addr}/${p.len}`;
  }
  throw new Error(`unexpected nft json value ${JSON.stringify(v)}`);
}

function exprText(v: unknown): string {
  if (v && typeof v === 'object' && 'concat' in v) return (v as { concat: unknown[] }).concat.map(scalar).join(' . ');
  return scalar(v);
}

/** seconds in an nft duration (`1d59m59s988ms`, `59m`, `2h`) */
export function durationSeconds(text: string): number {
  let total = 0;
  for (const m of text.matchAll(/(\d+)(ms|d|h|m|s)/g)) {
    const n = Number(m[1]);
    total += m[2] === 'ms' ? n / 1000 : m[2] === 'd' ? n * 86400 : m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : n;
  }
  return total;
}

/**
 * The elements of one set or map from plain-text `nft list set|map inet T <name>`, read as the output
 * arrives (push() each chunk, end() at the close). The same elements as parseTableJson, without holding
 * the whole listing or a JSON tree of it: at 100k leases that JSON was 18 MB parsed in one go, 0.3–0.5 s
 * of blocked event loop and ≈ 150 MB of garbage. Elements are `key [timeout T] [expires E] [: data]`,
 * comma-separated inside `elements = { ... }` (none of our keys or data holds a comma or a brace).
 */
export class ListedElements {
  private tail = '';
  private started = false;
  private finished = false;
  constructor(
    private readonly set: ElementSet,
    private readonly onElement: (el: KernelElement) => void,
  ) {}

  push(chunk: string): void {
    if (this.finished) return;
    let text = this.tail + chunk;
    if (!this.started) {
      const at = text.indexOf('elements = {');
      if (at < 0) {
        this.tail = text.slice(-16);
        return;
      }
      text = text.slice(at + 12);
      this.started = true;
    }
    const close = text.indexOf('}');
    const stop = close < 0 ? text.length : close;
    let from = 0;
    for (let comma = text.indexOf(','); comma >= 0 && comma < stop; comma = text.indexOf(',', from)) {
      this.element(text.slice(from, comma));
      from = comma + 1;
    }
    if (close >= 0) {
      this.element(text.slice(from, close));
      this.finished = true;
      this.tail = '';
    } else {
      this.tail = text.slice(from);
    }
  }

  /** whether the listing was whole: its element list closed, or it had none (an empty set lists no `elements`) */
  end(): boolean {
    return this.finished || !this.started;
  }

  private element(raw: string): void {
    const s = raw.trim();
    if (s === '') return;
    const colon = s.indexOf(' : ');
    const left = colon < 0 ? s : s.slice(0, colon);
    const t = left.indexOf(' timeout ');
    const e = left.indexOf(' expires ');
    const keyEnd = t >= 0 ? t : e >= 0 ? e : left.length;
    let expires: number | null = null;
    if (e >= 0) expires = durationSeconds(left.slice(e + 9));
    else if (t >= 0) expires = durationSeconds(left.slice(t + 9));
    this.onElement({ set: this.set, key: left.slice(0, keyEnd), data: colon < 0 ? null : s.slice(colon + 3), expires });
  }
}

/** parses `nft -j list table inet T` into our elements; unknown sets are ignored */
export function parseTableJson(json: string, table: string): KernelTable | null {
  const doc = JSON.parse(json) as { nftables?: Record<string, unknown>[] };
  let handle: number | null = null;
  const elements: KernelElement[] = [];
  const ext4: string[] = [];
  const known = new Set<string>([...FWD_SETS, ...LIVE_SETS]);
  for (const item of doc.nftables ?? []) {
    const t = item['table'] as { family: string; name: string; handle: number } | undefined;
    if (t && t.family === 'inet' && t.name === table) handle = t.handle;
    const s = (item['map'] ?? item['set']) as
      | { family: string; table: string; name: string; elem?: unknown[] }
      | undefined;
    if (s?.family !== 'inet' || s.table !== table) continue;
    for (const raw of s.elem ?? []) {
      let keyPart: unknown = raw;
      let data: string | null = null;
      if (item['map'] !== undefined && Array.isArray(raw)) {
        keyPart = raw[0];
        data = exprText(raw[1]);
      }
      let expires: number | null = null;
      if (keyPart && typeof keyPart === 'object' && 'elem' in keyPart) {
        const el = (keyPart as { elem: { val: unknown; timeout?: number; expires?: number } }).elem;
        expires = el.expires ?? el.timeout ?? null;
        keyPart = el.val;
      }
      const key = exprText(keyPart);
      if (s.name === 'ext4') {
        ext4.push(key);
        continue;
      }
      if (!known.has(s.name)) continue;
      elements.push({ set: s.name as ElementSet, key, data, expires });
    }
  }
  return handle === null ? null : { handle, elements, ext4 };
}

/** the items of our table (`inet <table>`: the table, its sets, maps, chains, rules) out of a JSON listing
 *  of the whole ruleset, as a JSON document of the same form */
export function tableOnly(json: string, table: string): string {
  const doc = JSON.parse(json) as { nftables?: Record<string, Record<string, unknown>>[] };
  const ours = (doc.nftables ?? []).filter((item) => {
    const [kind, body] = Object.entries(item)[0] ?? [];
    if (!kind || !body || kind === 'metainfo') return false;
    return body['family'] === 'inet' && (kind === 'table' ? body['name'] === table : body['table'] === table);
  });
  return JSON.stringify({ nftables: ours });
}

/** finds our table's handle in `nft -j list tables` (or any listing that holds the table) */
export function parseTablesJson(json: string, table: string): number | null {
  const doc = JSON.parse(json) as { nftables?: Record<string, unknown>[] };
  for (const item of doc.nftables ?? []) {
    const t = item['table'] as { family: string; name: string; handle: number } | undefined;
    if (t && t.family === 'inet' && t.name === table) return t.handle;
  }
  return null;
}

/** how many elements `nft -j list set|map ...` shows (0 for a set without elements) */
export function countSetElements(json: string): number {
  const doc = JSON.parse(json) as { nftables?: Record<string, { elem?: unknown[] } | undefined>[] };
  let n = 0;
  for (const item of doc.nftables ?? []) n += (item['set'] ?? item['map'])?.elem?.length ?? 0;
  return n;
}

/** renders commands for `nft -f -` (one transaction per file) */
export function asFile(commands: readonly string[]): string {
  return commands.length === 0 ? '' : `${commands.join('\n')}\n`;
}

/** renders commands as one interactive line (`nft -i` makes one transaction per line) */
export function asLine(commands: readonly string[]): string {
  return commands.join('; ');
}
