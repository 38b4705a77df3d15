/**
 * The nftables dataplane: leases are elements of maps in one owned table (`table inet <name>`),
 * each with a kernel timeout; see docs/nftables.md for the layout and nftables-script.ts for the text.
 *
 * Ticks go through a long-lived `nft -i` (one line = one transaction, a marker line tells the outcome);
 * big batches (reset, rebuild, > interactiveMaxElements) through `nft -f -`.
 * The driver keeps a model of what it wrote, so count() costs nothing; check() detects a missing or
 * recreated table cheaply (`nft list tables`) and rebuilds; verify() lists and compares everything
 * (≈ 1 s at 100k elements: on suspicion only).
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { ErrorCode, PortdError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { createFlowEnder } from './conntrack.js';
import {
  NftModel, asFile, asLine, fwdElements, liveOf, parseTableJson, parseTablesJson, planBatch, planReset,
  renderExternalAddresses, renderFill, renderInit, renderRecreate, validateRulesetOptions,
  type KernelElement, type RulesetOptions,
} from './nftables-script.js';
import { CommandError, NftInteractive, firstLines, nftScript, run } from './nftables-runner.js';
import type { Dataplane, DataplaneBatch, DataplaneEntry, DataplaneHealth } from './types.js';
import { entryKey } from './types.js';

export interface NftablesDataplaneOptions {
  /** table name; the driver owns `table inet <table>` */
  readonly table: string;
  readonly wan: string;
  readonly lan: readonly string[];
  /** NAT loopback for LAN hosts connecting to the external address */
  readonly hairpin: boolean;
  /** front-end ports dropped when they arrive on the WAN interface */
  readonly frontendPorts: { readonly tcp: readonly number[]; readonly udp: readonly number[] };
  readonly nftPath?: string;
  readonly conntrackPath?: string;
  /** informational: the lease table already adds it to each entry's timeoutSeconds */
  readonly grace?: number;
  readonly log: Logger;
  readonly metrics?: Metrics;
  /** run every command inside this network namespace (lab, tests) */
  readonly netns?: string;
  /** monotonic milliseconds; default performance.now */
  readonly clock?: () => number;
  /** use a long-lived `nft -i` for ticks (default true); false = `nft -f -` per tick */
  readonly interactive?: boolean;
  /** ticks with more element operations than this go through `nft -f -` (default 20000) */
  readonly interactiveMaxElements?: number;
}

export interface CheckResult {
  readonly ok: boolean;
  /** the table was missing or recreated by someone else, and we rebuilt it */
  readonly rebuilt: boolean;
  readonly reason?: string;
}

export interface VerifyResult {
  /** elements we hold that the kernel lacks (or holds with other data) */
  readonly missing: number;
  /** kernel elements we do not hold */
  readonly stale: number;
  /** whether the kernel was rewritten from the model */
  readonly repaired: boolean;
}

