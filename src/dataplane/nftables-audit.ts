/**
 * Noticing changes made to our table from outside (an admin's `nft flush chain`, a firewall reload,
 * a script deleting an element), cheaply. Pure functions; the driver (nftables.ts) runs the commands.
 *
 * - Structure: `nft -j -t list table inet T` (terse: no set elements, so its cost does not grow with
 *   the number of leases) reduced to a fingerprint without handles. The driver takes it right after
 *   it wrote the structure and compares on every check().
 * - External addresses: the small `ext4` set, compared with what the driver set.
 * - Elements: a full listing (≈ 1 s at 100k elements) compared with the driver's model, at most as
 *   often as `auditDue` allows: never more than 1 % of the time, so it runs every period on a home
 *   router and every few minutes at 100k leases.
 */

/** a stable text for the table's chains, rules and set definitions, without handles or elements */
export function structureFingerprint(json: string): string | null {
  const doc = JSON.parse(json) as { nftables?: Record<string, Record<string, unknown>>[] };
  const parts: string[] = [];
  let found = false;
  for (const item of doc.nftables ?? []) {
    const [kind, body] = Object.entries(item)[0] ?? [];
    if (!kind || !body || kind === 'metainfo') continue;
    if (kind === 'table') found = true;
    const { handle: _h, elem: _e, ...rest } = body;
    parts.push(`${kind}:${JSON.stringify(rest)}`);
  }
  return found ? parts.join('\n') : null;
}

/** the elements of a plain set from `nft -j list set ...` (ext4) */
export function setElements(json: string): string[] {
  const doc = JSON.parse(json) as { nftables?: Record<string, { elem?: unknown[] }>[] };
  const out: string[] = [];
  for (const item of doc.nftables ?? []) {
    for (const el of item['set']?.elem ?? []) {
      if (typeof el === 'string' || typeof el === 'number') out.push(String(el));
      else if (el && typeof el === 'object' && 'elem' in el)
        out.push(String((el as { elem: { val: unknown } }).elem.val));
    }
  }
  return out.sort();
}

/**
 * What an audit of `elements` kernel elements costs at most on an idle machine (ms): one nft process
 * (≈ 10-30 ms) plus ≈ 0.01 ms per element listed and compared (≈ 1 s at 100k), with a 2× margin. The wall
 * time of an audit on a loaded machine is mostly waiting for a CPU, not work of ours: without this ceiling a
 * load of 10 stretched a 50-element audit to 140 ms and pushed the next look 14 s out.
 */
export function auditCostCeiling(elements: number): number {
  return 30 + 0.02 * elements;
}

/**
 * Whether a full element audit may run now: `last` is when the previous one started, how long it took (ms)
 * and how many elements the model held. Its cost (the time taken, but never more than auditCostCeiling of
 * its size) may be at most `share` of the time (default 1 %), and it runs at most every `minGapMs`.
 */
export function auditDue(
  now: number,
  last: { readonly at: number; readonly ms: number; readonly elements?: number } | null,
  share = 0.01,
  minGapMs = 1000,
): boolean {
  if (!last) return true;
  const cost = last.elements === undefined ? last.ms : Math.min(last.ms, auditCostCeiling(last.elements));
  return now - last.at >= Math.max(minGapMs, cost / share);
}
