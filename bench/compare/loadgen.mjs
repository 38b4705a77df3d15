// The load generator for bench/compare.ts and bench/scale.ts, run inside a LAN namespace
// (`ip netns exec NS node loadgen.mjs`). Plain JS, no loader, nothing of portd imported: the same
// client for every daemon. Reads one JSON job per line on stdin, answers one JSON line on stdout.
//
// Jobs (request i uses port p = firstPort + i, sent from host hosts[p % hosts.length], so a later
// delete of port p comes from the host that created it, as secure mode requires):
//   { op: 'pcp',  server, port, hosts, proto: 6|17, firstPort, count, lifetime, concurrency, maxMs, gapMs?, samples? }
//   { op: 'soap', url, soapAction, template ({PORT} {HOST}), hosts, firstPort, count, concurrency, keepAlive,
//     maxMs, samples? }
//   { op: 'ping' }
// Every loop is bounded by count and by maxMs; every wait by timeoutMs.
import dgram from 'node:dgram';
import http from 'node:http';
import readline from 'node:readline';

const now = () => performance.now();

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round(sorted[i] * 1000) / 1000;
}

function summary(lat, wallMs, extra) {
  const s = Float64Array.from(lat).sort();
  return {
    n: s.length,
    wallMs: Math.round(wallMs),
    perSecond: wallMs > 0 ? Math.round((extra.ok / wallMs) * 1000) : 0,
    p50ms: pct(s, 50),
    p90ms: pct(s, 90),
    p99ms: pct(s, 99),
    maxms: s.length ? Math.round(s[s.length - 1] * 1000) / 1000 : null,
    ...extra,
  };
}

/** IPv4-mapped IPv6 (RFC 6887 §5) */
function putV4(buf, off, addr) {
  buf.fill(0, off, off + 10);
  buf[off + 10] = 0xff;
  buf[off + 11] = 0xff;
  addr.split('.').forEach((o, k) => {
    buf[off + 12 + k] = Number(o);
  });
}

/** a PCP MAP request (RFC 6887 §7.1, §11.1), 60 bytes; the nonce is fixed per client host */
function mapPacket(host, proto, port, lifetime) {
  const b = Buffer.alloc(60);
  b[0] = 2;
  b[1] = 1;
  b.writeUInt32BE(lifetime >>> 0, 4);
  putV4(b, 8, host);
  b.write('pcpbench', 24, 'latin1');
  host.split('.').forEach((o, k) => {
    b[32 + k] = Number(o);
  });
  b[36] = proto;
  b.writeUInt16BE(port, 40);
  b.writeUInt16BE(port, 42);
  putV4(b, 44, '0.0.0.0');
  return b;
}
const keyOf = (b) => b.toString('hex', 24, 42);

