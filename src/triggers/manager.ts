/**
 * Port triggering: rules (config file + admin API), firings turned into leases, idleness followed
 * from the kernel. See docs/triggers.md.
 *
 * - A firing (a new outbound flow the kernel marked, or POST .../fire) becomes one lease request per
 *   `open` range: source `trigger`, the rule name, owner = the LAN host, lifetime = idleTimeout.
 *   All ranges or none: a refusal releases what this firing created. The lease table decides
 *   conflicts: another host holding the rule, or a static forward on the ranges, refuse; a UPnP/PCP/NAT-PMP
 *   lease on them ends as `replaced` (admin-defined openings outrank dynamic ones), and while the rule is
 *   enabled its ports are not handed to dynamic clients at all (portRule).
 * - Idle: the kernel refreshes `trig_<rule>_active` on every packet of the trigger flow and through
 *   the opened ports. portd polls only those small sets, and only for rules that are held, and moves
 *   the leases' expiresAt to the host's activity deadline (rarely: when it moved by more than half
 *   the idle timeout, or when the lease is about to end). When traffic stops, nobody renews and the
 *   lease table expires the leases at last packet + idleTimeout (`expired` in their history).
 * - Holdings (which host holds which rule) are a cache derived from the lease table's events.
 * - IPv6 LAN hosts (issue 15): a firing by an IPv6 host opens the rule's ranges as pinholes to that host
 *   (family-6 leases: no translation, so each host has its own and two hosts never conflict). Only pinhole
 *   targets (global or unique-local unicast, isPinholeTarget) fire; with policy.ipv6Pinholes off IPv6
 *   firings are refused (`pinholes_off`). The kernel keeps a second activity set per rule for them.
 */
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import type { ConfigIssue } from '../config/errors.js';
import { triggerContext, validateTrigger } from '../config/triggers.js';
import { externalPorts, formatPortRange } from '../common/port-range.js';
import { canonicalIPv6, isPinholeTarget, splitZone } from '../common/ipv6.js';
import type { AddressFamily } from '../common/net-types.js';
import type { Config, TriggerConfig } from '../config/types.js';
import { ErrorCode, type HttpErrorCode } from '../errors.js';
import type { LeaseTableApi } from '../leases/table-api.js';
import type { GrantResult, Lease, LeaseEvent, LeaseRequest } from '../leases/types.js';
import type { Metrics } from '../metrics.js';
import type { FlowSource, TriggerFlow, TriggerKernel } from '../dataplane/trigger-kernel.js';
import {
  assignIds,
  describeMatch,
  describeOpen,
  hostAllowed,
  toDocument,
  toKernelRule,
  type TriggerDocument,
  type TriggerOrigin,
  type TriggerRule,
} from './rules.js';
import { createTriggerStore, emptyCounters, type TriggerCounters } from './store.js';
import type { WriteDoor } from '../leases/writer.js';

export type TriggerSettings = Pick<Config, 'policy' | 'staticForwards' | 'triggers'>;

/** the lease table as the trigger manager uses it: the API plus its database (for the rules table) */
/** the lease table, and its writer's door for the trigger rules and counters (src/leases/writer.ts) */
export type TriggerLeases = LeaseTableApi & { readonly door: WriteDoor };

export interface TriggerManagerOptions {
  readonly leases: TriggerLeases;
  readonly kernel: TriggerKernel;
  /** where kernel firings come from (conntrack events); null = API firings only */
  readonly flows?: FlowSource | null;
  readonly config: TriggerSettings;
  readonly log: Logger;
  readonly metrics?: Metrics;
  readonly clock: { now(): number };
  /** how often held rules' activity sets are read (ms); 0 = never by timer (tests call poll()) */
  readonly pollMs?: number;
  /** how often changed counters are written to the database (ms); 0 = only on close */
  readonly statsFlushMs?: number;
}

export type TriggerState = 'idle' | 'held' | 'disabled' | 'error';

export interface TriggerView extends TriggerDocument {
  readonly origin: TriggerOrigin;
  readonly readOnly: boolean;
  readonly state: TriggerState;
  /** the LAN host holding the opened ranges */
  readonly holder: string | null;
  /** epoch ms when the opening closes unless there is traffic */
  readonly until: number | null;
  readonly leases: string[];
  readonly counters: {
    fired: number;
    renewed: number;
    refused: number;
    lastFiredAt: number | null;
    lastHost: string | null;
  };
  readonly lastRefusal: TriggerCounters['lastRefusal'];
  /** an API rule that is stored but not in force (e.g. it collides with a rule added to the config file) */
  readonly error: string | null;
  /** `udp 6112 -> tcp 6113-6119` */
  readonly summary: string;
}

