import { createUpstreamStore } from './upstream-store.js';
import type { UpstreamRecord } from './upstream.js';
import type { Statement } from 'better-sqlite3';
import type { Logger } from 'pino';
import { createLogGate } from '../common/log-gate.js';
import { LEASE_SOURCES, type AddressFamily } from '../common/net-types.js';
import { externalPorts, formatPortRange } from '../common/port-range.js';
import { ipv4ToInt } from '../common/net.js';
import type { Dataplane, DataplaneEntry } from '../dataplane/types.js';
import type { Metrics } from '../metrics.js';
import type { Policy } from '../policy/policy.js';
import type { Clock } from './clock.js';
import { PortMap } from './port-map.js';
import { PinholeIndex } from './pinhole-index.js';
import { createIPv6Memo, formatEndpoint, splitZone } from '../common/ipv6.js';
import { listQuery, type ListQuery } from './list-query.js';
import { openStore, rowToLease, type LeaseRow } from './store.js';
import type { LeaseStorage } from './storage.js';
import type { LeaseTableApi } from './table-api.js';
import { createWriter, type JobOutcome } from './writer.js';
import { createMetaStore } from './meta-store.js';
import { createReconciler, type EntryFields } from './reconcile.js';
import { leaseEntry } from './entry.js';
import { createStaticSync } from './static-sync.js';
import { createExpiry } from './expiry.js';
import { createPruner } from './prune.js';
import { CLOCK_META, createClockRebase } from './clock-rebase.js';
import type {
  EndReason,
  GrantResult,
  Lease,
  LeaseEvent,
  LeaseEventType,
  LeaseFilter,
  LeaseRequest,
  Refusal,
  ReleaseRequest,
  ReleaseResult,
} from './types.js';

export interface LeaseTableOptions {
  /**
   * the storage, opened already (PostgreSQL: pg/storage.ts `openPostgresStorage`, async); absent = SQLite at
   * `database.path`, opened here. The table closes it.
   */
  readonly storage?: LeaseStorage;
  readonly database: {
    readonly path: string;
    readonly synchronous?: 'normal' | 'full';
    readonly checkpointIntervalMs?: number;
    readonly onCheckpointerStopped?: () => void;
  };
  readonly dataplane: Dataplane;
  readonly policy: Policy;
  readonly clock: Clock & { rebase?(deltaMs: number): void };
  readonly log: Logger;
  readonly metrics?: Metrics;
  readonly externalAddress: string;
  /** seconds added to every kernel timeout past the lease's expiry */
  readonly grace?: number;
  /** ended leases older than this (seconds) are deleted with their history */
  readonly historyRetention?: number;
  /** the range free external ports are picked from */
  readonly allocationRange?: { readonly start: number; readonly end: number };
  /** at most this many leases expire per writer tick, so requests keep flowing during an expiry burst */
  readonly expiryBatch?: number;
  /**
   * Does a process of the gateway listen on this external port (on the WAN address or a wildcard)?
   * Asked only when policy.checkPortInUse is on, for UPnP/PCP/NAT-PMP grants: such a port is not handed
   * out (src/dataplane/local-ports.ts). Admin-defined openings onto it are granted with a warning.
   */
  readonly portInUse?: (protocol: 'tcp' | 'udp', port: number) => boolean;
  /** the trigger rule whose `open` ports hold this port, or null: never handed to dynamic clients (src/triggers) */
  readonly triggerPort?: (protocol: 'tcp' | 'udp', port: number) => string | null;
  /**
   * active dynamic leases (upnp, pcp, natpmp, trigger) across all clients; over it new ones are refused ('capacity'); 0
   * or absent = no limit
   */
  readonly maxActiveLeases?: number;
  /** ended leases kept (the oldest deleted first, with their history); 0 = no limit (default 10000) */
  readonly maxEndedLeases?: number;
  /** history entries kept per lease: its first and the latest (default 32; 0 = no limit) */
  readonly historyPerLease?: number;
  /** at most this many ended leases are deleted per writer tick (default 256) */
  readonly pruneBatch?: number;
}

const unavailable = (detail: string): Refusal => ({ ok: false, reason: 'unavailable', detail });

export type LeaseTable = ReturnType<typeof createLeaseTable>;

