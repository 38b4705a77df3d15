/**
 * What a writer tick or a reconcile writes, planned over the typed model (model.ts): pure, no processes,
 * no clocks (the caller passes `now`). A plan is element steps (typed records); nft text (nft-text.ts)
 * and netlink (nf-netlink.ts) encode the same steps.
 */
import {
  ELEMENT_SETS,
  FWD_SETS,
  LIVE_SETS,
  NftPlanError,
  PINHOLE_SETS,
  SNAT_SETS,
  elementId,
  forwardElements,
  liveElement,
  mappingOf,
  snatElementAt,
  snatElements,
  type ElementSet,
  type ElementStep,
  type NftElement,
} from './model.js';
import { elementText, stepCommands } from './nft-text.js';
import { renderInit, type RulesetOptions } from './nftables-script.js';
import type { DataplaneBatch, DataplaneEntry } from './types.js';
import { entryKey } from './types.js';

/**
 * what the driver believes is in the kernel: one entry per lease, with its kernel deadline (ms on the caller's clock)
 */
export interface ModelEntry {
  readonly entry: DataplaneEntry;
  /** null = no timeout */
  readonly deadline: number | null;
}

/** the forwarding elements of a lease (validated through the model) */
export function entryElements(e: DataplaneEntry, timeout: number | null): NftElement[] {
  return forwardElements(mappingOf(e), timeout);
}

type LiveKey = Pick<DataplaneEntry, 'family' | 'protocol' | 'externalPort' | 'externalPortEnd'>;

/** the live-port element an IPv4 lease holds (its timeout left null: the holders decide it); null for a pinhole */
export function entryLive(e: LiveKey): NftElement | null {
  return e.family === 6 ? null : liveElement(e, null);
}

/**
 * the live-holder map's key for a live element: a number for a single port (tcp 0-65535, udp 65536-131071),
 * else its element id
 */
function liveSlot(el: NftElement): number | string {
  if (el.set === 'live_tcp') return el.port;
  if (el.set === 'live_udp') return 65536 + el.port;
  return elementId(el);
}

function entrySlot(e: LiveKey): number | string | null {
  if (e.family === 6) return null;
  return e.externalPortEnd === e.externalPort
    ? (e.protocol === 'udp' ? 65536 : 0) + e.externalPort
    : elementId(liveElement(e, null));
}

/** a dotted quad as a number, or null; by hand: the model indexes every lease with it (isIPv4 and a split per
 *  lease cost more than the rest of the index) */
function quadInt(text: string): number | null {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return null;
      n = n * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return null;
    } else return null;
  }
  if (dots !== 3 || digits === 0) return null;
  return n * 256 + part;
}

/**
 * The outbound source-NAT slots of a lease: one per kernel SNAT element it would write (model.ts snatElements).
 * A single internal port is a number (address · 2^17 + udp · 2^16 + port: below 2^49, exact in a double; a
 * string per lease was three heap objects), a range that keeps its port numbers its snat4_range element id.
 * Several leases may map one internal endpoint (UPnP: two external ports to one internal port; peer-filtered
 * leases): they share the slot, and one of them (snatWinner) is the kernel element.
 */
export function entrySnatSlots(e: DataplaneEntry): (number | string)[] {
  if (e.family === 6) return [];
  const a = quadInt(e.externalAddress);
  const b = quadInt(e.internalAddress);
  if (a === null || b === null || a === 0) return [];
  const width = e.externalPortEnd - e.externalPort + 1;
  if (width > 1 && e.internalPort === e.externalPort) {
    const el = snatElements(mappingOf(e), null)[0];
    return el ? [elementId(el)] : [];
  }
  const base = (b * 2 + (e.protocol === 'udp' ? 1 : 0)) * 65536;
  const out: number[] = [];
  for (let i = 0; i < width; i++) out.push(base + e.internalPort + i);
  return out;
}

/**
 * Which of the leases sharing an internal endpoint its outbound flows leave from: an unfiltered lease before a
 * peer-filtered one, then the lowest external port, then the key. Depends on the holders only, never on the
 * order they came in, so a reset, a tick and an audit agree.
 */
export function snatWinner(holders: readonly ModelEntry[]): ModelEntry | null {
  let best: ModelEntry | null = null;
  for (const h of holders) {
    if (best === null) {
      best = h;
      continue;
    }
    const a = h.entry;
    const b = best.entry;
    const ra = a.remoteAddress === null ? 0 : 1;
    const rb = b.remoteAddress === null ? 0 : 1;
    if (
      ra !== rb
        ? ra < rb
        : a.externalPort !== b.externalPort
          ? a.externalPort < b.externalPort
          : entryKey(a) < entryKey(b)
    )
      best = h;
  }
  return best;
}

