import type { Dataplane, DataplaneBatch, DataplaneEntry, DataplaneHealth } from './types.js';
import { entryKey } from './types.js';

export interface MemoryDataplaneOptions {
  /** test hook: called before a batch is applied; throw to simulate a kernel refusal */
  readonly failIf?: (batch: DataplaneBatch) => boolean;
  /** test hook: what packets() reports for a pinhole in effect (default 0: no kernel counts anything here) */
  readonly packets?: (entry: DataplaneEntry) => number;
}

/** entryKey, and a pinhole's own address: pinholes to two hosts on one port are two entries (issue 15) */
const keyOf = (e: DataplaneEntry): string => (e.family === 6 ? `6/${e.internalAddress}/${entryKey(e)}` : entryKey(e));

/** For tests and the loopback default: same contract as the kernel driver, no kernel. */
export function createMemoryDataplane(
  opts: MemoryDataplaneOptions = {},
): Dataplane & { readonly entries: ReadonlyMap<string, DataplaneEntry>; batches: number } {
  const entries = new Map<string, DataplaneEntry>();
  let externalAddresses: readonly string[] = [];
  let lastReconcileAt: number | null = null;
  const self = {
    driver: 'memory' as const,
    entries,
    batches: 0,
    async init() {},
    async apply(batch: DataplaneBatch) {
      if (opts.failIf?.(batch)) throw new Error('memory dataplane: batch refused (test hook)');
      // validate first so the batch is all-or-nothing (an add may reuse a key the same batch removes)
      const removed = new Set(batch.remove.map(keyOf));
      const added = new Set<string>();
      for (const e of batch.add) {
        const k = keyOf(e);
        if ((entries.has(k) && !removed.has(k)) || added.has(k))
          throw new Error(`memory dataplane: element ${k} exists`);
        added.add(k);
      }
      for (const k of removed) entries.delete(k);
      for (const e of batch.add) entries.set(keyOf(e), e);
      self.batches++;
    },
    async list() {
      return [...entries.values()];
    },
    async count() {
      return entries.size;
    },
    async reset(list: readonly DataplaneEntry[]) {
      entries.clear();
      for (const e of list) entries.set(keyOf(e), e);
      lastReconcileAt = Date.now();
    },
    async endFlows() {},
    async packets(e: DataplaneEntry) {
      return e.family === 6 && entries.has(keyOf(e)) ? (opts.packets?.(e) ?? 0) : null;
    },
    async setExternalAddresses(a: readonly string[]) {
      externalAddresses = [...a];
      void externalAddresses;
    },
    health(): DataplaneHealth {
      return { ok: true, lastReconcileAt, lastDrift: 0 };
    },
    async close() {},
  };
  return self;
}
