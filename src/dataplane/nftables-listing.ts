/**
 * Reading our table back from nft into the typed model (model.ts): `nft -j list table` (verify, list)
 * and plain-text set listings read as they arrive (audit). Both go through the one field decoder of
 * nft-text.ts, so what the audit compares is typed elements, never text. Pure; the driver runs nft.
 */
import { ELEMENT_SETS, elementId, type ElementSet, type KernelElement } from './model.js';
import { decodeElement, decodeText, type ListedValue } from './nft-text.js';

export type { KernelElement } from './model.js';

export interface KernelTable {
  readonly handle: number;
  readonly elements: KernelElement[];
  readonly ext4: string[];
  /** elements of our sets that do not fit their layout (planted by hand): stale by definition */
  readonly foreign: number;
}

function scalar(v: unknown): ListedValue {
  if (typeof v === 'string' || typeof v === 'number') return v;
  if (v && typeof v === 'object' && 'range' in v) {
    const r = (v as { range: unknown[] }).range;
    return { range: [scalar(r[0]), scalar(r[1])] };
  }
  if (v && typeof v === 'object' && 'prefix' in v) {
    const p = (v as { prefix: { addr: string; len: number } }).prefix;
    return `${p.addr}/${p.len}`;
  }
  throw new Error(`unexpected nft json value ${JSON.stringify(v)}`);
}

/** the values of a JSON key or data: a concat's items, or the one value */
function values(v: unknown): ListedValue[] {
  if (v && typeof v === 'object' && 'concat' in v) return (v as { concat: unknown[] }).concat.map(scalar);
  return [scalar(v)];
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
    /** null: an element of the set that does not fit its layout (not one portd wrote) */
    private readonly onElement: (el: KernelElement | null) => void,
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
    // pinhole elements carry `counter packets N bytes M` before their timeout
    const c = left.indexOf(' counter ');
    const keyEnd = Math.min(...[c, t, e, left.length].filter((i) => i >= 0));
    let expires: number | null = null;
    if (e >= 0) expires = durationSeconds(left.slice(e + 9));
    else if (t >= 0) expires = durationSeconds(left.slice(t + 9));
    this.onElement(decodeText(this.set, left.slice(0, keyEnd), colon < 0 ? null : s.slice(colon + 3), expires));
  }
}

/**
 * Our element sets from one plain-text `nft list table inet T`, read as it arrives: each `set NAME {` or
 * `map NAME {` block of a set in ELEMENT_SETS goes to a ListedElements of its own (chains and other sets are
 * skipped). One nft process for the whole audit instead of one per set: with 13 sets the spawns alone cost
 * 100-200 ms, and the audit's 1 % share then pushed the next look 10-20 s out.
 */
export class ListedTable {
  private tail = '';
  private current: ListedElements | null = null;
  private readonly seen = new Set<ElementSet>();
  private cut = false;
  constructor(private readonly onElement: (set: ElementSet, el: KernelElement | null) => void) {}

  push(chunk: string): void {
    const text = this.tail + chunk;
    let from = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
      this.line(text.slice(from, nl));
      from = nl + 1;
    }
    this.tail = text.slice(from);
  }

  /** the sets listed whole (null: the listing was cut short inside a set) */
  end(): ReadonlySet<ElementSet> | null {
    if (this.tail !== '') this.line(this.tail);
    this.tail = '';
    return this.cut || this.current !== null ? null : this.seen;
  }

  private line(line: string): void {
    const head = /^\t(?:set|map) (\S+) \{$/.exec(line);
    if (head) {
      const name = head[1] as ElementSet;
      if ((ELEMENT_SETS as readonly string[]).includes(name)) {
        this.current = new ListedElements(name, (el) => this.onElement(name, el));
        this.seen.add(name);
      }
      return;
    }
    if (!this.current) return;
    if (line === '\t}') {
      if (!this.current.end()) this.cut = true;
      this.current = null;
      return;
    }
    this.current.push(`${line}\n`);
  }
}

/**
 * The packet counters of one pinhole set's elements from `nft -j list set inet T <set>`, by element id
 * (elementId in model.ts): what GetPinholePackets reports.
 */
export function parseSetCounters(json: string, set: ElementSet): Map<string, number> {
  const doc = JSON.parse(json) as { nftables?: Record<string, unknown>[] };
  const out = new Map<string, number>();
  for (const item of doc.nftables ?? []) {
    const s = item['set'] as { name?: string; elem?: unknown[] } | undefined;
    if (s?.name !== set) continue;
    for (const raw of s.elem ?? []) {
      if (!raw || typeof raw !== 'object' || !('elem' in raw)) continue;
      const el = (raw as { elem: { val: unknown; counter?: { packets?: number } } }).elem;
      const decoded = decodeElement(set, values(el.val), null, null);
      if (decoded) out.set(elementId(decoded), (out.get(elementId(decoded)) ?? 0) + (el.counter?.packets ?? 0));
    }
  }
  return out;
}

/** parses `nft -j list table inet T` into our elements; unknown sets are ignored */
export function parseTableJson(json: string, table: string): KernelTable | null {
  const doc = JSON.parse(json) as { nftables?: Record<string, unknown>[] };
  let handle: number | null = null;
  const elements: KernelElement[] = [];
  const ext4: string[] = [];
  const known = new Set<string>(ELEMENT_SETS);
  let foreign = 0;
  for (const item of doc.nftables ?? []) {
    const t = item['table'] as { family: string; name: string; handle: number } | undefined;
    if (t && t.family === 'inet' && t.name === table) handle = t.handle;
    const s = (item['map'] ?? item['set']) as
      | { family: string; table: string; name: string; elem?: unknown[] }
      | undefined;
    if (s?.family !== 'inet' || s.table !== table) continue;
    for (const raw of s.elem ?? []) {
      let keyPart: unknown = raw;
      let data: ListedValue[] | null = null;
      if (item['map'] !== undefined && Array.isArray(raw)) {
        keyPart = raw[0];
        data = values(raw[1]);
      }
      let expires: number | null = null;
      if (keyPart && typeof keyPart === 'object' && 'elem' in keyPart) {
        const el = (keyPart as { elem: { val: unknown; timeout?: number; expires?: number } }).elem;
        expires = el.expires ?? el.timeout ?? null;
        keyPart = el.val;
      }
      if (s.name === 'ext4') {
        ext4.push(String(scalar(keyPart)));
        continue;
      }
      if (!known.has(s.name)) continue;
      const el = decodeElement(s.name as ElementSet, values(keyPart), data, expires);
      if (el) elements.push(el);
      else foreign++;
    }
  }
  return handle === null ? null : { handle, elements, ext4, foreign };
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