/** the SNAT element a lease writes for one of its slots */
export function snatElementOf(e: DataplaneEntry, slot: number | string, timeout: number | null): NftElement | null {
  const m = mappingOf(e);
  if (typeof slot === 'number') return snatElementAt(m, slot % 65536, timeout);
  return snatElements(m, timeout)[0] ?? null;
}

type Holders = Map<number | string, string | Set<string>>;

function addHolder(map: Holders, slot: number | string, k: string): void {
  const h = map.get(slot);
  if (h === undefined) map.set(slot, k);
  else if (typeof h === 'string') {
    if (h !== k) map.set(slot, new Set([h, k]));
  } else h.add(k);
}

function removeHolder(map: Holders, slot: number | string, k: string): void {
  const h = map.get(slot);
  if (h === undefined) return;
  if (typeof h === 'string') {
    if (h === k) map.delete(slot);
    return;
  }
  h.delete(k);
  if (h.size === 1) map.set(slot, h.values().next().value as string);
  else if (h.size === 0) map.delete(slot);
}

/** the driver's view of the kernel, indexed so a tick costs O(batch), not O(table) */
export class NftModel {
  readonly entries = new Map<string, ModelEntry>();
  /** live element -> the entry key holding it, or a Set when several do (peer-filtered leases on one
   *  port): one Set per lease was ≈ 15 MB at 100k leases, almost all with one holder. Single-port live
   *  elements are keyed by a number (a `live_tcp/8080` string per lease was three heap objects) */
  private readonly liveHolders = new Map<number | string, string | Set<string>>();
  /** SNAT slot (entrySnatSlots) -> the entry keys mapping that internal endpoint */
  private readonly snatHolders: Holders = new Map();
  get size(): number {
    return this.entries.size;
  }
  get(k: string): ModelEntry | undefined {
    return this.entries.get(k);
  }
  hasLive(el: NftElement): boolean {
    return this.liveHolders.has(liveSlot(el));
  }
  /** entry keys holding a live element */
  holders(el: NftElement): readonly string[] {
    const h = this.liveHolders.get(liveSlot(el));
    return h === undefined ? [] : typeof h === 'string' ? [h] : [...h];
  }
  /** every live element (timeout null) with its holders */
  *live(): Generator<[NftElement, readonly string[]]> {
    for (const h of this.liveHolders.values()) {
      const holders = typeof h === 'string' ? [h] : [...h];
      const first = this.entries.get(holders[0]!);
      const lv = first && entryLive(first.entry);
      if (lv) yield [lv, holders];
    }
  }
  /** entry keys sharing an SNAT slot */
  snatHoldersOf(slot: number | string): readonly string[] {
    const h = this.snatHolders.get(slot);
    return h === undefined ? [] : typeof h === 'string' ? [h] : [...h];
  }
  /** every SNAT slot with its winning entry (the one whose element the kernel holds) */
  *snat(): Generator<[number | string, ModelEntry]> {
    for (const [slot, h] of this.snatHolders) {
      const w =
        typeof h === 'string'
          ? this.entries.get(h)
          : snatWinner([...h].map((k) => this.entries.get(k)).filter((m): m is ModelEntry => m !== undefined));
      if (w) yield [slot, w];
    }
  }
  set(k: string, m: ModelEntry): void {
    this.delete(k);
    this.entries.set(k, m);
    for (const slot of entrySnatSlots(m.entry)) addHolder(this.snatHolders, slot, k);
    const id = entrySlot(m.entry);
    if (id === null) return;
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
    for (const slot of entrySnatSlots(m.entry)) removeHolder(this.snatHolders, slot, k);
    const id = entrySlot(m.entry);
    if (id === null) return;
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
    this.snatHolders.clear();
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

export interface ModelChanges {
  readonly delete: readonly string[];
  readonly set: readonly (readonly [string, ModelEntry])[];
}

function remainingSeconds(deadline: number | null, now: number): number | null {
  return deadline === null ? null : Math.max(1, Math.ceil((deadline - now) / 1000));
}

function deadlineOf(e: DataplaneEntry, now: number): number | null {
  // whole ms (the kernel's timeout starts at `now` or later, so this is never past it): a small integer is
  // stored in the entry itself, a fractional one is a heap number per lease
  return e.timeoutSeconds === null ? null : Math.floor(now) + Math.ceil(e.timeoutSeconds) * 1000;
}

/** groups elements per set into steps, in a fixed set order */
function grouped(verb: 'add' | 'delete', els: readonly NftElement[]): ElementStep[] {
  const by = new Map<ElementSet, NftElement[]>();
  for (const el of els) {
    const list = by.get(el.set);
    if (list) list.push(el);
    else by.set(el.set, [el]);
  }
  const out: ElementStep[] = [];
  for (const s of ELEMENT_SETS) {
    const list = by.get(s);
    if (list && list.length > 0) out.push({ verb, set: s, elements: list });
  }
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
  const touchedLive = new Map<string, NftElement>();
  const newEls: NftElement[] = [];
  const liveOfRemovals = new Set<string>();
  const touch = (el: NftElement) => {
    const id = elementId(el);
    if (!touched.has(id)) touched.set(id, { ...el, timeout: 1 });
  };
  for (const e of batch.remove) {
    mappingOf(e); // validates
    const k = entryKey(e);
    if (removed.has(k)) continue;
    removed.add(k);
    // the data the kernel holds is what we added; fall back to the caller's view
    const src = model.get(k)?.entry ?? e;
    for (const el of entryElements(src, 1)) touch(el);
    const lv = entryLive(src);
    if (lv) {
      const id = elementId(lv);
      touchedLive.set(id, lv);
      liveOfRemovals.add(id);
    }
  }
  for (const e of batch.add) {
    const els = entryElements(e, e.timeoutSeconds); // validates
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
    for (const el of els) {
      if (touchIt) touch(el);
      newEls.push(el);
    }
    const lv = entryLive(e);
    if (lv) touchedLive.set(elementId(lv), lv);
  }
  const addedByLive = new Map<string, ModelEntry[]>();
  for (const m of added.values()) {
    const lv = entryLive(m.entry);
    if (!lv) continue;
    const id = elementId(lv);
    const list = addedByLive.get(id);
    if (list) list.push(m);
    else addedByLive.set(id, [m]);
  }
  const liveEls: NftElement[] = [];
  for (const [id, lv] of touchedLive) {
    if (model.hasLive(lv) || liveOfRemovals.has(id)) touch(lv);
    const holders: ModelEntry[] = [];
    for (const k of model.holders(lv)) {
      const m = model.get(k);
      if (m && !removed.has(k) && !added.has(k) && (m.deadline === null || m.deadline > now)) holders.push(m);
    }
    holders.push(...(addedByLive.get(id) ?? []));
    if (holders.length === 0) continue;
    const deadline = holders.some((h) => h.deadline === null)
      ? null
      : Math.max(...holders.map((h) => h.deadline as number));
    liveEls.push({ ...lv, timeout: remainingSeconds(deadline, now) });
  }
  const snatEls = planSnat(model, batch, removed, added, now, touch);
  const pre = [...touched.values()];
  const steps = [
    ...grouped('add', pre),
    ...grouped('delete', pre),
    ...grouped('add', [...newEls, ...liveEls, ...snatEls]),
  ];
  return {
    get commands() {
      return stepCommands(table, steps);
    },
    steps,
    changes: { delete: [...removed], set: [...added] },
    elements: pre.length * 2 + newEls.length + liveEls.length + snatEls.length,
  };
}

/**
 * The SNAT elements of a tick: for every slot a removed or added lease holds, the element of the slot's winner
 * before the tick is touched (pre-add, delete) and the winner after it is written with its remaining timeout;
 * a slot whose winner stays and is neither removed nor renewed is left alone (a second lease on a console's
 * internal port costs nothing).
 */
function planSnat(
  model: NftModel,
  batch: DataplaneBatch,
  removed: ReadonlySet<string>,
  added: ReadonlyMap<string, ModelEntry>,
  now: number,
  touch: (el: NftElement) => void,
): NftElement[] {
  const slots = new Map<number | string, ModelEntry[]>(); // slot -> entries the tick adds there
  // a removal the model does not know (out of step with the kernel): its element may be there, touch it as the
  // fwd elements are
  const unknown = new Map<number | string, ModelEntry>();
  for (const e of batch.remove) {
    const held = model.get(entryKey(e));
    const src = held?.entry ?? e;
    for (const slot of entrySnatSlots(src)) {
      if (!slots.has(slot)) slots.set(slot, []);
      if (!held && !unknown.has(slot)) unknown.set(slot, { entry: e, deadline: null });
    }
  }
  for (const m of added.values())
    for (const slot of entrySnatSlots(m.entry)) {
      const list = slots.get(slot);
      if (list) list.push(m);
      else slots.set(slot, [m]);
    }
  const out: NftElement[] = [];
  for (const [slot, adds] of slots) {
    const before: ModelEntry[] = [];
    const after: ModelEntry[] = [...adds];
    for (const k of model.snatHoldersOf(slot)) {
      const m = model.get(k);
      if (!m) continue;
      before.push(m);
      if (!removed.has(k) && !added.has(k) && (m.deadline === null || m.deadline > now)) after.push(m);
    }
    const was = snatWinner(before) ?? unknown.get(slot) ?? null;
    const will = snatWinner(after);
    const wasKey = was && entryKey(was.entry);
    const willKey = will && entryKey(will.entry);
    if (wasKey !== null && wasKey === willKey && !removed.has(wasKey) && !added.has(wasKey)) continue;
    if (!was && !will) continue;
    if (was) {
      const old = snatElementOf(was.entry, slot, 1);
      if (old) touch(old);
    }
    if (will) {
      const el = snatElementOf(will.entry, slot, remainingSeconds(will.deadline, now));
      if (el) out.push(el);
    }
  }
  return out;
}

/** the model a reset to `entries` leaves (the script: renderInit + renderFillLines) */
export function planResetModel(
  entries: readonly DataplaneEntry[],
  now: number,
): { model: NftModel; duplicates: string[] } {
  const model = new NftModel();
  const duplicates: string[] = [];
  for (const e of entries) {
    mappingOf(e); // validates
    const k = entryKey(e);
    if (model.get(k)) duplicates.push(k);
    model.set(k, { entry: e, deadline: deadlineOf(e, now) });
  }
  return { model, duplicates };
}

/**
 * every element the model holds, with its remaining timeout: the forwarding elements of each entry,
 * then each live element once, with the longest deadline of its holders
 */
export function* modelElements(model: NftModel, now: number): Generator<NftElement> {
  for (const m of model.entries.values()) yield* entryElements(m.entry, remainingSeconds(m.deadline, now));
  for (const [lv, holders] of model.live()) {
    let deadline: number | null = -Infinity;
    let any = false;
    for (const k of holders) {
      const m = model.get(k);
      if (!m) continue;
      any = true;
      deadline = deadline === null || m.deadline === null ? null : Math.max(deadline, m.deadline);
    }
    if (any) yield { ...lv, timeout: remainingSeconds(deadline, now) };
  }
  for (const [slot, w] of model.snat()) {
    const el = snatElementOf(w.entry, slot, remainingSeconds(w.deadline, now));
    if (el) yield el;
  }
}

/**
 * The model with every IPv4 entry's external address replaced (the WAN address changed: leases follow it), or
 * null when no entry changes. Deadlines are kept.
 */
export function withExternalAddress(model: NftModel, address: string): NftModel | null {
  let changed = false;
  const next = new NftModel();
  for (const [k, m] of model.entries) {
    if (m.entry.family !== 6 && m.entry.externalAddress !== address) {
      changed = true;
      next.set(k, { entry: { ...m.entry, externalAddress: address }, deadline: m.deadline });
    } else next.set(k, m);
  }
  return changed ? next : null;
}

/** the SNAT maps flushed and refilled from the model (after the external address changed), for one transaction */
export function renderSnatFill(table: string, model: NftModel, now: number): string[] {
  const out = SNAT_SETS.map((s) => `flush map inet ${table} ${s}`);
  const by = new Map<ElementSet, string[]>();
  for (const [slot, w] of model.snat()) {
    const el = snatElementOf(w.entry, slot, remainingSeconds(w.deadline, now));
    if (!el) continue;
    const list = by.get(el.set) ?? [];
    list.push(elementText(el));
    by.set(el.set, list);
  }
  for (const [set, list] of by)
    for (let i = 0; i < list.length; i += 2048)
      out.push(`add element inet ${table} ${set} { ${list.slice(i, i + 2048).join(', ')} }`);
  return out;
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
  for (const s of [...FWD_SETS, ...SNAT_SETS]) yield `flush map inet ${table} ${s}`;
  for (const s of [...LIVE_SETS, ...PINHOLE_SETS]) yield `flush set inet ${table} ${s}`;
  const pending = new Map<ElementSet, string[]>(ELEMENT_SETS.map((s) => [s, []]));
  const command = (s: ElementSet, list: string[]) => `add element inet ${table} ${s} { ${list.join(', ')} }`;
  for (const el of modelElements(model, now)) {
    const list = pending.get(el.set)!;
    list.push(elementText(el));
    if (list.length >= chunk) {
      yield command(el.set, list);
      pending.set(el.set, []);
    }
  }
  for (const s of ELEMENT_SETS) {
    const list = pending.get(s)!;
    if (list.length > 0) yield command(s, list);
  }
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
