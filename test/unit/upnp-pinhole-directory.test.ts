import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPinholeDirectory } from '../../src/frontends/upnp/pinhole-directory.js';
import type { Lease, LeaseEvent } from '../../src/leases/types.js';

/** just what the directory reads of a lease */
const pinhole = (id: string, over: Partial<Lease> = {}) =>
  ({ id, family: 6, source: 'upnp', state: 'active', ...over }) as Lease;

function table(initial: Lease[]) {
  const byId = new Map(initial.map((l) => [l.id, l]));
  const listeners = new Set<(e: LeaseEvent) => void>();
  return {
    byId,
    api: {
      get: (id: string) => byId.get(id) ?? null,
      list: (f: { offset?: number; limit?: number } = {}) => {
        const all = [...byId.values()].filter((l) => l.state === 'active');
        const page = all.slice(f.offset ?? 0, (f.offset ?? 0) + (f.limit ?? 1000));
        return { leases: page, total: all.length };
      },
      on: (fn: (e: LeaseEvent) => void) => {
        listeners.add(fn);
        return () => listeners.delete(fn);
      },
    },
    end(id: string) {
      byId.set(id, { ...byId.get(id)!, state: 'ended' });
      for (const fn of listeners) fn({ type: 'released', leaseId: id } as LeaseEvent);
    },
  };
}

describe('UPnP pinhole UniqueIDs (src/frontends/upnp/pinhole-directory.ts)', () => {
  it('derive from the lease id, the same after a restart; only UPnP pinholes get one', () => {
    const a = pinhole('0000000000ff');
    const t = table([a, pinhole('000000000100', { source: 'pcp' }), pinhole('000000000101', { family: 4 })]);
    const d = createPinholeDirectory(t.api);
    assert.equal(d.idOf(a), 0xff + 1);
    assert.equal(d.leaseOf(0x100), a);
    assert.equal(d.idOf(t.byId.get('000000000100')!), null);
    assert.equal(d.idOf(t.byId.get('000000000101')!), null);
    const again = createPinholeDirectory(t.api);
    assert.equal(again.idOf(a), 0x100, 'a restart gives the same number');
  });

  it('a collision gives the newer pinhole the next number; the numbers hold while both live; ended ones are freed', () => {
    const older = pinhole((5).toString(16).padStart(12, '0'));
    const newer = pinhole((5 + 65535).toString(16).padStart(12, '0'));
    const t = table([newer, older]);
    const d = createPinholeDirectory(t.api);
    assert.equal(d.idOf(older), 6);
    assert.equal(d.idOf(newer), 7);
    assert.equal(d.leaseOf(7), newer);
    t.end(older.id);
    assert.equal(d.leaseOf(6), null, 'freed with its lease');
    assert.equal(d.idOf(newer), 7, 'unchanged while portd runs');
    // a pinhole whose end was not seen as an event is dropped when found ended
    const third = pinhole((6 + 2 * 65535).toString(16).padStart(12, '0'));
    t.byId.set(third.id, third);
    t.byId.set(newer.id, { ...newer, state: 'ended' });
    assert.equal(d.leaseOf(7), null);
    assert.equal(d.idOf(third), 7);
  });
});
