/**
 * Which IPv6 pinholes are active, per protocol and internal address: a cache derived from the lease
 * table (rebuilt on start and after a rolled-back tick), the pinholes' counterpart of the port map.
 *
 * A pinhole has no translation (issue 15): its external endpoint is its internal one, so it shares no
 * external port with anyone. Two pinholes conflict only when they open the same door: same protocol,
 * same internal address, overlapping ports and the same remote filter (null = any peer). Pinholes to
 * two hosts on one port, or to one host for two remote peers, coexist; so do a pinhole and an IPv4
 * mapping on the same port number. Addresses are keyed in the canonical text of src/common/ipv6.ts.
 */
export interface PinholeRef {
  readonly id: string;
  readonly start: number;
  readonly end: number;
  /** canonical IPv6 text, or null = any peer */
  readonly remote: string | null;
}

export class PinholeIndex {
  // `proto|address` -> the pinholes of that host: a host holds at most its quota, so a scan of its list is short
  private readonly byHost = new Map<string, PinholeRef[]>();
  private readonly byId = new Map<string, string>();

  get size(): number {
    return this.byId.size;
  }

  clear(): void {
    this.byHost.clear();
    this.byId.clear();
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

  /** the pinholes that open the same door as [start, end] with this remote filter: a renewal or a conflict */
  overlapping(protocol: string, address: string, start: number, end: number, remote: string | null): PinholeRef[] {
    return (this.byHost.get(`${protocol}|${address}`) ?? []).filter(
      (r) => r.remote === remote && r.start <= end && r.end >= start,
    );
  }

  /**
   * The pinhole covering one internal port (PCP MAP and release name a mapping this way): the one with
   * `remote` when given, else the one open to any peer, else the first.
   */
  find(protocol: string, address: string, port: number, remote?: string | null): PinholeRef | undefined {
    const here = (this.byHost.get(`${protocol}|${address}`) ?? []).filter((r) => r.start <= port && r.end >= port);
    if (remote !== undefined) return here.find((r) => r.remote === remote);
    return here.find((r) => r.remote === null) ?? here[0];
  }

  /** the ids of every pinhole covering `port` (the admin API's port filter; a walk over all pinholes) */
  onPort(protocol: string, port: number): string[] {
    const out: string[] = [];
    for (const [k, list] of this.byHost) {
      if (!k.startsWith(`${protocol}|`)) continue;
      for (const r of list) if (r.start <= port && r.end >= port) out.push(r.id);
    }
    return out;
  }
}
