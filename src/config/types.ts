import type { UpstreamConfig } from './upstream.js';
/** The effective configuration, frozen after load. Keys match config/router.example.yaml. */
import type { PortRange } from '../common/net-types.js';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface LifetimeBounds {
  readonly min: number;
  readonly max: number;
}

export interface PolicyRule {
  readonly action: 'allow' | 'deny';
  /** external port range */
  readonly extStart: number;
  readonly extEnd: number;
  /** internal address prefix */
  readonly address: string;
  readonly prefix: number;
  /** internal port range */
  readonly intStart: number;
  readonly intEnd: number;
  /** the rule as written, for logs */
  readonly text: string;
}

export interface PolicyConfig {
  readonly secureMode: boolean;
  /** may UPnP and PCP clients open IPv6 pinholes? (static pinholes are the admin's, always) */
  readonly ipv6Pinholes: boolean;
  readonly maxLeasesPerClient: number;
  readonly reservedPorts: readonly number[];
  readonly lifetime: {
    readonly pcp: LifetimeBounds;
    readonly natpmp: LifetimeBounds;
    readonly upnp: { readonly min: number; readonly max: number };
    readonly trigger: { readonly min: number; readonly max: number };
  };
  readonly rules: readonly PolicyRule[];
  /** ended leases are kept this many seconds for the admin's history */
  readonly historyRetention: number;
  /**
   * never hand out an external port on which a process of the gateway listens (WAN address or wildcard); the config
   * always sets it, hand-built test policies may leave it out (off)
   */
  readonly checkPortInUse?: boolean;
}

export interface StaticForwardConfig {
  /** 6: an IPv6 pinhole (internalAddress canonical, externalPort..End = the internal ports); absent = 4 */
  readonly family?: 4 | 6;
  readonly protocol: 'tcp' | 'udp';
  readonly externalPort: number;
  readonly externalPortEnd: number;
  readonly internalAddress: string;
  readonly internalPort: number;
  readonly remoteAddress: string | null;
  readonly description: string;
}

export interface TriggerConfig {
  readonly name: string;
  readonly preset: string | null;
  readonly match: { readonly protocol: 'tcp' | 'udp' | 'both'; readonly ports: readonly PortRange[] };
  readonly open: readonly { readonly protocol: 'tcp' | 'udp'; readonly ports: PortRange }[];
  readonly idleTimeout: number;
  readonly maxLifetime: number | null;
  readonly hosts: readonly string[];
  readonly enabled: boolean;
}