export type FireVia = 'kernel' | 'api';

export type FireResult =
  | { readonly ok: true; readonly result: 'granted' | 'renewed'; readonly host: string; readonly leases: Lease[] }
  | {
      readonly ok: false;
      readonly result: 'conflict';
      readonly host: string;
      readonly holder: { id: string; source: string; owner: string; externalPort: number; externalPortEnd: number };
      readonly detail: string;
    }
  | {
      readonly ok: false;
      /** not_target: an IPv6 host a pinhole cannot open to (link-local...); pinholes_off: policy.ipv6Pinholes false */
      readonly result:
        | 'not_allowed'
        | 'disabled'
        | 'max_lifetime'
        | 'refused'
        | 'unknown_rule'
        | 'not_target'
        | 'pinholes_off';
      readonly host: string;
      readonly detail: string;
    };

export type MutationResult =
  | { readonly ok: true; readonly trigger: TriggerView }
  | {
      readonly ok: false;
      /** its HTTP status is the registry's (src/errors.ts) */
      readonly code: HttpErrorCode;
      readonly message: string;
      readonly issues?: readonly ConfigIssue[];
      readonly field?: string;
    };

interface Holding {
  readonly ids: Set<string>;
}

/** a firing host's family and its one spelling (IPv6: canonical, zone dropped); null when it is neither */
function hostKey(host: string): { family: AddressFamily; host: string } | null {
  if (isIPv4(host)) return { family: 4, host };
  const v6 = canonicalIPv6(splitZone(host).address);
  return v6 === null ? null : { family: 6, host: v6 };
}

