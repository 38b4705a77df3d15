/**
 * What portd knows about its WAN side, and the one answer to "which external IPv4 address do we tell a
 * client?" (issue 16 part 3; docs/double-nat.md).
 *
 * Inputs: the WAN interface's address (external-address.ts follows it), what STUN learned (stun-client.ts),
 * and the upstream NAT's public address when upstream chaining holds mappings there (setUpstreamAddress).
 * Outputs: a snapshot for /api/v1/status and doctor, the double-NAT verdict with its reason, and
 * reportedAddress() for UPnP GetExternalIPAddress, the ExternalIPAddress event and NAT-PMP's address reply.
 *
 * The reported address is the gateway's own WAN address unless the upstream chaining says otherwise: that is
 * where our DNAT rules listen, so it is the address on which a mapping works (from the upstream network at
 * least); the STUN address is where our outbound flows appear, but nothing forwards its ports to us: telling a
 * client that address would promise a port nobody opened. miniupnpd stops serving instead.
 */
import type { Logger } from 'pino';
import { classifyAddress, type AddressKind } from '../common/address-kind.js';

export type DoubleNat = 'yes' | 'no' | 'unknown';

export interface StunLearned {
  /** host:port of the server that answered */
  readonly server: string;
  readonly address: string;
  readonly port: number;
}

export interface WanStatusSnapshot {
  /** the WAN interface's IPv4 address (or the configured externalAddress); null while it has none */
  readonly address: string | null;
  readonly kind: AddressKind | null;
  /** the special-purpose block it is in, e.g. "100.64.0.0/10, RFC 6598 shared address space" */
  readonly block: string | null;
  readonly stun: {
    readonly enabled: boolean;
    /** what the last successful Binding said, while it is fresh and for the current WAN address */
    readonly publicAddress: string | null;
    readonly publicPort: number | null;
    readonly server: string | null;
    /** epoch ms of that answer */
    readonly learnedAt: number | null;
    /** epoch ms of the last check (answered or not) */
    readonly checkedAt: number | null;
    /** why the last check learned nothing; null after a success */
    readonly lastError: string | null;
  };
  /** the upstream NAT's public address, when upstream chaining holds mappings there */
  readonly upstreamAddress: string | null;
  readonly doubleNat: DoubleNat;
  readonly why: string;
  /** what UPnP GetExternalIPAddress and NAT-PMP report */
  readonly reportedAddress: string;
  readonly reportedBecause: string;
}

export interface WanStatus {
  setWanAddress(address: string | null): void;
  stunLearned(l: StunLearned): void;
  stunFailed(error: string): void;
  /** upstream chaining (issue 16): the upstream's public address while it holds our mappings; null when not */
  setUpstreamAddress(address: string | null): void;
  reportedAddress(): string;
  snapshot(): WanStatusSnapshot;
  /** called after every change of the double-NAT verdict (and once for the first one) */
  onChange(fn: (s: WanStatusSnapshot) => void): void;
}

export interface WanStatusOptions {
  readonly clock: { now(): number };
  readonly log: Logger;
  /** STUN servers are configured (otherwise a public WAN address is taken at its word) */
  readonly stunEnabled: boolean;
  /** a STUN answer older than this no longer counts, ms (the client re-checks well before: 3 × interval) */
  readonly stunMaxAgeMs: number;
}

/** kinds that count as a real, reachable WAN address; documentation (RFC 5737) is the labs' stand-in for public */
const PUBLIC_KINDS: ReadonlySet<AddressKind> = new Set(['public', 'documentation']);

