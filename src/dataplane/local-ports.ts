/**
 * The gateway's own listening ports, read from the kernel's socket tables (`/proc/net/{tcp,udp}{,6}`),
 * so that no dynamic client is handed an external port on which the gateway itself serves (a WireGuard
 * on 51820/udp, an SSH on 2222/tcp): a DNAT in prerouting would divert that service's traffic to the
 * LAN host. miniupnpd's CHECK_PORTINUSE does the same from /proc/net/tcp and udp (IPv4 only, any
 * socket state); here IPv6 sockets count too (a wildcard `::` or an IPv4-mapped address accepts IPv4
 * connections), and only sockets that accept new traffic: TCP in LISTEN, UDP unconnected (a TCP
 * connection the gateway opened, or a connected UDP socket, owns no inbound port: its replies are
 * conntrack's, not the DNAT's).
 *
 * /proc/net is a link to /proc/self/net: the network namespace of the process reading it, so portd
 * running inside the gateway's namespace (as in the lab, or as a router's service) sees that
 * namespace's sockets.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { Logger } from 'pino';
import { ipv4ToInt } from '../common/net.js';
import { openSockDiag, type LocalSocket, type SockDiag, type SocketProtocol } from './sock-diag.js';

export type { LocalSocket, SocketProtocol } from './sock-diag.js';

const TCP_LISTEN = '0A';
const UDP_UNCONNECTED = '07'; // TCP_CLOSE: a UDP socket without a peer (a connected one shows 01)

/** one 32-bit word as /proc prints it (`%08X` of the value in host byte order) → its 4 bytes in network order */
function word(hex: string, at: number, littleEndian: boolean): number {
  const v = parseInt(hex.slice(at, at + 8), 16);
  return littleEndian
    ? (((v & 0xff) << 24) | (((v >>> 8) & 0xff) << 16) | (((v >>> 16) & 0xff) << 8) | (v >>> 24)) >>> 0
    : v >>> 0;
}

/**
 * The sockets of one /proc/net/{tcp,udp}{,6} text that accept inbound traffic. Lines that do not parse
 * (the header, a truncated last line) are skipped: the file is the kernel's, not an attacker's.
 */
export function parseProcNet(
  text: string,
  protocol: SocketProtocol,
  littleEndian = endianness() === 'LE',
): LocalSocket[] {
  const out: LocalSocket[] = [];
  const want = protocol === 'tcp' ? TCP_LISTEN : UDP_UNCONNECTED;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    const line = text.slice(pos, end);
    pos = end + 1;
    // "  12: 0100007F:0035 00000000:0000 07 ..." — sl, local, remote, state
    const colon = line.indexOf(': ');
    if (colon < 0) continue;
    let i = colon + 2;
    while (line.charCodeAt(i) === 32) i++;
    const sp = line.indexOf(' ', i);
    if (sp < 0) continue;
    const local = line.slice(i, sp);
    let j = sp + 1;
    while (line.charCodeAt(j) === 32) j++;
    const sp2 = line.indexOf(' ', j);
    if (sp2 < 0) continue;
    const state = line.slice(sp2 + 1, sp2 + 3);
    if (state !== want) continue;
    const sep = local.lastIndexOf(':');
    const addr = local.slice(0, sep);
    const port = parseInt(local.slice(sep + 1), 16);
    if (!(port > 0 && port <= 65535)) continue;
    if (addr.length === 8) {
      out.push({ protocol, port, ipv4: word(addr, 0, littleEndian) });
    } else if (addr.length === 32) {
      const w = [0, 8, 16, 24].map((k) => word(addr, k, littleEndian));
      if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0)
        out.push({ protocol, port, ipv4: 0 }); // [::]
      else if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff)
        out.push({ protocol, port, ipv4: w[3]! }); // [::ffff:a.b.c.d]
      else out.push({ protocol, port, ipv4: null });
    }
  }
  return out;
}

export interface LocalPortsOptions {
  /** the external address(es) leases are opened on (read at each refresh: the WAN address may change) */
  readonly externalAddresses: () => readonly string[];
  /** default /proc/net */
  readonly procNet?: string;
  /** how long one reading of the socket tables is used (ms), default 1000 */
  readonly ttlMs?: number;
  readonly now?: () => number;
  /** tests: the tables' text (default: read the files; a sync read the first time, in the background after) */
  readonly readFile?: (path: string) => string;
  /**
   * ask the kernel over netlink sock_diag (sock-diag.ts) instead of reading the files: default true unless
   * procNet or readFile is given; it falls back to the files when sock_diag cannot open or answer
   */
  readonly sockDiag?: boolean;
  readonly log?: Logger;
}

export interface LocalPorts {
  /** does a process of the gateway listen on this port on an external address or a wildcard? */
  inUse(protocol: SocketProtocol, port: number): boolean;
  /** the ports in use now, for logs and tests */
  snapshot(): { tcp: number[]; udp: number[] };
}

const FILES = [
  ['tcp', 'tcp'],
  ['tcp', 'tcp6'],
  ['udp', 'udp'],
  ['udp', 'udp6'],
] as const;

