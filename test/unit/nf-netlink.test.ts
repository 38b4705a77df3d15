/**
 * The nf_tables netlink encoder and answer parser (src/dataplane/nf-netlink.ts), byte by byte.
 * The kernel's side (that it accepts these bytes and stores what nft would) is test/lab/nf-netlink.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  NetlinkError,
  encodeBatch,
  encodeData,
  encodeKey,
  netlinkCan,
  parseAnswers,
} from '../../src/dataplane/nf-netlink.js';
import type { ElementSet, ElementStep, NftElement } from '../../src/dataplane/model.js';
import { decodeText } from '../../src/dataplane/nft-text.js';

/** a typed element from nft's text of it (the text decoder is tested in nft-listing.test.ts) */
function el(set: ElementSet, key: string, data: string | null = null, timeout: number | null = null): NftElement {
  const k = decodeText(set, key, data, null);
  assert.ok(k, `${set} ${key} decodes`);
  const { expires: _, ...rest } = k;
  return { ...rest, timeout };
}

/** netlink messages of a buffer: [type, flags, seq, family, resId, payload] */
function messages(
  buf: Buffer,
): { type: number; flags: number; seq: number; family: number; resId: number; payload: Buffer }[] {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    const len = buf.readUInt32LE(off);
    assert.ok(len >= 20 && off + len <= buf.length, `message at ${off} has a sane length`);
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      family: buf.readUInt8(off + 16),
      resId: buf.readUInt16BE(off + 18),
      payload: buf.subarray(off + 20, off + len),
    });
    off += (len + 3) & ~3;
  }
  return out;
}

/** attributes of a payload: [type (without flags), nested flag, value] */
function attrs(buf: Buffer): { type: number; nested: boolean; value: Buffer }[] {
  const out = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const t = buf.readUInt16LE(off + 2);
    assert.ok(len >= 4 && off + len <= buf.length);
    out.push({ type: t & 0x3fff, nested: (t & 0x8000) !== 0, value: buf.subarray(off + 4, off + len) });
    off += (len + 3) & ~3;
  }
  return out;
}

