import type { AddressFamily, LeaseSource } from '../common/net-types.js';
import type { PolicyConfig, PolicyRule } from '../config/types.js';
import { inPrefix, ipv4ToInt } from '../common/net.js';
import { createIPv6Memo, splitZone } from '../common/ipv6.js';

/** sources an admin configured: allow/deny rules, reserved ports and quotas don't apply to them */
const TRUSTED: ReadonlySet<LeaseSource> = new Set(['static', 'trigger']);

/**
 * What the policy reads of a lease request. The lease table's LeaseRequest has these fields, so it
 * passes as is; declaring them here keeps the import direction leases → policy (no cycle).
 */
export interface PolicyRequest {
  /** 6: an IPv6 pinhole (no translation); absent = 4 */
  readonly family?: AddressFamily;
  readonly source: LeaseSource;
  readonly owner: string;
  readonly internalAddress: string;
  readonly internalPort: number;
  readonly thirdPartyAllowed?: boolean;
}

/** the refusals the policy decides; each is one case of the lease table's Refusal */
export type PolicyRefusal = {
  readonly ok: false;
  readonly reason: 'invalid' | 'not_authorized' | 'reserved' | 'denied';
  readonly detail: string;
};

export interface Policy {
  readonly config: PolicyConfig;
  /** the first refusal that applies before any write, or null */
  check(req: PolicyRequest, externalPort: number, externalPortEnd: number): PolicyRefusal | null;
  /** is this external port allowed for the request (used while allocating) */
  portAllowed(req: PolicyRequest, externalPort: number): boolean;
  /**
   * The external port intervals within [lo, hi] that the allow/deny rules leave open to this request
   * (reserved ports aside: portAllowed still checks those). Allocation searches only these, so a client
   * confined to a small block that is full costs a few block checks, not a walk over 64k ports.
   */
  allowedRanges(req: PolicyRequest, lo: number, hi: number): [number, number][];
  /** the lifetime to grant in seconds, from the requested one; null = no expiry */
  clampLifetime(source: LeaseSource, requested: number | null): number | null;
  isTrusted(source: LeaseSource): boolean;
  quota(): number;
}

function ruleMatches(r: PolicyRule, ext: number, addr: string, iport: number): boolean {
  if (ext < r.extStart || ext > r.extEnd) return false;
  if (iport < r.intStart || iport > r.intEnd) return false;
  return inPrefix(addr, r.address, r.prefix);
}

/** what the policy may ask the rest of the gateway (all optional: without them it decides from the request alone) */
export interface PolicyDeps {
  /**
   * Secure mode: is `target` an address of the host that asked from `requester` (an IPv6 host's stable and
   * temporary addresses)? Synchronous (the check runs inside a lease-table tick); policy/same-host.ts decides
   * it from the neighbour table. Absent, null (no opinion, e.g. IPv4) or not `same`: a client may map ports to
   * its own address only.
   */
  readonly sameHost?: (requester: string, target: string) => { readonly same: boolean; readonly reason: string } | null;
}

