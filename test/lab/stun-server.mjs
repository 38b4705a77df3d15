// A tiny STUN (RFC 8489) Binding server for the tests, plain node and independent of protocols/stun/ (it
// encodes by hand, so a bug in our codec is not mirrored here). Modes for the integration test's bad answers.
//   node test/lab/stun-server.mjs <address> <port> [mode]     prints {"listening":...} then one line per request
// Modes: xor (XOR-MAPPED-ADDRESS + SOFTWARE), mapped (MAPPED-ADDRESS only, as RFC 3489 servers),
// garbage (random bytes), wrong-tx (a valid response to another transaction), short (a truncated attribute),
// error (420 error response), silent (counts, never answers).
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const COOKIE = 0x2112a442;

function attr(type, value) {
  const pad = (4 - (value.length % 4)) % 4;
  const b = Buffer.alloc(4 + value.length + pad);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(value.length, 2);
  value.copy(b, 4);
  return b;
}

function message(type, txid, attrs) {
  const body = Buffer.concat(attrs);
  const h = Buffer.alloc(20);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(body.length, 2);
  h.writeUInt32BE(COOKIE, 4);
  txid.copy(h, 8);
  return Buffer.concat([h, body]);
}

function v4(address, port, xor) {
  const v = Buffer.alloc(8);
  v[1] = 0x01;
  const n = address.split('.').reduce((a, o) => (a << 8) + Number(o), 0) >>> 0;
  v.writeUInt16BE(xor ? port ^ (COOKIE >>> 16) : port, 2);
  v.writeUInt32BE(xor ? (n ^ COOKIE) >>> 0 : n, 4);
  return v;
}

/** answer(request, rinfo) → Buffer | null */
export function responder(mode = 'xor', reportAs = null) {
  return (req, rinfo) => {
    if (req.length < 20 || req.readUInt32BE(4) !== COOKIE || req.readUInt16BE(0) !== 0x0001) return null;
    const txid = req.subarray(8, 20);
    const addr = reportAs ?? rinfo.address;
    switch (mode) {
      case 'silent':
        return null;
      case 'garbage':
        return randomBytes(48);
      case 'wrong-tx':
        return message(0x0101, randomBytes(12), [attr(0x0020, v4(addr, rinfo.port, true))]);
      case 'short': {
        const m = message(0x0101, txid, [attr(0x0020, v4(addr, rinfo.port, true))]);
        m.writeUInt16BE(0x0040, 22); // the attribute claims 64 octets
        return m;
      }
      case 'error':
        return message(0x0111, txid, [
          attr(0x0009, Buffer.concat([Buffer.from([0, 0, 4, 20]), Buffer.from('Unknown Attribute')])),
        ]);
      case 'mapped':
        return message(0x0101, txid, [attr(0x0001, v4(addr, rinfo.port, false))]);
      default:
        return message(0x0101, txid, [
          attr(0x8022, Buffer.from('portd-test')),
          attr(0x0020, v4(addr, rinfo.port, true)),
        ]);
    }
  };
}

/** starts a server; requests lists { from, port } per Binding request received */
export async function startStunServer({ address = '127.0.0.1', port = 0, mode = 'xor', reportAs = null } = {}) {
  const socket = createSocket('udp4');
  const requests = [];
  const state = { mode, reportAs };
  socket.on('message', (msg, rinfo) => {
    requests.push({ from: rinfo.address, port: rinfo.port, bytes: msg.length });
    const out = responder(state.mode, state.reportAs)(msg, rinfo);
    if (out) socket.send(out, rinfo.port, rinfo.address);
  });
  await new Promise((resolve) => socket.bind(port, address, resolve));
  return {
    port: socket.address().port,
    requests,
    setMode(m) {
      state.mode = m;
    },
    close: () => new Promise((resolve) => socket.close(resolve)),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [address = '0.0.0.0', port = '3478', mode = 'xor'] = process.argv.slice(2);
  const server = await startStunServer({ address, port: Number(port), mode });
  console.log(JSON.stringify({ listening: `${address}:${server.port}`, mode }));
  let seen = 0;
  setInterval(() => {
    while (seen < server.requests.length) console.log(JSON.stringify(server.requests[seen++]));
  }, 50);
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
}