describe('nf-netlink encoding', () => {
  it('encodes keys as the kernel holds them: concatenated fields padded to 4 octets, network order', () => {
    assert.deepEqual([...encodeKey(el('fwd4', 'tcp . 8080', '192.168.77.11 . 80'))], [6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
    assert.deepEqual([...encodeKey(el('fwd4', 'udp . 65535', '192.168.77.11 . 80'))], [17, 0, 0, 0, 0xff, 0xff, 0, 0]);
    assert.deepEqual(
      [...encodeKey(el('fwd4_peer', '198.51.100.7 . udp . 443', '192.168.77.11 . 80'))],
      [198, 51, 100, 7, 17, 0, 0, 0, 0x01, 0xbb, 0, 0],
    );
    assert.deepEqual([...encodeKey(el('live_tcp', '1'))], [0, 1]);
    assert.deepEqual(
      [...encodeData('fwd4', { address: Uint8Array.of(192, 168, 77, 11), port: 80 })],
      [192, 168, 77, 11, 0, 80, 0, 0],
    );
  });

  it('refuses what it cannot encode with a NetlinkError, never a wrong value', () => {
    const base = el('fwd4', 'tcp . 1', '192.168.77.11 . 1');
    const peer = el('fwd4_peer', '198.51.100.7 . tcp . 1', '192.168.77.11 . 1');
    const bad: [string, NftElement][] = [
      ['sctp', { ...base, protocol: 'sctp' as 'tcp' }],
      ['port 65536', { ...base, port: 65536, portEnd: 65536 }],
      ['port -1', { ...base, port: -1, portEnd: -1 }],
      ['port 1.5', { ...base, port: 1.5, portEnd: 1.5 }],
      ['no protocol', { ...base, protocol: null }],
      ['3-byte remote', { ...peer, remote: Uint8Array.of(1, 2, 3) }],
      ['16-byte remote in an IPv4 set', { ...peer, remote: new Uint8Array(16) }],
      ['no remote', { ...peer, remote: null }],
      ['interval map', el('fwd4_range', 'tcp . 1-5', '192.168.77.11')],
      ['interval set', el('live_tcp_range', '1-5')],
    ];
    for (const [what, e] of bad) assert.throws(() => encodeKey(e), NetlinkError, what);
    assert.throws(() => encodeData('fwd4', { address: Uint8Array.of(192, 168, 77, 11), port: null }), NetlinkError);
    assert.throws(() => encodeData('fwd4', { address: new Uint8Array(16), port: 1 }), NetlinkError);
    assert.throws(() => encodeData('live_tcp', null), NetlinkError);
  });

  it('any port round-trips through the key', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), fc.constantFrom('tcp', 'udp'), (port, p) => {
        const b = encodeKey({ ...el('fwd4', 'tcp . 1', '192.168.77.11 . 1'), protocol: p, port, portEnd: port });
        return (
          b.length === 8 && b.readUInt16BE(4) === port && b[0] === (p === 'tcp' ? 6 : 17) && b[1] === 0 && b[6] === 0
        );
      }),
    );
  });

  it('netlinkCan: only the plain sets (no intervals)', () => {
    assert.equal(netlinkCan([{ verb: 'add', set: 'live_tcp', elements: [el('live_tcp', '1', null, 1)] }]), true);
    assert.equal(
      netlinkCan([
        { verb: 'add', set: 'live_tcp', elements: [] },
        { verb: 'add', set: 'fwd4_range', elements: [] },
      ]),
      false,
    );
    assert.equal(netlinkCan([{ verb: 'delete', set: 'live_udp_range', elements: [] }]), false);
  });

  it('a batch is BEGIN, one acked NEWSETELEM/DELSETELEM per step, END, with the elements nft would write', () => {
    const steps: ElementStep[] = [
      {
        verb: 'add',
        set: 'fwd4',
        elements: [el('fwd4', 'udp . 5000', '192.168.77.11 . 5001', 120)],
      },
      { verb: 'delete', set: 'live_udp', elements: [el('live_udp', '5000', null, 1)] },
      { verb: 'add', set: 'live_udp', elements: [el('live_udp', '5000', null, null)] },
    ];
    const b = encodeBatch('portd', steps, 41);
    const m = messages(b.buffer);
    assert.deepEqual(
      m.map((x) => [x.type, x.flags, x.seq]),
      [
        [0x10, 0x1, 41], // NFNL_MSG_BATCH_BEGIN
        [(10 << 8) | 12, 0x1 | 0x4 | 0x400, 42], // NEWSETELEM, REQUEST|ACK|CREATE (no EXCL: nft's `add`)
        [(10 << 8) | 14, 0x1 | 0x4, 43], // DELSETELEM
        [(10 << 8) | 12, 0x1 | 0x4 | 0x400, 44],
        [0x11, 0x1, 45], // NFNL_MSG_BATCH_END
      ],
    );
    assert.equal(m[0]!.resId, 10, 'batch begin names the nf_tables subsystem');
    assert.equal(m[1]!.family, 1, 'NFPROTO_INET');
    assert.deepEqual([...b.acked.keys()], [42, 43, 44]);

    const top = attrs(m[1]!.payload);
    assert.deepEqual(
      top.map((a) => [a.type, a.nested]),
      [
        [1, false],
        [2, false],
        [3, true],
      ],
    );
    assert.equal(top[0]!.value.toString(), 'portd\0');
    assert.equal(top[1]!.value.toString(), 'fwd4\0');
    const elems = attrs(top[2]!.value);
    assert.equal(elems.length, 1);
    const parts = attrs(elems[0]!.value);
    assert.deepEqual(
      parts.map((a) => [a.type, a.nested]),
      [
        [1, true],
        [4, false],
        [2, true],
      ],
    ); // key, timeout, data
    assert.deepEqual([...attrs(parts[0]!.value)[0]!.value], [17, 0, 0, 0, 0x13, 0x88, 0, 0]);
    assert.equal(parts[1]!.value.readBigUInt64BE(0), 120_000n, 'timeout in ms');
    assert.deepEqual([...attrs(parts[2]!.value)[0]!.value], [192, 168, 77, 11, 0x13, 0x89, 0, 0]);

    // a delete carries only keys; an add without timeout carries none (the element never expires)
    const delParts = attrs(attrs(attrs(m[2]!.payload)[2]!.value)[0]!.value);
    assert.deepEqual(
      delParts.map((a) => a.type),
      [1],
    );
    const noTimeout = attrs(attrs(attrs(m[3]!.payload)[2]!.value)[0]!.value);
    assert.deepEqual(
      noTimeout.map((a) => a.type),
      [1],
    );
  });

  it('splits a step every 256 elements, each message acked', () => {
    const els = Array.from({ length: 600 }, (_, i) => el('live_tcp', String(i + 1), null, 30));
    const b = encodeBatch('t', [{ verb: 'add', set: 'live_tcp', elements: els }], 1);
    const m = messages(b.buffer);
    assert.equal(m.length, 5);
    assert.deepEqual(
      m.slice(1, 4).map((x) => attrs(attrs(x.payload)[2]!.value).length),
      [256, 256, 88],
    );
    assert.equal(b.acked.size, 3);
  });

  it('writes the same bytes as the encoder of one buffer per attribute did (before the one-buffer batch)', () => {
    // sha256 (first 16 hex digits) of each batch as the earlier encoder wrote it: every set, add and delete,
    // with and without timeout, a fractional timeout, a name of odd length, a step split in two messages
    const steps: ElementStep[] = [
      {
        verb: 'add',
        set: 'fwd4',
        elements: [
          el('fwd4', 'udp . 5000', '192.168.77.11 . 5001', 120),
          el('fwd4', 'tcp . 65535', '10.0.0.1 . 1', 3600.5),
        ],
      },
      { verb: 'delete', set: 'fwd4', elements: [el('fwd4', 'tcp . 80', '192.168.77.12 . 8080', 30)] },
      {
        verb: 'add',
        set: 'fwd4_peer',
        elements: [el('fwd4_peer', '198.51.100.7 . udp . 443', '192.168.77.11 . 80', 60)],
      },
      { verb: 'delete', set: 'live_udp', elements: [el('live_udp', '5000', null, 1)] },
      { verb: 'add', set: 'live_tcp', elements: [el('live_tcp', '5000', null, null), el('live_tcp', '7', null, 0.2)] },
      { verb: 'add', set: 'pin6', elements: [el('pin6', '2001:db8::1 . tcp . 443', null, 100)] },
      {
        verb: 'delete',
        set: 'pin6_peer',
        elements: [el('pin6_peer', '2001:db8::2 . 2001:db8::1 . udp . 9', null, 100)],
      },
      {
        verb: 'add',
        set: 'live_udp',
        elements: Array.from({ length: 300 }, (_, i) => el('live_udp', String(i + 1), null, 10)),
      },
    ];
    const hash = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 16);
    assert.deepEqual(
      steps.map((s) => hash(encodeBatch('portd', [s], 7).buffer)),
      [
        '1567afafbf8f3e4b',
        'ae8f4c66a86574ce',
        '1245f67ae289fd89',
        'fa6d9a9570b875b0',
        'ca3fc28a38d09f4d',
        'f4ff503bfe9a31c8',
        '10200ab3bb2dd10b',
        'cd59b35c4da1ab55',
      ],
    );
    const all = encodeBatch('a-table', steps, 1000).buffer;
    assert.equal(all.length, 9224);
    assert.equal(hash(all), '0c0f9f3a01f4a1bb');
  });
});

