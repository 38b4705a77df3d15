/**
 * STUN against a server on 127.0.0.1 (test/lab/stun-server.mjs, encoded by hand, not by our codec): the status
 * API shows the learned address and double NAT, the metrics say so, NAT-PMP keeps reporting the WAN address
 * (and the upstream's once upstream chaining sets it); bad answers are dropped, counted and logged, and the
 * next server is asked; with no servers configured nothing is sent.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/index.js';
import { startPortd, type Portd } from '../../src/main.js';
// @ts-expect-error plain JavaScript test helper, no types
import { startStunServer } from '../lab/stun-server.mjs';

interface StunServer {
  port: number;
  requests: { from: string; port: number }[];
  close(): Promise<void>;
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(stun: string, natpmp = false): Promise<{ portd: Portd; lines: { msg: string }[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'portd-stun-'));
  dirs.push(dir);
  const lines: { msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const portd = await startPortd(
    parseConfig(`
interfaces: { wan: lo, lan: [lo] }
externalAddress: 192.0.2.1
listenAddresses: [127.0.0.1]
stateDir: ${dir}
database: { path: ${join(dir, 'portd.sqlite')} }
dataplane: { driver: memory }
policy: { rules: ["allow 1024-65535 127.0.0.0/8 1024-65535"] }
upnp: { enabled: false }
pcp: { enabled: ${natpmp}, port: 0 }
natpmp: { enabled: ${natpmp} }
admin: { listen: "127.0.0.1:0" }
${stun}
`),
    log,
  );
  return { portd, lines };
}

type Wan = {
  address: string;
  kind: string;
  doubleNat: string;
  why: string;
  reportedAddress: string;
  stun: { enabled: boolean; publicAddress: string | null; server: string | null; lastError: string | null };
};

async function wanOf(portd: Portd): Promise<Wan> {
  const r = await fetch(`http://127.0.0.1:${portd.admin.port}/api/v1/status`);
  assert.equal(r.status, 200);
  return ((await r.json()) as { wan: Wan }).wan;
}

async function until<T>(what: string, fn: () => Promise<T | null>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function metrics(portd: Portd): Promise<string> {
  return await (await fetch(`http://127.0.0.1:${portd.admin.port}/metrics`)).text();
}

/** NAT-PMP opcode 0 (RFC 6886 §3.2) to the running PCP/NAT-PMP socket: the external address it reports */
async function natpmpAddress(portd: Portd): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${portd.admin.port}/api/v1/status`);
  const s = (await r.json()) as { frontends: { name: string; listening: string[] }[] };
  const port = Number(
    s.frontends
      .find((f) => f.name === 'pcp')!
      .listening[0]!.split(':')
      .pop(),
  );
  const sock = createSocket('udp4');
  try {
    return await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no NAT-PMP answer')), 2000);
      sock.once('message', (m) => {
        clearTimeout(t);
        resolve([...m.subarray(8, 12)].join('.'));
      });
      sock.send(Buffer.from([0, 0]), port, '127.0.0.1');
    });
  } finally {
    sock.close();
  }
}

/** the UDP sockets this process holds (inodes of /proc/self/fd that /proc/net/udp lists) */
function ownUdpSockets(): number {
  const inodes = new Set(
    readFileSync('/proc/net/udp', 'utf8')
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/)[9])
      .filter((x): x is string => !!x),
  );
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m && inodes.has(m[1]!)) n++;
    } catch {
      /* closed meanwhile */
    }
  }
  return n;
}

describe('STUN (issue 16 part 3)', () => {
  it('learns the public address: status shows it and double NAT, the metrics say 1; NAT-PMP reports the WAN address', async () => {
    const server = (await startStunServer({ reportAs: '198.51.100.20' })) as StunServer;
    const { portd, lines } = await start(`stun: { servers: ["127.0.0.1:${server.port}"], interval: 10 }`, true);
    try {
      const wan = await until('a STUN answer', async () => {
        const w = await wanOf(portd);
        return w.stun.publicAddress ? w : null;
      });
      assert.equal(wan.address, '192.0.2.1');
      assert.equal(wan.kind, 'documentation');
      assert.equal(wan.stun.publicAddress, '198.51.100.20');
      assert.equal(wan.stun.server, `127.0.0.1:${server.port}`);
      assert.equal(wan.doubleNat, 'yes');
      assert.match(wan.why, /sees 198\.51\.100\.20: another NAT/);
      assert.ok(server.requests.length >= 1);
      const text = await metrics(portd);
      assert.match(text, /^portd_wan_double_nat 1$/m);
      assert.match(text, /^portd_stun_requests_total\{result="success"\} [1-9]/m);
      assert.ok(lines.some((l) => l.msg === 'double NAT state changed' || l.msg === 'double NAT detected'));
      // what clients are told: the WAN address, where the mapping is, not the STUN address
      assert.equal(wan.reportedAddress, '192.0.2.1');
      assert.equal(await natpmpAddress(portd), '192.0.2.1');
      // upstream chaining's seam: once it holds mappings upstream, its public address is reported
      portd.wan.setUpstreamAddress('198.51.100.20');
      assert.equal(await natpmpAddress(portd), '198.51.100.20');
      assert.equal((await wanOf(portd)).reportedAddress, '198.51.100.20');
    } finally {
      await portd.close();
      await server.close();
    }
  });

  it('bad answers (truncated attribute, another transaction) are dropped with a log line and a metric; the next server answers', async () => {
    const short = (await startStunServer({ mode: 'short' })) as StunServer;
    const wrong = (await startStunServer({ mode: 'wrong-tx' })) as StunServer;
    const good = (await startStunServer({ mode: 'mapped', reportAs: '192.0.2.1' })) as StunServer;
    const servers = [short, wrong, good].map((s) => `"127.0.0.1:${s.port}"`).join(', ');
    const { portd, lines } = await start(`stun: { servers: [${servers}], interval: 10, rto: 40, transmissions: 2 }`);
    try {
      const wan = await until('the third server', async () => {
        const w = await wanOf(portd);
        return w.stun.publicAddress ? w : null;
      });
      // MAPPED-ADDRESS only (an RFC 3489 server): the WAN address itself, so no double NAT
      assert.equal(wan.stun.server, `127.0.0.1:${good.port}`);
      assert.equal(wan.doubleNat, 'no');
      assert.equal(short.requests.length, 2, 'Rc = 2 requests, then give up');
      assert.equal(wrong.requests.length, 2);
      const text = await metrics(portd);
      assert.match(text, /^portd_bad_input_total\{frontend="stun",kind="attribute_bounds"\} 2$/m);
      assert.match(text, /^portd_bad_input_total\{frontend="stun",kind="transaction"\} 2$/m);
      assert.match(text, /^portd_stun_requests_total\{result="timeout"\} 2$/m);
      assert.match(text, /^portd_wan_double_nat 0$/m);
      assert.ok(lines.some((l) => /^STUN response dropped: attribute .* runs past the end/.test(l.msg)));
      assert.ok(lines.some((l) => l.msg === 'STUN response dropped: transaction id is not the one sent'));
    } finally {
      await portd.close();
      await Promise.all([short, wrong, good].map((s) => s.close()));
    }
  });

  it('no server answers: double NAT unknown, with the reason', async () => {
    const silent = (await startStunServer({ mode: 'silent' })) as StunServer;
    const { portd } = await start(
      `stun: { servers: ["127.0.0.1:${silent.port}"], interval: 10, rto: 30, transmissions: 3 }`,
    );
    try {
      const wan = await until('the timeout', async () => {
        const w = await wanOf(portd);
        return w.stun.lastError ? w : null;
      });
      assert.equal(wan.doubleNat, 'unknown');
      assert.match(wan.stun.lastError!, /no answer to 3 requests/);
      assert.equal(silent.requests.length, 3);
      assert.match(await metrics(portd), /^portd_wan_double_nat -1$/m);
    } finally {
      await portd.close();
      await silent.close();
    }
  });

  it('no servers configured: no STUN socket, no request, no STUN metric', async () => {
    const before = ownUdpSockets();
    const { portd } = await start('');
    try {
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(ownUdpSockets(), before, 'no UDP socket opened');
      const wan = await wanOf(portd);
      assert.equal(wan.stun.enabled, false);
      assert.equal(wan.stun.server, null);
      assert.match(wan.why, /no STUN servers configured/);
      const text = await metrics(portd);
      assert.doesNotMatch(text, /^portd_stun_requests_total\{/m);
    } finally {
      await portd.close();
    }
  });
});