export function createTriggerManager(opts: TriggerManagerOptions) {
  const { leases, kernel, clock, metrics } = opts;
  const log = opts.log.child({ component: 'triggers' });
  const store = createTriggerStore(leases.door);
  const pollMs = opts.pollMs ?? 1000;
  const statsFlushMs = opts.statsFlushMs ?? 10_000;
  let settings = opts.config;

  /** rules in force, by name (config first, then API rules in creation order) */
  let rules = new Map<string, TriggerRule>();
  let byId = new Map<number, TriggerRule>();
  let ids = new Map<string, number>();
  /** the ports enabled rules open, to the rule's name: never handed to UPnP/PCP/NAT-PMP clients (portRule) */
  // Maps of the opened ports only: two 65,536-slot arrays were 1 MiB of the idle heap with no trigger configured
  let openPorts = { tcp: new Map<number, string>(), udp: new Map<number, string>() };
  /** API rules stored but not in force, with why */
  let broken = new Map<string, { doc: unknown; error: string }>();
  const counters = store.loadStats();
  let statsDirty = false;
  /** rule -> host -> lease ids (derived from lease events) */
  const holdings = new Map<string, Map<string, Holding>>();
  /** one firing or renewal per rule at a time */
  const chains = new Map<string, Promise<unknown>>();
  const pendingFire = new Map<string, Promise<FireResult>>();
  let timers: NodeJS.Timeout[] = [];
  let offLeases: (() => void) | null = null;
  let closed = false;
  let polling = false;

  const counterOf = (name: string): TriggerCounters => {
    let c = counters.get(name);
    if (!c) {
      c = emptyCounters();
      counters.set(name, c);
    }
    return c;
  };

  function onRule<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = chains.get(name) ?? Promise.resolve();
    const p = prev.then(fn, fn);
    const tail = p.catch(() => undefined);
    chains.set(name, tail);
    void tail.then(() => {
      if (chains.get(name) === tail) chains.delete(name);
    });
    return p;
  }

  // ---- holdings: derived from the lease table ----
  function hold(l: Lease): void {
    if (l.source !== 'trigger' || !l.rule) return;
    let m = holdings.get(l.rule);
    if (!m) {
      m = new Map();
      holdings.set(l.rule, m);
    }
    let h = m.get(l.owner);
    if (!h) {
      h = { ids: new Set() };
      m.set(l.owner, h);
    }
    h.ids.add(l.id);
  }
  function unhold(l: Lease): void {
    if (!l.rule) return;
    const m = holdings.get(l.rule);
    const h = m?.get(l.owner);
    if (!m || !h) return;
    h.ids.delete(l.id);
    if (h.ids.size === 0) m.delete(l.owner);
    if (m.size === 0) holdings.delete(l.rule);
  }
  function onLeaseEvent(e: LeaseEvent): void {
    const l = e.lease;
    if (l?.source !== 'trigger') return;
    if (e.type === 'granted') hold(l);
    else if (e.type === 'released' || e.type === 'expired' || e.type === 'revoked' || e.type === 'replaced') {
      unhold(l);
      // an opening that went idle (or reached maxLifetime): the rule's marked flows are forgotten, so the
      // next packet of the holder, or of a host refused meanwhile, fires again (FlowSource.forget).
      // Only on expiry: after a refusal or a revoke it would loop.
      const rule = l.rule ? rules.get(l.rule) : undefined;
      if (e.type === 'expired' && rule && !holdings.has(rule.config.name)) void opts.flows?.forget?.(rule.id, null);
      if (l.rule)
        log.info(
          {
            rule: l.rule,
            host: l.owner,
            id: l.id,
            protocol: l.protocol,
            external: formatPortRange(externalPorts(l)),
            why: e.type,
            reason: e.reason ?? undefined,
          },
          `trigger opening closed (${e.type})`,
        );
    }
  }
  function rebuildHoldings(): void {
    holdings.clear();
    for (let offset = 0; ; offset += 10_000) {
      const page = leases.list({ source: 'trigger', state: 'active', limit: 10_000, offset });
      for (const l of page.leases) hold(l);
      if (page.leases.length < 10_000) break;
    }
  }
  function activeLeases(name: string, host: string): Lease[] {
    const h = holdings.get(name)?.get(host);
    if (!h) return [];
    return [...h.ids].map((id) => leases.get(id)).filter((l): l is Lease => l !== null && l.state === 'active');
  }

  // ---- composing the rules in force ----
  function compose(cfg: TriggerSettings): {
    list: TriggerRule[];
    broken: Map<string, { doc: unknown; error: string }>;
  } {
    const accepted: TriggerConfig[] = [...cfg.triggers];
    const origins = new Map<string, TriggerOrigin>(cfg.triggers.map((t) => [t.name, 'config']));
    const bad = new Map<string, { doc: unknown; error: string }>();
    for (const stored of store.loadRules()) {
      if (origins.has(stored.name)) {
        bad.set(stored.name, {
          doc: stored.spec,
          error: `the configuration file now defines a rule named ${stored.name}; the file wins`,
        });
        continue;
      }
      const v = validateTrigger(stored.spec, '', triggerContext(cfg, accepted));
      if (!v.ok) {
        bad.set(stored.name, {
          doc: stored.spec,
          error: v.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; '),
        });
        continue;
      }
      accepted.push(v.value);
      origins.set(v.value.name, 'api');
    }
    const nextIds = assignIds(
      accepted.map((t) => t.name),
      ids,
    );
    return {
      list: accepted.map((t) => ({ config: t, origin: origins.get(t.name)!, id: nextIds.get(t.name)! })),
      broken: bad,
    };
  }

  const sameOpen = (a: TriggerConfig, b: TriggerConfig) => JSON.stringify(a.open) === JSON.stringify(b.open);

  /** puts a rule set in force: kernel first, then the leases of rules that went away or changed what they open end */
  async function install(
    list: readonly TriggerRule[],
    nextBroken: Map<string, { doc: unknown; error: string }>,
    actor: string,
  ): Promise<void> {
    await kernel.setRules(list.filter((r) => r.config.enabled).map(toKernelRule));
    const old = rules;
    rules = new Map(list.map((r) => [r.config.name, r]));
    byId = new Map(list.map((r) => [r.id, r]));
    ids = new Map(list.map((r) => [r.config.name, r.id]));
    const nextOpen = { tcp: new Map<number, string>(), udp: new Map<number, string>() };
    for (const r of list) {
      if (!r.config.enabled) continue;
      for (const o of r.config.open) {
        const m = nextOpen[o.protocol];
        for (let p = o.ports.start; p <= o.ports.end; p++) if (!m.has(p)) m.set(p, r.config.name);
      }
    }
    openPorts = nextOpen;
    broken = nextBroken;
    for (const [name, b] of broken)
      log.error({ rule: name, error: b.error }, 'trigger rule from the API is not in force');
    // openings that no longer match their rule end now
    const ends: Promise<unknown>[] = [];
    for (const [name, hosts] of [...holdings]) {
      const next = rules.get(name)?.config;
      const prev = old.get(name)?.config;
      for (const host of [...hosts.keys()]) {
        let why: string | null = null;
        if (!next) why = `trigger rule ${name} removed`;
        else if (!next.enabled) why = `trigger rule ${name} disabled`;
        else if (prev && !sameOpen(prev, next)) why = `trigger rule ${name} now opens other ports`;
        else if (!hostAllowed(next, host)) why = `${host} is no longer allowed to fire ${name}`;
        if (why) ends.push(endHolding(name, host, actor, why));
      }
    }
    await Promise.all(ends);
  }

  function endHolding(name: string, host: string, actor: string, why: string): Promise<void> {
    return onRule(name, async () => {
      for (const l of activeLeases(name, host)) {
        const r = await leases.revoke(l.id, actor, why);
        if (!r.ok) log.warn({ rule: name, id: l.id, reason: r.reason }, 'could not end a trigger lease');
      }
    });
  }

  // ---- firing ----
  function requestsFor(t: TriggerConfig, host: string, lifetime: number, actor: string): LeaseRequest[] {
    // an IPv6 host gets pinholes: the same ports on its own address, no translation
    const family = host.includes(':') ? { family: 6 as const } : {};
    return t.open.map((o) => ({
      ...family,
      source: 'trigger',
      identity: 'external',
      protocol: o.protocol,
      owner: host,
      internalAddress: host,
      internalPort: o.ports.start,
      externalPort: o.ports.start,
      externalPortEnd: o.ports.end,
      allowOtherPort: false,
      lifetime,
      description: `trigger ${t.name}`,
      rule: t.name,
      thirdPartyAllowed: true,
      actor,
    }));
  }

  function count(name: string, result: string): void {
    metrics?.triggerFirings.inc({ rule: name, result });
  }

  async function doFire(
    rule: TriggerRule,
    host: string,
    via: FireVia,
    actor: string,
    flow: TriggerFlow | null,
  ): Promise<FireResult> {
    const t = rule.config;
    const c = counterOf(t.name);
    const started = performance.now();
    const refuse = (
      result: 'not_allowed' | 'disabled' | 'max_lifetime' | 'refused' | 'not_target' | 'pinholes_off',
      detail: string,
      reason: string,
    ): FireResult => {
      count(t.name, result);
      if (result !== 'max_lifetime') {
        c.refused++;
        c.lastRefusal = { at: clock.now(), host, reason, holder: null };
        statsDirty = true;
      }
      log.info({ rule: t.name, host, via, result, detail }, `trigger refused: ${detail}`);
      return { ok: false, result, host, detail };
    };
    if (!t.enabled) return refuse('disabled', `rule ${t.name} is disabled`, 'disabled');
    if (host.includes(':')) {
      if (!settings.policy.ipv6Pinholes)
        return refuse(
          'pinholes_off',
          `${host} is an IPv6 host and policy.ipv6Pinholes is false: IPv6 firings are ignored`,
          'pinholes_off',
        );
      if (!isPinholeTarget(host))
        return refuse(
          'not_target',
          `${host} is not an IPv6 address a pinhole can open to (global or unique-local unicast only)`,
          'not_target',
        );
    }
    if (!hostAllowed(t, host))
      return refuse('not_allowed', `${host} is not in the rule's hosts (${t.hosts.join(', ')})`, 'not_allowed');
    const now = clock.now();
    let lifetime = t.idleTimeout;
    const mine = activeLeases(t.name, host);
    if (t.maxLifetime !== null && mine.length > 0) {
      const createdAt = Math.min(...mine.map((l) => l.createdAt));
      const left = Math.floor((createdAt + t.maxLifetime * 1000 - now) / 1000);
      if (left < 1)
        return refuse(
          'max_lifetime',
          `the opening reached maxLifetime ${t.maxLifetime}s; it closes now and the next flow opens it again`,
          'max_lifetime',
        );
      lifetime = Math.min(lifetime, left);
    } else if (t.maxLifetime !== null) lifetime = Math.min(lifetime, t.maxLifetime);
    // a firing that did not come from a packet counts as one for the idle clock
    if (via !== 'kernel' || !kernel.packetActivity) {
      try {
        await kernel.touch(t.name, host, lifetime);
      } catch (e) {
        log.warn({ rule: t.name, host, err: (e as Error).message }, 'could not mark the host active in the kernel');
      }
    }
    const results: GrantResult[] = await Promise.all(
      requestsFor(t, host, lifetime, actor).map((r) => leases.request(r)),
    );
    const refusal = results.find((r): r is Exclude<GrantResult, { ok: true }> => !r.ok);
    if (refusal) {
      // all ranges or none: undo what this firing created
      for (const r of results) {
        if (r.ok && r.created)
          await leases.revoke(r.lease.id, actor, `trigger ${t.name}: another range of the rule is unavailable`);
      }
      c.refused++;
      statsDirty = true;
      if (refusal.reason === 'conflict') {
        const h = refusal.holder;
        const detail = `${h.source} lease ${h.id} of ${h.owner} holds ${formatPortRange(externalPorts(h))}`;
        c.lastRefusal = {
          at: clock.now(),
          host,
          reason: 'conflict',
          holder: { source: h.source, owner: h.owner, id: h.id },
        };
        count(t.name, 'conflict');
        log.warn(
          { rule: t.name, host, via, holder: h.owner, holderSource: h.source, holderLease: h.id },
          `trigger refused: ${detail}`,
        );
        return { ok: false, result: 'conflict', host, holder: { ...h }, detail };
      }
      c.lastRefusal = { at: clock.now(), host, reason: refusal.reason, holder: null };
      count(t.name, 'refused');
      log.warn(
        { rule: t.name, host, via, reason: refusal.reason, detail: refusal.detail },
        `trigger refused: ${refusal.reason}`,
      );
      return { ok: false, result: 'refused', host, detail: `${refusal.reason}: ${refusal.detail}` };
    }
    const granted = results.filter((r): r is Extract<GrantResult, { ok: true }> => r.ok);
    const created = granted.some((r) => r.created);
    const result = created ? 'granted' : 'renewed';
    if (created) {
      c.fired++;
      c.lastFiredAt = clock.now();
      c.lastHost = host;
    } else c.renewed++;
    statsDirty = true;
    count(t.name, result);
    const ms = +(performance.now() - started).toFixed(2);
    // from the kernel's event stamp to the leases being in the dataplane (the same wall clock)
    const sinceEvent = flow ? Math.max(0, Date.now() - flow.at) : undefined;
    const fields = {
      rule: t.name,
      host,
      via,
      opened: describeOpen(t),
      lifetime,
      ms,
      ...(sinceEvent !== undefined ? { sinceEventMs: sinceEvent } : {}),
      ...(flow ? { flow: `${flow.protocol} ${flow.host} -> ${flow.dst}:${flow.dport}` } : {}),
    };
    if (created) log.info(fields, 'trigger fired');
    else log.debug(fields, 'trigger fired again by its holder');
    return { ok: true, result, host, leases: granted.map((r) => r.lease) };
  }

  function fireRule(
    rule: TriggerRule,
    host: string,
    via: FireVia,
    actor: string,
    flow: TriggerFlow | null,
  ): Promise<FireResult> {
    // a burst of new flows from one host is one firing
    const key = `${rule.config.name}|${host}`;
    const pending = pendingFire.get(key);
    if (pending) return pending;
    const p = onRule(rule.config.name, () => doFire(rule, host, via, actor, flow)).finally(() =>
      pendingFire.delete(key),
    );
    pendingFire.set(key, p);
    return p;
  }

  function onFlow(f: TriggerFlow): void {
    if (closed) return;
    let rule = byId.get(f.ruleId);
    // the mark names the rule; if ids moved since the flow was marked, find it by its port
    const matches = (r: TriggerRule) =>
      (r.config.match.protocol === 'both' || r.config.match.protocol === f.protocol) &&
      r.config.match.ports.some((p) => f.dport >= p.start && f.dport <= p.end);
    if (!rule || !matches(rule)) rule = [...rules.values()].find(matches);
    if (!rule) {
      log.debug({ flow: f }, 'marked flow matches no trigger rule');
      return;
    }
    const k = hostKey(f.host);
    if (!k) {
      log.debug({ flow: f }, 'marked flow from an address that is neither IPv4 nor IPv6');
      return;
    }
    void fireRule(rule, k.host, 'kernel', `trigger:${rule.config.name}`, f);
  }

  // ---- idleness: follow the kernel's activity sets ----
  async function poll(): Promise<{ renewed: number }> {
    if (polling || closed || holdings.size === 0) return { renewed: 0 };
    polling = true;
    let renewed = 0;
    try {
      const names = [...holdings.keys()].filter((n) => rules.has(n));
      if (names.length === 0) return { renewed: 0 };
      // one read per rule and family, and only for the families that hold it (one nft process each)
      const holdsFamily = (n: string, v6: boolean) =>
        [...(holdings.get(n)?.keys() ?? [])].some((h) => h.includes(':') === v6);
      const names4 = names.filter((n) => holdsFamily(n, false));
      const names6 = names.filter((n) => holdsFamily(n, true));
      const act = new Map<string, Map<string, number | null>>();
      try {
        const [a4, a6] = await Promise.all([
          names4.length > 0 ? kernel.activity(names4, 4) : new Map<string, Map<string, number | null>>(),
          names6.length > 0 ? kernel.activity(names6, 6) : new Map<string, Map<string, number | null>>(),
        ]);
        for (const a of [a4, a6]) for (const [n, m] of a) act.set(n, new Map([...(act.get(n) ?? []), ...m]));
      } catch (e) {
        log.warn(
          { err: (e as Error).message },
          'could not read trigger activity; openings close at their last known deadline',
        );
        return { renewed: 0 };
      }
      const jobs: Promise<void>[] = [];
      for (const name of names) {
        const rule = rules.get(name)!;
        const t = rule.config;
        for (const host of [...(holdings.get(name)?.keys() ?? [])]) {
          const left = act.get(name)?.get(host);
          if (left === undefined) continue; // no packet since: the leases end at their deadline
          jobs.push(
            onRule(name, async () => {
              const mine = activeLeases(name, host);
              if (mine.length === 0) return;
              const now = clock.now();
              let deadline = left === null ? now + t.idleTimeout * 1000 : now + left;
              if (t.maxLifetime !== null)
                deadline = Math.min(deadline, Math.min(...mine.map((l) => l.createdAt)) + t.maxLifetime * 1000);
              const ends = Math.min(...mine.map((l) => l.expiresAt ?? Infinity));
              const slack = Math.max(1000, (t.idleTimeout * 1000) / 2);
              const soon = ends - now < 2 * Math.max(pollMs, 500) + 1000;
              if (!(deadline > ends + slack || (soon && deadline > ends + 250))) return;
              const lifetime = Math.max(1, Math.ceil((deadline - now) / 1000));
              const res = await Promise.all(
                requestsFor(t, host, lifetime, `trigger:${name}`).map((r) => leases.request(r)),
              );
              // a range that went away meanwhile (admin revoke) was re-created: the holder is active, keep it open
              if (res.every((r) => r.ok)) renewed++;
              else
                log.warn(
                  { rule: name, host, refused: res.filter((r) => !r.ok).map((r) => (r.ok ? '' : r.reason)) },
                  'trigger activity renewal refused',
                );
            }),
          );
        }
      }
      await Promise.all(jobs);
      return { renewed };
    } finally {
      polling = false;
    }
  }

  // ---- views ----
  function view(rule: TriggerRule | null, name: string): TriggerView | null {
    const b = broken.get(name);
    const t = rule?.config ?? null;
    let doc: TriggerDocument;
    if (t) doc = toDocument(t);
    else if (b) {
      const d = (b.doc ?? {}) as Partial<TriggerDocument>;
      doc = {
        name,
        match: d.match ?? { protocol: 'udp', ports: '' },
        open: d.open ?? [],
        idleTimeout: d.idleTimeout ?? 0,
        maxLifetime: d.maxLifetime ?? null,
        hosts: d.hosts ?? [],
        enabled: false,
        ...(d.preset ? { preset: d.preset } : {}),
      };
    } else return null;
    const hosts = holdings.get(name);
    let holder: string | null = null;
    let until: number | null = null;
    const ids: string[] = [];
    for (const [host, h] of hosts ?? []) {
      const ls = [...h.ids].map((id) => leases.get(id)).filter((l): l is Lease => l !== null && l.state === 'active');
      if (ls.length === 0) continue;
      holder ??= host;
      for (const l of ls) {
        ids.push(l.id);
        if (l.expiresAt !== null) until = Math.max(until ?? 0, l.expiresAt);
      }
    }
    const c = counters.get(name) ?? emptyCounters();
    const state: TriggerState = !t ? 'error' : holder ? 'held' : !t.enabled ? 'disabled' : 'idle';
    return {
      ...doc,
      origin: rule?.origin ?? 'api',
      readOnly: rule?.origin === 'config',
      state,
      holder,
      until,
      leases: ids,
      counters: {
        fired: c.fired,
        renewed: c.renewed,
        refused: c.refused,
        lastFiredAt: c.lastFiredAt,
        lastHost: c.lastHost,
      },
      lastRefusal: c.lastRefusal,
      error: b?.error ?? null,
      summary: t
        ? `${describeMatch(t)} -> ${describeOpen(t)}`
        : `${doc.match.protocol} ${doc.match.ports} -> ${doc.open.map((o) => `${o.protocol} ${o.ports}`).join(', ')}`,
    };
  }

  const notFound = (name: string): MutationResult => ({
    ok: false,
    code: ErrorCode.TRIGGER_NOT_FOUND,
    message: `no trigger rule ${name}`,
  });
  const readOnly = (name: string): MutationResult => ({
    ok: false,
    code: ErrorCode.TRIGGER_READ_ONLY,
    message: `trigger rule ${name} comes from the configuration file: change the file and send SIGHUP`,
  });
  const invalid = (issues: readonly ConfigIssue[]): MutationResult => ({
    ok: false,
    code: ErrorCode.ADMIN_BAD_REQUEST,
    message: issues.map((i) => (i.path ? `body.${i.path}: ${i.message}` : `body: ${i.message}`)).join('; '),
    issues,
    field: issues[0]?.path || 'body',
  });

  async function installWith(list: TriggerRule[], actor: string): Promise<void> {
    await install(list, broken, actor);
  }

  const manager = {
    async start(): Promise<void> {
      const { list, broken: bad } = compose(settings);
      rebuildHoldings();
      offLeases = leases.on(onLeaseEvent);
      await install(list, bad, 'config');
      // openings whose rule no longer exists (removed while portd was down)
      for (const name of [...holdings.keys()]) {
        if (!rules.has(name))
          for (const host of [...(holdings.get(name)?.keys() ?? [])])
            await endHolding(name, host, 'config', `trigger rule ${name} no longer exists`);
      }
      opts.flows?.start(onFlow);
      if (pollMs > 0) {
        const t = setInterval(() => {
          void poll().catch((e) => log.error({ err: (e as Error).message }, 'trigger poll failed'));
        }, pollMs);
        t.unref();
        timers.push(t);
      }
      if (statsFlushMs > 0) {
        const t = setInterval(() => {
          void flushStats();
        }, statsFlushMs);
        t.unref();
        timers.push(t);
      }
      log.info(
        {
          rules: [...rules.keys()],
          fromApi: [...rules.values()].filter((r) => r.origin === 'api').length,
          flows: opts.flows?.kind ?? 'none',
          kernel: kernel.name,
        },
        'port triggering ready',
      );
    },

    /** SIGHUP: the file's rules replace the old ones; API rules are re-checked against them */
    async reload(next: TriggerSettings): Promise<{ rules: number; broken: number }> {
      settings = next;
      const { list, broken: bad } = compose(next);
      await install(list, bad, 'config');
      log.info({ rules: list.length, broken: bad.size }, 'trigger rules reloaded');
      return { rules: list.length, broken: bad.size };
    },

    list(): TriggerView[] {
      const out: TriggerView[] = [];
      for (const [name, r] of rules) out.push(view(r, name)!);
      for (const name of broken.keys()) out.push(view(null, name)!);
      return out;
    },
    get(name: string): TriggerView | null {
      return view(rules.get(name) ?? null, name);
    },

    async create(body: unknown, actor: string): Promise<MutationResult> {
      const name =
        body && typeof body === 'object' && !Array.isArray(body)
          ? (body as Record<string, unknown>)['name']
          : undefined;
      if (typeof name === 'string' && (rules.has(name) || broken.has(name))) {
        return {
          ok: false,
          code: ErrorCode.TRIGGER_EXISTS,
          message:
            `a trigger rule named ${name} exists ` +
            `(${rules.get(name)?.origin === 'config' ? 'in the configuration file' : 'created through the API'}): ` +
            'use PUT to change it',
        };
      }
      const v = validateTrigger(
        body,
        '',
        triggerContext(
          settings,
          [...rules.values()].map((r) => r.config),
        ),
      );
      if (!v.ok) {
        log.info({ actor, issues: v.issues }, 'trigger rule refused: invalid');
        return invalid(v.issues);
      }
      const doc = toDocument(v.value);
      await store.saveRule(doc, clock.now(), actor);
      const nextIds = assignIds([...rules.keys(), v.value.name], ids);
      try {
        await installWith(
          [...rules.values(), { config: v.value, origin: 'api', id: nextIds.get(v.value.name)! }],
          actor,
        );
      } catch (e) {
        await store.removeRule(doc.name);
        log.error({ rule: doc.name, err: (e as Error).message }, 'trigger rule could not be installed in the kernel');
        return {
          ok: false,
          code: ErrorCode.DATAPLANE_BATCH,
          message: `the kernel refused the rule: ${(e as Error).message}`,
        };
      }
      log.info(
        { rule: doc.name, actor, summary: `${describeMatch(v.value)} -> ${describeOpen(v.value)}` },
        'trigger rule created',
      );
      return { ok: true, trigger: manager.get(doc.name)! };
    },

    async update(name: string, body: unknown, actor: string): Promise<MutationResult> {
      const cur = rules.get(name);
      if (!cur && !broken.has(name)) return notFound(name);
      if (cur?.origin === 'config') return readOnly(name);
      if (!body || typeof body !== 'object' || Array.isArray(body))
        return invalid([{ path: '', message: 'must be a trigger rule object' }]);
      const given = (body as Record<string, unknown>)['name'];
      if (given !== undefined && given !== name)
        return invalid([
          {
            path: 'name',
            message:
              `cannot change (${JSON.stringify(given)} in the body, ` +
              `${name} in the path): delete and create instead`,
          },
        ]);
      const others = [...rules.values()].filter((r) => r.config.name !== name);
      const v = validateTrigger(
        { ...(body as Record<string, unknown>), name },
        '',
        triggerContext(
          settings,
          others.map((r) => r.config),
        ),
      );
      if (!v.ok) {
        log.info({ rule: name, actor, issues: v.issues }, 'trigger rule change refused: invalid');
        return invalid(v.issues);
      }
      const doc = toDocument(v.value);
      await store.saveRule(doc, clock.now(), actor);
      const list = [...rules.values()].map((r) => (r.config.name === name ? { ...r, config: v.value } : r));
      if (!cur) list.push({ config: v.value, origin: 'api', id: assignIds([...rules.keys(), name], ids).get(name)! });
      broken.delete(name);
      try {
        await installWith(list, actor);
      } catch (e) {
        log.error(
          { rule: name, err: (e as Error).message },
          'changed trigger rule could not be installed in the kernel',
        );
        return {
          ok: false,
          code: ErrorCode.DATAPLANE_BATCH,
          message: `the kernel refused the rule: ${(e as Error).message}`,
        };
      }
      log.info(
        {
          rule: name,
          actor,
          summary: `${describeMatch(v.value)} -> ${describeOpen(v.value)}`,
          enabled: v.value.enabled,
        },
        'trigger rule changed',
      );
      return { ok: true, trigger: manager.get(name)! };
    },

    async remove(name: string, actor: string): Promise<MutationResult> {
      const cur = rules.get(name);
      if (!cur && !broken.has(name)) return notFound(name);
      const stale = broken.get(name);
      if (stale && cur?.origin !== 'api') {
        // an API rule that is not in force (e.g. shadowed by a file rule of the same name): only the stored copy goes
        const last = view(null, name)!;
        await store.removeRule(name);
        broken.delete(name);
        log.info({ rule: name, actor }, 'stored trigger rule (not in force) deleted');
        return { ok: true, trigger: last };
      }
      if (cur?.origin === 'config') return readOnly(name);
      const last = manager.get(name)!;
      await store.removeRule(name);
      broken.delete(name);
      counters.delete(name);
      await installWith(
        [...rules.values()].filter((r) => r.config.name !== name),
        actor,
      );
      log.info({ rule: name, actor }, 'trigger rule deleted');
      return { ok: true, trigger: { ...last, state: 'idle', holder: null, until: null, leases: [] } };
    },

    /** fire a rule for a LAN host as if it had sent a packet to a trigger port (admin API, tests, memory driver) */
    async fire(name: string, host: string, actor: string): Promise<FireResult> {
      const rule = rules.get(name);
      if (!rule) return { ok: false, result: 'unknown_rule', host, detail: `no trigger rule ${name} in force` };
      return fireRule(rule, hostKey(host)?.host ?? host, 'api', actor, null);
    },

    /**
     * The enabled rule that opens this port, or null. The lease table asks it for every UPnP/PCP/NAT-PMP
     * grant: a trigger's ports are kept for the trigger even while nobody holds it (docs/triggers.md).
     */
    portRule(protocol: 'tcp' | 'udp', port: number): string | null {
      return openPorts[protocol].get(port) ?? null;
    },
    /** feed one kernel flow (what the conntrack reader does) */
    onFlow,
    poll,
    /** for status: which host holds which rule */
    holdings(): { rule: string; host: string; leases: number }[] {
      const out: { rule: string; host: string; leases: number }[] = [];
      for (const [rule, m] of holdings) for (const [host, h] of m) out.push({ rule, host, leases: h.ids.size });
      return out;
    },
    async close(): Promise<void> {
      closed = true;
      for (const t of timers) clearInterval(t);
      timers = [];
      offLeases?.();
      offLeases = null;
      await opts.flows?.stop();
      await Promise.all([...chains.values()]);
      await flushStats();
    },
  };

  async function flushStats(): Promise<void> {
    if (!statsDirty) return;
    statsDirty = false;
    try {
      await store.saveStats(counters);
    } catch (e) {
      statsDirty = true;
      log.warn({ err: (e as Error).message }, 'could not save trigger counters');
    }
  }

  return manager;
}

export type TriggerManager = ReturnType<typeof createTriggerManager>;
