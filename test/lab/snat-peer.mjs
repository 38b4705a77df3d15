// A UDP/TCP peer for the outbound-SNAT lab (test/lab/snat.test.ts), run inside a namespace:
// `node snat-peer.mjs LABEL [ADDRESS:]UDP_PORT [TCP_PORT...]`. Plain JS (no loader in the namespace).
// - one UDP socket bound to UDP_PORT (0: ephemeral, none: no socket): datagrams that answer a pending `udp`
//   command resolve it, every other one is answered `LABEL|<source address>:<source port>|<data>` (what the
//   sender's NAT made of it);
// - a TCP server on each TCP_PORT: answers `LABEL|<address>:<port>|<data>` and closes (the server closes first,
//   so the client's port is not held in TIME_WAIT);
// - stdin, one JSON command a line, answered with one JSON line {id, ok, ...}:
//   {op:'udp', host, port, data, timeoutMs}: send from the bound socket, answer the first datagram from host:port;
//   {op:'tcp', localPort, host, port, data, timeoutMs}: connect from localPort, send, answer the reply;
//   {op:'listenTcp', port}. Every wait is bounded by timeoutMs.
import dgram from 'node:dgram';
import net from 'node:net';

const [label = 'peer', udpPortText = '0', ...tcpPorts] = process.argv.slice(2);
const pending = new Map(); // "addr:port" -> resolve
let udp = null;

function tcpServe(port) {
  return new Promise((resolve) => {
    const srv = net.createServer((s) => {
      s.on('data', (d) => s.end(`${label}|${s.remoteAddress}:${s.remotePort}|${d.toString()}`));
      s.on('error', () => {});
    });
    srv.on('error', (e) => resolve({ ok: false, error: e.message }));
    srv.listen(Number(port), '0.0.0.0', () => resolve({ ok: true }));
  });
}

async function start() {
  // [address:]port; port 0: an ephemeral one. A socket bound to one address answers from it (bound to 0.0.0.0 it
  // would answer from the interface's first address, which is no flow's endpoint when the datagram came to another)
  const colon = udpPortText.lastIndexOf(':');
  const udpHost = colon < 0 ? '0.0.0.0' : udpPortText.slice(0, colon);
  const udpPort = Number(udpPortText.slice(colon + 1));
  if (udpPortText !== 'none') {
    udp = dgram.createSocket('udp4');
    udp.on('message', (d, r) => {
      const k = `${r.address}:${r.port}`;
      const w = pending.get(k);
      if (w) {
        pending.delete(k);
        w({ ok: true, reply: d.toString() });
      } else udp.send(`${label}|${k}|${d.toString()}`, r.port, r.address);
    });
    await new Promise((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(udpPort, udpHost, resolve);
    });
  }
  for (const p of tcpPorts) {
    const r = await tcpServe(p);
    if (!r.ok) throw new Error(r.error);
  }
}

function udpCmd(msg) {
  if (!udp) return Promise.resolve({ ok: false, error: 'no udp socket' });
  return new Promise((resolve) => {
    const k = `${msg.host}:${msg.port}`;
    const t = setTimeout(() => {
      pending.delete(k);
      resolve({ ok: false, error: 'timeout' });
    }, msg.timeoutMs ?? 1500);
    pending.set(k, (r) => {
      clearTimeout(t);
      resolve(r);
    });
    udp.send(String(msg.data ?? 'probe'), msg.port, msg.host, (err) => {
      if (err) {
        clearTimeout(t);
        pending.delete(k);
        resolve({ ok: false, error: err.message });
      }
    });
  });
}

function tcpCmd(msg) {
  return new Promise((resolve) => {
    const s = net.connect({ host: msg.host, port: msg.port, localPort: msg.localPort });
    let buf = '';
    const done = (r) => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    const t = setTimeout(
      () => done(buf ? { ok: true, reply: buf } : { ok: false, error: 'timeout' }),
      msg.timeoutMs ?? 1500,
    );
    s.on('connect', () => s.write(String(msg.data ?? 'probe')));
    s.on('data', (d) => {
      buf += d.toString();
    });
    s.on('end', () => done({ ok: true, reply: buf }));
    s.on('error', (e) => done({ ok: false, error: e.message }));
  });
}

const ops = { udp: udpCmd, tcp: tcpCmd, listenTcp: (m) => tcpServe(m.port), ping: () => ({ ok: true, label }) };

start().then(
  () => {
    let buf = '';
    process.stdin.on('data', (d) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let msg;
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        const op = ops[msg.op];
        Promise.resolve(op ? op(msg) : { ok: false, error: `unknown op ${msg.op}` }).then((r) =>
          process.stdout.write(`${JSON.stringify({ id: msg.id, ...r })}\n`),
        );
      }
    });
    process.stdin.on('end', () => process.exit(0));
    process.stdout.write(`${JSON.stringify({ id: 0, ok: true, ready: true })}\n`);
  },
  (err) => {
    process.stderr.write(`snat-peer: ${err.message}\n`);
    process.exit(1);
  },
);