async function pcp(job) {
  const { server, port, hosts, proto, firstPort, count, lifetime, concurrency } = job;
  const timeoutMs = job.timeoutMs ?? 3000,
    retries = job.retries ?? 2,
    maxMs = job.maxMs ?? 120_000,
    gapMs = job.gapMs ?? 0;
  const socks = new Map();
  await Promise.all(
    hosts.map(
      (h) =>
        new Promise((resolve, reject) => {
          const s = dgram.createSocket('udp4');
          const pending = new Map();
          s.on('message', (m) => {
            if (m.length >= 42 && m[1] & 0x80) {
              const f = pending.get(keyOf(m));
              if (f) {
                pending.delete(keyOf(m));
                f(m);
              }
            }
          });
          s.on('error', reject);
          s.bind(0, h, () => resolve());
          socks.set(h, { s, pending });
        }),
    ),
  );
  const lat = [],
    codes = {},
    samples = [];
  let timeouts = 0,
    lost = 0,
    ok = 0,
    next = 0;
  const t0 = now(),
    deadline = t0 + maxMs;
  const one = (i) =>
    new Promise((resolve) => {
      const p = firstPort + i;
      const host = hosts[p % hosts.length];
      const { s, pending } = socks.get(host);
      const pkt = mapPacket(host, proto, p, lifetime);
      const k = keyOf(pkt);
      const started = now();
      let tries = 0,
        timer = null;
      const send = () => {
        timer = setTimeout(() => {
          timeouts++;
          if (++tries > retries) {
            pending.delete(k);
            lost++;
            resolve();
          } else send();
        }, timeoutMs);
        s.send(pkt, port, server);
      };
      pending.set(k, (m) => {
        clearTimeout(timer);
        const l = now() - started;
        lat.push(l);
        const c = m[3];
        codes[c] = (codes[c] ?? 0) + 1;
        if (c === 0) ok++;
        if (job.samples) samples.push([Math.round((started - t0) * 1000) / 1000, Math.round(l * 1000) / 1000, c]);
        resolve();
      });
      send();
    });
  async function worker() {
    while (next < count && now() < deadline) {
      await one(next++);
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    }
  }
  const wallStart = Date.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wallMs = now() - t0;
  for (const { s } of socks.values()) s.close();
  return summary(lat, wallMs, {
    ok,
    codes,
    timeouts,
    lost,
    unsent: count - next,
    startedAtEpochMs: wallStart,
    ...(job.samples ? { samples } : {}),
  });
}

async function soap(job) {
  const { url, soapAction, template, hosts, firstPort, count, concurrency, keepAlive } = job;
  const maxMs = job.maxMs ?? 120_000,
    timeoutMs = job.timeoutMs ?? 10_000;
  const u = new URL(url);
  const agent = keepAlive ? new http.Agent({ keepAlive: true, maxSockets: concurrency }) : false;
  const lat = [],
    codes = {},
    samples = [];
  let ok = 0,
    next = 0;
  const t0 = now(),
    deadline = t0 + maxMs;
  const one = (i) =>
    new Promise((resolve) => {
      const p = firstPort + i;
      const host = hosts[p % hosts.length];
      const body = template.replace(/\{PORT\}/g, String(p)).replace(/\{HOST\}/g, host);
      const started = now();
      let done = false;
      const finish = (code) => {
        if (done) return;
        done = true;
        const l = now() - started;
        codes[code] = (codes[code] ?? 0) + 1;
        if (code === 200) {
          ok++;
          lat.push(l);
        }
        if (job.samples) samples.push([Math.round((started - t0) * 1000) / 1000, Math.round(l * 1000) / 1000, code]);
        resolve();
      };
      const req = http.request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          agent,
          localAddress: host,
          timeout: timeoutMs,
          headers: {
            'content-type': 'text/xml; charset="utf-8"',
            soapaction: `"${soapAction}"`,
            'content-length': Buffer.byteLength(body),
            ...(keepAlive ? {} : { connection: 'close' }),
          },
        },
        (res) => {
          res.on('data', () => {});
          res.on('end', () => finish(res.statusCode));
          res.on('error', () => finish('reset'));
        },
      );
      req.on('timeout', () => {
        req.destroy();
        finish('timeout');
      });
      req.on('error', (e) => finish(e.code ?? 'error'));
      req.end(body);
    });
  async function worker() {
    while (next < count && now() < deadline) await one(next++);
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wallMs = now() - t0;
  if (agent) agent.destroy();
  return summary(lat, wallMs, { ok, codes, unsent: count - next, ...(job.samples ? { samples } : {}) });
}

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let job;
    try {
      job = JSON.parse(line);
    } catch {
      return;
    }
    let out;
    try {
      if (job.op === 'pcp') out = await pcp(job);
      else if (job.op === 'soap') out = await soap(job);
      else if (job.op === 'ping') out = { pong: true };
      else out = { error: `unknown op ${job.op}` };
    } catch (e) {
      out = { error: String(e?.message ?? e) };
    }
    process.stdout.write(JSON.stringify({ id: job.id, ...out }) + '\n');
  });
});
rl.on('close', () => {
  void chain.then(() => process.exit(0));
});
