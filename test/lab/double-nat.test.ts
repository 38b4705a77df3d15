/**
 * Lab (issue 16 part 3): the gateway's WAN is 100.64.77.2 (RFC 6598 shared space) behind an upstream NAT that
 * masquerades to 203.0.113.1; a STUN server (test/lab/stun-server.mjs, plain node) runs on the Internet host
 * 203.0.113.2. Real `portd start` with stun.servers: the status shows shared / double NAT and the learned
 * 203.0.113.1, the metric says 1, one log line says so; natpmpc and upnpc are told the WAN address (where the
 * mapping is); a new WAN address is followed and checked again at once. Root only; a failure under CI=true.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hasTool, labSkip } from './harness.js';
import { PortdProcess } from './portd-process.js';
import { ADDR3, IF3, createUpstreamLab, type UpstreamLab } from './upstream-lab.js';

const skip =
  labSkip('double-nat') || (!hasTool('natpmpc') && 'natpmpc not installed') || (!hasTool('upnpc') && 'no upnpc');
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TOKEN = 'double-nat-lab-token-0123456789';

type Wan = {
  address: string;
  kind: string;
  doubleNat: string;
  why: string;
  reportedAddress: string;
  stun: { publicAddress: string | null; server: string | null; learnedAt: number | null };
};

describe('double NAT: the gateway behind an upstream NAT, STUN on the Internet host', {
  skip,
  timeout: 120_000,
}, () => {
  let lab: UpstreamLab;
  let dir: string;
  let portd: PortdProcess;
  let stun: ChildProcess | null = null;
  const stunLines: { from?: string; listening?: string }[] = [];

  async function wan(): Promise<Wan> {
    const r = await portd.api('/api/v1/status', TOKEN);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return (r.body as { wan: Wan }).wan;
  }
  async function until(what: string, pred: (w: Wan) => boolean, ms = 15_000): Promise<Wan> {
    const end = Date.now() + ms;
    for (;;) {
      const w = await wan();
      if (pred(w)) return w;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(w)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  before(async () => {
    lab = await createUpstreamLab();
    dir = mkdtempSync(join(tmpdir(), 'portd-lab-dnat-'));
    // the STUN server on the Internet host: it sees what the upstream NAT makes of our request
    stun = spawn(
      'ip',
      ['netns', 'exec', lab.internet, process.execPath, join(ROOT, 'test/lab/stun-server.mjs'), ADDR3.internet, '3478'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the STUN server did not start')), 10_000);
      let buf = '';
      stun!.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const line = JSON.parse(buf.slice(0, i)) as { from?: string; listening?: string };
          buf = buf.slice(i + 1);
          stunLines.push(line);
          if (line.listening) {
            clearTimeout(t);
            resolve();
          }
        }
      });
      stun!.once('exit', (code) => reject(new Error(`the STUN server exited ${code}`)));
    });
    const config = [
      `interfaces: { wan: ${IF3.gwWan}, lan: [${IF3.gwLan}] }`,
      'externalAddress: auto',
      `stateDir: ${dir}`,
      `database: { path: ${join(dir, 'portd.sqlite')} }`,
      'dataplane: { driver: nftables, table: portd }',
      'policy: { rules: ["allow 1024-65535 192.168.77.0/24 1-65535", "deny 0-65535 0.0.0.0/0 0-65535"] }',
      'upnp: { enabled: true, httpPort: 5000, ssdp: false }',
      `admin: { listen: "127.0.0.1:8080", token: "${TOKEN}" }`,
      // a long interval: a second check within the test is the WAN change's, not the timer's
      `stun: { servers: ["${ADDR3.internet}:3478"], interval: 300 }`,
    ].join('\n');
    portd = new PortdProcess({ lab: lab.base, dir, config, verbose: process.env['LAB_LOG'] === 'portd' });
    await portd.start();
    // the admin app is built at its first request (seconds on a loaded machine; curl gives up after 5 s)
    const end = Date.now() + 30_000;
    while ((await portd.api('/healthz', TOKEN)).status !== 200)
      if (Date.now() > end) throw new Error('the admin API did not answer within 30 s');
  });

  after(async () => {
    try {
      await portd?.stop();
    } finally {
      stun?.kill('SIGKILL');
      await lab?.teardown();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  test('status: shared WAN, double NAT, the learned 203.0.113.1; the metric is 1; one log line', async () => {
    const w = await until('a STUN answer', (x) => x.stun.publicAddress !== null);
    assert.equal(w.address, ADDR3.gwWan);
    assert.equal(w.kind, 'shared');
    assert.equal(w.doubleNat, 'yes');
    assert.equal(w.stun.publicAddress, ADDR3.upWan);
    assert.equal(w.stun.server, `${ADDR3.internet}:3478`);
    assert.match(w.why, /100\.64\.0\.0\/10.*carrier-grade NAT.*sees 203\.0\.113\.1/);
    // the server saw the request from the upstream NAT's public address
    assert.ok(
      stunLines.some((l) => l.from === ADDR3.upWan),
      JSON.stringify(stunLines),
    );
    const m = await portd.api('/metrics', TOKEN);
    assert.match(String(m.body), /^portd_wan_double_nat 1$/m);
    assert.match(String(m.body), /^portd_stun_requests_total\{result="success"\} 1$/m);
    await portd.waitForLog((l) => l.msg === 'double NAT detected', 5000, 0);
    const lines = portd.since(0, (l) => l.msg === 'double NAT detected' || l.msg === 'double NAT state changed');
    assert.ok(lines.length >= 1 && lines.length <= 2, JSON.stringify(lines));
    assert.equal(lines[0]!['doubleNat'], 'yes');
  });

  test('natpmpc and upnpc are told the WAN address, where the mapping is, not the STUN address', async () => {
    const n = await lab.exec(lab.lanA, ['natpmpc', '-g', ADDR3.gwLan], { timeoutMs: 15_000 });
    assert.match(n.stdout, /Public IP address : 100\.64\.77\.2/, n.stdout + n.stderr);
    const u = await lab.exec(lab.lanA, ['upnpc', '-i', '-u', `http://${ADDR3.gwLan}:5000/igd1/desc.xml`, '-s'], {
      timeoutMs: 30_000,
    });
    assert.match(u.stdout, /ExternalIPAddress = 100\.64\.77\.2/, u.stdout + u.stderr);
    assert.equal((await wan()).reportedAddress, ADDR3.gwWan);
  });

  test('portd doctor: the double-nat line from its own STUN check through the upstream NAT, with what to do', async () => {
    const r = await lab.exec(
      lab.gw,
      [process.execPath, join(ROOT, 'bin', 'portd.js'), 'doctor', '--config', portd.configPath, '--json'],
      { timeoutMs: 60_000 },
    );
    const report = JSON.parse(r.stdout) as { checks: { id: string; status: string; message: string; fix: string }[] };
    const line = report.checks.find((c) => c.id === 'double-nat');
    assert.ok(line, r.stdout + r.stderr);
    assert.equal(line.status, 'warn');
    assert.match(line.message, /^double NAT: the WAN address 100\.64\.77\.2 is shared .*sees 203\.0\.113\.1/);
    assert.match(line.fix, /ask the ISP/);
  });

  test('a new WAN address is followed and checked with STUN at once', async () => {
    const before = await wan();
    const from = portd.logs.length;
    await lab.must(lab.gw, ['ip', 'addr', 'flush', 'dev', IF3.gwWan]);
    await lab.must(lab.gw, ['ip', 'addr', 'add', '100.64.77.3/24', 'dev', IF3.gwWan]);
    await lab.must(lab.gw, ['ip', 'route', 'replace', 'default', 'via', ADDR3.upLan]);
    const w = await until(
      'the new address checked',
      (x) => x.address === '100.64.77.3' && x.stun.publicAddress !== null && x.stun.learnedAt! > before.stun.learnedAt!,
    );
    assert.equal(w.doubleNat, 'yes');
    assert.equal(w.stun.publicAddress, ADDR3.upWan);
    assert.equal(w.reportedAddress, '100.64.77.3');
    // stdout arrives in batches: the line may come a moment after the status shows the change
    await portd.waitForLog((l) => l.msg === 'WAN address changed', 5000, from);
    const m = await portd.api('/metrics', TOKEN);
    assert.match(String(m.body), /^portd_stun_requests_total\{result="success"\} 2$/m);
  });
});
