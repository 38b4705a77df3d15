/**
 * Lab: port triggering end to end. The real `portd start` runs inside the gateway namespace on the
 * nftables driver with a trigger rule in its config file. LAN host A sends UDP to the WAN host on
 * the trigger port; the WAN host then reaches A's TCP and UDP servers on every opened port via the
 * external address; host B cannot take the rule while A holds it; after the idle timeout (4 s here)
 * the WAN host's attempts fail; the lease shows source `trigger`, the rule, and `expired` in its
 * history; then B's next flow wins. Root only (namespaces); a failure under CI=true.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDR, IF, createLab, hasTool, labSkip, type Agent, type Lab } from './harness.js';

const skip = labSkip('triggers') || (hasTool('conntrack') ? false : 'conntrack not installed');
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXT = ADDR.gwWan;
const FAIL_MS = 700;
const IDLE = 4;
const TRIGGER_PORT = 7777;
const OPEN = [7800, 7801];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** changes through the admin API need the token, on loopback too */
const TOKEN = 'lab-triggers-token-0123456789';

interface View {
  name: string;
  state: string;
  holder: string | null;
  until: number | null;
  leases: string[];
  counters: { fired: number; refused: number };
  lastRefusal: { host: string; holder: { owner: string; source: string } | null } | null;
}
interface LeaseJson {
  id: string;
  source: string;
  rule: string | null;
  owner: string;
  protocol: string;
  externalPort: number;
  externalPortEnd: number;
  state: string;
  endReason: string | null;
  endedAt: number | null;
}

