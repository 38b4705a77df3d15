/**
 * The gateway's own sockets that accept inbound traffic (TCP in LISTEN, UDP unconnected), asked of the kernel
 * over netlink sock_diag (linux/inet_diag.h, `ss`'s source) instead of read from /proc/net/{tcp,udp}{,6}.
 *
 * Why: reading the /proc tables makes the kernel walk its whole socket hashes (every connection of every
 * namespace): ≈ 10 ms of CPU for the four files on the machine the benches run on, once a second while
 * requests come (local-ports.ts). A sock_diag dump filtered by state walks only what it is asked for (the
 * listening hash for TCP) and answers in tens of µs, so the reading can be synchronous and fresh.
 *
 * Same meaning as local-ports.ts's parseProcNet: an IPv4 socket's address, `::` as 0.0.0.0, `::ffff:a.b.c.d` as
 * that IPv4 address, another IPv6 address as null. The socket is opened in the calling process's network
 * namespace (where /proc/net would point). Any error (no FFI, no `udp_diag` in the kernel, a short answer) makes
 * the caller fall back to /proc.
 */
import { loadLibc } from './nf-netlink.js';

export type SocketProtocol = 'tcp' | 'udp';

/** one socket that accepts new inbound traffic */
export interface LocalSocket {
  readonly protocol: SocketProtocol;
  readonly port: number;
  /** the IPv4 address it is bound to (0 = 0.0.0.0; also for `::`), or null: bound to an IPv6 address only */
  readonly ipv4: number | null;
}

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 0x2;
const NLMSG_DONE = 0x3;
const MSG_DONTWAIT = 0x40;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const TCP_LISTEN = 10;
/** a UDP socket without a peer shows TCP_CLOSE (a connected one TCP_ESTABLISHED) */
const TCP_CLOSE = 7;
/** nlmsghdr (16) + inet_diag_req_v2 (56) */
const REQUEST_BYTES = 72;
/** inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid (sport, dport, src[16], dst[16], if, cookie) */
const MSG_BYTES = 72;

export interface SockDiag {
  /** the sockets of `protocol` that accept new inbound traffic; throws when the kernel did not answer in full */
  list(protocol: SocketProtocol): LocalSocket[];
  close(): void;
}

export function encodeDiagRequest(family: number, protocol: number, states: number, seq: number): Buffer {
  const b = Buffer.alloc(REQUEST_BYTES);
  b.writeUInt32LE(REQUEST_BYTES, 0);
  b.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
  b.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
  b.writeUInt32LE(seq, 8);
  b[16] = family;
  b[17] = protocol;
  b.writeUInt32LE(states >>> 0, 20);
  return b;
}

/**
 * The sockets in one datagram of a dump's answer; `done` once NLMSG_DONE came. An NLMSG_ERROR (the protocol's
 * diag module missing: ENOENT) throws.
 */
export function parseDiagAnswer(
  buf: Buffer,
  length: number,
  protocol: SocketProtocol,
  seq: number,
  out: LocalSocket[],
): { done: boolean } {
  let off = 0;
  while (off + 16 <= length) {
    const len = buf.readUInt32LE(off);
    const type = buf.readUInt16LE(off + 4);
    if (len < 16 || off + len > length) throw new Error('sock_diag: truncated answer');
    if (buf.readUInt32LE(off + 8) === seq) {
      if (type === NLMSG_DONE) return { done: true };
      if (type === NLMSG_ERROR) throw new Error(`sock_diag: errno ${-buf.readInt32LE(off + 16)}`);
      if (type === SOCK_DIAG_BY_FAMILY && len >= 16 + MSG_BYTES) {
        const m = off + 16;
        const port = buf.readUInt16BE(m + 4);
        if (port > 0) {
          if (buf[m] === AF_INET) out.push({ protocol, port, ipv4: buf.readUInt32BE(m + 8) });
          else if (buf[m] === AF_INET6) {
            const w0 = buf.readUInt32BE(m + 8);
            const w1 = buf.readUInt32BE(m + 12);
            const w2 = buf.readUInt32BE(m + 16);
            const w3 = buf.readUInt32BE(m + 20);
            if (w0 === 0 && w1 === 0 && w2 === 0 && w3 === 0) out.push({ protocol, port, ipv4: 0 });
            else if (w0 === 0 && w1 === 0 && w2 === 0xffff) out.push({ protocol, port, ipv4: w3 });
            else out.push({ protocol, port, ipv4: null });
          }
        }
      }
    }
    off += (len + 3) & ~3;
  }
  return { done: false };
}

/** a sock_diag socket, or the reason there is none (the caller reads /proc instead) */
export function openSockDiag(): SockDiag | string {
  const c = loadLibc();
  if (!c) return 'no FFI for netlink sockets';
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return `cannot open a sock_diag socket (errno ${c.errno()})`;
  const rbuf = Buffer.alloc(1 << 15);
  let seq = (Date.now() & 0x3fffffff) >>> 0;
  let closed = false;
  function dump(family: number, protocol: SocketProtocol, out: LocalSocket[]): void {
    seq = (seq + 1) & 0x3fffffff;
    const req = encodeDiagRequest(
      family,
      protocol === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP,
      1 << (protocol === 'tcp' ? TCP_LISTEN : TCP_CLOSE),
      seq,
    );
    // answers of an earlier dump cut short are not this one's (their seq differs, but drop them first)
    while (c!.recv(fd, rbuf, rbuf.length, MSG_DONTWAIT) > 0) {
      /* stale */
    }
    if (c!.send(fd, req, req.length, 0) !== req.length) throw new Error(`sock_diag: send failed (errno ${c!.errno()})`);
    // the kernel fills the dump inside send() and each recv(): nothing to wait for; bounded in reads
    for (let reads = 0; reads < 100_000; reads++) {
      const n = c!.recv(fd, rbuf, rbuf.length, MSG_DONTWAIT);
      if (n <= 0) throw new Error(`sock_diag: answer cut short (errno ${n < 0 ? c!.errno() : 0})`);
      if (parseDiagAnswer(rbuf, n, protocol, seq, out).done) return;
    }
    throw new Error('sock_diag: answer without an end');
  }
  return {
    list(protocol) {
      if (closed) throw new Error('sock_diag socket closed');
      const out: LocalSocket[] = [];
      dump(AF_INET, protocol, out);
      dump(AF_INET6, protocol, out);
      return out;
    },
    close() {
      if (closed) return;
      closed = true;
      c.close(fd);
    },
  };
}