export function createPolicy(config: PolicyConfig, deps: PolicyDeps = {}): Policy {
  const reserved = new Set(config.reservedPorts);
  // a pinhole's check canonicalises its target and owner: remembered, not parsed on every request
  const ipv6 = createIPv6Memo();
  /** canonical text of an IPv6 owner or target (zone dropped), or the text itself when it is not IPv6 */
  const canon6 = (a: string): string => ipv6.canonical(splitZone(a).address) ?? a;
  /** first match wins; no match allows (miniupnpd's default: end the list with a deny-all rule to close it) */
  function ruleFor(req: PolicyRequest, ext: number): PolicyRule | 'none' {
    for (const r of config.rules) if (ruleMatches(r, ext, req.internalAddress, req.internalPort)) return r;
    return 'none';
  }
  /**
   * An IPv6 pinhole: a target a WAN peer can reach (global or unique-local unicast), ports in range and no
   * translation, and secure mode (the owner's own address, or one deps.sameHost says is the same host's).
   * Reserved ports and the allow/deny rules are IPv4 only: they protect the gateway's own ports and name
   * IPv4 prefixes, while a pinhole opens a port of the LAN host itself (docs/leases.md).
   */
  function checkPinhole(req: PolicyRequest, ext: number, extEnd: number): PolicyRefusal | null {
    const facts = ipv6.facts(req.internalAddress);
    const target = facts.canonical;
    if (target === null || !facts.pinholeTarget)
      return {
        ok: false,
        reason: 'invalid',
        detail:
          `internal address ${req.internalAddress} is not an IPv6 address a pinhole can open to ` +
          '(global or unique-local unicast; not link-local, multicast, loopback or IPv4-mapped)',
      };
    if (ext !== req.internalPort || extEnd < ext || extEnd > 65535)
      return {
        ok: false,
        reason: 'invalid',
        detail:
          `a pinhole has no translation: its ports ${ext}-${extEnd} must start at the internal port ` +
          `${req.internalPort}`,
      };
    if (config.secureMode && !req.thirdPartyAllowed) {
      const owner = canon6(req.owner);
      const same = owner === target ? null : deps.sameHost?.(owner, target);
      if (owner !== target && !same?.same)
        return {
          ok: false,
          reason: 'not_authorized',
          detail:
            `secure mode: ${req.owner} may only open pinholes to its own addresses, not to ${target}` +
            (same ? ` (${same.reason})` : ''),
        };
    }
    return null;
  }
  const policy: Policy = {
    config,
    isTrusted: (s) => TRUSTED.has(s),
    quota: () => config.maxLeasesPerClient,
    portAllowed(req, ext) {
      if (TRUSTED.has(req.source)) return true;
      if (reserved.has(ext)) return false;
      const r = ruleFor(req, ext);
      return r === 'none' || r.action === 'allow';
    },
    allowedRanges(req, lo, hi) {
      if (TRUSTED.has(req.source) || config.rules.length === 0) return lo <= hi ? [[lo, hi]] : [];
      // the rules that can match this request; between their edges, the first match is the same for every port
      const rules = config.rules.filter(
        (r) =>
          req.internalPort >= r.intStart &&
          req.internalPort <= r.intEnd &&
          inPrefix(req.internalAddress, r.address, r.prefix),
      );
      const edges = new Set<number>([lo, hi + 1]);
      for (const r of rules) for (const e of [r.extStart, r.extEnd + 1]) if (e > lo && e <= hi) edges.add(e);
      const cuts = [...edges].sort((a, b) => a - b);
      const out: [number, number][] = [];
      for (let i = 0; i + 1 < cuts.length; i++) {
        const a = cuts[i]!,
          b = cuts[i + 1]! - 1;
        const first = rules.find((r) => a >= r.extStart && a <= r.extEnd);
        if (first && first.action === 'deny') continue;
        const last = out[out.length - 1];
        if (last && last[1] + 1 === a) last[1] = b;
        else out.push([a, b]);
      }
      return out;
    },
    check(req, ext, extEnd) {
      if (!Number.isInteger(req.internalPort) || req.internalPort < 1 || req.internalPort > 65535)
        return { ok: false, reason: 'invalid', detail: `internal port ${req.internalPort} is not 1-65535` };
      if (req.family === 6) return checkPinhole(req, ext, extEnd);
      if (ipv4ToInt(req.internalAddress) === null)
        return { ok: false, reason: 'invalid', detail: `internal address ${req.internalAddress} is not IPv4` };
      if (ext < 1 || extEnd > 65535 || extEnd < ext)
        return {
          ok: false,
          reason: 'invalid',
          detail: `external ports ${ext}-${extEnd} are not a range within 1-65535`,
        };
      if (req.internalPort + (extEnd - ext) > 65535)
        return { ok: false, reason: 'invalid', detail: 'internal port range passes 65535' };
      if (config.secureMode && !req.thirdPartyAllowed && req.owner !== req.internalAddress) {
        const own = deps.sameHost?.(req.owner, req.internalAddress);
        if (!own?.same)
          return {
            ok: false,
            reason: 'not_authorized',
            detail:
              `secure mode: ${req.owner} may only map ports to itself, not to ${req.internalAddress}` +
              (own ? ` (${own.reason})` : ''),
          };
      }
      if (TRUSTED.has(req.source)) return null;
      for (let p = ext; p <= extEnd; p++) {
        if (reserved.has(p))
          return { ok: false, reason: 'reserved', detail: `external port ${p} is reserved (policy.reservedPorts)` };
        const r = ruleFor(req, p);
        if (r !== 'none' && r.action === 'deny')
          return {
            ok: false,
            reason: 'denied',
            detail: `policy rule "${r.text}" denies external port ${p} to ${req.internalAddress}`,
          };
      }
      return null;
    },
    clampLifetime(source, requested) {
      if (source === 'static') return requested === null || requested === 0 ? null : requested;
      const b = config.lifetime[source];
      // UPnP v1 "permanent" (0) is capped at the maximum, as IGD:2 requires
      if (requested === null || requested === 0) return b.max;
      return Math.min(b.max, Math.max(b.min, Math.floor(requested)));
    },
  };
  return policy;
}
