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

/** a pinhole in a host's lists, with its place in the order they were added (answers keep that order) */
interface Entry {
  readonly ref: PinholeRef;
  readonly seq: number;
}

/** one host's pinholes for one protocol: single ports by port, ranges (static pinholes) in a list */
interface Host {
  readonly protocol: string;
  readonly address: string;
  readonly singles: Map<number, Entry[]>;
  readonly ranges: Entry[];
  count: number;
}

const bySeq = (a: Entry, b: Entry) => a.seq - b.seq;

export class PinholeIndex {
  // protocol -> address -> that host's pinholes. Two levels of maps, not one keyed by `${protocol}|${address}`
  // (a lookup builds no string), and a host's single-port pinholes by port, so a host with many (UPnP's bench
  // holds 2,000 on one address) costs one lookup, not a scan of its list (issue 15 item 9)
  private readonly byHost = new Map<string, Map<string, Host>>();
  private readonly byId = new Map<string, { readonly host: Host; readonly entry: Entry }>();
  private seq = 0;

  get size(): number {
    return this.byId.size;
  }

  clear(): void {
    this.byHost.clear();
    this.byId.clear();
  }

  private host(protocol: string, address: string): Host | undefined {
    return this.byHost.get(protocol)?.get(address);
  }

  add(protocol: string, address: string, ref: PinholeRef): void {
    let hosts = this.byHost.get(protocol);
    if (!hosts) {
      hosts = new Map();
      this.byHost.set(protocol, hosts);
    }
    let host = hosts.get(address);
    if (!host) {
      host = { protocol, address, singles: new Map(), ranges: [], count: 0 };
      hosts.set(address, host);
    }
    const entry = { ref, seq: this.seq++ };
    if (ref.start === ref.end) {
      const at = host.singles.get(ref.start);
      if (at) at.push(entry);
      else host.singles.set(ref.start, [entry]);
    } else host.ranges.push(entry);
    host.count++;
    this.byId.set(ref.id, { host, entry });
  }

  remove(id: string): void {
    const found = this.byId.get(id);
    if (found === undefined) return;
    this.byId.delete(id);
    const { host, entry } = found;
    const ref = entry.ref;
    const list = ref.start === ref.end ? host.singles.get(ref.start) : host.ranges;
    const i = list ? list.indexOf(entry) : -1;
    if (list && i >= 0) {
      list.splice(i, 1);
      if (list.length === 0 && ref.start === ref.end) host.singles.delete(ref.start);
    }
    if (--host.count === 0) {
      const hosts = this.byHost.get(host.protocol);
      hosts?.delete(host.address);
      if (hosts?.size === 0) this.byHost.delete(host.protocol);
    }
  }

  /** the host's pinholes covering any port of [start, end], in the order they were added */
  private covering(host: Host, start: number, end: number): Entry[] {
    const out: Entry[] = [];
    if (end - start < host.singles.size) {
      for (let p = start; p <= end; p++) {
        const at = host.singles.get(p);
        if (at) for (const e of at) out.push(e);
      }
    } else for (const [p, at] of host.singles) if (p >= start && p <= end) for (const e of at) out.push(e);
    for (const e of host.ranges) if (e.ref.start <= end && e.ref.end >= start) out.push(e);
    if (out.length > 1) out.sort(bySeq);
    return out;
  }

  /** the pinholes that open the same door as [start, end] with this remote filter: a renewal or a conflict */
  overlapping(protocol: string, address: string, start: number, end: number, remote: string | null): PinholeRef[] {
    const host = this.host(protocol, address);
    if (!host) return [];
    const out: PinholeRef[] = [];
    for (const e of this.covering(host, start, end)) if (e.ref.remote === remote) out.push(e.ref);
    return out;
  }

  /**
   * The pinhole covering one internal port (PCP MAP and release name a mapping this way): the one with
   * `remote` when given, else the one open to any peer, else the first.
   */
  find(protocol: string, address: string, port: number, remote?: string | null): PinholeRef | undefined {
    const host = this.host(protocol, address);
    if (!host) return undefined;
    const here = this.covering(host, port, port);
    if (remote !== undefined) return here.find((e) => e.ref.remote === remote)?.ref;
    return (here.find((e) => e.ref.remote === null) ?? here[0])?.ref;
  }

  /** the ids of every pinhole covering `port` (the admin API's port filter; a walk over the hosts) */
  onPort(protocol: string, port: number): string[] {
    const out: string[] = [];
    const hosts = this.byHost.get(protocol);
    if (hosts) for (const host of hosts.values()) for (const e of this.covering(host, port, port)) out.push(e.ref.id);
    return out;
  }
}