export interface NftablesDataplane extends Dataplane {
  readonly driver: 'nftables';
  /** cheap (one `nft list tables`): rebuilds a missing/recreated table; runs verify() when a batch failed oddly */
  check(): Promise<CheckResult>;
  /** expensive full compare of kernel and model; repairs drift (one batch) */
  verify(): Promise<VerifyResult>;
  /** removes the table (uninstall, tests); close() keeps it so the kernel still enforces timeouts */
  destroy(): Promise<void>;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function createNftablesDataplane(opts: NftablesDataplaneOptions): NftablesDataplane {
  const ruleset: RulesetOptions = { table: opts.table, wan: opts.wan, lan: opts.lan, hairpin: opts.hairpin, frontendPorts: opts.frontendPorts };
  validateRulesetOptions(ruleset);
  const log = opts.log.child({ component: 'nftables', table: opts.table });
  const nft = opts.nftPath ?? 'nft';
  const prefix = { netns: opts.netns };
  const clock = opts.clock ?? (() => performance.now());
  const maxInteractive = opts.interactiveMaxElements ?? 20_000;
  const useInteractive = opts.interactive ?? true;
  const T = opts.table;
  const flows = createFlowEnder({ ...prefix, conntrackPath: opts.conntrackPath ?? 'conntrack', log });
  const interactive = new NftInteractive(prefix, nft);

  const model = new NftModel();
  let externals: readonly string[] = [];
  let handle: number | null = null;
  let initialised = false;
  let suspect = false;
  let lastReconcileAt: number | null = null;
  let lastDrift = 0;
  let lastError: string | null = null;
  let lastPrune = -Infinity;
  let lastCountCheck = -Infinity;

  // one kernel operation at a time: ticks, reconciles and checks never interleave
  let chain: Promise<unknown> = Promise.resolve();
  function serial<R>(fn: () => Promise<R>): Promise<R> {
    const p = chain.then(fn, fn);
    chain = p.catch(() => undefined);
    return p;
  }

  async function script(commands: readonly string[]): Promise<void> {
    if (commands.length === 0) return;
    await nftScript(prefix, nft, asFile(commands));
  }

  async function readHandle(): Promise<number | null> {
    const r = await run(prefix, nft, ['-j', 'list', 'tables'], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new CommandError(firstLines(r.stderr) || 'nft list tables failed', r);
    return parseTablesJson(r.stdout, T);
  }

  /** structure (+ optional fill) in one batch; recreates the table when our old definitions conflict */
  async function build(fill: readonly string[]): Promise<void> {
    const ext = renderExternalAddresses(T, externals);
    try {
      await script([...renderInit(ruleset), ...ext, ...fill]);
    } catch (err) {
      log.warn({ err: errText(err) }, 'nft table definitions conflict; recreating the table');
      await script([...renderRecreate(ruleset), ...ext, ...fill]);
    }
    handle = await readHandle();
  }

  async function rebuild(reason: string): Promise<void> {
    model.pruneExpired(clock());
    await build(renderFill(T, model, clock()));
    suspect = false;
    lastError = null;
    lastDrift = model.size;
    lastReconcileAt = Date.now();
    opts.metrics?.reconcileDrift.inc(model.size);
    log.warn({ reason, entries: model.size }, 'nft table rebuilt');
  }

  async function applyCommands(commands: readonly string[], elements: number): Promise<void> {
    if (useInteractive && elements <= maxInteractive) await interactive.run(asLine(commands));
    else await script(commands);
  }

  async function kernelElements(): Promise<{ elements: KernelElement[]; handle: number } | null> {
    const r = await run(prefix, nft, ['-j', 'list', 'table', 'inet', T], { timeoutMs: 120_000 });
    if (r.code !== 0) {
      if (/No such file or directory/.test(r.stderr)) return null;
      throw new CommandError(firstLines(r.stderr), r);
    }
    const t = parseTableJson(r.stdout, T);
    return t ? { elements: t.elements, handle: t.handle } : null;
  }

  function elemId(set: string, key: string): string { return `${set}/${key}`; }

  /** model vs kernel: expected element ids (with data) and the kernel's */
  function diff(kernel: readonly KernelElement[]): { missing: number; stale: number } {
    const now = clock();
    const expected = new Map<string, string | null>();
    for (const m of model.entries.values()) {
      for (const el of fwdElements(m.entry, null)) expected.set(elemId(el.set, el.key), el.data);
    }
    for (const id of model.live.keys()) expected.set(id, null);
    const seen = new Set<string>();
    let stale = 0;
    let missing = 0;
    for (const k of kernel) {
      const id = elemId(k.set, k.key);
      seen.add(id);
      if (!expected.has(id)) stale++;
      else if (expected.get(id) !== k.data) missing++;
    }
    for (const id of expected.keys()) if (!seen.has(id)) missing++;
    void now;
    return { missing, stale };
  }

  const self: NftablesDataplane = {
    driver: 'nftables',

    init: () => serial(async () => {
      await build([]);
      initialised = true;
      log.info({ handle, wan: opts.wan, lan: opts.lan, hairpin: opts.hairpin, transport: useInteractive ? 'nft -i' : 'nft -f' }, 'nft table ready');
    }),

    apply: (batch: DataplaneBatch) => serial(async () => {
      if (batch.add.length === 0 && batch.remove.length === 0) return;
      const now = clock();
      // pruning walks the whole model: at most once a second, not per tick (planBatch ignores expired entries itself)
      if (now - lastPrune > 1000) { model.pruneExpired(now); lastPrune = now; }
      const t0 = performance.now();
      let plan;
      try {
        plan = planBatch(T, model, batch, now);
      } catch (err) {
        opts.metrics?.dataplaneErrors.inc();
        throw new PortdError(ErrorCode.DATAPLANE_BATCH, `nftables batch refused: ${errText(err)}`);
      }
      try {
        await applyCommands(plan.commands, plan.elements);
      } catch (err) {
        opts.metrics?.dataplaneErrors.inc();
        lastError = errText(err);
        // a vanished table or an unknown outcome: the next check() looks closer
        suspect = true;
        log.error({ err: lastError, add: batch.add.length, remove: batch.remove.length }, 'nft batch failed');
        throw new PortdError(ErrorCode.DATAPLANE_BATCH, `nftables batch failed: ${lastError}`, 'portd reconciles the table on its next check');
      }
      model.apply(plan.changes);
      opts.metrics?.dataplaneBatchSeconds.observe((performance.now() - t0) / 1000);
      log.debug({ add: batch.add.length, remove: batch.remove.length, elements: plan.elements, ms: +(performance.now() - t0).toFixed(2) }, 'nft batch applied');
    }),

    list: () => serial(async () => {
      const k = await kernelElements();
      if (!k) return [];
      const pool = new Map<string, KernelElement>();
      for (const el of k.elements) pool.set(elemId(el.set, el.key), el);
      const out: DataplaneEntry[] = [];
      for (const m of model.entries.values()) {
        const els = fwdElements(m.entry, null);
        const got = els.map((el) => pool.get(elemId(el.set, el.key)));
        if (got.every((g, i) => g !== undefined && g.data === els[i]?.data)) {
          const expires = got.map((g) => g?.expires ?? null);
          const timeoutSeconds = expires.some((x) => x === null) ? null : Math.min(...(expires as number[]));
          out.push({ ...m.entry, timeoutSeconds });
          for (const el of els) pool.delete(elemId(el.set, el.key));
        }
        pool.delete(elemId(liveOf(m.entry).set, liveOf(m.entry).key));
      }
      // whatever is left is not ours (planted, or from before a restart): report it as the kernel has it
      const ext = externals[0] ?? '0.0.0.0';
      for (const el of pool.values()) {
        if (el.set.startsWith('live_') || el.data === null) continue;
        const keyParts = el.key.split(' . ');
        const dataParts = el.data.split(' . ');
        const peer = el.set === 'fwd4_peer' ? keyParts.shift() ?? null : null;
        const proto = keyParts[0] === 'udp' ? 'udp' : 'tcp';
        const [a, b] = (keyParts[1] ?? '0').split('-');
        const start = Number(a);
        out.push({
          id: `kernel:${el.set}:${el.key}`, protocol: proto, externalAddress: ext,
          externalPort: start, externalPortEnd: b === undefined ? start : Number(b),
          internalAddress: dataParts[0] ?? '', internalPort: dataParts[1] === undefined ? start : Number(dataParts[1]),
          remoteAddress: peer, timeoutSeconds: el.expires,
        });
      }
      return out;
    }),

    // the lease table's periodic cheap reconcile calls count(): let it notice a deleted table too
    // (one `nft list tables`, at most every 5 s); a missing table is rebuilt before we answer
    count: async () => {
      const now = clock();
      if (initialised && now - lastCountCheck > 5000) {
        lastCountCheck = now;
        await self.check();
      }
      model.pruneExpired(clock());
      return model.size;
    },

    reset: (entries: readonly DataplaneEntry[]) => serial(async () => {
      const now = clock();
      model.pruneExpired(now);
      const t0 = performance.now();
      const plan = planReset(ruleset, entries, now);
      if (plan.duplicates.length > 0) log.warn({ keys: plan.duplicates.slice(0, 10), count: plan.duplicates.length }, 'reset: duplicate keys, last one kept');
      // drift as far as we can tell without listing: what we believed vs what the table says
      let drift = 0;
      for (const k of model.entries.keys()) if (!plan.model.get(k)) drift++;
      for (const [k, m] of plan.model.entries) {
        const old = model.get(k);
        if (!old || entryKey(old.entry) !== k || old.entry.internalAddress !== m.entry.internalAddress || old.entry.internalPort !== m.entry.internalPort) drift++;
      }
      try {
        await script([...plan.commands, ...renderExternalAddresses(T, externals)]);
      } catch (err) {
        opts.metrics?.dataplaneErrors.inc();
        lastError = errText(err);
        log.error({ err: lastError }, 'nft reset failed');
        throw new PortdError(ErrorCode.DATAPLANE_BATCH, `nftables reset failed: ${lastError}`);
      }
      model.clear();
      for (const [k, m] of plan.model.entries) model.set(k, m);
      handle = await readHandle();
      initialised = true;
      suspect = false;
      lastError = null;
      lastDrift = drift;
      lastReconcileAt = Date.now();
      if (drift > 0) opts.metrics?.reconcileDrift.inc(drift);
      log.info({ entries: model.size, drift, ms: Math.round(performance.now() - t0) }, 'nft reconciled');
    }),

    endFlows: async (entries: readonly DataplaneEntry[]) => {
      const failed = await flows.end(entries);
      if (entries.length > 0) log.debug({ entries: entries.length, failed }, 'flows ended');
    },

    setExternalAddresses: (addresses: readonly string[]) => serial(async () => {
      const cmds = renderExternalAddresses(T, addresses);
      if (initialised) await applyCommands(cmds, addresses.length + 1);
      externals = [...addresses];
      log.info({ addresses }, 'external addresses set');
    }),

    check: () => serial(async () => {
      if (!initialised) return { ok: false, rebuilt: false, reason: 'not initialised' };
      let h: number | null;
      try {
        h = await readHandle();
      } catch (err) {
        lastError = errText(err);
        return { ok: false, rebuilt: false, reason: lastError };
      }
      if (h === null || h !== handle) {
        const reason = h === null ? 'table deleted from outside' : 'table recreated from outside';
        try {
          await rebuild(reason);
          return { ok: true, rebuilt: true, reason };
        } catch (err) {
          lastError = errText(err);
          log.error({ err: lastError }, 'nft table rebuild failed');
          return { ok: false, rebuilt: false, reason: lastError };
        }
      }
      if (suspect) {
        const v = await verifyNow();
        return { ok: true, rebuilt: v.repaired, reason: v.repaired ? `drift repaired (missing ${v.missing}, stale ${v.stale})` : 'verified' };
      }
      return { ok: true, rebuilt: false };
    }),

    verify: () => serial(verifyNow),

    health(): DataplaneHealth {
      const ok = initialised && lastError === null;
      return { ok, lastReconcileAt, lastDrift, ...(lastError ? { detail: lastError } : initialised ? {} : { detail: 'not initialised' }) };
    },

    close: () => serial(async () => {
      interactive.kill();
    }),

    destroy: () => serial(async () => {
      interactive.kill();
      await script([`add table inet ${T}`, `delete table inet ${T}`]);
      model.clear();
      initialised = false;
      handle = null;
    }),
  };

  async function verifyNow(): Promise<VerifyResult> {
    model.pruneExpired(clock());
    const k = await kernelElements();
    if (!k) {
      await rebuild('table missing at verify');
      return { missing: model.size, stale: 0, repaired: true };
    }
    const d = diff(k.elements);
    suspect = false;
    if (d.missing === 0 && d.stale === 0) { lastError = null; return { ...d, repaired: false }; }
    await script(renderFill(T, model, clock()));
    lastError = null;
    lastDrift = d.missing + d.stale;
    lastReconcileAt = Date.now();
    opts.metrics?.reconcileDrift.inc(lastDrift);
    log.warn({ missing: d.missing, stale: d.stale }, 'nft drift repaired from the model');
    return { ...d, repaired: true };
  }

  return self;
}
