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

/** one host's pinholes for one protocol */
interface HostList {
  readonly protocol: string;
  readonly address: string;
  readonly refs: PinholeRef[];
}

export class PinholeIndex {
  // protocol -> address -> the pinholes of that host: a host holds at most its quota, so a scan of its list is
  // short. Two levels of maps, not one keyed by `${protocol}|${address}`: a lookup builds no string (every pinhole
  // request and release looks here; issue 15 item 9)
  private readonly byHost = new Map<string, Map<string, HostList>>();
  private readonly byId = new Map<string, HostList>();

  get size(): number {
    return this.byId.size;
  }

  clear(): void {
    this.byHost.clear();
    this.byId.clear();
  }

  private list(protocol: string, address: string): HostList | undefined {
    return this.byHost.get(protocol)?.get(address);
  }

  add(protocol: string, address: string, ref: PinholeRef): void {
    let hosts = this.byHost.get(protocol);
    if (!hosts) {
      hosts = new Map();
      this.byHost.set(protocol, hosts);
    }
    let list = hosts.get(address);
    if (!list) {
      list = { protocol, address, refs: [] };
      hosts.set(address, list);
    }
    list.refs.push(ref);
    this.byId.set(ref.id, list);
  }

  remove(id: string): void {
    const list = this.byId.get(id);
    if (list === undefined) return;
    this.byId.delete(id);
    const i = list.refs.findIndex((r) => r.id === id);
    if (i >= 0) list.refs.splice(i, 1);
    if (list.refs.length === 0) {
      const hosts = this.byHost.get(list.protocol);
      hosts?.delete(list.address);
      if (hosts?.size === 0) this.byHost.delete(list.protocol);
    }
  }

  /** the pinholes that open the same door as [start, end] with this remote filter: a renewal or a conflict */
  overlapping(protocol: string, address: string, start: number, end: number, remote: string | null): PinholeRef[] {
    const out: PinholeRef[] = [];
    const refs = this.list(protocol, address)?.refs;
    if (refs) for (const r of refs) if (r.remote === remote && r.start <= end && r.end >= start) out.push(r);
    return out;
  }

  /**
   * The pinhole covering one internal port (PCP MAP and release name a mapping this way): the one with
   * `remote` when given, else the one open to any peer, else the first.
   */
  find(protocol: string, address: string, port: number, remote?: string | null): PinholeRef | undefined {
    const refs = this.list(protocol, address)?.refs;
    if (!refs) return undefined;
    let first: PinholeRef | undefined;
    for (const r of refs) {
      if (r.start > port || r.end < port) continue;
      if (remote !== undefined) {
        if (r.remote === remote) return r;
      } else if (r.remote === null) return r;
      first ??= r;
    }
    return remote !== undefined ? undefined : first;
  }

  /** the ids of every pinhole covering `port` (the admin API's port filter; a walk over all pinholes) */
  onPort(protocol: string, port: number): string[] {
    const out: string[] = [];
    const hosts = this.byHost.get(protocol);
    if (hosts)
      for (const list of hosts.values())
        for (const r of list.refs) if (r.start <= port && r.end >= port) out.push(r.id);
    return out;
  }
}
