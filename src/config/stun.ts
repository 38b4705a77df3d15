/**
 * `stun:` — optional STUN (RFC 8489) checks of the gateway's public address (docs/double-nat.md). No servers
 * (the default) means no STUN traffic at all.
 */
import { isIP } from 'node:net';
import { int, list, section, type Raw } from './check.js';
import type { Issues } from './errors.js';
import { show } from './errors.js';
import type { StunConfig } from './types.js';

export const STUN_DEFAULTS: StunConfig = {
  servers: [],
  interval: 300,
  rto: 500,
  transmissions: 7,
};

const HOST =
  /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

/** "host:port", "host" (port 3478, RFC 8489 §9) or "[v6]:port" is refused: the check is about the IPv4 WAN */
export function parseStunServer(v: unknown): { host: string; port: number } | null {
  if (typeof v !== 'string') return null;
  const m = /^([^:\s]+)(?::(\d{1,5}))?$/.exec(v.trim());
  if (!m) return null;
  const host = m[1]!;
  const port = m[2] === undefined ? 3478 : Number(m[2]);
  if (port < 1 || port > 65535) return null;
  if (isIP(host) === 4 || (isIP(host) === 0 && HOST.test(host) && !/^\d+(\.\d+)*$/.test(host))) return { host, port };
  return null;
}

export function readStun(raw: unknown, issues: Issues): StunConfig {
  const s: Raw = section(raw, 'stun', ['servers', 'interval', 'rto', 'transmissions'], issues);
  const d = STUN_DEFAULTS;
  const servers: string[] = [];
  list(s, 'servers', 'stun', issues, 'STUN servers like "stun.example.net:3478"')?.forEach((v, i) => {
    const p = parseStunServer(v);
    if (!p) issues.add(`stun.servers[${i}]`, `must be "host:port" (an IPv4 address or a host name), got ${show(v)}`);
    else if (servers.includes(`${p.host}:${p.port}`)) issues.add(`stun.servers[${i}]`, `${show(v)} is listed twice`);
    else servers.push(`${p.host}:${p.port}`);
  });
  if (servers.length > 8) issues.add('stun.servers', `at most 8 servers (tried in order), got ${servers.length}`);
  return {
    servers,
    // seconds between checks; a WAN address change checks at once as well
    interval: int(s, 'interval', 'stun', d.interval, { min: 10, max: 86400 }, issues),
    // RFC 8489 §6.2.1: the initial retransmission timeout (ms, doubled each time) and Rc, the requests sent at most
    rto: int(s, 'rto', 'stun', d.rto, { min: 10, max: 10000 }, issues),
    transmissions: int(s, 'transmissions', 'stun', d.transmissions, { min: 1, max: 10 }, issues),
  };
}
