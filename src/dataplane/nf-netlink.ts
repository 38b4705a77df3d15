/**
 * nf_tables spoken directly over netlink, in-process: the set-element writes of a writer tick as one
 * netlink batch (one kernel transaction), without `nft`.
 *
 * Why: through `nft -i` a tick costs 0.3–0.4 ms, most of it nft parsing the line and refreshing its
 * cache with five netlink dumps (every commit bumps the ruleset generation). The same batch sent here
 * costs 5–20 µs. The kernel processes a batch inside sendmsg(), so every answer is queued when send()
 * returns: the answers are read without waiting. An error anywhere in the batch (an element message's, or
 * one addressed to BEGIN: no permission, a failed commit) means nothing was applied; an answer that cannot
 * be read means the outcome is unknown, and the caller has the kernel checked.
 *
 * Only what ticks write goes this way: elements of the plain maps and sets (fwd4, fwd4_peer, live_tcp,
 * live_udp, and the IPv6 pinhole sets pin6, pin6_peer), encoded from the typed model (model.ts) by the
 * sets' layouts. Interval sets (ranges), the structure and the listings stay with nft (nftables-script.ts,
 * nftables-runner.ts), which also remains the whole transport when this cannot load (no libc FFI on the
 * platform, no permission).
 *
 * The socket syscalls go through koffi (an FFI with prebuilt binaries; Node has no AF_NETLINK socket).
 * Encoding follows the kernel's uapi (linux/netfilter/nf_tables.h, nfnetlink.h): each field of a
 * concatenated key is padded to 4 octets, addresses and ports in network order.
 */
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { L4Protocol } from '../common/net-types.js';
import {
  SET_LAYOUTS,
  type ElementData,
  type ElementSet,
  type ElementStep,
  type FieldType,
  type NftElement,
  type SetLayout,
} from './model.js';
import { keyText, timeoutSeconds } from './nft-text.js';

// netlink / nfnetlink / nf_tables constants (uapi)
const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_NETFILTER = 12;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_SNDBUFFORCE = 32;
/** the send buffer asked for: a batch longer than the socket's send buffer is refused whole (EMSGSIZE) */
const WANT_SNDBUF = 1 << 20;
const EAGAIN = 11;
const EMSGSIZE = 90;
const ENOBUFS = 105;
const MSG_DONTWAIT = 0x40;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 0x2;
const NLMSGERR_ATTR_MSG = 1;
const NLA_F_NESTED = 0x8000;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DELSETELEM = 14;
const NFPROTO_INET = 1;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_SET_ELEM_TIMEOUT = 4;
const NFTA_DATA_VALUE = 1;
const CLONE_NEWNET = 0x40000000;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;

/** elements per NEWSETELEM/DELSETELEM message (nft splits likewise); keeps each message far below a page of acks */
const ELEMENTS_PER_MESSAGE = 256;

/** the sets a netlink batch may touch: fixed-size keys, no intervals */
const NETLINK_SETS: ReadonlySet<ElementSet> = new Set<ElementSet>([
  'fwd4',
  'fwd4_peer',
  'live_tcp',
  'live_udp',
  'pin6',
  'pin6_peer',
  'snat4',
]);

