/**
 * Chains each IPv4 lease a LAN client gets (UPnP, PCP, NAT-PMP, static forwards; not IPv6 pinholes, not
 * triggers) to the NAT the gateway sits behind (docs/double-nat.md, "Chaining upstream").
 *
 * - The front-end grants locally first (kernel before commit, the writer's rule), then asks chain(): the
 *   upstream round trip happens outside the writer's transaction, and its answer is written as a row of its
 *   own (the table's setUpstream job). The client waits at most `upstream.timeout` ms.
 * - Timeout: the client is told to try later (PCP NO_RESOURCES, NAT-PMP NETWORK_FAILURE, UPnP 501); the local
 *   lease stays and the upstream request carries on (state pending). When its answer comes the lease is
 *   chained, and the client's retry is answered at once from the record.
 * - Refusal: the local lease is revoked (not sticky) and the client gets its protocol's error for the reason.
 * - Renewals: the manager renews each upstream mapping at half its lifetime while the lease lives; a client's
 *   renewal is answered from the record. Ends (release, expiry, revoke, replace) delete upstream.
 * - Epoch (PCP, NAT-PMP) checked on every answer and probe; a lost state, an unsolicited ANNOUNCE, or an
 *   upstream that answers again after failing a probe re-creates every upstream mapping.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { UpstreamConfig } from '../config/upstream.js';
import type { Lease, LeaseEvent, LeaseFilter } from '../leases/types.js';
import type { UpstreamChain, UpstreamOutcome, UpstreamRecord, UpstreamState } from '../leases/upstream.js';
import type { MapResult, UpstreamClient } from './types.js';
import { createEpochTracker } from './epoch.js';

/** the lease table as the manager uses it */
export interface UpstreamTable {
  on(fn: (e: LeaseEvent) => void): () => void;
  get(id: string): Lease | null;
  list(filter?: LeaseFilter): { leases: Lease[]; total: number };
  revoke(id: string, actor: string, reason?: string, opts?: { sticky?: boolean }): Promise<unknown>;
  setUpstream(leaseId: string, rec: UpstreamRecord | null): Promise<boolean>;
  upstreamOf(leaseId: string): UpstreamRecord | null;
  externalAddress(): string;
}

export interface UpstreamManagerDeps {
  readonly config: UpstreamConfig;
  readonly table: UpstreamTable;
  /** finds and opens the upstream client (discovery for `auto`); null when none answers */
  readonly connect: () => Promise<UpstreamClient | null>;
  readonly log: Logger;
  readonly metrics?: Metrics;
  /** wall clock, ms */
  readonly now?: () => number;
  /** the upstream's public address as it is learned or changes (main.ts: WAN status, the reported address) */
  readonly onPublicAddress?: (address: string) => void;
}

const CHAINED_SOURCES = new Set(['upnp', 'pcp', 'natpmp', 'static']);
/** an upstream mapping with less than this left is renewed before a client's renewal is answered from it */
const FRESH_MS = 10_000;
/** the lifetime asked upstream for leases without expiry (static forwards): renewed at half */
const STATIC_LIFETIME = 3600;
const MAX_LIFETIME = 86400;
/** after a failed connect, the next try no sooner than this */
const RECONNECT_MS = 5000;

