import { isIPv4 } from 'node:net';
import type { StaticForwardConfig } from './types.js';
import { type Issues, joinPath, show } from './errors.js';
import { type Raw, parseAt, section, suggest } from './check.js';
import { formatPortRange, rangesOverlap } from '../common/port-range.js';
import { parsePortRange, reservedIn } from './ports.js';
import { isUsableIPv4Host } from '../common/net.js';
import { canonicalIPv6, classifyIPv6, isPinholeTarget, parseIPv6, type IPv6Kind } from '../common/ipv6.js';

export const STATIC_FORWARD_KEYS = ['protocol', 'externalPort', 'internal', 'remoteHost', 'description'] as const;

/**
 * Reads one static forward:
 *   { protocol: tcp|udp|both, externalPort: 8443 | "8000-8010", internal: "192.168.1.20:443" | "192.168.1.20",
 *     remoteHost?: "203.0.113.7", description?: "nas" }
 * A range maps 1:1 onto the internal port range starting at the internal port (or the same ports
 * when the internal port is left out). `both` yields one forward per protocol.
 *
 * An IPv6 internal address in brackets is a static pinhole (issue 15): no translation, so the port is the
 * host's own and externalPort is optional (it may give a range, starting at the internal port if both are
 * written): { protocol: tcp, internal: "[2001:db8:77::10]:443", remoteHost?: "2001:db8:113::7" }.
 */
export function readStaticForward(
  obj: unknown,
  path: string,
  reservedPorts: readonly number[],
  issues: Issues,
): StaticForwardConfig[] {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    issues.add(
      path,
      `must be a mapping like { protocol: tcp, externalPort: 8443, internal: "192.168.1.20:443" }, got ${show(obj)}`,
    );
    return [];
  }
  const before = issues.count;
  const raw: Raw = section(obj, path, STATIC_FORWARD_KEYS, issues);

  const pp = joinPath(path, 'protocol');
  const proto = raw['protocol'];
  let protocols: ('tcp' | 'udp')[] = [];
  if (proto === undefined) issues.add(pp, 'is required: tcp, udp or both');
  else if (proto === 'tcp' || proto === 'udp') protocols = [proto];
  else if (proto === 'both') protocols = ['tcp', 'udp'];
  else {
    const s = typeof proto === 'string' ? suggest(proto.toLowerCase(), ['tcp', 'udp', 'both']) : null;
    issues.add(
      pp,
      `must be one of tcp, udp, both, got ${show(proto)}${s && s !== proto ? ` (did you mean ${s}?)` : ''}`,
    );
  }

  const ep = joinPath(path, 'externalPort');
  const internal = raw['internal'];
  // a bracketed IPv6 address: a pinhole, no translation (readPinholeTarget)
  const v6 = typeof internal === 'string' && internal.trim().startsWith('[');
  let ext =
    raw['externalPort'] === undefined
      ? v6
        ? null
        : issues.required(ep, 'is required: a port like 8443 or a range like "8000-8010"')
      : parseAt(ep, issues, () => parsePortRange(raw['externalPort']));
  // policy.reservedPorts are the gateway's own ports: a pinhole opens a port of the LAN host instead
  if (ext && !v6) {
    const reserved = reservedIn(ext, reservedPorts);
    if (reserved.length > 0) {
      issues.add(
        ep,
        `${formatPortRange(ext)} includes reserved port${reserved.length > 1 ? 's' : ''} ${reserved.join(', ')} ` +
          `(policy.reservedPorts; remove ${reserved.length > 1 ? 'them' : 'it'} there to forward ` +
          `${reserved.length > 1 ? 'them' : 'it'})`,
      );
    }
  }

  const ip = joinPath(path, 'internal');
  let internalAddress = '';
  let internalPort = ext?.start ?? 0;
  if (internal === undefined) issues.add(ip, 'is required: "192.168.1.20:443" or "192.168.1.20" (same port)');
  else if (v6) {
    const t = readPinholeTarget(internal as string, ip, ext ?? null, issues);
    if (t) {
      internalAddress = t.address;
      ext = t.ports;
      internalPort = t.ports.start;
    }
  } else if (typeof internal === 'string' && (internal.match(/:/g)?.length ?? 0) >= 2) {
    issues.add(ip, `an IPv6 address goes in brackets (a static pinhole): "[${internal.trim()}]" or "[address]:443"`);
  } else {
    const m = typeof internal === 'string' ? /^(\d+\.\d+\.\d+\.\d+)(?::(\d{1,5}))?$/.exec(internal.trim()) : null;
    if (!m || !isIPv4(m[1]!)) {
      issues.add(ip, `must be "address:port" or "address" (same port) with an IPv4 LAN address, got ${show(internal)}`);
    } else if (!isUsableIPv4Host(m[1]!)) {
      issues.add(ip, `must be a unicast IPv4 host address, got ${show(m[1])}`);
    } else {
      internalAddress = m[1]!;
      if (m[2] !== undefined) {
        const port = Number(m[2]);
        if (port < 1 || port > 65535) issues.add(ip, `port must be between 1 and 65535, got ${port}`);
        else {
          internalPort = port;
          if (ext && port + (ext.end - ext.start) > 65535) {
            issues.add(
              ip,
              `the range ${formatPortRange(ext)} maps 1:1 onto ${port}-${port + ext.end - ext.start}, past port 65535`,
            );
          }
        }
      }
    }
  }

  let remoteAddress: string | null = null;
  const rh = raw['remoteHost'];
  if (v6 && rh !== undefined && rh !== null && rh !== '') {
    const a = typeof rh === 'string' ? canonicalIPv6(rh) : null;
    const kind = a === null ? null : classifyIPv6(parseIPv6(a)!);
    if (a === null || kind === 'multicast' || kind === 'unspecified')
      issues.add(
        joinPath(path, 'remoteHost'),
        `must be an IPv6 host address (a pinhole's only peer; the internal address is IPv6) or null, got ${show(rh)}`,
      );
    else remoteAddress = a;
  } else if (rh !== undefined && rh !== null && rh !== '') {
    if (typeof rh !== 'string' || !isIPv4(rh) || !isUsableIPv4Host(rh))
      issues.add(
        joinPath(path, 'remoteHost'),
        `must be an IPv4 host address (only that peer may use the forward) or null, got ${show(rh)}`,
      );
    else remoteAddress = rh;
  }

  let description = '';
  const d = raw['description'];
  if (d !== undefined && d !== null) {
    if (typeof d !== 'string') issues.add(joinPath(path, 'description'), `must be a string, got ${show(d)}`);
    else if (d.length > 256)
      issues.add(joinPath(path, 'description'), `must be at most 256 characters, got ${d.length}`);
    else description = d;
  }

  if (issues.count > before || !ext) return [];
  return protocols.map((protocol) => ({
    ...(v6 ? { family: 6 as const } : {}),
    protocol,
    externalPort: ext.start,
    externalPortEnd: ext.end,
    internalAddress,
    internalPort,
    remoteAddress,
    description,
  }));
}

