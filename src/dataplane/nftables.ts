/**
 * The nftables dataplane: leases are elements of maps in one owned table (`table inet <name>`),
 * each with a kernel timeout; see docs/nftables.md for the layout and nftables-script.ts for the text.
 *
 * Ticks' element writes go over an in-process nf_tables netlink socket (nf-netlink.ts: one batch = one
 * transaction, every message acknowledged), ≈ 20 µs instead of ≈ 0.35 ms through nft. Ticks that touch a
 * range set, or when the socket cannot open, go through a long-lived `nft -i` (one line = one transaction,
 * a marker line tells the outcome); big batches (reset, rebuild, > interactiveMaxElements) through `nft -f`.
 * The driver keeps a model of what it wrote, so count() costs nothing; check() detects a missing or
 * recreated table cheaply (`nft list tables`) and rebuilds; verify() lists and compares everything
 * (≈ 1 s at 100k elements: on suspicion only).
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { ErrorCode, PortdError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { createFlowEnder } from './conntrack.js';
import {
  ELEMENT_SETS,
  LIVE_SETS,
  PINHOLE_SETS,
  SNAT_SETS,
  addressText,
  elementId,
  sameData,
  type ElementData,
} from './model.js';
import { keyText } from './nft-text.js';
import {
  NftModel,
  entryElements,
  entryLive,
  entrySnatSlots,
  planBatch,
  planResetModel,
  renderFillLines,
  renderSnatFill,
  snatElementOf,
  withExternalAddress,
} from './nftables-plan.js';
import {
  ListedTable,
  countSetElements,
  parseSetCounters,
  parseTableJson,
  parseTablesJson,
  tableOnly,
  type KernelElement,
} from './nftables-listing.js';
import {
  asFile,
  asLine,
  renderExternalAddresses,
  renderInit,
  renderRecreate,
  validateRulesetOptions,
  type RulesetOptions,
} from './nftables-script.js';
import { CommandError, NftInteractive, firstLines, nftScript, run } from './nftables-runner.js';
import { netlinkCan, openNfNetlink, type NfNetlink } from './nf-netlink.js';
import { auditDue, setElements, structureFingerprint } from './nftables-audit.js';
import { parseActivity, renderTouch, renderTriggers, triggerSetName } from './nftables-triggers.js';
import type { TriggerKernelRule } from './trigger-kernel.js';
import type { AddressFamily } from '../common/net-types.js';
import type { Dataplane, DataplaneBatch, DataplaneEntry, DataplaneHealth } from './types.js';
import { entryKey } from './types.js';

/** the ruleset's shape (table, wan, lan, hairpin, frontendPorts, triggers) plus how the driver runs */
export interface NftablesDataplaneOptions extends RulesetOptions {
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
  /** write ticks' elements over an in-process nf_tables netlink socket (nf-netlink.ts) when it opens (default true);
   *  ranges, structure and listings stay with nft */
  readonly netlink?: boolean;
  /** ticks with more element operations than this go through `nft -f -` (default 20000) */
  readonly interactiveMaxElements?: number;
  /** called when kernel state was lost or changed from outside and the driver rewrote it (PCP resets its epoch) */
  readonly onRepaired?: (reason: string) => void;
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
  /**
   * How many leases the kernel holds as far as a cheap count tells: the elements of the live-port sets
   * (one per IPv4 lease; peer-filtered leases on one port share one) and of the pinhole sets (one per IPv6
   * pinhole; a peer-filtered range one per port), 0 when the table is missing. For the
   * lease table's reconcile on start, which lists every element only when this differs from its rows.
   */
  kernelCount(): Promise<number>;
  /** verify(), but only when due: it takes at most 1 % of the time (every period on a home router,
   *  every few minutes at 100k leases); null when skipped */
  audit(): Promise<VerifyResult | null>;
  /** removes the table (uninstall, tests); close() keeps it so the kernel still enforces timeouts */
  destroy(): Promise<void>;
  /**
   * replaces the port-trigger rules (chain `triggers`, sets `trig_<rule>_active`) in one transaction; kept across
   * rebuilds
   */
  setTriggers(rules: readonly TriggerKernelRule[]): Promise<void>;
  /** per rule: LAN host -> ms until the host counts as idle (null: no timeout), read from the small trig_* sets */
  triggerActivity(rules: readonly string[], family?: AddressFamily): Promise<Map<string, Map<string, number | null>>>;
  /** marks a host active on a rule for `seconds` (a firing that did not come from a packet) */
  touchTrigger(rule: string, host: string, seconds: number): Promise<void>;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function createNftablesDataplane(opts: NftablesDataplaneOptions): NftablesDataplane {
  let ruleset: RulesetOptions = {
    table: opts.table,
    wan: opts.wan,
    lan: opts.lan,
    hairpin: opts.hairpin,
    frontendPorts: opts.frontendPorts,
    ...(opts.triggers ? { triggers: opts.triggers } : {}),
  };
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
  /** the netlink socket for ticks (null: nft only); opened by init() */
  let netlink: NfNetlink | null = null;
  /** ticks with more element operations than this go to nft (≈ 430 KB encoded: inside the 1 MiB send buffer asked for;
   *  a batch that does not fit the buffer actually granted goes to nft too) */
  const maxNetlink = 8192;

  /** (re)opens the netlink socket; with the `netns` option a socket stays in the namespace it was opened in,
   *  so a namespace deleted and made again (tests, labs) needs a new one */
  function openNetlink(): void {
    netlink?.close();
    netlink = null;
    if (opts.netlink === false) return;
    const nl = openNfNetlink({ netns: opts.netns });
    if (typeof nl === 'string') log.warn({ reason: nl }, 'nf_tables netlink unavailable; ticks go through nft');
    else netlink = nl;
  }

  let model = new NftModel();
  let externals: readonly string[] = [];
  let handle: number | null = null;
  let initialised = false;
  let suspect = false;
  let lastReconcileAt: number | null = null;
  let lastDrift = 0;
  let lastError: string | null = null;
  let lastPrune = -Infinity;
  let lastCountCheck = -Infinity;
  let triggersListed = false;
  /** our table's structure as we last wrote it (nftables-audit.ts), and for which ruleset */
  let structure: string | null = null;
  let structureOf: RulesetOptions | null = null;
  let lastAudit: { at: number; ms: number; elements: number } | null = null;
  /** element ids that ticks wrote while an audit listing ran beside them (null: no listing running) */
  let auditTouched: Set<string> | null = null;
  /** bumped by everything that rewrites the table wholesale: an audit listing that spans one is void */
  let bulkGen = 0;

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

  /**
   * A big script (reset, rebuild, repair: every lease) written to a file as it is rendered and run as
   * `nft -f <file>`, still one transaction. As one string it was ≈ 7 MB at 100k leases, plus the element
   * objects and strings it was joined from and the copy for nft's stdin: garbage that grew the heap (and
   * portd's RSS, which does not shrink back) by far more than the leases themselves take.
   */
  async function scriptLines(lines: Iterable<string>): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), 'portd-nft-'));
    try {
      const file = join(dir, 'batch.nft');
      const fd = openSync(file, 'w', 0o600);
      let any = false;
      try {
        let buf: string[] = [];
        let size = 0;
        for (const l of lines) {
          buf.push(l);
          size += l.length + 1;
          if (size >= 1 << 16) {
            writeSync(fd, `${buf.join('\n')}\n`);
            buf = [];
            size = 0;
            any = true;
          }
        }
        if (buf.length > 0) {
          writeSync(fd, `${buf.join('\n')}\n`);
          any = true;
        }
      } finally {
        closeSync(fd);
      }
      if (!any) return;
      const r = await run(prefix, nft, ['-f', file], { timeoutMs: 120_000 });
      if (r.code !== 0) throw new CommandError(firstLines(r.stderr) || `nft exited with ${r.code ?? r.signal}`, r);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * Our table's handle and structure (chains, rules, set definitions) from one terse ruleset listing.
   * nft 1.0.6 loads every set element for `list tables` and for `-t list table` (1.2–2.7 s and 170 MB
   * of nft memory each at 100k leases, measured), but not for `-t list ruleset` (≈ 5 ms at any size).
   * check() runs this every 10 s on the serial chain, so its cost is a stall of every tick.
   */
  async function readTable(): Promise<{ handle: number | null; structure: string | null }> {
    const r = await run(prefix, nft, ['-t', '-j', 'list', 'ruleset'], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new CommandError(firstLines(r.stderr) || 'nft list ruleset failed', r);
    const ours = tableOnly(r.stdout, T);
    return { handle: parseTablesJson(ours, T), structure: structureFingerprint(ours) };
  }

  /** structure (+ optional fill) in one batch; recreates the table when our old definitions conflict
   *  (or when asked: something foreign was added to our table) */
  async function build(fill: () => Iterable<string>, recreate = false): Promise<void> {
    const ext = renderExternalAddresses(T, externals);
    function* all(head: readonly string[]): Generator<string> {
      yield* head;
      yield* ext;
      yield* fill();
    }
    try {
      if (recreate) throw new Error('recreate requested');
      await scriptLines(all(renderInit(ruleset)));
    } catch (err) {
      if (!recreate) log.warn({ err: errText(err) }, 'nft table definitions conflict; recreating the table');
      await scriptLines(all(renderRecreate(ruleset)));
    }
    const t = await readTable();
    handle = t.handle;
    structure = t.structure;
    structureOf = ruleset;
  }

  /** what changed in our table behind our back (rules, set definitions, external addresses), or null;
   *  `now` is the structure just read */
  async function structureDrift(now: string | null): Promise<string | null> {
    if (structureOf !== ruleset) {
      structure = now;
      structureOf = ruleset;
      return null;
    } // our own change (trigger rules): new baseline
    if (now !== structure) return 'table structure altered from outside (chains, rules or set definitions)';
    const r = await run(prefix, nft, ['-j', 'list', 'set', 'inet', T, 'ext4'], { timeoutMs: 10_000 });
    if (r.code !== 0) return 'external address set missing';
    if (setElements(r.stdout).join(',') !== [...new Set(externals)].sort().join(','))
      return 'external address set altered from outside';
    return null;
  }

  async function rebuild(reason: string, recreate = false): Promise<void> {
    if (netlink !== null && !netlink.current()) openNetlink();
    model.pruneExpired(clock());
    bulkGen++;
    const now = clock();
    await build(() => renderFillLines(T, model, now), recreate);
    suspect = false;
    lastError = null;
    lastDrift = model.size;
    lastReconcileAt = Date.now();
    opts.metrics?.reconcileDrift.inc(model.size);
    log.warn({ reason, entries: model.size }, 'nft table rebuilt');
    opts.onRepaired?.(reason);
  }

  async function applyCommands(commands: readonly string[], elements: number): Promise<void> {
    if (useInteractive && elements <= maxInteractive) await interactive.run(asLine(commands));
    else await script(commands);
  }

  async function kernelElements(): Promise<{ elements: KernelElement[]; handle: number; foreign: number } | null> {
    const r = await run(prefix, nft, ['-j', 'list', 'table', 'inet', T], { timeoutMs: 120_000 });
    if (r.code !== 0) {
      if (/No such file or directory/.test(r.stderr)) return null;
      throw new CommandError(firstLines(r.stderr), r);
    }
    const t = parseTableJson(r.stdout, T);
    return t ? { elements: t.elements, handle: t.handle, foreign: t.foreign } : null;
  }

  /**
   * What the model expects in the kernel, by typed element id (model.ts: elementId) with its data, and the
   * ids whose kernel timeout ends within 2 s (they may be gone already: not missing when absent). Walked in
   * slices with the event loop free between them when `breathe` is given (the audit, at 100k leases).
   */
  async function expectedElements(
    now: number,
    breathe?: () => Promise<void>,
  ): Promise<{ expected: Map<string, ElementData | null>; fading: Set<string> }> {
    const expected = new Map<string, ElementData | null>();
    const fading = new Set<string>();
    let n = 0;
    for (const m of model.entries.values()) {
      const soon = m.deadline !== null && m.deadline - now < 2000;
      for (const el of entryElements(m.entry, null)) {
        const id = elementId(el);
        expected.set(id, el.data);
        if (soon) fading.add(id);
      }
      if (breathe && ++n % 1024 === 0) await breathe();
    }
    for (const [lv, holders] of model.live()) {
      const id = elementId(lv);
      expected.set(id, null);
      if (
        holders.every((k) => {
          const d = model.get(k)?.deadline;
          return d !== null && d !== undefined && d - now < 2000;
        })
      )
        fading.add(id);
      if (breathe && ++n % 1024 === 0) await breathe();
    }
    for (const [slot, w] of model.snat()) {
      const el = snatElementOf(w.entry, slot, null);
      if (!el) continue;
      const id = elementId(el);
      expected.set(id, el.data);
      if (w.deadline !== null && w.deadline - now < 2000) fading.add(id);
      if (breathe && ++n % 1024 === 0) await breathe();
    }
    return { expected, fading };
  }

  /** model vs kernel over typed elements: what the model holds that the kernel lacks (or holds with other data),
   *  and what the kernel holds that the model does not (`foreign`: elements of our sets that no lease could be) */
  async function diff(kernel: readonly KernelElement[], foreign: number): Promise<{ missing: number; stale: number }> {
    const { expected, fading } = await expectedElements(clock());
    const seen = new Set<string>();
    let stale = foreign;
    let missing = 0;
    for (const k of kernel) {
      const id = elementId(k);
      seen.add(id);
      const want = expected.get(id);
      if (want === undefined && !expected.has(id)) stale++;
      else if (!sameData(want ?? null, k.data)) missing++;
    }
    for (const id of expected.keys()) if (!seen.has(id) && !fading.has(id)) missing++;
    return { missing, stale };
  }

  const self: NftablesDataplane = {
    driver: 'nftables',

    init: () =>
      serial(async () => {
        await build(() => []);
        initialised = true;
        if (netlink === null || !netlink.current()) openNetlink();
        const transport = netlink ? 'netlink' : useInteractive ? 'nft -i' : 'nft -f';
        log.info({ handle, wan: opts.wan, lan: opts.lan, hairpin: opts.hairpin, transport }, 'nft table ready');
      }),

    apply: (batch: DataplaneBatch) =>
      serial(async () => {
        if (batch.add.length === 0 && batch.remove.length === 0) return;
        const now = clock();
        // pruning walks the whole model (1–15 ms at 100k entries), so only once a minute here: planBatch ignores
        // expired entries itself and count() prunes before it counts
        if (now - lastPrune > 60_000) {
          model.pruneExpired(now);
          lastPrune = now;
        }
        const t0 = performance.now();
        let plan;
        try {
          plan = planBatch(T, model, batch, now);
        } catch (err) {
          // counted by the writer, whose batch this is (portd_dataplane_errors_total, and the batch duration)
          throw new PortdError(ErrorCode.DATAPLANE_BATCH, `nftables batch refused: ${errText(err)}`);
        }
        if (auditTouched) {
          for (const e of [...batch.remove, ...batch.add]) {
            for (const el of entryElements(model.get(entryKey(e))?.entry ?? e, null)) auditTouched.add(elementId(el));
            for (const el of entryElements(e, null)) auditTouched.add(elementId(el));
            const lv = entryLive(e);
            if (lv) auditTouched.add(elementId(lv));
            for (const slot of entrySnatSlots(e)) {
              const el = snatElementOf(e, slot, null);
              if (el) auditTouched.add(elementId(el));
            }
          }
        }
        try {
          const viaNetlink =
            netlink !== null && plan.elements <= maxNetlink && netlinkCan(plan.steps) && netlink.commit(T, plan.steps);
          if (!viaNetlink) await applyCommands(plan.commands, plan.elements);
        } catch (err) {
          lastError = errText(err);
          // a vanished table or an unknown outcome: the next check() looks closer
          suspect = true;
          log.error({ err: lastError, add: batch.add.length, remove: batch.remove.length }, 'nft batch failed');
          throw new PortdError(
            ErrorCode.DATAPLANE_BATCH,
            `nftables batch failed: ${lastError}`,
            'portd reconciles the table on its next check',
          );
        }
        model.apply(plan.changes);
        log.debug(
          {
            add: batch.add.length,
            remove: batch.remove.length,
            elements: plan.elements,
            ms: +(performance.now() - t0).toFixed(2),
          },
          'nft batch applied',
        );
      }),

    list: () =>
      serial(async () => {
        const k = await kernelElements();
        if (!k) return [];
        const pool = new Map<string, KernelElement>();
        for (const el of k.elements) pool.set(elementId(el), el);
        const out: DataplaneEntry[] = [];
        for (const m of model.entries.values()) {
          const els = entryElements(m.entry, null);
          const got = els.map((el) => pool.get(elementId(el)));
          if (got.every((g, i) => g !== undefined && sameData(g.data, els[i]?.data ?? null))) {
            const expires = got.map((g) => g?.expires ?? null);
            const timeoutSeconds = expires.some((x) => x === null) ? null : Math.min(...(expires as number[]));
            out.push({ ...m.entry, timeoutSeconds });
            for (const el of els) pool.delete(elementId(el));
          }
          const lv = entryLive(m.entry);
          if (lv) pool.delete(elementId(lv));
        }
        // whatever is left is not ours (planted, or from before a restart): report it as the kernel has it
        const ext = externals[0] ?? '0.0.0.0';
        for (const el of pool.values()) {
          // outbound SNAT elements are a lease's second half, not a lease of their own
          if (el.protocol === null || (SNAT_SETS as readonly string[]).includes(el.set)) continue;
          if (el.address !== null) {
            // a pinhole: the internal endpoint is the external one
            const a = addressText(el.address);
            out.push({
              id: `kernel:${el.set}:${keyText(el)}`,
              family: 6,
              protocol: el.protocol,
              externalAddress: a,
              externalPort: el.port,
              externalPortEnd: el.portEnd,
              internalAddress: a,
              internalPort: el.port,
              remoteAddress: el.remote === null ? null : addressText(el.remote),
              timeoutSeconds: el.expires,
            });
            continue;
          }
          if (el.data === null) continue;
          out.push({
            id: `kernel:${el.set}:${keyText(el)}`,
            protocol: el.protocol,
            externalAddress: ext,
            externalPort: el.port,
            externalPortEnd: el.portEnd,
            internalAddress: addressText(el.data.address),
            internalPort: el.data.port ?? el.port,
            remoteAddress: el.remote === null ? null : addressText(el.remote),
            timeoutSeconds: el.expires,
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

    reset: (entries: readonly DataplaneEntry[]) =>
      serial(async () => {
        const now = clock();
        model.pruneExpired(now);
        const t0 = performance.now();
        const plan = planResetModel(entries, now);
        if (plan.duplicates.length > 0)
          log.warn(
            { keys: plan.duplicates.slice(0, 10), count: plan.duplicates.length },
            'reset: duplicate keys, last one kept',
          );
        // drift as far as we can tell without listing: what we believed vs what the table says
        let drift = 0;
        for (const k of model.entries.keys()) if (!plan.model.get(k)) drift++;
        for (const [k, m] of plan.model.entries) {
          const old = model.get(k);
          if (
            !old ||
            entryKey(old.entry) !== k ||
            old.entry.internalAddress !== m.entry.internalAddress ||
            old.entry.internalPort !== m.entry.internalPort
          )
            drift++;
        }
        try {
          const ext = renderExternalAddresses(T, externals);
          await scriptLines(
            (function* () {
              yield* renderInit(ruleset);
              yield* renderFillLines(T, plan.model, now);
              yield* ext;
            })(),
          );
        } catch (err) {
          lastError = errText(err);
          log.error({ err: lastError }, 'nft reset failed');
          throw new PortdError(ErrorCode.DATAPLANE_BATCH, `nftables reset failed: ${lastError}`);
        }
        model = plan.model;
        bulkGen++;
        const t = await readTable();
        handle = t.handle;
        // the baseline stays the one taken when we built the table: a reset re-asserts our rules but does not
        // remove what someone else added, and the next check() must still see that
        if (structure === null) {
          structure = t.structure;
          structureOf = ruleset;
        }
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

    setExternalAddresses: (addresses: readonly string[]) =>
      serial(async () => {
        const cmds = renderExternalAddresses(T, addresses);
        // the leases follow a new WAN address (the lease table rewrites their rows): their outbound SNAT elements
        // leave from it, in the same transaction as the address set
        const moved = addresses.length === 1 ? withExternalAddress(model, addresses[0]!) : null;
        if (initialised && moved) {
          await script([...cmds, ...renderSnatFill(T, moved, clock())]);
          model = moved;
        } else if (initialised) await applyCommands(cmds, addresses.length + 1);
        else if (moved) model = moved;
        externals = [...addresses];
        log.info({ addresses }, 'external addresses set');
      }),

    check: () =>
      serial(async () => {
        if (!initialised) return { ok: false, rebuilt: false, reason: 'not initialised' };
        let h: number | null;
        let now: string | null;
        try {
          ({ handle: h, structure: now } = await readTable());
        } catch (err) {
          lastError = errText(err);
          return { ok: false, rebuilt: false, reason: lastError };
        }
        let reason: string | null = null;
        try {
          reason =
            h === null
              ? 'table deleted from outside'
              : h !== handle
                ? 'table recreated from outside'
                : await structureDrift(now);
        } catch (err) {
          lastError = errText(err);
          return { ok: false, rebuilt: false, reason: lastError };
        }
        if (reason !== null) {
          try {
            // a table that is no longer the one we built (altered, or recreated by someone) is replaced whole, in one
            // transaction
            await rebuild(reason, h !== null);
            return { ok: true, rebuilt: true, reason };
          } catch (err) {
            lastError = errText(err);
            log.error({ err: lastError }, 'nft table rebuild failed');
            return { ok: false, rebuilt: false, reason: lastError };
          }
        }
        if (suspect) {
          const v = await verifyNow();
          return {
            ok: true,
            rebuilt: v.repaired,
            reason: v.repaired ? `drift repaired (missing ${v.missing}, stale ${v.stale})` : 'verified',
          };
        }
        return { ok: true, rebuilt: false };
      }),

    verify: () => serial(verifyNow),

    // the live-port sets list fast (≈ 0.25 s per 50k elements as JSON in nft 1.0.6, both big ones side by
    // side; as text 0.3–0.4 s each), the forwarding maps slowly (2–3 s and 170–460 MB of nft memory at 100k
    // leases): so a start where the kernel kept every element costs no full listing
    // a pinhole's packets: its elements' counters (the pinhole sets are declared with `counter`), read
    // outside the serial chain (a read of one small set; a tick meanwhile changes no counter)
    packets: async (e) => {
      if (e.family !== 6) return null;
      const els = entryElements(e, null);
      let total = 0;
      for (const set of new Set(els.map((x) => x.set))) {
        const r = await run(prefix, nft, ['-j', 'list', 'set', 'inet', T, set], { timeoutMs: 10_000 });
        if (r.code !== 0) return null;
        const counters = parseSetCounters(r.stdout, set);
        for (const el of els) if (el.set === set) total += counters.get(elementId(el)) ?? 0;
      }
      return total;
    },

    kernelCount: () =>
      serial(async () => {
        // IPv4 leases by their live ports, IPv6 pinholes by their own elements (a peer-filtered range counts per port)
        const counts = await Promise.all(
          [...LIVE_SETS, ...PINHOLE_SETS].map(async (set) => {
            const r = await run(prefix, nft, ['-j', 'list', 'set', 'inet', T, set], { timeoutMs: 60_000 });
            if (r.code === 0) return countSetElements(r.stdout);
            if (/No such file or directory/.test(r.stderr)) return 0;
            throw new CommandError(firstLines(r.stderr) || `nft list set ${set} failed`, r);
          }),
        );
        return counts.reduce((a, b) => a + b, 0);
      }),

    // The listing (1–3 s of nft at 100k elements) runs beside the ticks, not in the serial chain: in it, it
    // stalled every request for its whole length. Elements the ticks write meanwhile are left out of the
    // compare; drift found this way is confirmed (and repaired) by verify() in the chain. The listing is
    // plain text read set by set as it arrives, and the model is walked in slices with the event loop
    // free between them: as one JSON document it blocked the loop 0.3–0.5 s every few minutes at 100k.
    audit: async () => {
      if (!initialised || auditTouched !== null || !auditDue(clock(), lastAudit)) return null;
      const t0 = clock();
      const gen = bulkGen;
      const touched = new Set<string>();
      auditTouched = touched;
      let d: { missing: number; stale: number };
      try {
        d = await auditCompare(t0, touched);
      } finally {
        auditTouched = null;
      }
      let v: VerifyResult | null = null;
      if (gen === bulkGen && d.missing === 0 && d.stale === 0) v = { ...d, repaired: false };
      v ??= await serial(verifyNow);
      // the budget is the cost of looking, not of a repair (rare, and it must not push the next look out)
      lastAudit = { at: t0, ms: v.repaired ? (lastAudit?.ms ?? 0) : clock() - t0, elements: model.size };
      return v;
    },

    health(): DataplaneHealth {
      const ok = initialised && lastError === null;
      return {
        ok,
        lastReconcileAt,
        lastDrift,
        ...(lastError ? { detail: lastError } : initialised ? {} : { detail: 'not initialised' }),
      };
    },

    close: () =>
      serial(async () => {
        interactive.kill();
        netlink?.close();
        netlink = null;
      }),

    setTriggers: (rules: readonly TriggerKernelRule[]) =>
      serial(async () => {
        const before = ruleset.triggers ?? [];
        const next: RulesetOptions = { ...ruleset, triggers: [...rules] };
        validateRulesetOptions(next);
        const removed = before.map((r) => r.name).filter((n) => !rules.some((r) => r.name === n));
        // sets of rules dropped while portd was not running: found by name (terse: without elements)
        if (initialised && !triggersListed) {
          const r = await run(prefix, nft, ['-j', '-t', 'list', 'sets', 'inet'], { timeoutMs: 10_000 });
          if (r.code === 0) {
            triggersListed = true;
            try {
              const doc = JSON.parse(r.stdout) as { nftables?: { set?: { table: string; name: string } }[] };
              for (const it of doc.nftables ?? []) {
                const m = it.set && it.set.table === T ? /^trig_(.+)_active6?$/.exec(it.set.name) : null;
                if (m && !removed.includes(m[1]!) && !rules.some((x) => x.name === m[1])) removed.push(m[1]!);
              }
            } catch {
              /* keep going: at worst an unused set stays */
            }
          }
        }
        const cmds = renderTriggers(next, next.triggers ?? [], removed); // validates
        if (initialised) await script(cmds);
        ruleset = next;
        log.info({ rules: rules.map((r) => r.name), removed }, 'nft trigger rules set');
      }),

    // not serialised: reading a few small sets never conflicts with a tick, and must not wait behind a big reset
    triggerActivity: async (rules: readonly string[], family: AddressFamily = 4) => {
      const out = new Map<string, Map<string, number | null>>();
      await Promise.all(
        rules.map(async (name) => {
          const r = await run(prefix, nft, ['list', 'set', 'inet', T, triggerSetName(name, family)], {
            timeoutMs: 10_000,
          });
          // a missing set (table deleted, rebuild pending) reads as no activity
          out.set(name, r.code === 0 ? parseActivity(r.stdout) : new Map());
        }),
      );
      return out;
    },

    touchTrigger: (rule: string, host: string, seconds: number) =>
      serial(async () => {
        const cmds = renderTouch(T, rule, host, seconds);
        await applyCommands(cmds, cmds.length);
      }),

    destroy: () =>
      serial(async () => {
        interactive.kill();
        netlink?.close();
        netlink = null;
        await script([`add table inet ${T}`, `delete table inet ${T}`]);
        model.clear();
        bulkGen++;
        initialised = false;
        handle = null;
      }),
  };

  /** lets the event loop run (requests, ticks) between slices of a long walk */
  const breathe = () => new Promise<void>((r) => setImmediate(r));

  /**
   * The audit's compare: what the model expects (walked in slices), then the table listed as text (one nft)
   * and checked as it arrives. Mismatches on elements the ticks touched meanwhile (`touched` grows while
   * this runs) do not count, nor elements whose kernel timeout ends within the time this has taken + 2 s.
   */
  async function auditCompare(t0: number, touched: ReadonlySet<string>): Promise<{ missing: number; stale: number }> {
    model.pruneExpired(clock());
    const { expected, fading } = await expectedElements(clock(), breathe);
    const odd: { id: string; stale: boolean }[] = [];
    let foreign = 0;
    const parser = new ListedTable((_set, el) => {
      if (el === null) {
        foreign++; // not an element any lease could be
        return;
      }
      const id = elementId(el);
      const want = expected.get(id);
      const known = want !== undefined || expected.has(id);
      expected.delete(id);
      if (touched.has(id) || (el.expires !== null && el.expires <= (clock() - t0) / 1000 + 2)) return;
      if (!known) odd.push({ id, stale: true });
      else if (!sameData(want ?? null, el.data)) odd.push({ id, stale: false });
    });
    // one nft process for every set (chains listed too: a few lines)
    const r = await run(prefix, nft, ['list', 'table', 'inet', T], {
      timeoutMs: 120_000,
      onStdout: (text) => parser.push(text),
    });
    const seen = parser.end();
    // a set that is gone or a listing cut short: let verify() look at the whole table
    if (r.code !== 0 || !seen || ELEMENT_SETS.some((s) => !seen.has(s))) return { missing: 1, stale: 0 };
    let missing = 0;
    let stale = foreign;
    for (const o of odd)
      if (!touched.has(o.id)) {
        if (o.stale) stale++;
        else missing++;
      }
    for (const id of expected.keys()) if (!fading.has(id) && !touched.has(id)) missing++;
    return { missing, stale };
  }

  async function verifyNow(): Promise<VerifyResult> {
    model.pruneExpired(clock());
    const k = await kernelElements();
    if (!k) {
      await rebuild('table missing at verify');
      return { missing: model.size, stale: 0, repaired: true };
    }
    const d = await diff(k.elements, k.foreign);
    suspect = false;
    if (d.missing === 0 && d.stale === 0) {
      lastError = null;
      return { ...d, repaired: false };
    }
    bulkGen++;
    const now = clock();
    await scriptLines(renderFillLines(T, model, now));
    lastError = null;
    lastDrift = d.missing + d.stale;
    lastReconcileAt = Date.now();
    opts.metrics?.reconcileDrift.inc(lastDrift);
    log.warn({ missing: d.missing, stale: d.stale }, 'nft drift repaired from the model');
    opts.onRepaired?.(`elements altered from outside (missing ${d.missing}, stale ${d.stale})`);
    return { ...d, repaired: true };
  }

  return self;
}