export class NetlinkError extends Error {
  /**
   * `refused`: the kernel answered with an error and applied nothing of the batch (or it was never sent);
   * `unknown`: sent, but not every answer could be read: the kernel may have committed it
   */
  constructor(
    message: string,
    readonly errno: number | null,
    readonly outcome: 'refused' | 'unknown' = 'refused',
  ) {
    super(message);
    this.name = 'NetlinkError';
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  4: 'EINTR',
  11: 'EAGAIN',
  12: 'ENOMEM',
  16: 'EBUSY',
  17: 'EEXIST',
  22: 'EINVAL',
  23: 'ENFILE',
  34: 'ERANGE',
  85: 'ERESTART',
  90: 'EMSGSIZE',
  95: 'EOPNOTSUPP',
  105: 'ENOBUFS',
};
const ERRNO_TEXT: Record<number, string> = {
  1: 'operation not permitted (portd needs CAP_NET_ADMIN)',
  2: 'no such table, set or element',
  4: 'interrupted',
  11: 'try again',
  12: 'out of memory',
  16: 'busy',
  17: 'element exists with other data',
  22: 'invalid argument',
  23: 'set is full',
  34: 'value out of range',
  85: 'interrupted, restart',
  90: 'batch longer than the socket buffer',
  95: 'not supported',
  105: 'no buffer space',
};

function errnoText(errno: number): string {
  return `${ERRNO_TEXT[errno] ?? `error ${errno}`} (${ERRNO_NAMES[errno] ?? `errno ${errno}`})`;
}

// ---------------------------------------------------------------------------------------------------
// encoding (pure)

function protoNumber(p: L4Protocol | null): number {
  if (p === 'tcp') return 6;
  if (p === 'udp') return 17;
  throw new NetlinkError(`cannot encode protocol ${String(p)}`, null);
}

function checkedPort(p: number): number {
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new NetlinkError(`cannot encode port ${p}`, null);
  return p;
}

function checkedAddress(type: FieldType, b: Uint8Array | null): Uint8Array {
  const want = type === 'ipv4_addr' ? 4 : 16;
  if (b === null || b.length !== want)
    throw new NetlinkError(`cannot encode ${type} from ${b?.length ?? 0} bytes`, null);
  return b;
}

/** octets a field takes in a concatenation: its size, padded to 4 (uapi NFT_REG32_SIZE) */
function fieldSize(type: FieldType): number {
  return type === 'ipv6_addr' ? 16 : 4;
}

/** a key or data field at `off`: addresses as their bytes, protocol as one octet, ports in network order */
function writeField(b: Buffer, off: number, type: FieldType, v: Uint8Array | L4Protocol | number | null): void {
  if (type === 'ipv4_addr' || type === 'ipv6_addr') b.set(checkedAddress(type, v as Uint8Array | null), off);
  else if (type === 'inet_proto') b[off] = protoNumber(v as L4Protocol | null);
  else b.writeUInt16BE(checkedPort(v as number), off);
}

/** a field of a key is padded to 4 octets, except a key of one field (a port alone: 2 octets, as nft writes it) */
function keySize(layout: SetLayout): number {
  if (layout.key.length === 1) return layout.key[0]![1] === 'inet_service' ? 2 : fieldSize(layout.key[0]![1]);
  return layout.key.reduce((n, [, type]) => n + fieldSize(type), 0);
}

/** the element's key as the kernel holds it, from the typed element and its set's layout (model.ts) */
export function encodeKey(el: NftElement): Buffer {
  const b = Buffer.alloc(keySize(keyLayout(el)));
  writeKey(b, 0, el);
  return b;
}

function keyLayout(el: NftElement): SetLayout {
  const layout = SET_LAYOUTS[el.set];
  if (layout.interval) throw new NetlinkError(`set ${el.set} is an interval set: not written over netlink`, null);
  return layout;
}

function writeKey(b: Buffer, at: number, el: NftElement): void {
  let off = at;
  for (const [field, type] of keyLayout(el).key) {
    writeField(b, off, type, field === 'port' ? el.port : el[field]);
    off += fieldSize(type);
  }
}

/** map data (fwd4, fwd4_peer: address . port) */
export function encodeData(set: ElementSet, data: ElementData | null): Buffer {
  const b = Buffer.alloc(dataSize(set));
  writeData(b, 0, set, data);
  return b;
}

function dataSize(set: ElementSet): number {
  const types = SET_LAYOUTS[set].data;
  return types === null ? 0 : types.reduce((n, t) => n + fieldSize(t), 0);
}

function writeData(b: Buffer, at: number, set: ElementSet, data: ElementData | null): void {
  const types = SET_LAYOUTS[set].data;
  if (types === null || data === null) throw new NetlinkError(`set ${set} element without map data`, null);
  writeField(b, at, types[0]!, data.address);
  if (types.length === 2) writeField(b, at + fieldSize(types[0]!), types[1]!, data.port);
}

/** whether a batch of steps can go over netlink (every set is one of the plain ones) */
export function netlinkCan(steps: readonly ElementStep[]): boolean {
  return steps.every((s) => NETLINK_SETS.has(s.set));
}

// A batch is written into one buffer, sized first: every attribute is a 4-octet header (length, type) and its
// payload padded to 4 octets (zeros); a nest's length counts its padded children. One allocation per tick
// instead of ≈ 20 small buffers per element (they showed in the cold-start profile, docs/benchmarks.md).
const pad4 = (n: number): number => (n + 3) & ~3;

function putHeader(b: Buffer, off: number, len: number, type: number): number {
  b.writeUInt16LE(len, off);
  b.writeUInt16LE(type, off + 2);
  return off + 4;
}

/** an attribute with a NUL-terminated name as its payload */
function putName(b: Buffer, off: number, type: number, name: string): number {
  const n = Buffer.byteLength(name, 'utf8') + 1;
  putHeader(b, off, 4 + n, type);
  b.write(name, off + 4, 'utf8');
  return off + pad4(4 + n);
}

const nameSize = (name: string): number => pad4(4 + Buffer.byteLength(name, 'utf8') + 1);

/** NFTA_LIST_ELEM { KEY { VALUE key } [TIMEOUT ms] [DATA { VALUE data }] } */
function elementSize(set: ElementSet, el: NftElement, verb: 'add' | 'delete'): number {
  let n = 4 + 4 + pad4(keySize(keyLayout(el)));
  if (verb === 'add') {
    if (el.timeout !== null) n += 12;
    if (SET_LAYOUTS[set].data !== null) n += 4 + 4 + pad4(dataSize(set));
  }
  return 4 + n;
}

function putElement(b: Buffer, at: number, set: ElementSet, el: NftElement, verb: 'add' | 'delete'): number {
  let off = putHeader(b, at, elementSize(set, el, verb), NFTA_LIST_ELEM | NLA_F_NESTED);
  const kl = keySize(keyLayout(el));
  off = putHeader(b, off, 4 + pad4(4 + kl), NFTA_SET_ELEM_KEY | NLA_F_NESTED);
  off = putHeader(b, off, 4 + kl, NFTA_DATA_VALUE);
  writeKey(b, off, el);
  off += pad4(kl);
  if (verb === 'add') {
    if (el.timeout !== null) {
      off = putHeader(b, off, 12, NFTA_SET_ELEM_TIMEOUT);
      b.writeBigUInt64BE(BigInt(timeoutSeconds(el.timeout) * 1000), off);
      off += 8;
    }
    if (SET_LAYOUTS[set].data !== null) {
      const dl = dataSize(set);
      off = putHeader(b, off, 4 + pad4(4 + dl), NFTA_SET_ELEM_DATA | NLA_F_NESTED);
      off = putHeader(b, off, 4 + dl, NFTA_DATA_VALUE);
      writeData(b, off, set, el.data);
      off += pad4(dl);
    }
  }
  return off;
}

/** the 20-octet nlmsghdr + nfgenmsg */
function putMessageHeader(
  b: Buffer,
  off: number,
  len: number,
  type: number,
  flags: number,
  seq: number,
  family: number,
  resId: number,
): number {
  b.writeUInt32LE(len, off);
  b.writeUInt16LE(type, off + 4);
  b.writeUInt16LE(flags, off + 6);
  b.writeUInt32LE(seq >>> 0, off + 8);
  b.writeUInt32LE(0, off + 12); // port id: the kernel
  b.writeUInt8(family, off + 16); // nfgenmsg
  b.writeUInt8(0, off + 17); // NFNETLINK_V0
  b.writeUInt16BE(resId, off + 18);
  return off + 20;
}

/** what one acked message carried: its step and the slice of its elements (described only when it fails) */
export interface AckedMessage {
  readonly step: ElementStep;
  readonly from: number;
  readonly to: number;
}

/** `add element fwd4 { tcp . 80, … }` for an error message */
export function describeMessage(m: AckedMessage): string {
  return `${m.step.verb} element ${m.step.set} { ${m.step.elements
    .slice(m.from, m.to)
    .map((e) => keyText(e))
    .join(', ')} }`.slice(0, 200);
}

export interface EncodedBatch {
  readonly buffer: Buffer;
  /** sequence numbers of the messages that answer (one ack or error each), with what each carried */
  readonly acked: ReadonlyMap<number, AckedMessage>;
}

/**
 * One nfnetlink batch: BEGIN, a NEWSETELEM/DELSETELEM per step (split every 256 elements), END.
 * An add without NLM_F_EXCL is `nft add element`: EEXIST when the element is there with other data; with
 * the same data a no-op up to kernel 6.11, and from 6.12 it takes the new timeout. A delete of a missing
 * element is ENOENT. Timeouts in whole seconds, as nft writes them.
 */
export function encodeBatch(table: string, steps: readonly ElementStep[], firstSeq: number): EncodedBatch {
  // sizes first (and every check: a set or element that cannot be encoded throws before anything is written)
  const names = nameSize(table);
  let total = 40; // BEGIN and END
  const sizes: number[][] = [];
  for (const step of steps) {
    if (!NETLINK_SETS.has(step.set)) throw new NetlinkError(`set ${step.set} is not written over netlink`, null);
    const per: number[] = [];
    for (let i = 0; i < step.elements.length; i += ELEMENTS_PER_MESSAGE) {
      let n = 0;
      const to = Math.min(step.elements.length, i + ELEMENTS_PER_MESSAGE);
      for (let k = i; k < to; k++) n += elementSize(step.set, step.elements[k]!, step.verb);
      per.push(n);
      total += 20 + names + nameSize(step.set) + 4 + n;
    }
    sizes.push(per);
  }
  const b = Buffer.alloc(total);
  let seq = firstSeq;
  let off = putMessageHeader(b, 0, 20, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES);
  const acked = new Map<number, AckedMessage>();
  steps.forEach((step, si) => {
    const type = (NFNL_SUBSYS_NFTABLES << 8) | (step.verb === 'add' ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM);
    const flags = NLM_F_REQUEST | NLM_F_ACK | (step.verb === 'add' ? NLM_F_CREATE : 0);
    sizes[si]!.forEach((n, m) => {
      const from = m * ELEMENTS_PER_MESSAGE;
      const to = Math.min(step.elements.length, from + ELEMENTS_PER_MESSAGE);
      const s = seq++;
      acked.set(s, { step, from, to });
      const len = 20 + names + nameSize(step.set) + 4 + n;
      off = putMessageHeader(b, off, len, type, flags, s, NFPROTO_INET, 0);
      off = putName(b, off, NFTA_SET_ELEM_LIST_TABLE, table);
      off = putName(b, off, NFTA_SET_ELEM_LIST_SET, step.set);
      off = putHeader(b, off, 4 + n, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
      for (let k = from; k < to; k++) off = putElement(b, off, step.set, step.elements[k]!, step.verb);
    });
  });
  putMessageHeader(b, off, 20, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES);
  return { buffer: b, acked };
}

export interface NetlinkAnswer {
  readonly seq: number;
  /** 0 = ack, else a positive errno */
  readonly errno: number;
  /** the kernel's extended ack text, when it gave one */
  readonly text?: string;
}

/** the NLMSG_ERROR messages (acks and errors) in one datagram read from the socket */
export function parseAnswers(buf: Buffer, length: number): NetlinkAnswer[] {
  const out: NetlinkAnswer[] = [];
  let off = 0;
  while (off + 16 <= length) {
    const len = buf.readUInt32LE(off);
    if (len < 16 || off + len > length) break;
    const type = buf.readUInt16LE(off + 4);
    const flags = buf.readUInt16LE(off + 6);
    if (type === NLMSG_ERROR && len >= 36) {
      const err = -buf.readInt32LE(off + 16) | 0; // the kernel sends -errno (0: ack)
      const seq = buf.readUInt32LE(off + 20 + 8); // the echoed request header's sequence number
      let text: string | undefined;
      // extended ack attributes (NLM_F_ACK_TLVS, 0x200) follow the echoed header only when the echo was capped
      // to the header (NLM_F_CAPPED, 0x100: NETLINK_CAP_ACK took); otherwise the whole request sits in between
      if ((flags & 0x300) === 0x300) {
        let a = off + 36;
        while (a + 4 <= off + len) {
          const alen = buf.readUInt16LE(a);
          const atype = buf.readUInt16LE(a + 2) & 0x3fff;
          if (alen < 4) break;
          if (atype === NLMSGERR_ATTR_MSG) text = buf.toString('utf8', a + 4, a + alen).replace(/\0+$/, '');
          a += (alen + 3) & ~3;
        }
      }
      out.push(text === undefined ? { seq, errno: err } : { seq, errno: err, text });
    }
    off += (len + 3) & ~3;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// the socket

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, val: Buffer, len: Buffer): number;
  open(path: string, flags: number): number;
  setns(fd: number, nstype: number): number;
  close(fd: number): number;
  errno(): number;
}

let libc: Libc | null | undefined;
let libcError = '';

export function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    const require = createRequire(import.meta.url);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const koffi = require('koffi') as {
      load(name: string): { func(sig: string): (...args: unknown[]) => unknown };
      errno(): number;
    };
    const lib = koffi.load('libc.so.6');
    const f = (sig: string) => lib.func(sig) as (...args: unknown[]) => number;
    const socket = f('int socket(int, int, int)');
    const send = f('long send(int, const void *, unsigned long, int)');
    const recv = f('long recv(int, _Out_ void *, unsigned long, int)');
    const setsockopt = f('int setsockopt(int, int, int, const void *, unsigned int)');
    const getsockopt = f('int getsockopt(int, int, int, _Out_ void *, _Inout_ unsigned int *)');
    const open = f('int open(const char *, int)');
    const setns = f('int setns(int, int)');
    const close = f('int close(int)');
    libc = {
      socket: (a, b, c) => socket(a, b, c),
      send: (a, b, c, d) => send(a, b, c, d),
      recv: (a, b, c, d) => recv(a, b, c, d),
      setsockopt: (a, b, c, d, e) => setsockopt(a, b, c, d, e),
      getsockopt: (a, b, c, d, e) => getsockopt(a, b, c, d, e),
      open: (a, b) => open(a, b),
      setns: (a, b) => setns(a, b),
      close: (a) => close(a),
      errno: () => koffi.errno(),
    };
  } catch (err) {
    libcError = err instanceof Error ? err.message : String(err);
    libc = null;
  }
  return libc;
}

