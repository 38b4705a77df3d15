/**
 * Trigger rules: validated the same way whether they come from the config file or the admin API
 * (`validateTrigger(body, 'body', triggerContext(config, otherRules))`).
 */
import type { PortRange } from '../common/net-types.js';
import type { LifetimeBounds, StaticForwardConfig, TriggerConfig } from './types.js';
import { type ConfigIssue, Issues, joinPath, show } from './errors.js';
import { type Raw, bool, describeInt, int, list, parseAt, section, suggest, checkStr } from './check.js';
import { externalPorts, formatPortRange, formatPortRanges, rangesOverlap } from '../common/port-range.js';
import { parsePortRanges, reservedIn } from './ports.js';
import { deepFreeze } from './freeze.js';
import { formatCidr, parseCidr } from '../common/net.js';
import { canonicalIPv6, formatIPv6, maskIPv6, parseIPv6 } from '../common/ipv6.js';
import { TRIGGER_PRESETS, TRIGGER_PRESET_NAMES } from './trigger-presets.js';
import { DEFAULTS } from './defaults.js';

export type ValidationResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly issues: readonly ConfigIssue[] };

export interface TriggerContext {
  /** policy.reservedPorts: no trigger may open these */
  readonly reservedPorts: readonly number[];
  /** policy.lifetime.trigger: idleTimeout and maxLifetime must fall inside */
  readonly lifetime: LifetimeBounds;
  /**
   * rules already in force (for an update, leave out the rule being replaced): names must differ, ranges must not
   * overlap
   */
  readonly existing?: readonly TriggerConfig[];
  /** static forwards in force: a trigger may not open their external ports */
  readonly staticForwards?: readonly StaticForwardConfig[];
}

export const TRIGGER_KEYS = [
  'name',
  'preset',
  'match',
  'open',
  'idleTimeout',
  'maxLifetime',
  'hosts',
  'enabled',
] as const;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;

type Proto = 'tcp' | 'udp';
const protosOf = (p: 'tcp' | 'udp' | 'both'): Proto[] => (p === 'both' ? ['tcp', 'udp'] : [p]);

function protocolAt(v: unknown, p: string, issues: Issues): 'tcp' | 'udp' | 'both' | undefined {
  if (v === 'tcp' || v === 'udp' || v === 'both') return v;
  const s = typeof v === 'string' ? suggest(v.toLowerCase(), ['tcp', 'udp', 'both']) : null;
  issues.add(p, `must be one of tcp, udp, both, got ${show(v)}${s && s !== v ? ` (did you mean ${s}?)` : ''}`);
  return undefined;
}

/** merges a preset under the rule as written: the rule's own keys win, `match` merges key by key */
function applyPreset(raw: Raw, path: string, issues: Issues): { merged: Raw; preset: string | null } {
  const name = raw['preset'];
  if (name === undefined || name === null) return { merged: raw, preset: null };
  // (the preset's idleTimeout is applied as a default by readTrigger, clamped to policy bounds)
  const p = joinPath(path, 'preset');
  if (typeof name !== 'string' || !(name in TRIGGER_PRESETS)) {
    const s = typeof name === 'string' ? suggest(name, TRIGGER_PRESET_NAMES) : null;
    issues.add(
      p,
      `must be one of the presets ${TRIGGER_PRESET_NAMES.join(', ')}, got ` +
        `${show(name)}${s ? ` (did you mean ${s}?)` : ''}`,
    );
    return { merged: raw, preset: null };
  }
  const preset = TRIGGER_PRESETS[name]!;
  const ownMatch = raw['match'];
  const match =
    ownMatch !== null && typeof ownMatch === 'object' && !Array.isArray(ownMatch)
      ? { ...preset.match, ...(ownMatch as Raw) }
      : (ownMatch ?? preset.match);
  return {
    merged: {
      name,
      ...raw,
      match,
      open: raw['open'] ?? preset.open.map((o) => ({ ...o })),
    },
    preset: name,
  };
}

/**
 * Validates one trigger rule. `path` prefixes every issue (`triggers[2]` in a file, `body` or ``
 * for the API). Overlaps are checked against `ctx.existing` and `ctx.staticForwards`.
 */
/**
 * `hosts`: IPv4 networks and, for IPv6 LAN hosts (issue 15), IPv6 addresses or prefixes; stored in canonical
 * text with a prefix (`192.168.1.0/24`, `2001:db8:77::/64`, `2001:db8:77::11/128`), so the kernel rule, the
 * API and the comparison with a firing host all read one spelling. Host bits beyond the prefix are refused
 * (a typo would silently widen the rule).
 */