describe('port triggering through the nftables gateway', { skip, timeout: 180_000 }, () => {
  let lab: Lab;
  let portd: ChildProcessWithoutNullStreams | null = null;
  let hostA: Agent, hostB: Agent, wan: Agent;
  let dir: string;
  let cfgText = '';
  const logLines: Record<string, unknown>[] = [];

  /** the admin API listens on 127.0.0.1 inside the gateway namespace: ask from there */
  async function api<T>(path: string, method = 'GET', body?: unknown): Promise<{ status: number; body: T }> {
    const headers = {
      authorization: `Bearer ${TOKEN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    };
    const bodyPart = body === undefined ? '' : `, body: ${JSON.stringify(JSON.stringify(body))}`;
    const script = `fetch('http://127.0.0.1:8080${path}',
        { method: '${method}', headers: ${JSON.stringify(headers)}${bodyPart} })
      .then(async (r) => process.stdout.write(
        JSON.stringify({ status: r.status, body: JSON.parse((await r.text()) || 'null') }),
      ))`;
    const r = await lab.must(lab.gw, [process.execPath, '-e', script], { timeoutMs: 10_000 });
    return JSON.parse(r) as { status: number; body: T };
  }
  const trigger = async () => (await api<{ trigger: View }>('/api/v1/triggers/labgame')).body.trigger;
  const fwdRange = () => lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4_range']);

  before(async () => {
    lab = await createLab();
    dir = mkdtempSync(join(tmpdir(), 'portd-lab-trig-'));
    // the gateway masquerades LAN traffic to the WAN like any home router (a table of the lab's own)
    const nat = await lab.nft(
      'table ip labnat {\n  chain post {\n    type nat hook postrouting priority srcnat + 10; policy ' +
        `accept;\n    oifname "${IF.wan}" masquerade\n  }\n}\n`,
    );
    assert.equal(nat.code, 0, nat.stderr);
    const cfg = join(dir, 'portd.yaml');
    cfgText = [
      'logLevel: debug',
      `interfaces: { wan: ${IF.wan}, lan: [${IF.lan}] }`,
      'externalAddress: auto',
      `stateDir: ${dir}`,
      `database: { path: ${join(dir, 'portd.sqlite')} }`,
      'dataplane: { driver: nftables, table: portd, reconcileInterval: 60, grace: 5 }',
      'upnp: { enabled: false }',
      'pcp: { enabled: false }',
      'natpmp: { enabled: false }',
      `admin: { listen: "127.0.0.1:8080", token: "${TOKEN}" }`,
      'triggers:',
      '  - name: labgame',
      `    match: { protocol: udp, ports: "${TRIGGER_PORT}" }`,
      `    open: [{ protocol: tcp, ports: "${OPEN[0]}-${OPEN[1]}" }, { protocol: udp, ports: ` +
        `"${OPEN[0]}-${OPEN[1]}" }]`,
      `    idleTimeout: ${IDLE}`,
      '',
    ].join('\n');
    writeFileSync(cfg, cfgText);
    portd = spawn(
      'ip',
      ['netns', 'exec', lab.gw, process.execPath, join(ROOT, 'bin', 'portd.js'), 'start', '--config', cfg],
      { stdio: 'pipe', cwd: ROOT },
    );
    let err = '';
    let buf = '';
    portd.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`portd did not start: ${err}`)), 30_000);
      portd!.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          try {
            logLines.push(JSON.parse(line) as Record<string, unknown>);
          } catch {
            /* not JSON */
          }
          if (line.includes('admin API and dashboard listening')) {
            clearTimeout(t);
            resolve();
          }
        }
      });
      portd!.on('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`portd exited ${code}: ${err}`));
      });
    });
    hostA = await lab.agent(lab.lanA, 'hostA');
    hostB = await lab.agent(lab.lanB, 'hostB');
    wan = await lab.agent(lab.wan, 'wan');
    for (const h of [hostA, hostB])
      for (const p of OPEN) {
        assert.ok((await h.listen('tcp', p)).ok);
        assert.ok((await h.listen('udp', p)).ok);
      }
    assert.ok((await wan.listen('udp', TRIGGER_PORT)).ok); // the "game server"
  });

  after(async () => {
    if (portd && portd.exitCode === null) {
      portd.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(r, 5000);
        portd!.once('exit', () => {
          clearTimeout(t);
          r(null);
        });
      });
      if (portd.exitCode === null) portd.kill('SIGKILL');
    }
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let leaseIds: string[] = [];
  let bSock = 0;

  test('the rule is in the kernel in its own chain; nothing is open before a firing', async (t) => {
    const chain = await lab.must(lab.gw, ['nft', 'list', 'chain', 'inet', 'portd', 'triggers']);
    assert.match(
      chain,
      new RegExp(
        `udp dport ${TRIGGER_PORT} update @trig_labgame_active \\{ ip saddr timeout ${IDLE}s \\} ct state new ct ` +
          'mark set ct mark \\| 0x[0-9a-f]+0400',
      ),
    );
    const v = await trigger();
    assert.equal(v.state, 'idle');
    assert.equal((await wan.tcpProbe(EXT, OPEN[0]!, { timeoutMs: FAIL_MS })).ok, false, 'closed before the trigger');
    t.diagnostic(chain.split('\n').filter((l) => l.includes('labgame')).length + ' kernel rules for labgame');
  });

  test('host A sends UDP to the trigger port: the ranges open to A, and the WAN host reaches its TCP and UDP servers', async (t) => {
    const sock = await hostA.udpOpen();
    assert.ok(sock.ok);
    const t0 = Date.now();
    const sent = await hostA.udpSend(sock.sock!, ADDR.wanHost, TRIGGER_PORT, 'hello game server');
    assert.equal(sent.reply, `wan|${EXT}|hello game server`, 'the gateway masquerades A to the WAN');
    // the lease in the kernel: poll the map (bounded)
    let inKernel = -1;
    for (let i = 0; i < 400; i++) {
      if (/7800-7801 .*: 192\.168\.77\.11/.test(await fwdRange())) {
        inKernel = Date.now() - t0;
        break;
      }
      await sleep(5);
    }
    assert.ok(inKernel >= 0, 'the opening reached the kernel');
    const fired = logLines.find((l) => l['msg'] === 'trigger fired');
    t.diagnostic(
      `first packet -> lease in the kernel (seen by polling nft, incl. agent IPC and nft start-up): ${inKernel} ` +
        `ms; portd: event -> dataplane ${String(fired?.['sinceEventMs'])} ms, firing ${String(fired?.['ms'])} ms`,
    );

    const v = await trigger();
    assert.equal(v.state, 'held');
    assert.equal(v.holder, ADDR.hostA);
    assert.equal(v.counters.fired, 1);
    leaseIds = v.leases;
    assert.equal(leaseIds.length, 2);

    for (const p of OPEN) {
      const tcp = await wan.tcpProbe(EXT, p, { data: `tcp${p}` });
      assert.equal(tcp.reply, `hostA|${ADDR.wanHost}|tcp${p}`, `tcp ${p}`);
      const udp = await wan.udpProbe(EXT, p, { data: `udp${p}` });
      assert.equal(udp.reply, `hostA|${ADDR.wanHost}|udp${p}`, `udp ${p}`);
    }
    const set = await lab.must(lab.gw, ['nft', 'list', 'set', 'inet', 'portd', 'trig_labgame_active']);
    assert.match(set, /192\.168\.77\.11 timeout 4s expires/);
  });

  test('host B cannot take the rule while A holds it: refused, counted, the holder named', async () => {
    const sock = await hostB.udpOpen();
    assert.ok(sock.ok);
    bSock = sock.sock!;
    await hostB.udpSend(bSock, ADDR.wanHost, TRIGGER_PORT, 'me too');
    let v = await trigger();
    for (let i = 0; i < 40 && v.counters.refused === 0; i++) {
      await sleep(50);
      v = await trigger();
    }
    assert.equal(v.counters.refused, 1);
    assert.equal(v.holder, ADDR.hostA);
    assert.equal(v.lastRefusal?.host, ADDR.hostB);
    assert.equal(v.lastRefusal?.holder?.owner, ADDR.hostA);
    assert.equal(v.lastRefusal?.holder?.source, 'trigger');
    const metrics = await lab.must(lab.gw, ['curl', '-s', 'http://127.0.0.1:8080/metrics']);
    assert.match(metrics, /portd_trigger_firings_total\{rule="labgame",result="conflict"\} 1/);
    assert.match(metrics, /portd_trigger_firings_total\{rule="labgame",result="granted"\} 1/);
    // still A's
    assert.equal((await wan.tcpProbe(EXT, OPEN[0]!, { data: 'x' })).reply, `hostA|${ADDR.wanHost}|x`);
  });

  test('traffic through the opened ports keeps it open past the idle timeout; silence closes it within idleTimeout + a few s', async (t) => {
    // 7 s of traffic through an opened port, one probe a second: longer than the 4 s idle timeout
    let last = 0;
    for (let i = 0; i < 8; i++) {
      if (i > 0) await sleep(1000);
      const r = await wan.udpProbe(EXT, OPEN[1]!, { data: `keep${i}` });
      last = Date.now(); // the last packet through the opening (no more traffic after the loop)
      assert.equal(r.reply, `hostA|${ADDR.wanHost}|keep${i}`, `still open after ${i} s of traffic`);
    }
    // watch the lease through the API (no packets), bounded
    let endedAfter = -1;
    for (let i = 0; i < 60; i++) {
      const l = (await api<{ lease: LeaseJson }>(`/api/v1/leases/${leaseIds[0]}`)).body.lease;
      if (l.state === 'ended') {
        endedAfter = Date.now() - last;
        break;
      }
      await sleep(250);
    }
    t.diagnostic(`closed ${endedAfter} ms after the last packet (idleTimeout ${IDLE} s)`);
    assert.ok(endedAfter >= (IDLE - 1) * 1000, `not before the idle timeout (${endedAfter} ms)`);
    assert.ok(
      endedAfter > 0 && endedAfter <= (IDLE + 4) * 1000,
      `closed within idleTimeout + a few s (${endedAfter} ms)`,
    );
    for (const p of OPEN) {
      assert.equal((await wan.tcpProbe(EXT, p, { timeoutMs: FAIL_MS })).ok, false, `tcp ${p} closed`);
      assert.equal((await wan.udpProbe(EXT, p, { timeoutMs: FAIL_MS })).ok, false, `udp ${p} closed`);
    }
    assert.doesNotMatch(await fwdRange(), /7800-7801/);
  });

  test("the lease shows source trigger, the rule, and why it ended; then B's next flow wins", async () => {
    const r = await api<{ leases: LeaseJson[] }>('/api/v1/leases?source=trigger&state=all');
    const a = r.body.leases.filter((l) => l.owner === ADDR.hostA);
    assert.equal(a.length, 2);
    for (const l of a) {
      assert.equal(l.source, 'trigger');
      assert.equal(l.rule, 'labgame');
      assert.equal(l.state, 'ended');
      assert.equal(l.endReason, 'expired');
      assert.deepEqual([l.externalPort, l.externalPortEnd], OPEN);
    }
    const detail = await api<{ history: { type: string; actor: string | null }[] }>(`/api/v1/leases/${a[0]!.id}`);
    const types = detail.body.history.map((h) => h.type);
    assert.equal(types[0], 'granted');
    assert.equal(detail.body.history[0]!.actor, 'trigger:labgame');
    assert.equal(types.at(-1), 'expired');

    // B speaks again on the flow that was refused (same socket): A's opening ended, so portd dropped
    // the rule's marked flows from conntrack, this packet is a new flow, and B now wins
    await hostB.udpSend(bSock, ADDR.wanHost, TRIGGER_PORT, 'my turn');
    let v = await trigger();
    for (let i = 0; i < 40 && v.holder !== ADDR.hostB; i++) {
      await sleep(50);
      v = await trigger();
    }
    assert.equal(v.holder, ADDR.hostB);
    assert.equal((await wan.tcpProbe(EXT, OPEN[0]!, { data: 'b' })).reply, `hostB|${ADDR.wanHost}|b`);
  });

  test('an API rule is installed in the kernel, fires from a packet, and is gone from the kernel when deleted', async () => {
    const created = await api<{ trigger: View }>('/api/v1/triggers', 'POST', {
      name: 'apirule',
      match: { protocol: 'tcp', ports: '7900' },
      open: [{ protocol: 'tcp', ports: '7901' }],
      idleTimeout: IDLE,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.match(
      await lab.must(lab.gw, ['nft', 'list', 'chain', 'inet', 'portd', 'triggers']),
      /tcp dport 7900 update @trig_apirule_active/,
    );
    assert.ok((await hostA.listen('tcp', 7901)).ok);
    // a TCP connection attempt to the trigger port fires it (nothing listens there: the SYN is enough)
    await hostA.tcpConnect(ADDR.wanHost, 7900, { timeoutMs: 500 });
    let v = (await api<{ trigger: View }>('/api/v1/triggers/apirule')).body.trigger;
    for (let i = 0; i < 40 && v.holder === null; i++) {
      await sleep(50);
      v = (await api<{ trigger: View }>('/api/v1/triggers/apirule')).body.trigger;
    }
    assert.equal(v.holder, ADDR.hostA);
    assert.equal((await wan.tcpProbe(EXT, 7901, { data: 'api' })).reply, `hostA|${ADDR.wanHost}|api`);
    const del = await api<{ trigger: View }>('/api/v1/triggers/apirule', 'DELETE');
    assert.equal(del.status, 200);
    assert.doesNotMatch(await lab.must(lab.gw, ['nft', 'list', 'table', 'inet', 'portd']), /apirule/);
    assert.equal((await wan.tcpProbe(EXT, 7901, { timeoutMs: FAIL_MS })).ok, false, 'its opening closed with it');
  });

  test('after going idle, the holder fires again on the same flow when it speaks again', async () => {
    let v = await trigger();
    for (let i = 0; i < 60 && v.state !== 'idle'; i++) {
      await sleep(250);
      v = await trigger();
    }
    assert.equal(v.state, 'idle', 'B went idle');
    await hostB.udpSend(bSock, ADDR.wanHost, TRIGGER_PORT, 'back again');
    for (let i = 0; i < 40 && v.holder !== ADDR.hostB; i++) {
      await sleep(50);
      v = await trigger();
    }
    assert.equal(v.holder, ADDR.hostB);
    assert.equal((await wan.udpProbe(EXT, OPEN[0]!, { data: 'b2' })).reply, `hostB|${ADDR.wanHost}|b2`);
  });

  test('SIGHUP reloads the rules from the file: a new rule is in the kernel, a dropped one is gone', async () => {
    const cfg = join(dir, 'portd.yaml');
    writeFileSync(
      cfg,
      cfgText.replace(
        'triggers:\n',
        'triggers:\n  - name: hup\n    match: { protocol: tcp, ports: "7950" }\n    open: [{ protocol: udp, ' +
          'ports: "7951" }]\n',
      ),
    );
    process.kill(portd!.pid!, 'SIGHUP');
    let chain = '';
    for (let i = 0; i < 40; i++) {
      chain = await lab.must(lab.gw, ['nft', 'list', 'chain', 'inet', 'portd', 'triggers']);
      if (chain.includes('trig_hup_active')) break;
      await sleep(100);
    }
    assert.match(chain, /tcp dport 7950 update @trig_hup_active/);
    const names = (await api<{ triggers: View[] }>('/api/v1/triggers')).body.triggers.map((t) => t.name);
    assert.deepEqual(names, ['hup', 'labgame']);
    // drop labgame: its opening (B's) closes with the reason in its history
    writeFileSync(cfg, cfgText.replace(/triggers:\n[\s\S]*$/, 'triggers: []\n'));
    process.kill(portd!.pid!, 'SIGHUP');
    for (let i = 0; i < 40 && chain.includes('labgame'); i++) {
      await sleep(100);
      chain = await lab.must(lab.gw, ['nft', 'list', 'table', 'inet', 'portd']);
    }
    assert.doesNotMatch(chain, /labgame/);
    assert.equal(
      (await api<{ leases: LeaseJson[] }>('/api/v1/leases?source=trigger')).body.leases.length,
      0,
      'no trigger lease left',
    );
    // B's last opening ended by the reload (revoked, with the reason) unless it went idle just before
    const last = (
      await api<{ leases: LeaseJson[] }>('/api/v1/leases?source=trigger&state=ended&sort=createdAt&order=desc&limit=1')
    ).body.leases[0]!;
    const h = (
      await api<{ history: { type: string; reason: string | null }[] }>(`/api/v1/leases/${last.id}`)
    ).body.history.at(-1)!;
    assert.ok(
      h.type === 'expired' || (h.type === 'revoked' && h.reason === 'trigger rule labgame removed'),
      JSON.stringify(h),
    );
    assert.equal((await wan.tcpProbe(EXT, OPEN[0]!, { timeoutMs: FAIL_MS })).ok, false, 'closed with its rule');
  });
});
