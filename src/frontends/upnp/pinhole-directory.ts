/**
 * UniqueIDs of UPnP pinholes (WANIPv6FirewallControl:1: a ui2 per pinhole, which the client keeps
 * and passes back to UpdatePinhole, DeletePinhole, … after any time, also after a restart of the
 * gateway). Derived from the lease id, so they need no storage of their own: id mod 65535 + 1,
 * the next free one when two active pinholes' ids collide (the older lease keeps its number).
 *
 * Stable while portd runs. Across a restart a number changes only when its lease had collided with
 * an older pinhole that ended while portd was down (two active pinholes' ids collide with odds
 * about n²/131,070: 1 in 1,300 for 10 pinholes); the client then gets 704 NoSuchEntry and adds the
 * pinhole again, which is what the template expects of a client whose pinhole is gone.
 */
import type { LeaseTableApi } from '../../leases/table-api.js';
import type { Lease } from '../../leases/types.js';
import type { PinholeDirectory } from './pinhole-actions.js';

const SPACE = 65535;

const isUpnpPinhole = (l: Lease) => l.family === 6 && l.source === 'upnp';

export function createPinholeDirectory(leases: Pick<LeaseTableApi, 'get' | 'list' | 'on'>) {
  const uidOf = new Map<string, number>();
  const leaseAt = new Map<number, string>();

  function free(leaseId: string) {
    const uid = uidOf.get(leaseId);
    if (uid === undefined) return;
    uidOf.delete(leaseId);
    leaseAt.delete(uid);
  }

  /** the holder of `uid`, when still an active UPnP pinhole; a stale holder is dropped */
  function holder(uid: number): Lease | null {
    const id = leaseAt.get(uid);
    if (id === undefined) return null;
    const l = leases.get(id);
    if (l && l.state === 'active' && isUpnpPinhole(l)) return l;
    free(id);
    return null;
  }

  function assign(l: Lease): number {
    const known = uidOf.get(l.id);
    if (known !== undefined) return known;
    const base = (Number.parseInt(l.id, 16) || 0) % SPACE;
    for (let i = 0; i < SPACE; i++) {
      const uid = ((base + i) % SPACE) + 1;
      if (holder(uid)) continue;
      uidOf.set(l.id, uid);
      leaseAt.set(uid, l.id);
      return uid;
    }
    throw new Error('every pinhole UniqueID is in use'); // 65,535 active pinholes: quotas stop this long before
  }

  // the pinholes the table holds at start, oldest first, so collisions resolve as they did before
  const active: Lease[] = [];
  for (let offset = 0; ; offset += 1000) {
    const page = leases.list({ source: 'upnp', state: 'active', limit: 1000, offset }).leases;
    active.push(...page.filter(isUpnpPinhole));
    if (page.length < 1000) break;
  }
  active.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const l of active) assign(l);

  const unsubscribe = leases.on((e) => {
    if (e.leaseId && (e.type === 'released' || e.type === 'expired' || e.type === 'revoked' || e.type === 'replaced'))
      free(e.leaseId);
  });

  const directory: PinholeDirectory & { close(): void } = {
    idOf: (l) => (isUpnpPinhole(l) ? assign(l) : null),
    leaseOf: (uid) => holder(uid),
    close: unsubscribe,
  };
  return directory;
}
