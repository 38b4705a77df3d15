/**
 * `portd doctor`: the facts read from the gateway once (gather.ts) and the checks' results (checks.ts).
 * Checks are pure functions of these facts, so each one is unit-tested with fixed inputs.
 */
import type { CapabilitySets } from '../capabilities.js';
import type { Config } from '../config/types.js';
import type { LocalSocket } from '../dataplane/local-ports.js';

/**
 * ok: nothing to do; info: worth knowing, nothing wrong; warn: works, but should be fixed;
 * fail: portd cannot work as configured
 */
export type CheckStatus = 'ok' | 'info' | 'warn' | 'fail';

export interface CheckResult {
  /** stable identifier (`forwarding`, `wan-address`, `firewall-forward`, ...) */
  readonly id: string;
  readonly status: CheckStatus;
  /** what was found */
  readonly message: string;
  /** what to do; null when nothing */
  readonly fix: string | null;
}

/** a command's outcome; error: it could not be run at all (not installed) */
export interface CommandFact {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly error?: string;
}

export interface PathFact {
  readonly path: string;
  readonly exists: boolean;
  readonly isDirectory?: boolean;
  /** permission bits, e.g. 0o600 */
  readonly mode?: number;
  readonly uid?: number;
  /** access(2) W_OK (and X_OK for a directory) for the user running doctor */
  readonly writable?: boolean;
}

export interface DoctorFacts {
  readonly configPath: string;
  readonly config: Config;
  /** /proc/sys values as read (trimmed), null when absent */
  readonly sysctl: {
    readonly ipv4Forward: string | null;
    readonly ipv6Forward: string | null;
    readonly rpFilterAll: string | null;
    readonly rpFilterWan: string | null;
    readonly conntrackCount: string | null;
    readonly conntrackMax: string | null;
  };
  /** the WAN interface's global IPv4 addresses, or why they could not be read (no such interface) */
  readonly wan: { readonly addresses: readonly string[] } | { readonly error: string };
  /** IPv4 addresses of each interfaces.lan entry (missing interface: empty) */
  readonly lanAddresses: Readonly<Record<string, readonly string[]>>;
  /** `nft -j list ruleset`, parsed; or why not */
  readonly ruleset: { readonly json: unknown } | { readonly error: string };
  readonly nftVersion: CommandFact;
  /** `nft -c -f -` of portd's table structure: does this nft and kernel accept what portd writes? */
  readonly nftCheck: CommandFact | null;
  readonly conntrackVersion: CommandFact;
  /** true: the nf_tables netlink socket opened; a string: why not */
  readonly netlink: true | string;
  readonly kernel: string | null;
  /** this process's capabilities (null: unreadable) */
  readonly capabilities: CapabilitySets | null;
  readonly euid: number;
  /** `iptables -V` and `iptables -S FORWARD`; null when iptables is not installed */
  readonly iptables: { readonly version: string; readonly forward: CommandFact } | null;
  readonly files: {
    readonly databaseDir: PathFact;
    readonly database: PathFact;
    readonly wal: PathFact;
    readonly stateDir: PathFact;
    /** the nearest existing ancestor of stateDir / the database directory, when they are missing */
    readonly stateParent: PathFact | null;
    readonly databaseParent: PathFact | null;
    readonly adminToken: PathFact;
  };
  /** `<database>.lock`: the pid in it, whether that process lives, and its capabilities */
  readonly lock: {
    readonly pid: number | null;
    readonly alive: boolean;
    readonly capabilities: CapabilitySets | null;
  } | null;
  /** sockets accepting new traffic now (/proc/net/{tcp,udp}{,6}); null when unreadable */
  readonly sockets: readonly LocalSocket[] | null;
  /**
   * one STUN check from the WAN address (stun.servers; docs/double-nat.md): what a server saw, or why nothing;
   * null or absent when no servers are configured
   */
  readonly stun?:
    | { readonly ok: true; readonly server: string; readonly address: string; readonly port: number }
    | { readonly ok: false; readonly error: string }
    | null;
  /** GET /api/v1/status of a running portd (admin.listen); null when not tried */
  readonly daemon:
    | { readonly reachable: false; readonly error: string }
    | { readonly reachable: true; readonly httpStatus: number; readonly body: unknown }
    | null;
}
