/**
 * `ha:` — the HA pair (issue 18 items 3-4, docs/ha.md): two portd nodes on one PostgreSQL lease table, the active
 * one chosen by keepalived (VRRP), the other a warm standby. Off by default; on, it needs the postgres driver.
 */
import { bool, int, nullableStr, section, str, type Raw } from './check.js';
import type { Issues } from './errors.js';
import type { HaConfig } from './types.js';

export const HA_DEFAULTS: HaConfig = {
  enabled: false,
  node: null,
  keepalived: { fifo: '/run/keepalived/portd.fifo', instance: 'portd' },
  lockTimeout: 2000,
  idleInTransactionTimeout: 2000,
};

const NODE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function readHa(raw: unknown, driver: 'sqlite' | 'postgres', issues: Issues): HaConfig {
  const s: Raw = section(
    raw,
    'ha',
    ['enabled', 'node', 'keepalived', 'lockTimeout', 'idleInTransactionTimeout'],
    issues,
  );
  const d = HA_DEFAULTS;
  const enabled = bool(s, 'enabled', 'ha', d.enabled, issues);
  const node = nullableStr(s, 'node', 'ha', d.node, {}, issues);
  const k: Raw = section(s['keepalived'], 'ha.keepalived', ['fifo', 'instance'], issues);
  const keepalived = {
    fifo: str(k, 'fifo', 'ha.keepalived', d.keepalived.fifo, {}, issues),
    instance: str(k, 'instance', 'ha.keepalived', d.keepalived.instance, {}, issues),
  };
  const lockTimeout = int(s, 'lockTimeout', 'ha', d.lockTimeout, { min: 100, max: 60_000 }, issues);
  const idleInTransactionTimeout = int(
    s,
    'idleInTransactionTimeout',
    'ha',
    d.idleInTransactionTimeout,
    { min: 100, max: 60_000 },
    issues,
  );
  if (enabled) {
    if (driver !== 'postgres') {
      issues.add('ha.enabled', 'needs database.driver: postgres (both nodes share one PostgreSQL lease table)');
    }
    if (node === null || !NODE.test(node)) {
      issues.add('ha.node', 'is required with ha.enabled: this node\'s name (letters, digits, ".", "_", "-"; ≤ 63)');
    }
    if (!keepalived.fifo.startsWith('/')) issues.add('ha.keepalived.fifo', 'must be an absolute path');
    if (keepalived.instance === '') issues.add('ha.keepalived.instance', 'must name the vrrp_instance portd follows');
  }
  return { enabled, node, keepalived, lockTimeout, idleInTransactionTimeout };
}