/**
 * A checker with a short cache, asked at grant time inside the lease table's writer tick (so it
 * answers synchronously) and per candidate port while allocating (a lookup in a 64k-entry array).
 * The tables are read at most once per ttl, and only when asked. Reading them is the kernel's cost:
 * /proc/net/tcp and tcp6 walk the whole connection hash, ≈ 8 ms each here with a handful of sockets,
 * ≈ 50 ms for the four files at 10,000 sockets (measured); parsing 10,000 lines adds ≈ 2 ms. So only
 * the first reading blocks: later ones run in the background (libuv's pool) when the last is older
 * than the ttl, and the last one answers meanwhile (a reading older than 5 ttl is renewed at once).
 * So by default the kernel is asked over netlink sock_diag instead (sock-diag.ts): TCP in LISTEN and unconnected
 * UDP only, ≈ 0.1 ms of CPU for both against ≈ 12 ms for the files on the bench machine, read synchronously once
 * per ttl; the files remain the fallback (no FFI, no udp_diag in the kernel).
 */
export function createLocalPorts(opts: LocalPortsOptions): LocalPorts {
  const dir = opts.procNet ?? '/proc/net';
  const ttl = opts.ttlMs ?? 1000;
  const now = opts.now ?? (() => performance.now());
  const readSync = opts.readFile ?? ((p: string) => readFileSync(p, 'latin1'));
  const readAsync = opts.readFile ? async (p: string) => opts.readFile!(p) : (p: string) => readFile(p, 'latin1');
  let at = -Infinity;
  let used = { tcp: new Uint8Array(65536), udp: new Uint8Array(65536) };
  let refreshing: Promise<void> | null = null;
  const warned = new Set<string>();
  let diag: SockDiag | null = null;
  if (opts.sockDiag ?? (opts.procNet === undefined && opts.readFile === undefined)) {
    const d = openSockDiag();
    if (typeof d === 'string') opts.log?.debug({ reason: d }, 'no sock_diag; reading /proc/net for local ports');
    else diag = d;
  }

  function unreadable(f: string, e: unknown): void {
    // no IPv6 in the kernel: no tcp6/udp6, nothing bound there. Anything else: say so once, hand ports out
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && !warned.has(f)) {
      warned.add(f);
      opts.log?.warn(
        { file: `${dir}/${f}`, err: (e as Error).message },
        "cannot read the socket table; the gateway's own ports in it are not protected (policy.checkPortInUse)",
      );
    }
  }
  function externalInts(): Set<number> {
    return new Set(
      opts
        .externalAddresses()
        .map((a) => ipv4ToInt(a))
        .filter((n): n is number => n !== null && n !== 0),
    );
  }
  function build(texts: readonly (string | null)[]): void {
    const exts = externalInts();
    const next = { tcp: new Uint8Array(65536), udp: new Uint8Array(65536) };
    texts.forEach((text, i) => {
      if (text === null) return;
      const protocol = FILES[i]![0];
      for (const s of parseProcNet(text, protocol))
        if (s.ipv4 === 0 || (s.ipv4 !== null && exts.has(s.ipv4))) next[protocol][s.port] = 1;
    });
    used = next;
  }
  function refreshSync(): void {
    const t = now();
    build(
      FILES.map(([, f]) => {
        try {
          return readSync(`${dir}/${f}`);
        } catch (e) {
          unreadable(f, e);
          return null;
        }
      }),
    );
    at = t;
  }
  async function refreshAsync(): Promise<void> {
    const t = now();
    const texts = await Promise.all(
      FILES.map(([, f]) =>
        readAsync(`${dir}/${f}`).catch((e: unknown) => {
          unreadable(f, e);
          return null;
        }),
      ),
    );
    build(texts);
    at = Math.max(at, t);
  }
  /** one sock_diag reading; false (and the files from now on) when the kernel did not answer */
  function refreshDiag(): boolean {
    const t = now();
    const exts = externalInts();
    const next = { tcp: new Uint8Array(65536), udp: new Uint8Array(65536) };
    try {
      for (const protocol of ['tcp', 'udp'] as const)
        for (const s of diag!.list(protocol))
          if (s.ipv4 === 0 || (s.ipv4 !== null && exts.has(s.ipv4))) next[protocol][s.port] = 1;
    } catch (e) {
      opts.log?.warn({ err: (e as Error).message }, 'sock_diag failed; reading /proc/net for local ports from now on');
      diag?.close();
      diag = null;
      return false;
    }
    used = next;
    at = t;
    return true;
  }
  function fresh(): void {
    const age = now() - at;
    if (age < ttl) return;
    if (diag && refreshDiag()) return;
    if (age >= 5 * ttl) {
      refreshSync();
      return;
    }
    // one reading at a time: calls meanwhile answer from the last one
    if (refreshing) return;
    refreshing = refreshAsync()
      .catch(() => undefined)
      .finally(() => {
        refreshing = null;
      });
  }
  return {
    inUse(protocol, port) {
      fresh();
      return used[protocol][port] === 1;
    },
    snapshot() {
      fresh();
      const list = (u: Uint8Array) => {
        const o: number[] = [];
        for (let p = 1; p < 65536; p++) if (u[p]) o.push(p);
        return o;
      };
      return { tcp: list(used.tcp), udp: list(used.udp) };
    },
  };
}
