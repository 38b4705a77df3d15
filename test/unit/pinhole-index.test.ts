import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PinholeIndex, type PinholeRef } from '../../src/leases/pinhole-index.js';

/**
 * The index as first written (one map keyed by `proto|address`, lists filtered on every call): the reference the
 * two-level maps and loops of issue 15 item 9 must agree with, answer for answer and in the same order.
 */
class ReferenceIndex {
  private readonly byHost = new Map<string, PinholeRef[]>();
  private readonly byId = new Map<string, string>();
  get size(): number {
    return this.byId.size;
  }
  add(protocol: string, address: string, ref: PinholeRef): void {
    const k = `${protocol}|${address}`;
    const list = this.byHost.get(k);
    if (list) list.push(ref);
    else this.byHost.set(k, [ref]);
    this.byId.set(ref.id, k);
  }
  remove(id: string): void {
    const k = this.byId.get(id);
    if (k === undefined) return;
    this.byId.delete(id);
    const list = this.byHost.get(k)?.filter((r) => r.id !== id) ?? [];
    if (list.length > 0) this.byHost.set(k, list);
    else this.byHost.delete(k);
  }
  overlapping(protocol: string, address: string, start: number, end: number, remote: string | null): PinholeRef[] {
    return (this.byHost.get(`${protocol}|${address}`) ?? []).filter(
      (r) => r.remote === remote && r.start <= end && r.end >= start,
    );
  }
  find(protocol: string, address: string, port: number, remote?: string | null): PinholeRef | undefined {
    const here = (this.byHost.get(`${protocol}|${address}`) ?? []).filter((r) => r.start <= port && r.end >= port);
    if (remote !== undefined) return here.find((r) => r.remote === remote);
    return here.find((r) => r.remote === null) ?? here[0];
  }
  onPort(protocol: string, port: number): string[] {
    const out: string[] = [];
    for (const [k, list] of this.byHost) {
      if (!k.startsWith(`${protocol}|`)) continue;
      for (const r of list) if (r.start <= port && r.end >= port) out.push(r.id);
    }
    return out;
  }
}

describe('PinholeIndex (src/leases/pinhole-index.ts)', () => {
  it('answers as the reference index does, over random adds, removes and lookups', () => {
    const protocol = fc.constantFrom('tcp', 'udp');
    const address = fc.constantFrom('2001:db8::1', 'fd00::5');
    const port = fc.integer({ min: 1, max: 6 });
    const remote = fc.constantFrom(null, '2001:db8:113::9', '2001:db8:113::');
    const op = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), protocol, address, start: port, width: fc.nat(3), remote }),
      fc.record({ kind: fc.constant('remove' as const), pick: fc.nat(40) }),
      fc.record({
        kind: fc.constant('overlapping' as const),
        protocol,
        address,
        start: port,
        width: fc.nat(3),
        remote,
      }),
      fc.record({
        kind: fc.constant('find' as const),
        protocol,
        address,
        port,
        remote: fc.option(remote, { nil: undefined }),
      }),
      fc.record({ kind: fc.constant('onPort' as const), protocol, port }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 10, maxLength: 80, size: 'max' }), (ops) => {
        const fast = new PinholeIndex();
        const ref = new ReferenceIndex();
        const ids: string[] = [];
        let n = 0;
        for (const o of ops) {
          switch (o.kind) {
            case 'add': {
              const r = { id: `p${n++}`, start: o.start, end: o.start + o.width, remote: o.remote };
              fast.add(o.protocol, o.address, r);
              ref.add(o.protocol, o.address, r);
              ids.push(r.id);
              break;
            }
            case 'remove': {
              // an id added before (removed already or not), or one never added
              const id = ids.length > 0 && o.pick < 35 ? ids[o.pick % ids.length]! : `none${o.pick}`;
              fast.remove(id);
              ref.remove(id);
              break;
            }
            case 'overlapping': {
              const args = [o.protocol, o.address, o.start, o.start + o.width, o.remote] as const;
              assert.deepEqual(fast.overlapping(...args), ref.overlapping(...args));
              break;
            }
            case 'find':
              assert.equal(
                fast.find(o.protocol, o.address, o.port, o.remote),
                ref.find(o.protocol, o.address, o.port, o.remote),
              );
              break;
            case 'onPort':
              assert.deepEqual(fast.onPort(o.protocol, o.port), ref.onPort(o.protocol, o.port));
              break;
          }
          assert.equal(fast.size, ref.size);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('finds the pinhole open to any peer before an earlier one with a remote filter, else the first', () => {
    const x = new PinholeIndex();
    const peer = { id: 'peer', start: 1000, end: 1010, remote: '2001:db8:113::9' };
    const any = { id: 'any', start: 1005, end: 1005, remote: null };
    x.add('udp', '2001:db8::1', peer);
    x.add('udp', '2001:db8::1', any);
    assert.equal(x.find('udp', '2001:db8::1', 1005), any);
    assert.equal(x.find('udp', '2001:db8::1', 1004), peer);
    assert.equal(x.find('udp', '2001:db8::1', 1005, '2001:db8:113::9'), peer);
    assert.equal(x.find('udp', '2001:db8::1', 1004, null), undefined);
    assert.equal(x.find('tcp', '2001:db8::1', 1005), undefined);
    x.remove('any');
    assert.equal(x.find('udp', '2001:db8::1', 1005), peer);
  });

  it('clear empties it', () => {
    const x = new PinholeIndex();
    x.add('tcp', '2001:db8::1', { id: 'a', start: 1, end: 1, remote: null });
    x.clear();
    assert.equal(x.size, 0);
    assert.equal(x.find('tcp', '2001:db8::1', 1), undefined);
    assert.deepEqual(x.onPort('tcp', 1), []);
  });
});