export function createWanStatus(opts: WanStatusOptions): WanStatus {
  const log = opts.log.child({ component: 'wan-status' });
  let address: string | null = null;
  let learned: (StunLearned & { at: number; forWan: string | null }) | null = null;
  let checkedAt: number | null = null;
  let lastError: string | null = null;
  let upstream: string | null = null;
  let lastVerdict: DoubleNat | null = null;
  const listeners: ((s: WanStatusSnapshot) => void)[] = [];

  /** a STUN answer counts while fresh and learned for the WAN address we have now */
  function fresh(): typeof learned {
    if (!learned || learned.forWan !== address) return null;
    return opts.clock.now() - learned.at <= opts.stunMaxAgeMs ? learned : null;
  }

  function verdict(): { doubleNat: DoubleNat; why: string } {
    if (!address || address === '0.0.0.0')
      return { doubleNat: 'unknown', why: 'the WAN interface has no IPv4 address' };
    const c = classifyAddress(address);
    const l = fresh();
    if (!PUBLIC_KINDS.has(c.kind)) {
      const behind = c.kind === 'shared' ? 'carrier-grade NAT (the ISP)' : 'another NAT (e.g. a home router)';
      const seen = l ? `; STUN server ${l.server} sees ${l.address}` : '';
      return {
        doubleNat: 'yes',
        why: `the WAN address ${address} is ${c.kind} (${c.block}): this gateway is behind ${behind}${seen}`,
      };
    }
    const label = c.kind === 'documentation' ? `documentation (${c.block}), counted as public` : 'public';
    if (l) {
      if (l.address === address)
        return { doubleNat: 'no', why: `STUN server ${l.server} sees the WAN address ${address} itself` };
      return {
        doubleNat: 'yes',
        why:
          `the WAN address ${address} is ${label}, but STUN server ${l.server} sees ${l.address}: ` +
          'another NAT is in front',
      };
    }
    if (!opts.stunEnabled)
      return {
        doubleNat: 'no',
        why: `the WAN address ${address} is ${label} (not confirmed: no STUN servers configured)`,
      };
    return {
      doubleNat: 'unknown',
      why:
        `the WAN address ${address} is ${label}, and no STUN server has answered for it` +
        (lastError ? ` (${lastError})` : ''),
    };
  }

  function reported(): { address: string; because: string } {
    if (upstream) return { address: upstream, because: 'upstream chaining holds our mappings on the upstream NAT' };
    return { address: address ?? '0.0.0.0', because: 'the WAN address: the mappings are there' };
  }

  function snapshot(): WanStatusSnapshot {
    const c = address ? classifyAddress(address) : null;
    const l = fresh();
    const v = verdict();
    const r = reported();
    return {
      address,
      kind: c?.kind ?? null,
      block: c?.block ?? null,
      stun: {
        enabled: opts.stunEnabled,
        publicAddress: l?.address ?? null,
        publicPort: l?.port ?? null,
        server: l?.server ?? null,
        learnedAt: l?.at ?? null,
        checkedAt,
        lastError,
      },
      upstreamAddress: upstream,
      doubleNat: v.doubleNat,
      why: v.why,
      reportedAddress: r.address,
      reportedBecause: r.because,
    };
  }

  function changed(): void {
    const s = snapshot();
    if (s.doubleNat === lastVerdict) return;
    const first = lastVerdict === null;
    lastVerdict = s.doubleNat;
    // one line per change of the verdict, the first one included: an operator greps for it
    const line = { doubleNat: s.doubleNat, why: s.why, wan: s.address, kind: s.kind, stun: s.stun.publicAddress };
    if (s.doubleNat === 'yes') log.warn(line, first ? 'double NAT detected' : 'double NAT state changed');
    else log.info(line, first ? 'double NAT check' : 'double NAT state changed');
    for (const fn of listeners) fn(s);
  }

  return {
    setWanAddress(a) {
      if (a === address) return;
      address = a;
      changed();
    },
    stunLearned(l) {
      learned = { ...l, at: opts.clock.now(), forWan: address };
      checkedAt = learned.at;
      lastError = null;
      changed();
    },
    stunFailed(error) {
      checkedAt = opts.clock.now();
      lastError = error;
      changed();
    },
    setUpstreamAddress(a) {
      if (a === upstream) return;
      upstream = a;
      log.info({ upstream: a, reported: reported().address }, 'upstream public address changed');
      changed();
    },
    reportedAddress: () => reported().address,
    snapshot,
    onChange(fn) {
      listeners.push(fn);
    },
  };
}
