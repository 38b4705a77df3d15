import type { PolicyRule } from './types.js';
import { ConfigValueError, show } from './errors.js';
import { formatPortRange } from '../common/port-range.js';
import { parsePortRange } from './ports.js';
import { parseCidr } from '../common/net.js';

/**
 * Parses a miniupnpd-style permission rule:
 *   `allow 1024-65535 192.168.0.0/24 1024-65535`
 *   `deny 0-65535 0.0.0.0/0 0-65535`
 * i.e. action, external port (range), internal address[/prefix or /mask], internal port (range).
 * A single port stands for itself; an address without prefix means that host (/32).
 */
export function parsePolicyRule(text: unknown): PolicyRule {
  const form =
    'must be a rule like "allow 1024-65535 192.168.0.0/24 1024-65535" (allow|deny, external ports, internal ' +
    'address/prefix, internal ports)';
  if (typeof text !== 'string') throw new ConfigValueError(`${form}, got ${show(text)}`);
  const words = text.trim().split(/\s+/);
  if (words.length !== 4)
    throw new ConfigValueError(`${form}, got ${words.length} word${words.length === 1 ? '' : 's'} in ${show(text)}`);
  const [action, ext, addr, int] = words as [string, string, string, string];
  const act = action.toLowerCase();
  if (act !== 'allow' && act !== 'deny')
    throw new ConfigValueError(`must start with allow or deny, got ${show(action)}`);
  let e, i;
  try {
    e = parsePortRange(ext, { min: 0 });
  } catch (err) {
    throw new ConfigValueError(`external ports ${(err as Error).message}`);
  }
  try {
    i = parsePortRange(int, { min: 0 });
  } catch (err) {
    throw new ConfigValueError(`internal ports ${(err as Error).message}`);
  }
  let c;
  try {
    c = parseCidr(addr);
  } catch (err) {
    throw new ConfigValueError(`internal address ${(err as Error).message}`);
  }
  if (c.family !== 4) throw new ConfigValueError(`internal address must be an IPv4 network, got ${show(addr)}`);
  return {
    action: act,
    extStart: e.start,
    extEnd: e.end,
    address: c.address,
    prefix: c.prefix,
    intStart: i.start,
    intEnd: i.end,
    text: words.join(' '),
  };
}

/** the rule written back in the canonical form parsePolicyRule accepts */
export function formatPolicyRule(r: PolicyRule): string {
  const ext = formatPortRange({ start: r.extStart, end: r.extEnd });
  const int = formatPortRange({ start: r.intStart, end: r.intEnd });
  return `${r.action} ${ext} ${r.address}/${r.prefix} ${int}`;
}