function hostList(obj: Raw, path: string, issues: Issues): string[] {
  const out: string[] = [];
  const what = 'networks like 192.168.1.0/24 or 2001:db8:1::/64';
  list(obj, 'hosts', path, issues, what)?.forEach((v, i) => {
    const p = joinPath(joinPath(path, 'hosts'), i);
    if (typeof v !== 'string') {
      issues.add(p, `must be an IPv4 or IPv6 network like 192.168.1.0/24 or 2001:db8:1::/64, got ${show(v)}`);
      return;
    }
    const c = parseAt(p, issues, () => parseCidr(v));
    if (!c) return;
    if (c.family === 4) {
      out.push(formatCidr(c));
      return;
    }
    const b = parseIPv6(c.address);
    if (!b || canonicalIPv6(c.address) === null) {
      issues.add(p, `must be an IPv6 address or prefix like 2001:db8:1::/64, got ${show(v)}`);
      return;
    }
    const masked = formatIPv6(maskIPv6(b, c.prefix));
    if (masked !== formatIPv6(b)) {
      issues.add(p, `has host bits set beyond /${c.prefix}: did you mean ${masked}/${c.prefix}?`);
      return;
    }
    out.push(`${masked}/${c.prefix}`);
  });
  return out;
}

export function validateTrigger(obj: unknown, path: string, ctx: TriggerContext): ValidationResult<TriggerConfig> {
  const issues = new Issues();
  const value = readTrigger(obj, path, ctx, issues);
  if (issues.count > 0 || value === null) return { ok: false, issues: issues.list };
  return { ok: true, value: deepFreeze(value) };
}

/** the walk behind validateTrigger; records issues into a shared collector */
export function readTrigger(obj: unknown, path: string, ctx: TriggerContext, issues: Issues): TriggerConfig | null {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    issues.add(path, `must be a mapping with keys ${TRIGGER_KEYS.join(', ')}, got ${show(obj)}`);
    return null;
  }
  const before = issues.count;
  const { merged, preset } = applyPreset(section(obj, path, TRIGGER_KEYS, issues), path, issues);

  // name
  let name = '';
  if (merged['name'] === undefined)
    issues.add(joinPath(path, 'name'), 'is required (letters, digits, - and _, at most 32), or give a preset');
  else
    name = checkStr(
      merged['name'],
      joinPath(path, 'name'),
      '',
      { pattern: NAME, expected: 'must be 1-32 letters, digits, - or _, starting with a letter or digit' },
      issues,
    );
  if (name && ctx.existing?.some((t) => t.name === name))
    issues.add(joinPath(path, 'name'), `another trigger is already named ${show(name)}`);

  // match
  const mPath = joinPath(path, 'match');
  let match: TriggerConfig['match'] | null = null;
  if (merged['match'] === undefined) issues.add(mPath, 'is required: { protocol: tcp|udp|both, ports: "6112" }');
  else {
    const m = section(merged['match'], mPath, ['protocol', 'ports'], issues);
    const protocol =
      m['protocol'] === undefined
        ? issues.required(joinPath(mPath, 'protocol'), 'is required: tcp, udp or both')
        : protocolAt(m['protocol'], joinPath(mPath, 'protocol'), issues);
    const ports =
      m['ports'] === undefined
        ? issues.required(joinPath(mPath, 'ports'), 'is required: a port list like "6112,6120-6130"')
        : parseAt(joinPath(mPath, 'ports'), issues, () => parsePortRanges(m['ports']));
    if (protocol && ports) match = { protocol, ports };
  }

  // open
  const oPath = joinPath(path, 'open');
  const open: { protocol: Proto; ports: PortRange }[] = [];
  const openPaths: string[] = [];
  const rawOpen = merged['open'];
  if (rawOpen === undefined || rawOpen === null || (Array.isArray(rawOpen) && rawOpen.length === 0)) {
    issues.add(oPath, 'is required: a non-empty list like [{ protocol: tcp, ports: "6113-6119" }]');
  } else if (!Array.isArray(rawOpen)) {
    issues.add(oPath, `must be a list like [{ protocol: tcp, ports: "6113-6119" }], got ${show(rawOpen)}`);
  } else {
    rawOpen.forEach((entry, i) => {
      const ep = joinPath(oPath, i);
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
        issues.add(ep, `must be a mapping like { protocol: tcp, ports: "6113-6119" }, got ${show(entry)}`);
        return;
      }
      const e = section(entry, ep, ['protocol', 'ports'], issues);
      const protocol =
        e['protocol'] === undefined
          ? issues.required(joinPath(ep, 'protocol'), 'is required: tcp, udp or both')
          : protocolAt(e['protocol'], joinPath(ep, 'protocol'), issues);
      const ports =
        e['ports'] === undefined
          ? issues.required(joinPath(ep, 'ports'), 'is required: a port or range like "6113-6119"')
          : parseAt(joinPath(ep, 'ports'), issues, () => parsePortRanges(e['ports']));
      if (!protocol || !ports) return;
      for (const proto of protosOf(protocol)) {
        for (const r of ports) {
          const pp = joinPath(ep, 'ports');
          const reserved = reservedIn(r, ctx.reservedPorts);
          if (reserved.length > 0) {
            issues.add(
              pp,
              `${proto} ${formatPortRange(r)} includes reserved port${reserved.length > 1 ? 's' : ''} ` +
                `${reserved.join(', ')} (policy.reservedPorts)`,
            );
            continue;
          }
          const clash = open.findIndex((o) => o.protocol === proto && rangesOverlap(o.ports, r));
          if (clash >= 0) {
            issues.add(
              pp,
              `${proto} ${formatPortRange(r)} overlaps ${proto} ${formatPortRange(open[clash]!.ports)} at ` +
                `${openPaths[clash]} of the same rule`,
            );
            continue;
          }
          for (const other of ctx.existing ?? []) {
            const o = other.open.find((x) => x.protocol === proto && rangesOverlap(x.ports, r));
            if (o)
              issues.add(
                pp,
                `${proto} ${formatPortRange(r)} overlaps ${proto} ${formatPortRange(o.ports)} opened by trigger ` +
                  `${show(other.name)}: only one rule may open a port`,
              );
          }
          for (const sf of ctx.staticForwards ?? []) {
            // a pinhole (family 6) holds no external port a trigger could open
            if (
              sf.family !== 6 &&
              sf.protocol === proto &&
              rangesOverlap({ start: sf.externalPort, end: sf.externalPortEnd }, r)
            ) {
              issues.add(
                pp,
                `${proto} ${formatPortRange(r)} overlaps static forward ` +
                  `${proto} ${formatPortRange(externalPorts(sf))}` +
                  (sf.description ? ` (${show(sf.description)})` : ''),
              );
            }
          }
          open.push({ protocol: proto, ports: r });
          openPaths.push(ep);
        }
      }
    });
  }

  // a flow carries one trigger mark, so two rules may not match the same outbound port
  if (match) {
    for (const other of ctx.existing ?? []) {
      const shared = protosOf(match.protocol).filter((p) => protosOf(other.match.protocol).includes(p));
      if (shared.length === 0) continue;
      for (const r of match.ports) {
        const o = other.match.ports.find((x) => rangesOverlap(x, r));
        if (o)
          issues.add(
            joinPath(mPath, 'ports'),
            `${formatPortRange(r)} overlaps ${formatPortRange(o)} matched by trigger ${show(other.name)} ` +
              `(${shared.join('/')}): an outbound flow can fire only one rule`,
          );
      }
    }
  }

  // timing
  const lt = ctx.lifetime;
  // a default (600 s, or the preset's) is clamped into the policy bounds; a value written is checked
  const presetIdle = preset !== null ? TRIGGER_PRESETS[preset]?.idleTimeout : undefined;
  const defIdle = Math.min(Math.max(presetIdle ?? DEFAULTS.trigger.idleTimeout, lt.min), lt.max);
  const idleTimeout = int(merged, 'idleTimeout', path, defIdle, { min: lt.min, max: lt.max }, issues);
  let maxLifetime: number | null = null;
  if (merged['maxLifetime'] !== undefined && merged['maxLifetime'] !== null) {
    const v = merged['maxLifetime'];
    const lo = Math.max(idleTimeout, lt.min);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > lt.max) {
      issues.add(
        joinPath(path, 'maxLifetime'),
        `${describeInt({ min: lo, max: lt.max })} (≥ idleTimeout, ≤ policy.lifetime.trigger.max) or null, got ` +
          `${show(v)}`,
      );
    } else maxLifetime = v;
  }

  // hosts
  const hosts = hostList(merged, path, issues);

  const enabled = bool(merged, 'enabled', path, true, issues);
  if (issues.count > before || !match) return null;
  return { name, preset, match, open, idleTimeout, maxLifetime, hosts, enabled };
}