export interface NfNetlink {
  /**
   * Sends the steps as one batch and reads every answer. true: committed. false: not sent because it is
   * longer than the socket's send buffer (nothing applied: write it another way). Throws NetlinkError:
   * `refused` (nothing applied) or `unknown` (the kernel may have committed it).
   */
  commit(table: string, steps: readonly ElementStep[]): boolean;
  /** whether the namespace the socket was opened in is still the one of that name (false: reopen) */
  current(): boolean;
  close(): void;
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n, 0);
  return b;
}

/** device and inode of /run/netns/NAME (null without a namespace, or when it is gone) */
function netnsIdentity(netns: string | undefined): string | null {
  if (!netns) return null;
  try {
    const st = statSync(`/run/netns/${netns}`);
    return `${st.dev}:${st.ino}`;
  } catch {
    return 'gone';
  }
}

/** a socket in `netns` (by name, /run/netns/NAME) or in ours; the calling thread's namespace is restored at once */
function openSocket(c: Libc, netns: string | undefined): number {
  if (!netns) return c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  const self = c.open('/proc/thread-self/ns/net', O_RDONLY | O_CLOEXEC);
  if (self < 0) throw new NetlinkError(`cannot open our network namespace: ${errnoText(c.errno())}`, c.errno());
  const target = c.open(`/run/netns/${netns}`, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    const e = c.errno();
    c.close(self);
    throw new NetlinkError(`cannot open network namespace ${netns}: ${errnoText(e)}`, e);
  }
  try {
    if (c.setns(target, CLONE_NEWNET) !== 0)
      throw new NetlinkError(`cannot enter network namespace ${netns}: ${errnoText(c.errno())}`, c.errno());
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    const e = c.errno();
    if (c.setns(self, CLONE_NEWNET) !== 0) {
      const back = c.errno();
      if (fd >= 0) c.close(fd);
      // the main thread would stay in the lab's namespace: nothing sane can continue
      throw new Error(`cannot return from network namespace ${netns}: ${errnoText(back)}`);
    }
    if (fd < 0) throw new NetlinkError(`cannot open a netlink socket in ${netns}: ${errnoText(e)}`, e);
    return fd;
  } finally {
    c.close(target);
    c.close(self);
  }
}