export function createUpstreamManager(deps: UpstreamManagerDeps) {
  const { config, table, metrics } = deps;
  const log = deps.log.child({ component: 'upstream' });
  const now = deps.now ?? Date.now;
  const enabled = config.mode !== 'off';
  const epoch = createEpochTracker();
  let client: UpstreamClient | null = null;
  let connecting: Promise<UpstreamClient | null> | null = null;
  let lastConnectFailure = 0;
  let publicAddress: string | null = null;
  const learnPublic = (a: string): void => {
    if (a === publicAddress) return;
    publicAddress = a;
    deps.onPublicAddress?.(a);
  };
  let lastProbeOk = true;
  let recreating: Promise<void> | null = null;
  let closed = false;
  const inflight = new Map<string, Promise<UpstreamOutcome>>();
  const renewTimers = new Map<string, NodeJS.Timeout>();
  /** derived: the state of each chained active lease, for the gauge */
  const states = new Map<string, UpstreamState>();
  let probeTimer: NodeJS.Timeout | null = null;
  let unsubscribe: (() => void) | null = null;

  function gauge(): void {
    if (!metrics) return;
    const n: Record<UpstreamState, number> = { pending: 0, active: 0, failed: 0 };
    for (const s of states.values()) n[s]++;
    for (const [k, v] of Object.entries(n)) metrics.upstreamMappings.set({ state: k }, v);
  }
  async function write(leaseId: string, rec: UpstreamRecord | null): Promise<void> {
    if (rec) states.set(leaseId, rec.state);
    else states.delete(leaseId);
    gauge();
    await table.setUpstream(leaseId, rec);
  }

  async function getClient(): Promise<UpstreamClient | null> {
    if (client) return client;
    if (closed || now() - lastConnectFailure < RECONNECT_MS) return null;
    connecting ??= deps
      .connect()
      .catch((e: Error) => {
        log.warn({ err: e.message }, 'upstream: cannot open the client');
        return null;
      })
      .then((c) => {
        connecting = null;
        if (!c) {
          lastConnectFailure = now();
          log.warn({ mode: config.mode }, 'upstream: no upstream NAT answered; leases stay local for now');
          return null;
        }
        client = c;
        epoch.reset();
        c.onAnnounce((e) => {
          log.warn({ server: c.server, epoch: e }, 'upstream: unsolicited announcement; re-creating every mapping');
          void recreateAll('announce');
        });
        log.info({ protocol: c.protocol, server: c.server }, 'upstream: chaining leases to this NAT');
        return c;
      });
    return connecting;
  }

  /** checks the epoch in an answer; a lost state re-creates every mapping (after this one is written) */
  function sawEpoch(e: number | null | undefined): void {
    if (e === null || e === undefined) return;
    if (epoch.lost(e, now())) {
      log.warn({ epoch: e }, 'upstream: epoch went backwards or jumped (the upstream lost its state); re-creating');
      setImmediate(() => void recreateAll('epoch'));
    }
  }

  function lifetimeFor(lease: Lease): number {
    if (lease.expiresAt === null) return STATIC_LIFETIME;
    return Math.max(30, Math.min(MAX_LIFETIME, Math.ceil((lease.expiresAt - now()) / 1000)));
  }

  function mappedFrom(rec: UpstreamRecord, lease: Lease): UpstreamOutcome {
    const left = Math.max(1, Math.floor(((rec.expiresAt ?? now()) - now()) / 1000));
    return {
      kind: 'mapped',
      externalAddress: rec.externalAddress ?? publicAddress ?? lease.externalAddress,
      externalPort: rec.externalPort ?? lease.externalPort,
      lifetime: left,
    };
  }

  function scheduleRenewal(leaseId: string, lifetimeS: number): void {
    clearTimeout(renewTimers.get(leaseId));
    if (closed) return;
    const t = setTimeout(
      () => {
        renewTimers.delete(leaseId);
        const lease = table.get(leaseId);
        if (lease?.state !== 'active') return;
        void request(lease, 'renew');
      },
      Math.max(2000, (lifetimeS * 1000) / 2),
    );
    t.unref();
    renewTimers.set(leaseId, t);
  }

  /** one upstream MAP for the lease (new, renewal or re-creation); records the answer; never throws */
  function request(lease: Lease, why: 'grant' | 'renew' | 'recreate'): Promise<UpstreamOutcome> {
    const running = inflight.get(lease.id);
    if (running) return running;
    const p = (async (): Promise<UpstreamOutcome> => {
      const c = await getClient();
      if (!c) return { kind: 'refused', reason: 'unavailable', detail: 'no upstream NAT answers' };
      const prev = table.upstreamOf(lease.id);
      const nonce =
        c.protocol === 'pcp'
          ? prev?.protocol === 'pcp' && prev.nonce
            ? prev.nonce
            : randomBytes(12).toString('hex')
          : null;
      const base = {
        leaseId: lease.id,
        protocol: c.protocol,
        server: c.server,
        nonce,
      };
      if (prev?.state !== 'active')
        void write(lease.id, {
          ...base,
          state: 'pending',
          externalAddress: null,
          externalPort: null,
          lifetime: null,
          expiresAt: null,
          epoch: prev?.epoch ?? null,
          detail: null,
          updatedAt: now(),
        });
      const lifetime = lifetimeFor(lease);
      // the upstream request itself may take longer than the client's bound: a late answer still chains the lease
      const r: MapResult = await c.map(
        {
          protocol: lease.protocol,
          internalPort: lease.externalPort,
          suggestedPort: prev?.externalPort ?? lease.externalPort,
          lifetime,
          nonce,
          description: `portd ${lease.source} ${lease.internalAddress}:${lease.internalPort}`,
        },
        Math.max(3 * config.timeout, 3000),
      );
      metrics?.upstreamRequests.inc({ protocol: c.protocol, result: r.ok ? 'success' : r.reason });
      sawEpoch(r.epoch);
      const still = table.get(lease.id);
      if (r.ok) {
        if (r.externalAddress) learnPublic(r.externalAddress);
        const rec: UpstreamRecord = {
          ...base,
          state: 'active',
          externalAddress: r.externalAddress ?? publicAddress,
          externalPort: r.externalPort,
          lifetime: r.lifetime,
          expiresAt: now() + r.lifetime * 1000,
          epoch: r.epoch,
          detail: null,
          updatedAt: now(),
        };
        if (still?.state !== 'active') {
          // the lease ended while we asked: undo upstream
          log.info({ lease: lease.id }, 'upstream: lease ended during the request; deleting upstream');
          await c.unmap({ ...mapReqOf(lease, nonce), externalPort: r.externalPort }, config.timeout);
          return { kind: 'local' };
        }
        await write(lease.id, rec);
        scheduleRenewal(lease.id, r.lifetime);
        const level = why === 'renew' ? 'debug' : 'info';
        log[level](
          {
            lease: lease.id,
            why,
            protocol: lease.protocol,
            local: lease.externalPort,
            public: `${rec.externalAddress ?? '?'}:${r.externalPort}`,
            lifetime: r.lifetime,
            via: c.protocol,
          },
          'upstream mapping granted',
        );
        return mappedFrom(rec, lease);
      }
      log.warn(
        {
          lease: lease.id,
          why,
          protocol: lease.protocol,
          port: lease.externalPort,
          reason: r.reason,
          detail: r.detail,
        },
        'upstream mapping refused',
      );
      if (r.reason === 'unavailable' && why !== 'grant' && prev?.state === 'active' && (prev.expiresAt ?? 0) > now()) {
        // a renewal without an answer: keep what the upstream still holds and try again soon
        scheduleRenewal(lease.id, 20);
        return mappedFrom(prev, lease);
      }
      if (still && still.state === 'active')
        await write(lease.id, {
          ...base,
          state: 'failed',
          externalAddress: null,
          externalPort: null,
          lifetime: null,
          expiresAt: null,
          epoch: r.epoch ?? prev?.epoch ?? null,
          detail: r.detail,
          updatedAt: now(),
        });
      return { kind: 'refused', reason: r.reason, detail: r.detail };
    })().finally(() => inflight.delete(lease.id));
    inflight.set(lease.id, p);
    return p;
  }

  function mapReqOf(lease: Lease, nonce: string | null) {
    return {
      protocol: lease.protocol,
      internalPort: lease.externalPort,
      suggestedPort: lease.externalPort,
      lifetime: 0,
      nonce,
      description: '',
    };
  }

  async function ended(e: LeaseEvent): Promise<void> {
    const id = e.leaseId;
    if (!id) return;
    clearTimeout(renewTimers.get(id));
    renewTimers.delete(id);
    await inflight.get(id);
    const rec = table.upstreamOf(id);
    if (!rec) return;
    states.delete(id);
    gauge();
    if (rec.state === 'failed') return; // kept with the ended lease: the reason it ended
    const lease = e.lease ?? table.get(id);
    const c = await getClient();
    if (c && lease && rec.externalPort !== null) {
      const r = await c.unmap({ ...mapReqOf(lease, rec.nonce), externalPort: rec.externalPort }, config.timeout);
      metrics?.upstreamRequests.inc({ protocol: c.protocol, result: r.ok ? 'deleted' : r.reason });
      log.info(
        {
          lease: id,
          public: `${rec.externalAddress ?? '?'}:${rec.externalPort}`,
          ok: r.ok,
          ...(r.ok ? {} : { detail: r.detail }),
        },
        'upstream mapping deleted',
      );
    }
    await table.setUpstream(id, null);
  }

  function activeChained(): Lease[] {
    const out: Lease[] = [];
    for (let offset = 0; offset < 1_000_000; offset += 1000) {
      const page = table.list({ state: 'active', family: 4, limit: 1000, offset });
      out.push(...page.leases.filter((l) => CHAINED_SOURCES.has(l.source)));
      if (page.leases.length < 1000) break;
    }
    return out;
  }

  /** every active chained lease again, four at a time */
  function recreateAll(why: string): Promise<void> {
    if (recreating || closed) return recreating ?? Promise.resolve();
    recreating = (async () => {
      const leases = activeChained();
      log.info({ why, leases: leases.length }, 'upstream: re-creating mappings');
      for (let i = 0; i < leases.length; i += 4)
        await Promise.all(leases.slice(i, i + 4).map((l) => request(l, 'recreate')));
    })().finally(() => {
      recreating = null;
    });
    return recreating;
  }

  async function probe(): Promise<void> {
    const c = await getClient();
    if (!c) return;
    const r = await c.probe(config.timeout);
    metrics?.upstreamRequests.inc({ protocol: c.protocol, result: r.ok ? 'probe' : 'probe_failed' });
    if (!r.ok) {
      if (lastProbeOk) log.warn({ server: c.server, detail: r.detail }, 'upstream: probe failed');
      lastProbeOk = false;
      return;
    }
    if (r.externalAddress) learnPublic(r.externalAddress);
    const back = !lastProbeOk;
    lastProbeOk = true;
    if (back) {
      log.warn({ server: c.server }, 'upstream: answers again after failing; re-creating every mapping');
      epoch.reset();
      sawEpoch(r.epoch);
      await recreateAll('restart');
      return;
    }
    sawEpoch(r.epoch);
    if (c.holds) {
      // no epoch (UPnP): one mapping stands for all; a router that restarted without its table lost it
      const one = [...states.entries()].find(([, st]) => st === 'active')?.[0];
      const rec = one ? table.upstreamOf(one) : null;
      const lease = one ? table.get(one) : null;
      if (rec?.externalPort && lease?.state === 'active') {
        const held = await c.holds(lease.protocol, rec.externalPort, config.timeout);
        if (held === false) {
          log.warn(
            { server: c.server, lease: one },
            'upstream: a mapping is gone upstream (restart?); re-creating all',
          );
          await recreateAll('missing');
        }
      }
    }
  }

  const chain: UpstreamChain['chain'] = async (lease) => {
    if (!enabled || closed || lease.family === 6 || !CHAINED_SOURCES.has(lease.source)) return { kind: 'local' };
    const rec = table.upstreamOf(lease.id);
    if (rec?.state === 'active' && (rec.expiresAt ?? 0) - now() > FRESH_MS && !inflight.has(lease.id))
      return mappedFrom(rec, lease);
    const p = request(lease, rec?.state === 'active' ? 'renew' : 'grant');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<UpstreamOutcome>((resolve) => {
      timer = setTimeout(
        () =>
          resolve({
            kind: 'refused',
            reason: 'unavailable',
            detail: `the upstream NAT did not answer within ${config.timeout} ms (still asking; try again)`,
          }),
        config.timeout,
      );
    });
    const out = await Promise.race([p, timeout]);
    clearTimeout(timer);
    if (out.kind === 'refused' && out.reason !== 'unavailable') {
      // no local opening without its public half: the client hears the upstream's refusal
      await table.revoke(lease.id, 'upstream', `upstream refused: ${out.detail}`, { sticky: false });
    }
    return out;
  };

  return {
    enabled,
    chain,
    recordFor: (leaseId: string) => table.upstreamOf(leaseId),
    /** the public address the upstream reported (PCP MAP, NAT-PMP, UPnP GetExternalIPAddress), or null */
    publicAddress: (): string | null => publicAddress,
    /** the client in use: protocol and server, or null */
    status: () => (client ? { protocol: client.protocol, server: client.server, reachable: lastProbeOk } : null),
    /** subscribes to lease ends and static grants, re-asks for what the table holds, starts the probe */
    async start(): Promise<void> {
      if (!enabled) return;
      unsubscribe = table.on((e) => {
        if (e.type === 'released' || e.type === 'expired' || e.type === 'revoked' || e.type === 'replaced') {
          void ended(e);
        } else if (e.type === 'granted' && e.lease?.source === 'static' && e.lease.family !== 6) {
          void request(e.lease, 'grant');
        }
      });
      probeTimer = setInterval(() => void probe(), config.probeInterval * 1000);
      probeTimer.unref();
      // in the background: discovery in `auto` may take a few timeouts, and the front-ends must not wait for it
      // (a client that asks meanwhile shares the same connect)
      void (async () => {
        const c = await getClient();
        if (c) {
          const p = await c.probe(config.timeout);
          if (p.ok) {
            if (p.externalAddress) learnPublic(p.externalAddress);
            sawEpoch(p.epoch);
          }
        }
        await recreateAll('start');
      })();
    },
    recreateAll,
    /** the gateway's WAN address changed: the client left from the old one, and every mapping pointed at it */
    async wanAddressChanged(): Promise<void> {
      if (!enabled || closed) return;
      const old = client;
      client = null;
      lastConnectFailure = 0;
      await old?.close();
      log.warn('upstream: the WAN address changed; re-creating every mapping for the new one');
      await recreateAll('wan address');
    },
    async close(): Promise<void> {
      closed = true;
      unsubscribe?.();
      if (probeTimer) clearInterval(probeTimer);
      for (const t of renewTimers.values()) clearTimeout(t);
      renewTimers.clear();
      await Promise.allSettled([...inflight.values()]);
      await client?.close();
      client = null;
    },
  } satisfies UpstreamChain & Record<string, unknown>;
}
export type UpstreamManager = ReturnType<typeof createUpstreamManager>;
