/**
 * The narrow interface between port triggering (src/triggers) and the kernel: install the rules,
 * read per-host activity, mark a host active by hand, and the stream of new flows that fire a rule.
 * Implemented by the nftables driver (nftables-trigger-kernel.ts, conntrack-flows.ts) and in memory
 * (memory-triggers.ts); src/main.ts picks one and injects it, so triggers import no driver.
 */
import type { AddressFamily, L4Protocol, PortRange } from '../common/net-types.js';

/** rule ids are 1..TRIGGER_ID_MAX: they travel in 12 bits of the ct mark (nftables-triggers.ts) */
export const TRIGGER_ID_MAX = 0xfff;

/** one trigger rule as the kernel needs it */
export interface TriggerKernelRule {
  readonly name: string;
  /** 1..4095, carried in the ct mark of the flows that fire the rule */
  readonly id: number;
  readonly match: { readonly protocol: L4Protocol | 'both'; readonly ports: readonly PortRange[] };
  readonly open: readonly { readonly protocol: L4Protocol; readonly ports: PortRange }[];
  /** IPv4 and IPv6 networks (canonical text) allowed to fire the rule; empty = any LAN host */
  readonly hosts: readonly string[];
  /** seconds of silence after which a host counts as idle */
  readonly idleTimeout: number;
}

export interface TriggerKernel {
  /** for the log line only (`port triggering ready`); never branched on */
  readonly name: string;
  /**
   * Does the kernel mark a host active from its own packets (true for nftables: the `update @trig_*`
   * rules)? When false, every firing must call touch(), kernel-reported ones included.
   */
  readonly packetActivity: boolean;
  setRules(rules: readonly TriggerKernelRule[]): Promise<void>;
  /**
   * rule -> host -> ms left before the host counts as idle (null = no timeout), for the hosts of one
   * address family (default 4; 6: IPv6 hosts, canonical text). One read per rule and family.
   */
  activity(rules: readonly string[], family?: AddressFamily): Promise<Map<string, Map<string, number | null>>>;
  touch(rule: string, host: string, seconds: number): Promise<void>;
}

/** one new outbound flow that matched a trigger rule in the kernel */
export interface TriggerFlow {
  /** the rule id from the ct mark */
  readonly ruleId: number;
  readonly protocol: L4Protocol;
  /** the LAN host that opened the flow (IPv4, or IPv6 in canonical text) */
  readonly host: string;
  readonly dst: string;
  readonly dport: number;
  /** epoch ms the event was stamped (conntrack -o timestamp), else when it was read */
  readonly at: number;
}

export interface FlowSource {
  /** for the log line only */
  readonly kind: string;
  start(onFlow: (f: TriggerFlow) => void): void;
  stop(): Promise<void>;
  /** is it delivering (for status) */
  readonly running: boolean;
  /**
   * Forget the marked flows of a rule (of one host, or all when null) after its opening ended: a UDP
   * flow stays in conntrack for minutes, and a host that speaks again on it makes no NEW event, so it
   * could not fire again (nor could a host refused earlier). Deleting the entries makes the next
   * packet a new flow. Best effort.
   */
  forget?(ruleId: number, host: string | null): Promise<void>;
}