describe('nf-netlink answers', () => {
  /**
   * an NLMSG_ERROR datagram as the kernel sends it with NETLINK_CAP_ACK (echoed header only), optionally with an
   * ext-ack text
   */
  function answer(seq: number, errno: number, text?: string): Buffer {
    const tlv =
      text === undefined
        ? Buffer.alloc(0)
        : (() => {
            const v = Buffer.from(`${text}\0`);
            const t = Buffer.alloc((4 + v.length + 3) & ~3);
            t.writeUInt16LE(4 + v.length, 0);
            t.writeUInt16LE(1, 2);
            v.copy(t, 4);
            return t;
          })();
    const b = Buffer.alloc(36 + tlv.length);
    b.writeUInt32LE(b.length, 0);
    b.writeUInt16LE(2, 4);
    b.writeUInt16LE(text === undefined ? 0x100 : 0x300, 6);
    b.writeUInt32LE(seq, 8);
    b.writeInt32LE(-errno, 16);
    b.writeUInt32LE(40, 20);
    b.writeUInt16LE((10 << 8) | 12, 24);
    b.writeUInt32LE(seq, 28); // the echoed request header
    tlv.copy(b, 36);
    return b;
  }

  it("reads acks, errnos and the kernel's text, and ignores other messages", () => {
    const other = Buffer.alloc(20);
    other.writeUInt32LE(20, 0);
    other.writeUInt16LE(3, 4); // NLMSG_DONE
    const buf = Buffer.concat([answer(7, 0), other, answer(8, 17, 'element exists'), answer(9, 2)]);
    assert.deepEqual(parseAnswers(buf, buf.length), [
      { seq: 7, errno: 0 },
      { seq: 8, errno: 17, text: 'element exists' },
      { seq: 9, errno: 2 },
    ]);
  });

  it("reads the kernel's text only when the echo was capped to the header (else the request sits before it)", () => {
    const b = answer(8, 17, 'element exists');
    b.writeUInt16LE(0x200, 6); // NLM_F_ACK_TLVS without NLM_F_CAPPED
    assert.deepEqual(parseAnswers(b, b.length), [{ seq: 8, errno: 17 }]);
  });

  it('never reads past a truncated datagram', () => {
    const buf = Buffer.concat([answer(7, 0), answer(8, 0)]);
    assert.deepEqual(
      parseAnswers(buf, buf.length - 10).map((a) => a.seq),
      [7],
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const b = Buffer.from(bytes);
        return Array.isArray(parseAnswers(b, b.length));
      }),
    );
  });
});