/** the context for validating API-created triggers against a loaded config and the rules in force */
export function triggerContext(
  config: {
    readonly policy: {
      readonly reservedPorts: readonly number[];
      readonly lifetime: { readonly trigger: LifetimeBounds };
    };
    readonly staticForwards: readonly StaticForwardConfig[];
  },
  existing: readonly TriggerConfig[] = [],
): TriggerContext {
  return {
    reservedPorts: config.policy.reservedPorts,
    lifetime: config.policy.lifetime.trigger,
    existing,
    staticForwards: config.staticForwards,
  };
}

/** the rule as a document (ports as text), as the config file and the API write it; stored as JSON for API rules */
export interface TriggerDocument {
  name: string;
  preset?: string;
  match: { protocol: 'tcp' | 'udp' | 'both'; ports: string };
  open: { protocol: 'tcp' | 'udp'; ports: string }[];
  idleTimeout: number;
  maxLifetime: number | null;
  hosts: string[];
  enabled: boolean;
}

export function triggerToDocument(t: TriggerConfig): TriggerDocument {
  return {
    name: t.name,
    ...(t.preset ? { preset: t.preset } : {}),
    match: { protocol: t.match.protocol, ports: formatPortRanges(t.match.ports) },
    open: t.open.map((o) => ({ protocol: o.protocol, ports: formatPortRange(o.ports) })),
    idleTimeout: t.idleTimeout,
    maxLifetime: t.maxLifetime,
    hosts: [...t.hosts],
    enabled: t.enabled,
  };
}
