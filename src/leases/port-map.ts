/**
 * Which external ports are taken, per protocol: a cache derived from the lease table (rebuilt on
 * start and after a rolled-back tick), so that finding a free port never probes the database port
 * by port. Blocks of 256 ports keep a free count, so a mostly full space is skipped block by block.
 * Each taken port also records the id of the lease holding it, so "who holds this port" needs no
 * database index either.
 */
const BLOCK = 256;
const BLOCKS = 65536 / BLOCK;

export class PortMap {
  private readonly used = { tcp: new Uint8Array(65536), udp: new Uint8Array(65536) };
  private readonly free = { tcp: new Uint16Array(BLOCKS).fill(BLOCK), udp: new Uint16Array(BLOCKS).fill(BLOCK) };
  // a Map, not a 65,536-slot array per protocol: the arrays were 1 MiB of the idle heap (docs/benchmarks.md,
  // "Session 7: footprint"); a home router holds tens of leases, 100,000 leases are 100,000 entries either way
  private readonly holders = { tcp: new Map<number, string>(), udp: new Map<number, string>() };

  clear(): void {
    for (const p of ['tcp', 'udp'] as const) {
      this.used[p].fill(0);
      this.free[p].fill(BLOCK);
      this.holders[p].clear();
    }
  }

  take(protocol: 'tcp' | 'udp', start: number, end: number, holder?: string): void {
    const u = this.used[protocol],
      f = this.free[protocol],
      h = this.holders[protocol];
    for (let p = start; p <= end; p++) {
      if (u[p] === 0) f[p >> 8]!--;
      u[p] = 1;
      if (holder === undefined) h.delete(p);
      else h.set(p, holder);
    }
  }

  release(protocol: 'tcp' | 'udp', start: number, end: number): void {
    const u = this.used[protocol],
      f = this.free[protocol],
      h = this.holders[protocol];
    for (let p = start; p <= end; p++) {
      if (u[p] === 1) f[p >> 8]!++;
      u[p] = 0;
      h.delete(p);
    }
  }

  /** the holder of the lowest taken port in [start, end], or undefined when all are free */
  holderIn(protocol: 'tcp' | 'udp', start: number, end: number): string | undefined {
    const u = this.used[protocol],
      h = this.holders[protocol];
    for (let p = Math.max(0, start); p <= Math.min(65535, end); p++) if (u[p] !== 0) return h.get(p);
    return undefined;
  }

  isFree(protocol: 'tcp' | 'udp', start: number, end: number): boolean {
    const u = this.used[protocol];
    for (let p = start; p <= end; p++) if (u[p] !== 0) return false;
    return true;
  }

  /**
   * A free port in one of `ranges` (sorted, disjoint) for which `accept` holds: first in the range
   * holding `from` (searched from `from`, wrapping within it), then the ranges after it, wrapping
   * around; null when none.
   */
  findFreeIn(
    protocol: 'tcp' | 'udp',
    ranges: readonly (readonly [number, number])[],
    from: number,
    accept: (port: number) => boolean,
  ): number | null {
    const n = ranges.length;
    if (n === 0) return null;
    let k = ranges.findIndex(([, b]) => b >= from);
    if (k < 0) k = 0;
    for (let i = 0; i < n; i++) {
      const [a, b] = ranges[(k + i) % n]!;
      const p = this.findFree(protocol, a, b, i === 0 && from >= a && from <= b ? from : a, accept);
      if (p !== null) return p;
    }
    return null;
  }

  /**
   * A free port in [lo, hi] for which `accept` holds, searching from `from` and wrapping around;
   * null when none. Full blocks are skipped without looking at their ports.
   */
  findFree(
    protocol: 'tcp' | 'udp',
    lo: number,
    hi: number,
    from: number,
    accept: (port: number) => boolean,
  ): number | null {
    const u = this.used[protocol],
      f = this.free[protocol];
    const span = hi - lo + 1;
    let offset = 0;
    while (offset < span) {
      const p = lo + ((from - lo + offset) % span);
      if (p % BLOCK === 0 && f[p >> 8] === 0 && offset + BLOCK <= span) {
        offset += BLOCK;
        continue;
      }
      if (u[p] === 0 && accept(p)) return p;
      offset++;
    }
    return null;
  }
}
