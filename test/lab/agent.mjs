// A small network agent run inside a lab namespace (`ip netns exec NS node agent.mjs LABEL`).
// Reads one JSON command per line on stdin, answers one JSON line on stdout: {id, ok, ...}.
// Plain JS so it needs no loader inside the namespace. Every wait is bounded by timeoutMs.
import net from 'node:net';
import dgram from 'node:dgram';
import { serve } from './agent-serve.mjs';

const label = process.argv[2] ?? 'agent';
const conns = new Map();
const socks = new Map();
const servers = [];
let next = 1;

/** udp6 when any of the addresses is IPv6 (a zone `%eth0` included), else udp4 as before */
function udpType(...addrs) {
  return addrs.some((a) => typeof a === 'string' && net.isIPv6(a.split('%')[0])) ? 'udp6' : 'udp4';
}

function echoText(remote, data) {
  return `${label}|${remote}|${data}`;
}

function listen(msg) {
  return new Promise((resolve) => {
    if (msg.proto === 'tcp') {
      const srv = net.createServer((s) => {
        s.on('data', (d) => s.write(echoText(s.remoteAddress, d.toString())));
        s.on('error', () => {});
      });
      srv.on('error', (e) => resolve({ ok: false, error: e.message }));
      srv.listen(msg.port, msg.host ?? '0.0.0.0', () => {
        servers.push(srv);
        resolve({ ok: true });
      });
    } else {
      const s = dgram.createSocket(udpType(msg.host));
      s.on('message', (d, r) => s.send(echoText(r.address, d.toString()), r.port, r.address));
      s.on('error', (e) => resolve({ ok: false, error: e.message }));
      s.bind(msg.port, msg.host ?? '0.0.0.0', () => {
        servers.push(s);
        resolve({ ok: true });
      });
    }
  });
}

function tcpConnect(msg) {
  return new Promise((resolve) => {
    const s = net.connect({ host: msg.host, port: msg.port, localAddress: msg.localAddress });
    const t = setTimeout(() => {
      s.destroy();
      resolve({ ok: false, error: 'timeout' });
    }, msg.timeoutMs ?? 2000);
    s.once('connect', () => {
      clearTimeout(t);
      const id = next++;
      const c = { s, buf: '', waiter: null, closed: false };
      s.on('data', (d) => {
        c.buf += d.toString();
        if (c.waiter) {
          const w = c.waiter;
          c.waiter = null;
          w();
        }
      });
      s.on('close', () => {
        c.closed = true;
        if (c.waiter) {
          const w = c.waiter;
          c.waiter = null;
          w();
        }
      });
      conns.set(id, c);
      resolve({ ok: true, conn: id });
    });
    s.once('error', (e) => {
      clearTimeout(t);
      resolve({ ok: false, error: e.code ?? e.message });
    });
  });
}

function tcpSend(msg) {
  const c = conns.get(msg.conn);
  if (!c) return Promise.resolve({ ok: false, error: 'no such connection' });
  if (c.closed) return Promise.resolve({ ok: false, error: 'closed' });
  c.buf = '';
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      c.waiter = null;
      resolve({ ok: false, error: 'timeout' });
    }, msg.timeoutMs ?? 2000);
    c.waiter = () => {
      clearTimeout(t);
      resolve(c.buf ? { ok: true, reply: c.buf } : { ok: false, error: 'closed' });
    };
    c.s.write(msg.data, (err) => {
      if (err) {
        clearTimeout(t);
        c.waiter = null;
        resolve({ ok: false, error: err.message });
      }
    });
  });
}

async function tcpProbe(msg) {
  const r = await tcpConnect(msg);
  if (!r.ok) return r;
  const s = await tcpSend({ conn: r.conn, data: msg.data ?? 'probe', timeoutMs: msg.timeoutMs });
  conns.get(r.conn)?.s.destroy();
  conns.delete(r.conn);
  return s;
}