export function createLeaseTable(opts: LeaseTableOptions) {
  const { dataplane, policy, clock, metrics } = opts;
  const log = opts.log.child({ component: 'leases' });
  const grace = opts.grace ?? 5;
  const retentionMs = (opts.historyRetention ?? 86400) * 1000;
  const alloc = opts.allocationRange ?? { start: 1024, end: 65535 };
  // 250 leases ≈ 1,000 nft element operations plus their rows and events: a tick of a few tens of ms, so a
  // request arriving during an expiry burst waits for at most one such batch (2,000 made it ≈ 0.3 s at 100k)
  const expiryBatch = opts.expiryBatch ?? 250;
  const maxActive = opts.maxActiveLeases ?? 0;
  const maxEnded = opts.maxEndedLeases ?? 10000;
  const historyCap = opts.historyPerLease ?? 32;
  const pruneBatch = Math.max(1, opts.pruneBatch ?? 256);
  const store: LeaseStorage = opts.storage ?? openStore({ ...opts.database, onWarning: (m) => log.warn(m) });
  const { s } = store;
  const upstreamRows = createUpstreamStore(store);
  let externalAddress = opts.externalAddress;

  // ---- derived caches (rebuilt from the database, never a second truth) ----
  // who holds an external port (the port map) and which PCP/NAT-PMP lease holds an internal endpoint:
  // in memory, so the database needs no index over these random keys (each such index dirtied a random
  // page per grant and release: commits grew with the table)
  const ports = new PortMap();
  // keyed by one number for an IPv4 endpoint: a `proto|address|port` string per key was three heap objects
  // and ≈ 100 bytes, 100k of them for the collector to trace (IPv6 endpoints keep a string key)
  const byInternal = new Map<number | string, string>();
  const internalKey = (protocol: string, address: string, port: number): number | string => {
    const ip = ipv4ToInt(address); // canonical spellings only (no leading zeros): one key per string
    return ip === null ? `${protocol}|${address}|${port}` : (ip * 2 + (protocol === 'udp' ? 1 : 0)) * 65536 + port;
  };
  const INTERNAL_SOURCES = new Set(['pcp', 'natpmp']);
  // IPv6 pinholes (family 6) hold no external port: they are found by host instead (pinhole-index.ts)
  const pinholes = new PinholeIndex();
  const activePinholesBySource = new Map<string, number>();
  // each pinhole request, release and lookup canonicalises its addresses: remembered, not parsed each time
  const ipv6 = createIPv6Memo();
  // external ports an admin-defined opening took from a dynamic lease: kept from that lease's owner for
  // the rest of its term ('replaced' is sticky), protocol and port -> holds; derived from the revocations table
  interface ReplacedHold {
    readonly owner: string;
    readonly until: number;
    readonly by: string;
    readonly bySource: Lease['source'];
  }
  const replacedHolds = new Map<number, ReplacedHold[]>();
  // a number, not a string: allocation asks once per candidate port
  const holdKey = (protocol: string, port: number) => (protocol === 'udp' ? 65536 : 0) + port;
  function addHold(protocol: string, port: number, h: ReplacedHold): void {
    const k = holdKey(protocol, port);
    const list = replacedHolds.get(k);
    if (list) list.push(h);
    else replacedHolds.set(k, [h]);
  }
  function holdFor(protocol: string, port: number, owner: string, now: number): ReplacedHold | undefined {
    const list = replacedHolds.get(holdKey(protocol, port));
    if (!list) return undefined;
    const live = list.filter((h) => h.until > now);
    if (live.length === 0) {
      replacedHolds.delete(holdKey(protocol, port));
      return undefined;
    }
    if (live.length !== list.length) replacedHolds.set(holdKey(protocol, port), live);
    return live.find((h) => h.owner === owner);
  }
  const activeBySource = new Map<string, number>();
  /** quota use: active upnp/pcp/natpmp leases per owner */
  const quotaUse = new Map<string, number>();
  const QUOTA_SOURCES = new Set<string>(['upnp', 'pcp', 'natpmp']);
  /** what limits.maxActiveLeases counts: every dynamic source (static forwards are the admin's) */
  const CAPPED_SOURCES = new Set<string>(LEASE_SOURCES.filter((s) => s !== 'static'));
  /**
   * the ids of every active lease per owner: a client's leases (PCP delete-all, listings by owner, status) without
   * an index
   */
  const byOwner = new Map<string, Set<string>>();
  const cacheRows = store.db
    // the remote address only for pinholes (their key): no string per IPv4 row on a 100k-lease start
    .prepare(`SELECT id, protocol, external_port, external_port_end, source, owner, internal_address, internal_port,
    CASE WHEN family = 6 THEN remote_address END, family FROM leases WHERE state = 'active'`)
    .raw(true);
  /**
   * The latest term of an admin revoke (derived: the revocations table's own maximum, raised by each revoke):
   * while none holds, a new grant skips the revocation lookup (one statement per grant fewer, at every grant).
   */
  let revokedUntil = 0;
  function rebuildCaches(): void {
    ports.clear();
    activeBySource.clear();
    quotaUse.clear();
    byInternal.clear();
    byOwner.clear();
    pinholes.clear();
    activePinholesBySource.clear();
    // rows as arrays (no object per row) and counts kept in locals: at 100k leases this runs on start and
    // after every rolled-back tick, with the event loop blocked
    const bySource = new Map<string, number>();
    for (const [id, protocol, start, end, source, owner, ia, ip, remote, family] of cacheRows.iterate() as Iterable<
      [string, string, number, number, string, string, string, number, string | null, number]
    >) {
      const proto = protocol === 'udp' ? 'udp' : 'tcp';
      if (family === 6) {
        pinholes.add(proto, ia, { id, start, end, remote });
        activePinholesBySource.set(source, (activePinholesBySource.get(source) ?? 0) + 1);
      } else {
        ports.take(proto, start, end, id);
        if (INTERNAL_SOURCES.has(source)) byInternal.set(internalKey(proto, ia, ip), id);
      }
      bySource.set(source, (bySource.get(source) ?? 0) + 1);
      if (QUOTA_SOURCES.has(source)) quotaUse.set(owner, (quotaUse.get(owner) ?? 0) + 1);
      const mine = byOwner.get(owner);
      if (mine) mine.add(id);
      else byOwner.set(owner, new Set([id]));
    }
    for (const [k, n] of bySource) activeBySource.set(k, n);
    replacedHolds.clear();
    for (const r of s.replacedHolds.all(clock.now()) as {
      protocol: string;
      owner: string;
      external_port: number;
      until: number;
      replaced_by: string | null;
      replaced_by_source: string | null;
    }[]) {
      addHold(r.protocol, r.external_port, {
        owner: r.owner,
        until: r.until,
        by: r.replaced_by ?? '',
        bySource: (r.replaced_by_source ?? 'static') as Lease['source'],
      });
    }
    revokedUntil = (s.revokedUntil.get() as { t: number | null }).t ?? 0;
    pruner.recount();
    publishGauges();
  }
  function publishGauges(): void {
    if (!metrics) return;
    for (const src of LEASE_SOURCES) metrics.leasesActive.set({ source: src }, activeBySource.get(src) ?? 0);
    for (const src of LEASE_SOURCES) metrics.pinholesActive.set({ source: src }, activePinholesBySource.get(src) ?? 0);
  }
  function count(l: Pick<Lease, 'id' | 'source' | 'owner'>, delta: number): void {
    activeBySource.set(l.source, (activeBySource.get(l.source) ?? 0) + delta);
    if (QUOTA_SOURCES.has(l.source)) {
      const n = (quotaUse.get(l.owner) ?? 0) + delta;
      if (n > 0) quotaUse.set(l.owner, n);
      else quotaUse.delete(l.owner);
    }
    const mine = byOwner.get(l.owner);
    if (delta > 0) {
      if (mine) mine.add(l.id);
      else byOwner.set(l.owner, new Set([l.id]));
    } else if (mine) {
      mine.delete(l.id);
      if (mine.size === 0) byOwner.delete(l.owner);
    }
  }
  function countPinhole(source: string, delta: number): void {
    const n = (activePinholesBySource.get(source) ?? 0) + delta;
    if (n > 0) activePinholesBySource.set(source, n);
    else activePinholesBySource.delete(source);
  }
  /** active leases limits.maxActiveLeases counts */
  function dynamicActive(): number {
    let n = 0;
    for (const [src, k] of activeBySource) if (CAPPED_SOURCES.has(src)) n += k;
    return n;
  }
  // one warn line a minute when the global cap refuses, naming the key (the metric counts every refusal)
  const capacityGate = createLogGate({ intervalMs: 60_000, now: () => clock.now() });
  function capacityHit(n: number): void {
    metrics?.globalLimit.inc({ limit: 'maxActiveLeases' });
    const suppressed = capacityGate.pass('maxActiveLeases');
    if (suppressed === null) return;
    log.warn(
      { active: n, suppressed },
      `global limit reached (limits.maxActiveLeases ${maxActive}); refusing new leases`,
    );
  }

  /** the global cap on dynamic leases (limits.maxActiveLeases): a refusal for a new lease of `source`, or null */
  function capacityRefusal(source: Lease['source']): Refusal | null {
    if (!(maxActive > 0 && CAPPED_SOURCES.has(source))) return null;
    const n = dynamicActive();
    if (n < maxActive) return null;
    capacityHit(n);
    return { ok: false, reason: 'capacity', detail: `${n} active leases (limits.maxActiveLeases ${maxActive})` };
  }

  /**
   * A renewal of `old` by `req` (IPv4 mappings and pinholes alike): the row is updated in place (count, time,
   * who): a renewal adds no history row, so a client renewing every 20 s costs no storage; listeners still get
   * the 'renewed' event. For a pinhole the internal port and remote are its identity, so they come out unchanged.
   */
  function renewal(
    old: Lease,
    req: LeaseRequest,
    now: number,
    lifetime: number | null,
    expiresAt: number | null,
  ): JobOutcome<GrantResult> {
    const renewed: Lease = {
      ...old,
      updatedAt: now,
      expiresAt,
      requestedLifetime: req.lifetime,
      description: req.description ?? old.description,
      nonce: req.source === 'pcp' ? (req.nonce ?? old.nonce) : old.nonce,
      internalPort: req.identity === 'external' ? req.internalPort : old.internalPort,
      remoteAddress: req.remoteAddress !== undefined ? req.remoteAddress : old.remoteAddress,
      remotePrefix: req.remotePrefix !== undefined ? req.remotePrefix : old.remotePrefix,
      remotePort: req.remotePort !== undefined ? req.remotePort : old.remotePort,
      renewCount: old.renewCount + 1,
      lastRenewedAt: now,
    };
    s.renew.run({
      id: old.id,
      updated_at: now,
      expires_at: expiresAt,
      requested_lifetime: req.lifetime,
      description: renewed.description,
      nonce: renewed.nonce,
      internal_port: renewed.internalPort,
      remote_address: renewed.remoteAddress,
      remote_prefix: renewed.remotePrefix,
      remote_port: renewed.remotePort,
      actor: req.actor ?? null,
    });
    return {
      result: { ok: true, lease: renewed, created: false, lifetime },
      remove: [toEntry(old, now)],
      add: [toEntry(renewed, now)],
      events: [event('renewed', renewed, now, req.actor ?? null, null, false)],
    };
  }

  // ---- helpers ----
  // ids grow with time (ms since 2020 x 256, then +1 per id; 12 hex digits) so new rows append to the
  // primary-key B-tree instead of dirtying a random page each: commit cost stays flatter at 100k leases.
  // Seeded from the largest id stored, so a clock that went back across a restart cannot repeat one.
  let lastId = Math.max(0, parseInt((s.maxId.get() as { id: string | null }).id ?? '0', 16) || 0);
  const newId = () => {
    lastId = Math.max(lastId + 1, (Date.now() - Date.UTC(2020, 0, 1)) * 256);
    return lastId.toString(16).padStart(12, '0');
  };
  function toEntry(l: EntryFields, now: number): DataplaneEntry {
    return leaseEntry(l, now, grace);
  }
  /** the active lease holding any external port in [start, end] (the lowest such port's holder) */
  function overlapping(protocol: 'tcp' | 'udp', start: number, end: number): LeaseRow | undefined {
    const id = ports.holderIn(protocol, start, end);
    return id === undefined ? undefined : (s.byId.get(id) as LeaseRow | undefined);
  }
  /** the active PCP/NAT-PMP lease for an internal endpoint */
  function internalHolder(protocol: 'tcp' | 'udp', address: string, port: number): LeaseRow | undefined {
    const id = byInternal.get(internalKey(protocol, address, port));
    return id === undefined ? undefined : (s.byId.get(id) as LeaseRow | undefined);
  }
  /**
   * A lease event for the listeners (SSE, GENA, logs), stored in the lease's history unless `stored` is
   * false (renewals: counted on the lease instead). The history keeps its first entry and the latest ones.
   */
  function event(
    type: LeaseEventType,
    lease: Lease,
    at: number,
    actor: string | null,
    reason: string | null,
    stored = true,
  ): LeaseEvent {
    if (stored) {
      s.event.run(lease.id, type, at, actor, reason);
      if (historyCap > 0 && type !== 'granted' && (s.countHistory.get(lease.id) as { n: number }).n > historyCap) {
        s.trimHistory.run({ id: lease.id, keep: historyCap - 1 });
      }
    }
    return { type, at, leaseId: lease.id, lease, source: lease.source, owner: lease.owner, actor, reason };
  }
  /** every active lease holding a port in [start, end], lowest first */
  function holdersIn(protocol: 'tcp' | 'udp', start: number, end: number): LeaseRow[] {
    const out: LeaseRow[] = [];
    for (let p = start; p <= end; ) {
      const id = ports.holderIn(protocol, p, end);
      if (id === undefined) break;
      const row = s.byId.get(id) as LeaseRow | undefined;
      if (!row) break;
      out.push(row);
      p = Math.max(p, row.external_port_end) + 1;
    }
    return out;
  }
  const checkInUse = () => opts.portInUse !== undefined && policy.config.checkPortInUse === true;
  /**
   * Why a free external port in [lo, hi] is still not for this dynamic request: a trigger rule opens it,
   * an admin-defined opening took it from this owner (sticky for the replaced lease's term), or the
   * gateway itself listens there. null: it may be had.
   */
  function blockedIn(req: LeaseRequest, lo: number, hi: number, now: number): Refusal | null {
    for (let p = lo; p <= hi; p++) {
      const rule = opts.triggerPort?.(req.protocol, p) ?? null;
      if (rule !== null)
        return {
          ok: false,
          reason: 'conflict',
          holder: { id: '', source: 'trigger', owner: `trigger rule ${rule}`, externalPort: p, externalPortEnd: p },
        };
      const h = holdFor(req.protocol, p, req.owner, now);
      if (h) {
        const by = h.by ? (s.byId.get(h.by) as LeaseRow | undefined) : undefined;
        return {
          ok: false,
          reason: 'conflict',
          holder: { id: h.by, source: h.bySource, owner: by?.owner ?? 'admin', externalPort: p, externalPortEnd: p },
        };
      }
      if (checkInUse() && opts.portInUse!(req.protocol, p))
        return {
          ok: false,
          reason: 'in_use',
          detail: `the gateway itself listens on ${req.protocol} port ${p} (policy.checkPortInUse)`,
        };
    }
    return null;
  }
  /**
   * dynamic leases an admin-defined opening (lease `by`) takes the ports of: ended as 'replaced', their port kept from
   * their owner
   */
  function replaceHolders(
    rows: readonly LeaseRow[],
    by: { id: string; source: Lease['source'] },
    actor: string | null,
    now: number,
  ): JobOutcome<Lease>[] {
    return rows.map((row) => {
      if (row.family !== 6 && row.expires_at !== null && row.expires_at > now) {
        for (let p = row.external_port; p <= row.external_port_end; p++) {
          s.replace.run(
            row.protocol,
            row.owner,
            row.internal_address,
            row.internal_port,
            p,
            row.expires_at,
            row.id,
            by.id,
            by.source,
          );
          addHold(row.protocol, p, { owner: row.owner, until: row.expires_at, by: by.id, bySource: by.source });
        }
      }
      return endLease(row, 'replaced', now, actor, 'replaced', `replaced by ${by.source} lease ${by.id}`);
    });
  }
  function conflictOf(h: LeaseRow): Refusal {
    return {
      ok: false,
      reason: 'conflict',
      holder: {
        id: h.id,
        source: h.source as Lease['source'],
        owner: h.owner,
        externalPort: h.external_port,
        externalPortEnd: h.external_port_end,
      },
    };
  }
  function endLease(
    row: LeaseRow,
    reason: EndReason,
    at: number,
    actor: string | null,
    type: LeaseEventType,
    detail: string | null,
  ): JobOutcome<Lease> {
    s.end.run({ id: row.id, at, reason });
    const before = rowToLease(row);
    const lease: Lease = { ...before, state: 'ended', endedAt: at, endReason: reason };
    if (before.family === 6) {
      pinholes.remove(before.id);
      countPinhole(before.source, -1);
    } else {
      ports.release(before.protocol, before.externalPort, before.externalPortEnd);
      const ik = internalKey(before.protocol, before.internalAddress, before.internalPort);
      if (byInternal.get(ik) === before.id) byInternal.delete(ik);
    }
    count(before, -1);
    pruner.ended(at);
    return {
      result: lease,
      add: [],
      remove: [toEntry(before, at)],
      events: [event(type, lease, at, actor, detail)],
      removalOnly: true,
    };
  }

  // ---- the operations, each run inside a writer tick ----
  /**
   * An IPv6 pinhole (family 6, issue 15): no translation, so no external port is allocated (the ports are the
   * internal ones, allowOtherPort does not apply) and no port map is involved. Unique on (protocol, internal
   * address, ports, remote filter): the same owner and source asking again renew it; an admin-defined request
   * replaces dynamic holders; anyone else gets a conflict. The global cap, revocations, quota (pinholes count
   * as leases) and policy (secure mode) apply as to IPv4 mappings.
   */
  function doPinholeRequest(req0: LeaseRequest): JobOutcome<GrantResult> {
    const now = clock.now();
    const trusted = policy.isTrusted(req0.source);
    const none = (r: Refusal): JobOutcome<GrantResult> => ({ result: r, add: [], remove: [], events: [] });
    const address = ipv6.canonical(req0.internalAddress);
    if (address === null)
      return none({ ok: false, reason: 'invalid', detail: `internal address ${req0.internalAddress} is not IPv6` });
    let remote: string | null = null;
    if (req0.remoteAddress) {
      remote = ipv6.canonical(req0.remoteAddress);
      if (remote === null)
        return none({ ok: false, reason: 'invalid', detail: `remote address ${req0.remoteAddress} is not IPv6` });
    }
    if (
      req0.remotePrefix != null &&
      !(Number.isInteger(req0.remotePrefix) && req0.remotePrefix >= 0 && req0.remotePrefix <= 128)
    )
      return none({ ok: false, reason: 'invalid', detail: `remote prefix /${req0.remotePrefix} is not 0-128` });
    const start = req0.internalPort;
    if (req0.externalPort && req0.externalPort !== start)
      return none({
        ok: false,
        reason: 'invalid',
        detail:
          `a pinhole has no translation: external port ${req0.externalPort} must equal the internal port ` + `${start}`,
      });
    const end = req0.externalPort && req0.externalPortEnd !== undefined ? req0.externalPortEnd : start;
    const owner = ipv6.canonical(splitZone(req0.owner).address) ?? req0.owner;
    // a copy only when a spelling changed (the front-ends pass canonical text)
    const req: LeaseRequest =
      address === req0.internalAddress && owner === req0.owner && remote === (req0.remoteAddress ?? null)
        ? req0
        : { ...req0, internalAddress: address, owner, remoteAddress: remote };
    const refusal = policy.check(req, start, end);
    if (refusal) return none(refusal);
    const lifetime = policy.clampLifetime(req.source, req.lifetime);
    const expiresAt = lifetime === null ? null : now + lifetime * 1000;

    // 1. a renewal, a conflict, or holders an admin-defined pinhole replaces
    const holders = pinholes
      .overlapping(req.protocol, address, start, end, remote)
      .map((r) => s.byId.get(r.id) as LeaseRow | undefined)
      .filter((r): r is LeaseRow => r !== undefined);
    const same = (h: LeaseRow) =>
      h.owner === owner &&
      h.external_port === start &&
      h.external_port_end === end &&
      (h.source === req.source || (INTERNAL_SOURCES.has(h.source) && INTERNAL_SOURCES.has(req.source)));
    const existing = holders.length === 1 && same(holders[0]!) ? holders[0] : undefined;
    let replace: LeaseRow[] = [];
    if (!existing && holders.length > 0) {
      const admin = holders.find((h) => policy.isTrusted(h.source as Lease['source']));
      if (!trusted || admin) return none(conflictOf(admin ?? holders[0]!));
      replace = holders;
    }
    if (existing) {
      const old = rowToLease(existing);
      if (old.readOnly && !req.readOnly)
        return none({
          ok: false,
          reason: 'not_authorized',
          detail: `lease ${old.id} is read-only (defined in the configuration)`,
        });
      // PCP nonce rules as for IPv4 (RFC 6887 §11.3)
      if (req.source === 'pcp' && old.nonce !== null && req.nonce && req.nonce !== old.nonce)
        return none({ ok: false, reason: 'not_authorized', detail: 'nonce does not match the mapping' });
      return renewal(old, req, now, lifetime, expiresAt);
    }

    // 2. a new pinhole
    const full = capacityRefusal(req.source);
    if (full) return none(full);
    if (!trusted) {
      const rv =
        revokedUntil > now
          ? (s.revoked.get({ now, protocol: req.protocol, ia: address, ip: start, owner, ep: start }) as
              | { lease_id: string; until: number }
              | undefined)
          : undefined;
      if (rv)
        return none({
          ok: false,
          reason: 'not_authorized',
          detail: `pinhole revoked by the admin (lease ${rv.lease_id}) until ${new Date(rv.until).toISOString()}`,
        });
      const n = quotaUse.get(owner) ?? 0;
      if (n >= policy.quota())
        return none({
          ok: false,
          reason: 'quota',
          detail: `${owner} holds ${n} leases (policy.maxLeasesPerClient ${policy.quota()})`,
        });
    }
    const id = newId();
    const replaced = replaceHolders(replace, { id, source: req.source }, req.actor ?? null, now);
    const lease: Lease = {
      family: 6,
      id,
      source: req.source,
      protocol: req.protocol,
      // no translation: the external endpoint is the internal one
      externalAddress: address,
      externalPort: start,
      externalPortEnd: end,
      internalAddress: address,
      internalPort: start,
      remoteAddress: remote,
      remotePrefix: req.remotePrefix ?? null,
      remotePort: req.remotePort ?? null,
      owner,
      description: req.description ?? '',
      nonce: req.nonce ?? null,
      createdAt: now,
      updatedAt: now,
      expiresAt,
      requestedLifetime: req.lifetime,
      readOnly: req.readOnly ?? false,
      rule: req.rule ?? null,
      state: 'active',
      endedAt: null,
      endReason: null,
      renewCount: 0,
      lastRenewedAt: null,
    };
    s.insert.run({
      id,
      source: lease.source,
      protocol: lease.protocol,
      external_address: address,
      external_port: start,
      external_port_end: end,
      internal_address: address,
      internal_port: start,
      remote_address: remote,
      remote_prefix: lease.remotePrefix,
      remote_port: lease.remotePort,
      owner,
      description: lease.description,
      nonce: lease.nonce,
      created_at: now,
      updated_at: now,
      expires_at: expiresAt,
      requested_lifetime: lease.requestedLifetime,
      read_only: lease.readOnly ? 1 : 0,
      rule: lease.rule,
      family: 6,
    });
    pinholes.add(lease.protocol, address, { id, start, end, remote });
    countPinhole(lease.source, 1);
    count(lease, 1);
    const gone = replaced.flatMap((o) => o.remove);
    return {
      result: { ok: true, lease, created: true, lifetime },
      remove: gone,
      add: [toEntry(lease, now)],
      events: [...replaced.flatMap((o) => o.events), event('granted', lease, now, req.actor ?? null, null)],
      ...(gone.length > 0 ? { endFlows: gone } : {}),
    };
  }

  function doRequest(req: LeaseRequest): JobOutcome<GrantResult> {
    if (req.family === 6) return doPinholeRequest(req);
    const now = clock.now();
    const trusted = policy.isTrusted(req.source);
    /** dynamic leases this admin-defined request takes the ports of (ended only once nothing can refuse it) */
    let replace: LeaseRow[] = [];
    let replaced: JobOutcome<Lease>[] | null = null;
    const none = (r: Refusal): JobOutcome<GrantResult> => {
      // the writer rolls this job back to its savepoint: the replaced leases come back
      if (replaced)
        throw new Error(`${req.source} request refused after it replaced ${replaced.length} lease(s): ${r.reason}`);
      return { result: r, add: [], remove: [], events: [] };
    };
    const lifetime = policy.clampLifetime(req.source, req.lifetime);
    const expiresAt = lifetime === null ? null : now + lifetime * 1000;
    const wantStart = req.externalPort ?? 0;
    const span = (req.externalPortEnd ?? wantStart) - wantStart;
    if (span < 0)
      return none({
        ok: false,
        reason: 'invalid',
        detail: `external port range ${wantStart}-${req.externalPortEnd} is reversed`,
      });

    // 1. is this a renewal of an existing lease?
    let existing: LeaseRow | undefined;
    if (req.identity === 'internal') {
      existing = internalHolder(req.protocol, req.internalAddress, req.internalPort);
    } else if (wantStart > 0) {
      existing = overlapping(req.protocol, wantStart, wantStart + span);
      if (existing) {
        // UPnP may move its own mapping to another internal port (AddPortMapping updates); an admin forward must match
        // exactly
        const same =
          existing.owner === req.owner &&
          existing.source === req.source &&
          existing.internal_address === req.internalAddress &&
          existing.external_port === wantStart &&
          existing.external_port_end === wantStart + span &&
          (req.source !== 'static' || existing.internal_port === req.internalPort);
        if (!same) {
          if (trusted && !policy.isTrusted(existing.source as Lease['source'])) {
            // an admin-defined opening (static forward, trigger) outranks UPnP/PCP/NAT-PMP: the holders of
            // its ports end as 'replaced' in this tick, unless another admin-defined opening holds one
            const holders = holdersIn(req.protocol, wantStart, wantStart + span);
            const admin = holders.find((h) => policy.isTrusted(h.source as Lease['source']));
            if (admin) return none(conflictOf(admin));
            const refusal = policy.check(req, wantStart, wantStart + span);
            if (refusal) return none(refusal);
            replace = holders;
            existing = undefined;
          } else if (req.allowOtherPort)
            existing = undefined; // AddAnyPortMapping: pick another below
          else return none(conflictOf(existing));
        }
      }
    }
    if (existing) {
      const old = rowToLease(existing);
      if (old.readOnly && !req.readOnly)
        return none({
          ok: false,
          reason: 'not_authorized',
          detail: `lease ${old.id} is read-only (defined in the configuration)`,
        });
      if (old.owner !== req.owner && !req.thirdPartyAllowed)
        return none({ ok: false, reason: 'not_authorized', detail: `mapping belongs to ${old.owner}` });
      // PCP nonce rules (RFC 6887 §11.3); a NAT-PMP-created lease (no nonce) is adopted by PCP
      if (req.source === 'pcp' && old.nonce !== null && req.nonce && req.nonce !== old.nonce)
        return none({ ok: false, reason: 'not_authorized', detail: 'nonce does not match the mapping' });
      // the nonce is the owner's proof (RFC 6887 §11.2, Appendix A): NAT-PMP has none to show
      if (req.source === 'natpmp' && old.nonce !== null)
        return none({
          ok: false,
          reason: 'not_authorized',
          detail: 'mapping carries a PCP nonce; NAT-PMP may not renew it',
        });
      const refusal = policy.check(req, old.externalPort, old.externalPortEnd);
      if (refusal) return none(refusal);
      return renewal(old, req, now, lifetime, expiresAt);
    }

    // 2. a new lease: the global cap, revocations, policy, quota, then a port
    const full = capacityRefusal(req.source);
    if (full) return none(full);
    if (!policy.isTrusted(req.source) && revokedUntil > now) {
      const rv = s.revoked.get({
        now,
        protocol: req.protocol,
        ia: req.internalAddress,
        ip: req.internalPort,
        owner: req.owner,
        ep: wantStart,
      }) as { lease_id: string; until: number } | undefined;
      if (rv)
        return none({
          ok: false,
          reason: 'not_authorized',
          detail: `mapping revoked by the admin (lease ${rv.lease_id}) until ${new Date(rv.until).toISOString()}`,
        });
    }
    if (!policy.isTrusted(req.source)) {
      const n = quotaUse.get(req.owner) ?? 0;
      if (n >= policy.quota())
        return none({
          ok: false,
          reason: 'quota',
          detail: `${req.owner} holds ${n} leases (policy.maxLeasesPerClient ${policy.quota()})`,
        });
    }
    const id = newId();
    if (replace.length > 0) replaced = replaceHolders(replace, { id, source: req.source }, req.actor ?? null, now);
    let start = wantStart;
    if (start > 0) {
      const refusal = policy.check(req, start, start + span);
      if (refusal) {
        if (!req.allowOtherPort || refusal.reason === 'not_authorized' || refusal.reason === 'invalid')
          return none(refusal);
        start = 0;
      } else if (!ports.isFree(req.protocol, start, start + span)) {
        const holder = overlapping(req.protocol, start, start + span);
        if (!req.allowOtherPort)
          return none(holder ? conflictOf(holder) : { ok: false, reason: 'no_port', detail: `port ${start} is taken` });
        start = 0;
      } else if (!trusted) {
        const blocked = blockedIn(req, start, start + span, now);
        if (blocked) {
          if (!req.allowOtherPort) return none(blocked);
          start = 0;
        }
      }
    }
    if (start === 0) {
      if (span > 0) return none({ ok: false, reason: 'invalid', detail: 'a port range needs an explicit start' });
      const probe = policy.check(req, alloc.start, alloc.start);
      if (probe && (probe.reason === 'not_authorized' || probe.reason === 'invalid')) return none(probe);
      const hint =
        wantStart >= alloc.start && wantStart <= alloc.end
          ? wantStart
          : alloc.start + ((req.internalPort * 7919) % (alloc.end - alloc.start + 1));
      const found = ports.findFreeIn(
        req.protocol,
        policy.allowedRanges(req, alloc.start, alloc.end),
        hint,
        (p) => policy.portAllowed(req, p) && (trusted || blockedIn(req, p, p, now) === null),
      );
      if (found === null)
        return none({
          ok: false,
          reason: 'no_port',
          detail: `no free ${req.protocol} port allowed for ${req.internalAddress}`,
        });
      start = found;
    }
    if (trusted && checkInUse()) {
      for (let p = start; p <= start + span; p++) {
        if (!opts.portInUse!(req.protocol, p)) continue;
        log.warn(
          {
            source: req.source,
            protocol: req.protocol,
            externalPort: p,
            internal: `${req.internalAddress}:${req.internalPort}`,
            actor: req.actor,
          },
          'the gateway itself listens on this external port: the forward diverts that traffic to the LAN host',
        );
        break;
      }
    }
    const lease: Lease = {
      family: 4,
      id,
      source: req.source,
      protocol: req.protocol,
      externalAddress,
      externalPort: start,
      externalPortEnd: start + span,
      internalAddress: req.internalAddress,
      internalPort: req.internalPort,
      remoteAddress: req.remoteAddress ?? null,
      remotePrefix: req.remotePrefix ?? null,
      remotePort: req.remotePort ?? null,
      owner: req.owner,
      description: req.description ?? '',
      nonce: req.nonce ?? null,
      createdAt: now,
      updatedAt: now,
      expiresAt,
      requestedLifetime: req.lifetime,
      readOnly: req.readOnly ?? false,
      rule: req.rule ?? null,
      state: 'active',
      endedAt: null,
      endReason: null,
      renewCount: 0,
      lastRenewedAt: null,
    };
    s.insert.run({
      id: lease.id,
      source: lease.source,
      protocol: lease.protocol,
      external_address: lease.externalAddress,
      external_port: lease.externalPort,
      external_port_end: lease.externalPortEnd,
      internal_address: lease.internalAddress,
      internal_port: lease.internalPort,
      remote_address: lease.remoteAddress,
      remote_prefix: lease.remotePrefix,
      remote_port: lease.remotePort,
      owner: lease.owner,
      description: lease.description,
      nonce: lease.nonce,
      created_at: now,
      updated_at: now,
      expires_at: expiresAt,
      requested_lifetime: lease.requestedLifetime,
      read_only: lease.readOnly ? 1 : 0,
      rule: lease.rule,
      family: 4,
    });
    ports.take(lease.protocol, lease.externalPort, lease.externalPortEnd, lease.id);
    if (INTERNAL_SOURCES.has(lease.source))
      byInternal.set(internalKey(lease.protocol, lease.internalAddress, lease.internalPort), lease.id);
    count(lease, 1);
    const gone = (replaced ?? []).flatMap((o) => o.remove);
    return {
      result: { ok: true, lease, created: true, lifetime },
      // one kernel batch: the replaced leases' elements out, the new one in
      remove: gone,
      add: [toEntry(lease, now)],
      events: [...(replaced ?? []).flatMap((o) => o.events), event('granted', lease, now, req.actor ?? null, null)],
      ...(gone.length > 0 ? { endFlows: gone } : {}),
    };
  }

  function doRelease(req: ReleaseRequest): JobOutcome<ReleaseResult> {
    const now = clock.now();
    const none = (r: ReleaseResult): JobOutcome<ReleaseResult> => ({ result: r, add: [], remove: [], events: [] });
    let row: LeaseRow | undefined;
    if (req.family === 6) {
      const address = ipv6.canonical(req.internalAddress ?? '') ?? '';
      const remote = req.remoteAddress ? (ipv6.canonical(req.remoteAddress) ?? req.remoteAddress) : req.remoteAddress;
      const ref = pinholes.find(req.protocol, address, req.internalPort ?? req.externalPort ?? 0, remote);
      row = ref ? (s.byId.get(ref.id) as LeaseRow | undefined) : undefined;
    } else if (req.identity === 'internal') {
      row = internalHolder(req.protocol, req.internalAddress ?? '', req.internalPort ?? 0);
    } else {
      row = overlapping(req.protocol, req.externalPort ?? 0, req.externalPort ?? 0);
      if (row && req.remoteAddress !== undefined && (row.remote_address ?? '') !== (req.remoteAddress ?? ''))
        row = undefined;
    }
    if (!row) return none({ ok: true, lease: null });
    if (row.read_only === 1)
      return none({
        ok: false,
        reason: 'not_authorized',
        detail: `lease ${row.id} is read-only (defined in the configuration)`,
      });
    if (row.owner !== req.owner && !req.thirdPartyAllowed)
      return none({ ok: false, reason: 'not_authorized', detail: `mapping belongs to ${row.owner}` });
    // NAT-PMP carries no nonce, so it may not end a mapping that has one (RFC 6887 §11.2, Appendix A)
    if ((req.source === 'pcp' || req.source === 'natpmp') && row.nonce !== null && req.nonce !== row.nonce)
      return none({ ok: false, reason: 'not_authorized', detail: 'nonce does not match the mapping' });
    if (
      req.identity === 'external' &&
      (row.source === 'pcp' || row.source === 'natpmp' || row.source === 'trigger' || row.source === 'static') &&
      req.source !== row.source &&
      !req.thirdPartyAllowed
    ) {
      // UPnP may not delete what another mechanism holds
      return none(conflictOf(row));
    }
    const out = endLease(row, 'released', now, req.actor ?? null, 'released', null);
    return { ...out, result: { ok: true, lease: out.result } };
  }

  function doRevoke(
    id: string,
    actor: string,
    reason: string | null,
    allowReadOnly: boolean,
    sticky = true,
  ): JobOutcome<ReleaseResult> {
    const now = clock.now();
    const row = s.byId.get(id) as LeaseRow | undefined;
    if (row?.state !== 'active') return { result: { ok: true, lease: null }, add: [], remove: [], events: [] };
    if (row.read_only === 1 && !allowReadOnly)
      return {
        result: {
          ok: false,
          reason: 'not_authorized',
          detail: `lease ${id} is read-only (defined in the configuration); change the configuration instead`,
        },
        add: [],
        remove: [],
        events: [],
      };
    // the holder may not simply take it back: its renewals are refused for the rest of the lease's term
    if (
      sticky &&
      !allowReadOnly &&
      row.expires_at !== null &&
      row.expires_at > now &&
      !policy.isTrusted(row.source as Lease['source'])
    ) {
      s.revoke.run(
        row.protocol,
        row.owner,
        row.internal_address,
        row.internal_port,
        row.external_port,
        row.expires_at,
        row.id,
      );
      revokedUntil = Math.max(revokedUntil, row.expires_at);
      pruner.trimRevocations();
    }
    const out = endLease(row, allowReadOnly ? 'config' : 'revoked', now, actor, 'revoked', reason);
    return { ...out, result: { ok: true, lease: out.result } };
  }

  function doExpire(limit = expiryBatch): JobOutcome<number> {
    const now = clock.now();
    const rows = s.due.all(now, limit) as LeaseRow[];
    const out: JobOutcome<number> = { result: rows.length, add: [], remove: [], events: [], removalOnly: true };
    for (const row of rows) {
      const o = endLease(row, 'expired', now, null, 'expired', null);
      out.remove.push(...o.remove);
      out.events.push(...o.events);
    }
    s.pruneRevocations.run(now);
    return out;
  }

  // ---- the single writer (writer.ts): one transaction and one dataplane batch per tick ----
  const listeners = new Set<(e: LeaseEvent) => void>();
  const writer = createWriter({
    tx: store.tx,
    transaction: (fn) => store.transaction(fn),
    settle: store.driver === 'sqlite' ? undefined : () => store.settle(),
    prepare: (sql) => store.db.prepare(sql),
    dataplane,
    log,
    ...(metrics ? { metrics } : {}),
    rebuild: rebuildCaches,
    restore(removed) {
      const now = clock.now();
      const back: DataplaneEntry[] = [];
      for (const e of removed) {
        const row = s.byId.get(e.id) as LeaseRow | undefined;
        if (row && row.state === 'active' && (row.expires_at === null || row.expires_at > now))
          back.push(toEntry(rowToLease(row), now));
      }
      return back;
    },
    emit,
    committed(ok) {
      publishGauges();
      expiry.afterCommit(ok);
      pruner.schedule();
    },
    reconcile: (why) => void reconcile(why),
  });
  const enqueue = writer.submit;
  const enqueueExclusive = writer.exclusive;
  const meta = createMetaStore(writer.door);
  // ---- bounded storage: ended leases by count and age, revocations by term and count (prune.ts) ----
  const pruner = createPruner({
    s,
    prepare: (sql) => store.db.prepare(sql),
    clock,
    writer,
    maxEnded,
    retentionMs,
    batch: pruneBatch,
  });

  function emit(e: LeaseEvent): void {
    metrics?.leaseEvents.inc({ type: e.type, source: e.source });
    const l = e.lease;
    const fields = l
      ? {
          id: l.id,
          source: l.source,
          owner: l.owner,
          protocol: l.protocol,
          external: formatPortRange(externalPorts(l)),
          ...(l.family === 6 ? { family: 6 } : {}),
          internal: formatEndpoint(l.internalAddress, l.internalPort),
          expiresAt: l.expiresAt,
          actor: e.actor ?? undefined,
          reason: e.reason ?? undefined,
        }
      : {};
    if (e.type !== 'renewed') log.info(fields, `lease ${e.type}`);
    else log.debug(fields, 'lease renewed');
    for (const fn of listeners) {
      try {
        fn(e);
      } catch (err) {
        log.error({ err: (err as Error).message }, 'lease event listener failed');
      }
    }
  }

  // ---- expiry: one timer at the earliest expiresAt (expiry.ts) ----
  const expiry = createExpiry({
    clock,
    log,
    writer,
    nextExpiry: () => (s.nextExpiry.get() as { t: number | null }).t,
    expire: (limit) => doExpire(limit),
    batch: expiryBatch,
  });
  const scheduleExpiry = expiry.schedule;
  const expireDue = expiry.expireDue;

  // ---- wall-clock steps (clock-rebase.ts) ----
  const checkWallClock = createClockRebase({
    clock,
    log,
    meta,
    writer,
    rebaseRows(shift, since, mark) {
      store.db.transaction(() => {
        s.rebaseActive.run({ d: shift, since });
        store.setMeta(CLOCK_META, String(mark));
      })();
    },
    async afterStep() {
      expiry.reset();
      // kernel timeouts were computed in the old frame when the table held rows from before a restart
      await reconcile('wall clock stepped');
    },
  });

  // ---- reconcile: the kernel gets exactly the table (reconcile.ts) ----
  const reconcile = createReconciler({
    prepare: (sql) => store.db.prepare(sql),
    dataplane,
    clock,
    log,
    ...(metrics ? { metrics } : {}),
    toEntry,
    writer,
  });

  // ---- static forwards from the configuration (static-sync.ts) ----
  const syncStatic = createStaticSync({
    prepare: (sql) => store.db.prepare(sql),
    staticCount: () => activeBySource.get('static') ?? 0,
    writer,
    revoke: (id) => doRevoke(id, 'config', 'removed from the configuration', true),
    request: doRequest,
    log,
  });

  // ---- listings: from memory, or SQL that walks an index (list-query.ts) ----
  /** committed rows (the reader connection) of these ids that are still active */
  function activeRows(ids: Iterable<string | undefined>): Lease[] {
    const out: Lease[] = [];
    for (const id of ids) {
      if (id === undefined) continue;
      const r = store.r.byId.get(id) as LeaseRow | undefined;
      if (r && r.state === 'active') out.push(rowToLease(r));
    }
    return out;
  }
  /** the SQL filter of list-query.ts, on a lease in memory (LIKE: case-insensitive for ASCII, as SQLite's) */
  function matches(l: Lease, f: LeaseFilter): boolean {
    if (f.family !== undefined && l.family !== f.family) return false;
    if (f.source && l.source !== f.source) return false;
    if (f.owner && l.owner !== f.owner) return false;
    if (f.protocol && l.protocol !== f.protocol) return false;
    if (f.externalPort !== undefined && (l.externalPort > f.externalPort || l.externalPortEnd < f.externalPort))
      return false;
    if (f.internalPort !== undefined && l.internalPort !== f.internalPort) return false;
    if (f.search) {
      const q = f.search.toLowerCase();
      if (!l.description.toLowerCase().includes(q) && !(l.rule ?? '').toLowerCase().includes(q)) return false;
    }
    return true;
  }
  /** the ORDER BY of list-query.ts (NULLs first ascending, as SQLite) */
  function compareBy(f: LeaseFilter): (a: Lease, b: Lease) => number {
    const key = f.sort ?? 'createdAt';
    const dir = f.order === 'desc' ? -1 : 1;
    return (a, b) => {
      const x = a[key],
        y = b[key];
      let c = x === y ? 0 : x === null ? -1 : y === null ? 1 : x < y ? -1 : 1;
      if (c === 0) c = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
      return c * dir;
    };
  }
  /**
   * The total of a listing: from the in-memory counts when only the state and the source filter it (UPnP
   * PortMappingNumberOfEntries, the admin API's default listing), else counted over one state's rows.
   * The counts are the writer's: a tick in flight may show in them a moment before its rows do.
   */
  function countOf(f: LeaseFilter, q: ListQuery): number {
    const state = f.state ?? 'active';
    const simple =
      f.family === undefined &&
      !f.owner &&
      !f.protocol &&
      f.externalPort === undefined &&
      f.internalPort === undefined &&
      !f.search;
    if (simple && !(f.source && state !== 'active')) {
      const active = f.source ? (activeBySource.get(f.source) ?? 0) : table.activeCount();
      return state === 'active' ? active : state === 'ended' ? pruner.endedCount() : active + pruner.endedCount();
    }
    return (readerStatement(q.count).get(...(q.args as unknown[])) as { n: number }).n;
  }
  // listings prepare their SQL once per shape (a handful in practice; bounded anyway)
  const readerStatements = new Map<string, Statement<unknown[]>>();
  function readerStatement(sql: string) {
    let st = readerStatements.get(sql);
    if (!st) {
      if (readerStatements.size >= 256) readerStatements.clear();
      st = store.reader.prepare<unknown[]>(sql);
      readerStatements.set(sql, st);
    }
    return st;
  }

  // ---- public face ----
  rebuildCaches();
  const table = {
    /** the storage itself, for tests; parts of portd go through the writer (door, meta) */
    store,
    /** the writer's door for the small stores beside the leases (the trigger store) */
    door: writer.door,
    /** the UPnP UUIDs and other named values; writes are writer jobs */
    meta,
    request: (req: LeaseRequest) => {
      const p = enqueue<GrantResult>('request', () => doRequest(req), unavailable);
      return p.then((r) => {
        if (!r.ok) {
          metrics?.refusals.inc({ reason: r.reason, source: req.source });
          const detail =
            r.reason === 'conflict'
              ? r.holder.id
                ? `held by ${r.holder.source} lease ${r.holder.id} of ${r.holder.owner}`
                : `kept for the ${r.holder.owner}`
              : r.detail;
          log.info(
            {
              source: req.source,
              owner: req.owner,
              protocol: req.protocol,
              externalPort: req.externalPort,
              ...(req.family === 6 ? { family: 6 } : {}),
              internal: formatEndpoint(req.internalAddress, req.internalPort),
              reason: r.reason,
              detail,
            },
            'lease refused',
          );
          for (const fn of listeners) {
            try {
              fn({
                type: 'refused',
                at: clock.now(),
                leaseId: r.reason === 'conflict' ? r.holder.id || null : null,
                lease: null,
                source: req.source,
                owner: req.owner,
                actor: req.actor ?? null,
                reason: `${r.reason}: ${detail}`,
              });
            } catch {
              /* listener bug */
            }
          }
        }
        return r;
      });
    },
    release: (req: ReleaseRequest) => enqueue<ReleaseResult>('release', () => doRelease(req), unavailable),
    /** end a lease now; unless `sticky: false`, its holder's renewals are refused for the rest of its term */
    revoke: (id: string, actor: string, reason?: string, opts: { sticky?: boolean } = {}) =>
      enqueue<ReleaseResult>(
        'revoke',
        () => doRevoke(id, actor, reason ?? null, false, opts.sticky ?? true),
        unavailable,
      ),
    get(id: string): Lease | null {
      const r = store.r.byId.get(id) as LeaseRow | undefined;
      return r ? rowToLease(r) : null;
    },
    // the writer's caches say which lease; the reader connection gives its committed row (so a lease
    // whose tick is still in flight is not reported before it is acknowledged)
    findByInternal(
      protocol: 'tcp' | 'udp',
      internalAddress: string,
      internalPort: number,
      remoteAddress?: string | null,
    ): Lease | null {
      const v6 = ipv6.canonical(internalAddress);
      const id =
        v6 !== null
          ? pinholes.find(protocol, v6, internalPort, remoteAddress ? ipv6.canonical(remoteAddress) : remoteAddress)?.id
          : byInternal.get(internalKey(protocol, internalAddress, internalPort));
      const r = id === undefined ? undefined : (store.r.byId.get(id) as LeaseRow | undefined);
      return r && r.state === 'active' ? rowToLease(r) : null;
    },
    findByExternal(protocol: 'tcp' | 'udp', externalPort: number, remoteAddress?: string | null): Lease | null {
      const id = ports.holderIn(protocol, externalPort, externalPort);
      const r = id === undefined ? undefined : (store.r.byId.get(id) as LeaseRow | undefined);
      if (r?.state !== 'active') return null;
      if (remoteAddress !== undefined && (r.remote_address ?? null) !== (remoteAddress || null)) return null;
      return rowToLease(r);
    },
    list(filter: LeaseFilter = {}): { leases: Lease[]; total: number } {
      const state = filter.state ?? 'active';
      const limit = Math.min(Math.max(filter.limit ?? 100, 1), 10000);
      const offset = Math.max(filter.offset ?? 0, 0);
      // a client's leases or one port's holder: the ids come from memory (an owner holds at most its quota)
      if (state === 'active' && (filter.owner || filter.externalPort !== undefined)) {
        const protocols = (['tcp', 'udp'] as const).filter((p) => !filter.protocol || filter.protocol === p);
        const ids =
          filter.externalPort !== undefined
            ? [
                ...(filter.family === 6
                  ? []
                  : protocols.map((p) => ports.holderIn(p, filter.externalPort!, filter.externalPort!))),
                // a pinhole's external port is its internal one, on its own address: not in the port map
                ...(filter.family === 4 ? [] : protocols.flatMap((p) => pinholes.onPort(p, filter.externalPort!))),
              ]
            : [...(byOwner.get(filter.owner!) ?? [])];
        const found = activeRows(ids).filter((l) => matches(l, filter));
        found.sort(compareBy(filter));
        return { leases: found.slice(offset, offset + limit), total: found.length };
      }
      const q = listQuery(filter);
      const rows = readerStatement(q.page).all(...(q.args as unknown[]), limit, offset) as LeaseRow[];
      return { leases: rows.map(rowToLease), total: countOf(filter, q) };
    },
    /**
     * Active leases whose first external port is in [start, end], in port order (UPnP GetListOfPortMappings,
     * DeletePortMappingRange): from the port map, or from the owner's leases when `owner` is given.
     */
    listExternalRange(
      protocol: 'tcp' | 'udp',
      start: number,
      end: number,
      o: { source?: Lease['source']; owner?: string } = {},
    ): Lease[] {
      const lo = Math.max(0, start),
        hi = Math.min(65535, end);
      let ids: (string | undefined)[];
      if (o.owner !== undefined) ids = [...(byOwner.get(o.owner) ?? [])];
      else {
        ids = [];
        let last: string | undefined;
        for (let p = lo; p <= hi; p++) {
          const id = ports.holderIn(protocol, p, p);
          if (id !== undefined && id !== last) {
            ids.push(id);
            last = id;
          }
        }
      }
      return activeRows(ids)
        .filter(
          (l) =>
            l.protocol === protocol &&
            l.externalPort >= lo &&
            l.externalPort <= hi &&
            (!o.source || l.source === o.source) &&
            (o.owner === undefined || l.owner === o.owner),
        )
        .sort((a, b) => a.externalPort - b.externalPort);
    },
    /** active leases, of one source or all: from memory */
    activeCount(source?: Lease['source'], family?: AddressFamily): number {
      const sum = (m: Map<string, number>) => {
        if (source) return m.get(source) ?? 0;
        let n = 0;
        for (const k of m.values()) n += k;
        return n;
      };
      if (family === 6) return sum(activePinholesBySource);
      return family === 4 ? sum(activeBySource) - sum(activePinholesBySource) : sum(activeBySource);
    },
    history: (id: string) => store.history(id),
    /** from memory: counts per source, and per owner (every active lease's owner, busiest first in the status) */
    countActive() {
      const bySource: Record<string, number> = {};
      const byOwnerCount: Record<string, number> = {};
      let total = 0;
      for (const [src, n] of activeBySource) {
        if (n > 0) {
          bySource[src] = n;
          total += n;
        }
      }
      for (const [owner, ids] of byOwner) byOwnerCount[owner] = ids.size;
      return { total, bySource, byOwner: byOwnerCount };
    },
    on(fn: (e: LeaseEvent) => void) {
      listeners.add(fn);
      return () => {
        listeners.delete(fn);
      };
    },
    externalAddress: () => externalAddress,
    /** a new WAN address: leases follow it (rows and kernel), one tick */
    async setExternalAddress(addr: string): Promise<void> {
      if (addr === externalAddress) return;
      const old = externalAddress;
      externalAddress = addr;
      await enqueueExclusive(
        'external-address',
        async () => {
          store.db.prepare(`UPDATE leases SET external_address = ? WHERE state = 'active' AND family = 4`).run(addr);
          await dataplane.setExternalAddresses([addr]);
          return null;
        },
        () => null,
      );
      log.warn({ from: old, to: addr }, 'external address changed; leases follow');
    },
    /**
     * The lease's upstream mapping (src/upstream/): written in a writer tick of its own kind (rows only, no
     * kernel change), so it never joins another tick's transaction half-way. null deletes it. Resolves false
     * when the lease row is gone.
     */
    setUpstream(leaseId: string, rec: UpstreamRecord | null): Promise<boolean> {
      return enqueue<boolean>(
        'upstream',
        () => ({ result: upstreamRows.write(leaseId, rec), add: [], remove: [], events: [] }),
        () => false,
      );
    },
    /** committed state: the lease's upstream mapping, or null */
    upstreamOf: (leaseId: string): UpstreamRecord | null => upstreamRows.get(leaseId),
    /** committed state: the upstream mappings of every active lease */
    upstreamActive: (): UpstreamRecord[] => upstreamRows.active(),
    expireDue,
    reconcile,
    syncStatic,
    checkWallClock,
    /**
     * ended leases over the cap or past the retention, with their history, and revocations past their term:
     * one bounded batch per tick until none is due (batches also follow every commit that leaves one due)
     */
    prune: pruner.run,
    scheduleExpiry,
    /** queued + in-flight jobs, for tests and status */
    pending: writer.pending,
    async close(): Promise<void> {
      // let queued work finish, then stop accepting
      await writer.close();
      expiry.stop();
      await store.close();
    },
  };
  scheduleExpiry();
  return table satisfies LeaseTableApi & Record<string, unknown>;
}
