/**
 * `upstream`: chaining each lease to the NAT the gateway sits behind (docs/double-nat.md, "Chaining upstream").
 *
 *   upstream: { mode: off | auto | pcp | natpmp | upnp, server: <IPv4 address> | null,
 *               timeout: 1500, probeInterval: 60 }
 */
import { joinPath, show, type Issues } from './errors.js';
import { int, oneOf, section } from './check.js';
import { isUsableIPv4Host } from '../common/net.js';

export const UPSTREAM_MODES = ['off', 'auto', 'pcp', 'natpmp', 'upnp'] as const;
export type UpstreamMode = (typeof UPSTREAM_MODES)[number];

export interface UpstreamConfig {
  /** off (default): no chaining; auto: the first of PCP, NAT-PMP, UPnP IGD that answers on the WAN side */
  readonly mode: UpstreamMode;
  /**
   * PCP / NAT-PMP: the server's IPv4 address (null: the WAN's default gateway, RFC 6887 §8.1); UPnP: the IGD's
   * address, whose description is found by SSDP on the WAN interface (null: the first IGD that answers)
   */
  readonly server: string | null;
  /** ms a client's answer waits for the upstream round trip; past it the client is told to try later */
  readonly timeout: number;
  /** seconds between checks that the upstream still holds our mappings (epoch, restart) */
  readonly probeInterval: number;
}

export const UPSTREAM_DEFAULTS: UpstreamConfig = { mode: 'off', server: null, timeout: 1500, probeInterval: 60 };

export function readUpstream(v: unknown, issues: Issues): UpstreamConfig {
  const d = UPSTREAM_DEFAULTS;
  const u = section(v, 'upstream', ['mode', 'server', 'timeout', 'probeInterval'], issues);
  const mode = oneOf(u, 'mode', 'upstream', d.mode, UPSTREAM_MODES, issues);
  let server: string | null = d.server;
  const s = u['server'];
  if (s !== undefined && s !== null) {
    if (typeof s === 'string' && isUsableIPv4Host(s)) server = s;
    else
      issues.add(
        joinPath('upstream', 'server'),
        `must be null (the WAN's default gateway) or an IPv4 address, got ${show(s)}`,
      );
  }
  const timeout = int(u, 'timeout', 'upstream', d.timeout, { min: 100, max: 10_000 }, issues);
  const probeInterval = int(u, 'probeInterval', 'upstream', d.probeInterval, { min: 1, max: 3600 }, issues);
  return { mode, server, timeout, probeInterval };
}