export interface Config {
  readonly logLevel: LogLevel;
  readonly interfaces: { readonly wan: string; readonly lan: readonly string[] };
  /** 'auto' = read from the WAN interface; otherwise a fixed IPv4 */
  readonly externalAddress: string;
  /**
   * when set, front-ends listen on these addresses instead of those read from interfaces.lan (loopback default uses
   * 127.0.0.1)
   */
  readonly listenAddresses: readonly string[] | null;
  readonly stateDir: string;
  /**
   * PCP MAPs (and as many UPnP AddPortMapping) run against scratch state before `portd ready`, so the first clients
   * meet compiled code (src/warmup.ts); 0 = none (the default: it did not pay on the bench)
   */
  readonly warmup: number;
  readonly database: {
    readonly path: string;
    readonly synchronous: 'normal' | 'full';
    /** sqlite (the embedded default, `path`) or postgres (`url`; src/leases/pg/storage.ts, issue 18 item 2) */
    readonly driver: 'sqlite' | 'postgres';
    /** the PostgreSQL connection string; null with the sqlite driver */
    readonly url: string | null;
  };
  readonly dataplane: {
    readonly driver: 'nftables' | 'memory';
    readonly table: string;
    readonly hairpin: boolean;
    readonly reconcileInterval: number;
    /** seconds added to each kernel element timeout beyond the lease's expiry */
    readonly grace: number;
    readonly nftPath: string;
    /** write ticks' set elements over an in-process nf_tables netlink socket (false: everything through nft) */
    readonly netlink: boolean;
    readonly conntrackPath: string;
  };
  readonly policy: PolicyConfig;
  readonly upnp: {
    readonly enabled: boolean;
    readonly httpPort: number;
    readonly ssdp: boolean;
    readonly friendlyName: string;
    readonly manufacturer: string;
    readonly modelName: string;
    readonly notifyInterval: number;
    /** delay search answers randomly within the search's MX (UDA 1.1 §1.3.3); false = answer at once */
    readonly ssdpMxDelay: boolean;
    readonly listAllLeases: boolean;
    readonly maxSubscriptions: number;
    /** SOAP/GENA requests per second per client address (bursts of 4x); 0 = no limit */
    readonly rateLimit: number;
    /** also on the LAN's global and unique-local IPv6 addresses (SSDP on ff02::c and ff05::c) */
    readonly ipv6: boolean;
  };
  readonly pcp: {
    readonly enabled: boolean;
    readonly port: number;
    readonly peer: boolean;
    readonly thirdParty: readonly string[];
    readonly allowAllProtocols: boolean;
    readonly rateLimit: number;
    readonly ipv6: boolean;
  };
  readonly natpmp: { readonly enabled: boolean };
  readonly admin: {
    readonly listen: string;
    readonly token: string | null;
    readonly tokenFile: string | null;
    /**
     * more host names the admin API answers to (Host / Origin checks); optional so hand-built test configs may leave it
     * out
     */
    readonly allowedHosts?: readonly string[];
  };
  readonly limits: LimitsConfig;
  /** STUN checks of the public address (docs/double-nat.md); optional so hand-built test configs may leave it out */
  readonly stun?: StunConfig;
  /** the HA pair (src/config/ha.ts, docs/ha.md); optional so hand-built test configs may leave it out (= off) */
  readonly ha?: HaConfig;
  readonly staticForwards: readonly StaticForwardConfig[];
  readonly triggers: readonly TriggerConfig[];
  /** chaining leases to the NAT the gateway sits behind (src/config/upstream.ts); absent in hand-built configs = off */
  readonly upstream?: UpstreamConfig;
}

export interface StunConfig {
  /** "host:port" of each server, tried in order; empty: no STUN traffic */
  readonly servers: readonly string[];
  /** seconds between checks */
  readonly interval: number;
  /** RFC 8489 §6.2.1 initial retransmission timeout, ms */
  readonly rto: number;
  /** RFC 8489 §6.2.1 Rc: Binding requests sent at most per server and check */
  readonly transmissions: number;
}

/** global limits beside the per-client ones (0 = no limit): spoofed source addresses cannot multiply these */
export interface LimitsConfig {
  /** active dynamic leases (upnp, pcp, natpmp, trigger) across all clients; static forwards are not counted */
  readonly maxActiveLeases: number;
  /** ended leases kept for the history (the oldest go first; policy.historyRetention still applies) */
  readonly maxEndedLeases: number;
  /** history entries kept per lease (its first, then the latest) */
  readonly historyPerLease: number;
  /** PCP + NAT-PMP requests per second from all clients together (bursts of 2x) */
  readonly pcpRequestsPerSecond: number;
  /** UPnP SOAP control and GENA requests per second from all clients together (bursts of 2x) */
  readonly soapRequestsPerSecond: number;
  /** SSDP searches answered per second from all sources together (bursts of 2x) */
  readonly ssdpSearchesPerSecond: number;
  /** PCP PEER conntrack lookups per second from all clients together */
  readonly peerLookupsPerSecond: number;
}

/** `ha:` (src/config/ha.ts, docs/ha.md) */
export interface HaConfig {
  readonly enabled: boolean;
  /** this node's name, stored as the fence's holder */
  readonly node: string | null;
  /** keepalived's notify_fifo (global_defs) and the vrrp_instance whose state portd follows */
  readonly keepalived: { readonly fifo: string; readonly instance: string };
  /** ms one takeover try waits for the old writer's transaction in flight */
  readonly lockTimeout: number;
  /** ms the server lets a writer session sit idle inside a transaction before ending it (bounds a takeover) */
  readonly idleInTransactionTimeout: number;
}
