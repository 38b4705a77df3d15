/**
 * Linux capabilities of this process, read from /proc/self/status (no native module, no libcap).
 * portd needs CAP_NET_ADMIN in its effective set to write nftables over netlink, and in its ambient
 * set when it runs as a user other than root, so that the `nft` and `conntrack` it starts have it too
 * (capabilities(7): a non-root execve keeps only the ambient set).
 */
import { readFileSync } from 'node:fs';

/** bit numbers from linux/capability.h */
export const Capability = {
  NET_BIND_SERVICE: 10,
  NET_ADMIN: 12,
  NET_RAW: 13,
} as const;
export type CapabilityName = keyof typeof Capability;

export interface CapabilitySets {
  readonly effective: bigint;
  readonly permitted: bigint;
  readonly inheritable: bigint;
  readonly bounding: bigint;
  readonly ambient: bigint;
  /** effective user id (Uid: line, second field) */
  readonly euid: number;
}

const FIELDS = {
  CapEff: 'effective',
  CapPrm: 'permitted',
  CapInh: 'inheritable',
  CapBnd: 'bounding',
  CapAmb: 'ambient',
} as const;

/** Parses the Cap*: and Uid: lines of a /proc/<pid>/status text; null when a line is missing or not hex. */
export function parseCapabilities(statusText: string): CapabilitySets | null {
  const sets: Record<string, bigint> = {};
  let euid: number | undefined;
  for (const line of statusText.split('\n')) {
    const m = /^(\w+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const [, key, value] = m as unknown as [string, string, string];
    if (key in FIELDS) {
      if (!/^[0-9a-fA-F]{1,16}$/.test(value.trim())) return null;
      sets[FIELDS[key as keyof typeof FIELDS]] = BigInt(`0x${value.trim()}`);
    } else if (key === 'Uid') {
      const e = Number(value.trim().split(/\s+/)[1]);
      if (Number.isInteger(e) && e >= 0) euid = e;
    }
  }
  const { effective, permitted, inheritable, bounding, ambient } = sets;
  if (
    effective === undefined ||
    permitted === undefined ||
    inheritable === undefined ||
    bounding === undefined ||
    euid === undefined
  ) {
    return null;
  }
  // CapAmb exists since Linux 4.3; older kernels have no ambient set
  return { effective, permitted, inheritable, bounding, ambient: ambient ?? 0n, euid };
}

export function readCapabilities(path = '/proc/self/status'): CapabilitySets | null {
  try {
    return parseCapabilities(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

export function hasCapability(set: bigint, cap: CapabilityName): boolean {
  return ((set >> BigInt(Capability[cap])) & 1n) === 1n;
}

export type NetAdminCheck =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly problem: 'not_effective' | 'not_ambient' | 'unknown';
      readonly message: string;
      readonly hint: string;
    };

/**
 * May this process (and the nft/conntrack children it starts) change nftables?
 * root keeps its capabilities across execve, so only the effective set matters for it.
 */
export function checkNetAdmin(sets: CapabilitySets | null): NetAdminCheck {
  if (!sets) {
    return {
      ok: false,
      problem: 'unknown',
      message: 'cannot read /proc/self/status to check CAP_NET_ADMIN',
      hint: 'mount /proc (portd needs it), or run as root',
    };
  }
  if (!hasCapability(sets.effective, 'NET_ADMIN')) {
    return {
      ok: false,
      problem: 'not_effective',
      message: 'CAP_NET_ADMIN is missing: portd cannot change nftables',
      hint:
        'start portd through its systemd unit (AmbientCapabilities=CAP_NET_ADMIN), or as root, or with setpriv ' +
        '--inh-caps +net_admin --ambient-caps +net_admin; dataplane.driver: memory needs none',
    };
  }
  if (sets.euid !== 0 && !hasCapability(sets.ambient, 'NET_ADMIN')) {
    return {
      ok: false,
      problem: 'not_ambient',
      message: 'CAP_NET_ADMIN is effective but not ambient: the nft and conntrack that portd starts would not have it',
      hint:
        'grant it as an ambient capability (systemd AmbientCapabilities=CAP_NET_ADMIN, or setpriv --inh-caps ' +
        '+net_admin --ambient-caps +net_admin), or run as root',
    };
  }
  return { ok: true };
}
