/**
 * sock-diag.ts's codec against hand-built kernel answers (linux/inet_diag.h layouts): the request's bytes, the
 * socket records (IPv4, `::`, `::ffff:a.b.c.d`, other IPv6), the end of a dump, and an error answer (the
 * protocol's diag module missing), which must throw so the caller falls back to /proc rather than see no ports.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeDiagRequest, parseDiagAnswer, type LocalSocket } from '../../src/dataplane/sock-diag.js';

const SEQ = 4242;
function header(len: number, type: number, seq = SEQ): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(len, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(0x2, 6); // NLM_F_MULTI
  b.writeUInt32LE(seq, 8);
  return b;
}
/** one SOCK_DIAG_BY_FAMILY record: nlmsghdr + inet_diag_msg (72 octets) */
function record(family: number, port: number, src: number[], seq = SEQ): Buffer {
  const m = Buffer.alloc(72);
  m[0] = family;
  m[1] = 10;
  m.writeUInt16BE(port, 4);
  Buffer.from(src).copy(m, 8);
  return Buffer.concat([header(16 + 72, 20, seq), m]);
}
const done = (seq = SEQ) => Buffer.concat([header(20, 3, seq), Buffer.alloc(4)]);

describe('sock_diag codec', () => {
  it('asks for one family, protocol and state set as a dump', () => {
    const b = encodeDiagRequest(10, 17, 1 << 7, 7);
    assert.equal(b.length, 72);
    assert.equal(b.readUInt32LE(0), 72);
    assert.equal(b.readUInt16LE(4), 20, 'SOCK_DIAG_BY_FAMILY');
    assert.equal(b.readUInt16LE(6), 0x301, 'NLM_F_REQUEST | NLM_F_DUMP');
    assert.equal(b.readUInt32LE(8), 7);
    assert.deepEqual([b[16], b[17]], [10, 17]);
    assert.equal(b.readUInt32LE(20), 0x80, 'TCP_CLOSE only (unconnected UDP)');
  });

  it('reads IPv4, ::, ::ffff:a.b.c.d and other IPv6 records, skips other dumps, and ends at NLMSG_DONE', () => {
    const buf = Buffer.concat([
      record(2, 51820, [203, 0, 113, 1]),
      record(10, 2222, Array(16).fill(0)),
      record(10, 8080, [...Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 1]),
      record(10, 9090, [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1]),
      record(2, 1111, [10, 0, 0, 1], SEQ + 1), // an earlier dump's: not this one's
      done(),
    ]);
    const out: LocalSocket[] = [];
    assert.deepEqual(parseDiagAnswer(buf, buf.length, 'udp', SEQ, out), { done: true });
    assert.deepEqual(out, [
      { protocol: 'udp', port: 51820, ipv4: 0xcb007101 },
      { protocol: 'udp', port: 2222, ipv4: 0 },
      { protocol: 'udp', port: 8080, ipv4: 0xc0000201 },
      { protocol: 'udp', port: 9090, ipv4: null },
    ]);
  });

  it('a datagram without NLMSG_DONE is not the end; an error answer and a truncated one throw', () => {
    const part = record(2, 22, [0, 0, 0, 0]);
    const out: LocalSocket[] = [];
    assert.deepEqual(parseDiagAnswer(part, part.length, 'tcp', SEQ, out), { done: false });
    assert.deepEqual(out, [{ protocol: 'tcp', port: 22, ipv4: 0 }]);
    const err = Buffer.concat([header(36, 2), Buffer.alloc(20)]);
    err.writeInt32LE(-2, 16); // -ENOENT: no udp_diag
    assert.throws(() => parseDiagAnswer(err, err.length, 'udp', SEQ, []), /errno 2/);
    assert.throws(() => parseDiagAnswer(part, part.length - 8, 'tcp', SEQ, []), /truncated/);
  });
});