/**
 * Opens the nf_tables netlink socket, or returns the reason it cannot (the caller stays on nft).
 * `netns`: the namespace to open it in (the driver's netns option); the socket stays there.
 */
export function openNfNetlink(opts: { netns?: string | undefined } = {}): NfNetlink | string {
  const c = loadLibc();
  if (!c) return `no FFI for netlink sockets (koffi: ${libcError})`;
  let fd: number;
  try {
    fd = openSocket(c, opts.netns);
  } catch (err) {
    if (err instanceof NetlinkError) return err.message;
    throw err;
  }
  if (fd < 0) return `cannot open a netlink socket: ${errnoText(c.errno())}`;
  const nsId = netnsIdentity(opts.netns);
  const one = int32(1);
  c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4); // errors echo only the header, not the whole request
  c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4); // and carry the kernel's reason as text
  // as nft does: room for big batches (FORCE needs CAP_NET_ADMIN, which writing nf_tables needs anyway)
  if (c.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, int32(WANT_SNDBUF), 4) !== 0)
    c.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, int32(WANT_SNDBUF), 4);
  const got = Buffer.alloc(4);
  const gotLen = Buffer.alloc(4);
  gotLen.writeUInt32LE(4, 0);
  // the kernel reports twice what it keeps for data; netlink_sendmsg refuses a message longer than sk_sndbuf - 32
  const sendLimit = c.getsockopt(fd, SOL_SOCKET, SO_SNDBUF, got, gotLen) === 0 ? got.readInt32LE(0) - 32 : 212_992 - 32;
  const rbuf = Buffer.alloc(1 << 16);
  let seq = (Date.now() & 0x3fffffff) >>> 0;
  let closed = false;

  return {
    commit(table: string, steps: readonly ElementStep[]): boolean {
      if (closed) throw new NetlinkError('netlink socket closed', null);
      if (steps.every((s) => s.elements.length === 0)) return true;
      const batch = encodeBatch(table, steps, seq);
      const first = seq;
      const last = seq + batch.acked.size + 1; // BEGIN .. END
      seq = (last + 1) & 0x3fffffff;
      if (batch.buffer.length > sendLimit) return false;
      // answers left from an earlier batch whose reading was cut short: not this batch's
      while (c.recv(fd, rbuf, rbuf.length, MSG_DONTWAIT) > 0) {
        /* stale */
      }
      const sent = c.send(fd, batch.buffer, batch.buffer.length, 0);
      if (sent !== batch.buffer.length) {
        const e = sent < 0 ? c.errno() : null;
        if (e === EMSGSIZE || e === ENOBUFS) return false; // refused before the kernel looked at it
        throw new NetlinkError(
          `netlink send failed: ${e !== null ? errnoText(e) : `${sent} of ${batch.buffer.length} octets`}`,
          e,
        );
      }
      // The kernel handled the batch inside sendmsg(): every answer is queued already, so read without
      // waiting (as nft does). Every element message is acked; errors of the batch as a whole (no
      // permission, a failed commit: "acks" may still come for each message then) carry BEGIN's number.
      const answered = new Set<number>();
      const errors: string[] = [];
      let firstErrno: number | null = null;
      for (let reads = 0; reads < 1024; reads++) {
        const n = c.recv(fd, rbuf, rbuf.length, MSG_DONTWAIT);
        if (n <= 0) {
          const e = n < 0 ? c.errno() : null;
          if (e === EAGAIN) break;
          throw new NetlinkError(
            `netlink: reading the answers failed (${e !== null ? errnoText(e) : 'socket closed'}); the batch may ` +
              'have been applied',
            e,
            'unknown',
          );
        }
        for (const a of parseAnswers(rbuf, n)) {
          const inBatch = a.seq >= first && a.seq <= last;
          if (!inBatch) continue;
          answered.add(a.seq);
          if (a.errno !== 0) {
            firstErrno ??= a.errno;
            const m = batch.acked.get(a.seq);
            const what = m ? describeMessage(m) : 'the batch';
            errors.push(`${what}: ${errnoText(a.errno)}${a.text ? ` — ${a.text}` : ''}`);
          }
        }
      }
      if (errors.length > 0) throw new NetlinkError(`netlink batch refused: ${errors.join('; ')}`, firstErrno);
      const missing = [...batch.acked.keys()].filter((k) => !answered.has(k)).length;
      if (missing > 0)
        throw new NetlinkError(
          `netlink: ${missing} answer(s) missing; the batch may have been applied`,
          null,
          'unknown',
        );
      return true;
    },
    current(): boolean {
      return nsId === null || netnsIdentity(opts.netns) === nsId;
    },
    close(): void {
      if (closed) return;
      closed = true;
      c.close(fd);
    },
  };
}