function udpOpen(msg) {
  return new Promise((resolve) => {
    const s = dgram.createSocket(udpType(msg.localAddress, msg.host));
    s.on('error', (e) => resolve({ ok: false, error: e.message }));
    s.bind(msg.port ?? 0, msg.localAddress, () => {
      const id = next++;
      const u = { s, waiter: null };
      s.on('message', (d) => {
        if (u.waiter) {
          const w = u.waiter;
          u.waiter = null;
          w(d.toString());
        }
      });
      socks.set(id, u);
      resolve({ ok: true, sock: id, port: s.address().port });
    });
  });
}

function udpSend(msg) {
  const u = socks.get(msg.sock);
  if (!u) return Promise.resolve({ ok: false, error: 'no such socket' });
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      u.waiter = null;
      resolve({ ok: false, error: 'timeout' });
    }, msg.timeoutMs ?? 2000);
    u.waiter = (reply) => {
      clearTimeout(t);
      resolve({ ok: true, reply });
    };
    u.s.send(msg.data, msg.port, msg.host, (err) => {
      if (err) {
        clearTimeout(t);
        u.waiter = null;
        resolve({ ok: false, error: err.message });
      }
    });
  });
}

async function udpProbe(msg) {
  const o = await udpOpen({ localAddress: msg.localAddress, host: msg.host });
  if (!o.ok) return o;
  const r = await udpSend({
    sock: o.sock,
    host: msg.host,
    port: msg.port,
    data: msg.data ?? 'probe',
    timeoutMs: msg.timeoutMs,
  });
  socks.get(o.sock)?.s.close();
  socks.delete(o.sock);
  return r;
}

// raw bytes over UDP (e.g. a PCP request built by the test): a fresh socket, bound to
// localAddress:localPort when given, sends `hex` to host:port and answers the first reply as hex
function udpBytes(msg) {
  return new Promise((resolve) => {
    const s = dgram.createSocket(udpType(msg.localAddress, msg.host));
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      try {
        s.close();
      } catch {
        /* closed */
      }
      resolve(r);
    };
    const t = setTimeout(() => finish({ ok: false, error: 'timeout' }), msg.timeoutMs ?? 2000);
    s.on('error', (e) => finish({ ok: false, error: e.message }));
    s.on('message', (d, r) => finish({ ok: true, reply: d.toString('hex'), from: `${r.address}:${r.port}` }));
    s.bind(msg.localPort ?? 0, msg.localAddress, () => {
      s.send(Buffer.from(String(msg.hex ?? ''), 'hex'), msg.port, msg.host, (err) => {
        if (err) finish({ ok: false, error: err.message });
      });
    });
  });
}

// every datagram that arrives on host:port (e.g. `::`, 5350: unsolicited PCP ANNOUNCEs to ff02::1) for
// durationMs (bounded at 30 s): [{ from, to, hex }], `to` the local address it came in through (IPv6 only)
function udpCollect(msg) {
  return new Promise((resolve) => {
    const s = dgram.createSocket({ type: String(msg.host ?? '').includes(':') ? 'udp6' : 'udp4', reuseAddr: true });
    const got = [];
    s.on('error', (e) => resolve({ ok: false, error: e.message }));
    s.on('message', (d, r) => {
      if (got.length < 1000) got.push({ from: `${r.address}:${r.port}`, hex: d.toString('hex') });
    });
    s.bind({ port: msg.port, address: msg.host, exclusive: false }, () => {
      setTimeout(
        () => {
          s.close();
          resolve({ ok: true, got });
        },
        Math.min(30_000, msg.durationMs ?? 2000),
      );
    });
  });
}

const ops = {
  udpCollect,
  listen,
  tcpConnect,
  tcpSend,
  tcpProbe,
  udpOpen,
  udpSend,
  udpProbe,
  udpBytes,
  tcpClose: async (m) => {
    conns.get(m.conn)?.s.destroy();
    conns.delete(m.conn);
    return { ok: true };
  },
  udpClose: async (m) => {
    socks.get(m.sock)?.s.close();
    socks.delete(m.sock);
    return { ok: true };
  },
  ping: async () => ({ ok: true, label }),
};

serve(ops);