/** reports forwards that claim the same external ports (per protocol) */
export function checkStaticOverlaps(
  forwards: readonly { fwd: StaticForwardConfig; path: string }[],
  issues: Issues,
): void {
  for (let i = 0; i < forwards.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = forwards[i]!;
      const b = forwards[j]!;
      if (a.path === b.path) continue; // the two halves of a `both`
      if (a.fwd.protocol !== b.fwd.protocol) continue;
      // pinholes share no external port: they overlap only on one host's ports for the same remote peer
      if ((a.fwd.family ?? 4) !== (b.fwd.family ?? 4)) continue;
      if (
        a.fwd.family === 6 &&
        (a.fwd.internalAddress !== b.fwd.internalAddress || a.fwd.remoteAddress !== b.fwd.remoteAddress)
      )
        continue;
      const ra = { start: a.fwd.externalPort, end: a.fwd.externalPortEnd };
      const rb = { start: b.fwd.externalPort, end: b.fwd.externalPortEnd };
      if (rangesOverlap(ra, rb)) {
        issues.add(
          joinPath(a.path, 'externalPort'),
          `${a.fwd.protocol} ${formatPortRange(ra)} overlaps ${b.fwd.protocol} ${formatPortRange(rb)} of ${b.path}`,
        );
      }
    }
  }
}

/** why an IPv6 address of this kind cannot be a pinhole's target */
const NOT_A_TARGET: Partial<Record<IPv6Kind, string>> = {
  'link-local': 'link-local: routers do not forward it, so no WAN peer can reach it (RFC 4291 §2.5.6)',
  multicast: 'multicast: a pinhole opens a port of one host',
  loopback: 'the loopback address: not a LAN host',
  unspecified: 'the unspecified address: not a LAN host',
  'ipv4-mapped': 'IPv4-mapped: write the IPv4 address for a forward instead',
};

/**
 * `[address]` or `[address]:port` of a static pinhole: a global or unique-local unicast address (canonical),
 * and its ports: the internal port, or externalPort's range when the port is left out (or equal to its start).
 */
function readPinholeTarget(
  text: string,
  ip: string,
  ext: { start: number; end: number } | null,
  issues: Issues,
): { address: string; ports: { start: number; end: number } } | null {
  const m = /^\[([^\]]*)\](?::(\d{1,5}))?$/.exec(text.trim());
  if (!m) {
    issues.add(ip, `must be "[IPv6 address]:port" or "[IPv6 address]" (the ports of externalPort), got ${show(text)}`);
    return null;
  }
  const address = canonicalIPv6(m[1]!);
  if (address === null) {
    issues.add(ip, `${show(m[1])} is not an IPv6 address (a static pinhole needs a LAN host's global address)`);
    return null;
  }
  if (!isPinholeTarget(address)) {
    const why = NOT_A_TARGET[classifyIPv6(parseIPv6(address)!)] ?? 'not a unicast host address';
    issues.add(ip, `${address} is ${why}; a static pinhole needs a global or unique-local address of a LAN host`);
    return null;
  }
  if (m[2] === undefined) {
    if (!ext) {
      issues.add(ip, `needs a port: "[${address}]:443", or give externalPort (a port or a range)`);
      return null;
    }
    return { address, ports: ext };
  }
  const port = Number(m[2]);
  if (port < 1 || port > 65535) {
    issues.add(ip, `port must be between 1 and 65535, got ${port}`);
    return null;
  }
  if (ext && ext.start !== port) {
    issues.add(
      ip,
      `a pinhole has no translation: its port ${port} must equal externalPort ${formatPortRange(ext)}'s start, ` +
        'or leave one of them out',
    );
    return null;
  }
  return { address, ports: ext ?? { start: port, end: port } };
}
