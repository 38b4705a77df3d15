// The probing client of bench/probes.ts, run inside a LAN namespace (`ip netns exec NS node probes-client.mjs`).
// Plain JS, nothing of portd imported: it sends what port-mapper clients send and times each answer.
// Reads one JSON job per line on stdin, answers one JSON line on stdout ({id, ...}); jobs run one at a time:
//   { op: 'burst', gw, sources, rounds, gapMs, timeoutMs }   Tailscale: a NAT-PMP external-address request, a PCP
//        ANNOUNCE and three SSDP M-SEARCHes (unicast ssdp:all to the gateway, multicast ssdp:all, multicast IGD:1)
//        sent at once, each from its own socket; the round's source address rotates over `sources`
//   { op: 'sequential', gw, sources, rounds, gapMs, timeoutMs }   libp2p / Syncthing: SSDP IGD:1, then NAT-PMP,
//        then PCP ANNOUNCE, each sent when the previous one was answered (or timed out)
//   { op: 'echo', host, port, sources, rounds, gapMs, timeoutMs }   the same round trip to a trivial UDP echo
// Each probe's time is from its send to the first datagram on its socket. Every loop is bounded by rounds, every
// wait by timeoutMs.
import dgram from 'node:dgram';
import readline from 'node:readline';

const SSDP_GROUP = '239.255.255.250';
const search = (st) =>
  `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_GROUP}:1900\r\nMAN: "ssdp:discover"\r\nMX: 2\r\nST: ${st}\r\n\r\n`;

/** a PCP ANNOUNCE request (RFC 6887 §7.1, §14.1): version 2, opcode 0, lifetime 0, the client's IPv4-mapped address */
function announce(source) {
  const b = Buffer.alloc(24);
  b[0] = 2;
  b[10] = 0xff;
  b[11] = 0xff;
  source.split('.').forEach((o, k) => {
    b[12 + k] = Number(o);
  });
  return b;
}

/** NAT-PMP external address request (RFC 6886 §3.2): version 0, opcode 0 */
const natpmpAddress = () => Buffer.from([0, 0]);

function probes(gw, source) {
  return {
    natpmp: { bytes: natpmpAddress(), host: gw, port: 5351 },
    pcp: { bytes: announce(source), host: gw, port: 5351 },
    ssdpUnicast: { bytes: Buffer.from(search('ssdp:all')), host: gw, port: 1900 },
    ssdpAll: { bytes: Buffer.from(search('ssdp:all')), host: SSDP_GROUP, port: 1900, multicast: true },
    ssdpIgd1: {
      bytes: Buffer.from(search('urn:schemas-upnp-org:device:InternetGatewayDevice:1')),
      host: SSDP_GROUP,
      port: 1900,
      multicast: true,
    },
  };
}

/** one probe from a fresh socket on `source`: ms to the first answer, or null at timeout */
function once(p, source, timeoutMs) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    let done = false;
    let t0 = 0;
    const finish = (v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        s.close();
      } catch {
        /* closed */
      }
      resolve(v);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    s.on('error', () => finish(null));
    s.on('message', () => finish(performance.now() - t0));
    s.bind(0, source, () => {
      if (p.multicast) s.setMulticastInterface(source);
      t0 = performance.now();
      s.send(p.bytes, p.port, p.host, (err) => {
        if (err) finish(null);
      });
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function collect(names) {
  return Object.fromEntries(names.map((n) => [n, { ms: [], lost: 0 }]));
}
function record(out, name, v) {
  if (v === null) out[name].lost++;
  else out[name].ms.push(v);
}

async function burst(job) {
  const names = ['natpmp', 'pcp', 'ssdpUnicast', 'ssdpAll', 'ssdpIgd1'];
  const out = collect(names);
  for (let i = 0; i < job.rounds; i++) {
    const source = job.sources[i % job.sources.length];
    const ps = probes(job.gw, source);
    const rs = await Promise.all(names.map((n) => once(ps[n], source, job.timeoutMs)));
    for (const [k, n] of names.entries()) record(out, n, rs[k]);
    await sleep(job.gapMs);
  }
  return out;
}

async function sequential(job) {
  const names = ['ssdpIgd1', 'natpmp', 'pcp'];
  const out = collect(names);
  for (let i = 0; i < job.rounds; i++) {
    const source = job.sources[i % job.sources.length];
    const ps = probes(job.gw, source);
    for (const n of names) record(out, n, await once(ps[n], source, job.timeoutMs));
    await sleep(job.gapMs);
  }
  return out;
}

async function echo(job) {
  const out = collect(['echo']);
  for (let i = 0; i < job.rounds; i++) {
    const source = job.sources[i % job.sources.length];
    const p = { bytes: announce(source), host: job.host, port: job.port };
    record(out, 'echo', await once(p, source, job.timeoutMs));
    await sleep(job.gapMs);
  }
  return out;
}

const ops = { burst, sequential, echo, ping: async () => ({ pong: true }) };
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
      out = ops[job.op] ? await ops[job.op](job) : { error: `unknown op ${job.op}` };
    } catch (e) {
      out = { error: String(e?.message ?? e) };
    }
    process.stdout.write(`${JSON.stringify({ id: job.id, ...out })}\n`);
  });
});
rl.on('close', () => {
  void chain.then(() => process.exit(0));
});
