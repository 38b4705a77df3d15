/**
 * Lab (root; a failure under CI=true): `portd doctor` as a user runs it (bin/portd.js doctor, inside the
 * gateway namespace with `ip netns exec`), on the same gateway twice:
 *   - good: forwarding on, a default-drop forward chain with `ct mark & 0x100 == 0x100 accept`, the real
 *     portd running (nftables driver, front-ends on the LAN address, a static forward): every check ok or
 *     info, exit 0 — and the WAN host really reaches the forwarded LAN server;
 *   - bad: portd stopped and its table gone, forwarding off, a drop policy without the accept, front-ends
 *     on 0.0.0.0 with an input chain that accepts all, the WAN address in 100.64.77.0/24 (a CGN), another
 *     program on the admin port: each
 *     problem reported with its fix, exit 1 (text and --json). Then the printed sysctl is run and portd
 *     started again: the WAN host's connection to the forward is dropped, as doctor still says; after the
 *     printed `nft insert rule` it passes and doctor says ok.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADDR, IF, createLab, labSkip, type Agent, type Lab } from './harness.js';
import { PortdProcess } from './portd-process.js';

const skip = labSkip('doctor');
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TOKEN = 'lab-token-0123456789';
const CGN_WAN = '100.64.77.2';

interface Check {
  id: string;
  status: 'ok' | 'info' | 'warn' | 'fail';
  message: string;
  fix: string | null;
}
interface Report {
  ok: boolean;
  summary: Record<string, number>;
  checks: Check[];
}

const firewall = (forwardExtra: string, inputPolicy: 'drop' | 'accept') => `table inet filter {
  chain input {
    type filter hook input priority filter; policy ${inputPolicy};
    ct state established,related accept
    iifname "lo" accept
    iifname "${IF.lan}" accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
${forwardExtra}    iifname "${IF.lan}" oifname "${IF.wan}" accept
  }
}
`;

const config = (dir: string, extra: string[] = []) =>
  [
    'logLevel: info',
    `interfaces: { wan: ${IF.wan}, lan: [${IF.lan}] }`,
    'externalAddress: auto',
    ...extra,
    `stateDir: ${dir}`,
    `database: { path: ${join(dir, 'portd.sqlite')} }`,
    'dataplane: { driver: nftables, table: portd }',
    'policy:',
    '  rules: ["allow 1024-65535 192.168.77.0/24 1-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
    'upnp: { enabled: true, httpPort: 5000, ssdp: true }',
    `admin: { listen: "127.0.0.1:8080", token: "${TOKEN}" }`,
    'staticForwards:',
    `  - { protocol: tcp, externalPort: 8443, internal: "${ADDR.hostA}:9443", description: lab }`,
  ].join('\n') + '\n';

describe('portd doctor on a lab gateway, good and bad', { skip, timeout: 120_000 }, () => {
  let lab: Lab;
  let dir: string;
  let portd: PortdProcess;
  let hostA: Agent, wan: Agent;

  async function doctor(configPath: string, json: boolean): Promise<{ code: number; stdout: string; stderr: string }> {
    const argv = [process.execPath, join(ROOT, 'bin', 'portd.js'), 'doctor', '--config', configPath];
    if (json) argv.push('--json');
    const r = await lab.exec(lab.gw, argv, { timeoutMs: 60_000 });
    if (process.env['LAB_LOG'] && !json)
      process.stderr.write(`--- portd doctor (exit ${r.code})\n${r.stdout}${r.stderr}`);
    return r;
  }
  async function report(configPath: string): Promise<{ code: number; report: Report }> {
    const r = await doctor(configPath, true);
    let parsed: Report;
    try {
      parsed = JSON.parse(r.stdout) as Report;
    } catch {
      throw new Error(`doctor --json printed no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
    }
    return { code: r.code, report: parsed };
  }
  const byId = (r: Report, id: string) => {
    const c = r.checks.find((x) => x.id === id);
    assert.ok(c, `no check ${id} in ${JSON.stringify(r.checks.map((x) => x.id))}`);
    return c;
  };

  before(async () => {
    lab = await createLab();
    dir = mkdtempSync(join(tmpdir(), 'portd-doctor-'));
    portd = new PortdProcess({ lab, dir, config: config(dir), verbose: process.env['LAB_LOG'] === 'portd' });
    hostA = await lab.agent(lab.lanA, 'hostA');
    wan = await lab.agent(lab.wan, 'wan');
    assert.ok((await hostA.listen('tcp', 9443)).ok);
  });

  after(async () => {
    try {
      await portd?.stop();
    } finally {
      await lab?.teardown();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a good gateway: every check ok (or info), exit 0, and a forward really works', async () => {
    const fw = await lab.nft(firewall('    ct mark & 0x100 == 0x100 accept\n', 'drop'));
    assert.equal(fw.code, 0, fw.stderr);
    await portd.start();
    // what doctor judges is what happens: the WAN host reaches the static forward through the drop policy
    const probe = await wan.tcpProbe(ADDR.gwWan, 8443, { timeoutMs: 3000 });
    assert.ok(probe.ok, `WAN -> 8443 should reach hostA: ${probe.error ?? ''}`);

    const { code, report: r } = await report(portd.configPath);
    // nft -c checked the table under a scratch name: nothing of it is left in the kernel
    assert.doesNotMatch(await lab.must(lab.gw, ['nft', 'list', 'tables']), /portd_doctor/);
    const bad = r.checks.filter((c) => c.status === 'warn' || c.status === 'fail');
    assert.deepEqual(bad, [], 'no warn or fail on the good gateway');
    assert.equal(code, 0);
    assert.equal(r.ok, true);
    assert.equal(byId(r, 'forwarding').status, 'ok');
    assert.match(
      byId(r, 'firewall-forward').message,
      /table inet filter chain forward accepts them.*ct mark & 0x100 == 0x100 accept/,
    );
    assert.match(byId(r, 'wan-address').message, /203\.0\.113\.1/);
    for (const id of ['frontend-upnp', 'frontend-ssdp', 'frontend-pcp'])
      assert.match(byId(r, id).message, /192\.168\.77\.1 .*not on the WAN/, id);
    assert.equal(byId(r, 'nft').status, 'ok');
    assert.match(byId(r, 'nft').message, /nft -c accepts the table portd writes/);
    assert.equal(byId(r, 'capabilities').status, 'ok');
    assert.match(byId(r, 'database').message, new RegExp(`in use by the running portd \\(pid ${portd.pid}`));
    assert.equal(byId(r, 'daemon').status, 'ok');
    assert.match(byId(r, 'daemon').message, /1 active leases.*table inet portd is present/);

    const text = await doctor(portd.configPath, false);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^ok +forwarding +IPv4 forwarding is on/m);
    assert.match(text.stdout, /0 fail, 0 warn/);
  });

  test('a bad gateway: each problem with its fix, exit 1; the printed fixes work', async () => {
    await portd.stop();
    const badConfig = join(dir, 'bad.yaml');
    writeFileSync(badConfig, config(dir, ['listenAddresses: ["0.0.0.0"]']));
    await lab.must(lab.gw, ['nft', 'delete', 'table', 'inet', 'portd']);
    await lab.must(lab.gw, ['nft', 'delete', 'table', 'inet', 'filter']);
    const fw = await lab.nft(firewall('', 'accept'));
    assert.equal(fw.code, 0, fw.stderr);
    await lab.must(lab.gw, ['sysctl', '-qw', 'net.ipv4.ip_forward=0']);
    await lab.must(lab.gw, ['ip', 'addr', 'flush', 'dev', IF.wan]);
    await lab.must(lab.gw, ['ip', 'addr', 'add', `${CGN_WAN}/24`, 'dev', IF.wan]);
    // another program of the gateway holds the admin port (a web UI on 8080)
    const squatter = await lab.agent(lab.gw, 'squatter');
    assert.ok((await squatter.listen('tcp', 8080, '127.0.0.1')).ok);

    // doctor only looks at the database: with portd stopped, its files stay byte for byte and no file is added
    const files = () =>
      readdirSync(dir)
        .filter((n) => n.startsWith('portd.sqlite'))
        .map((n) => {
          const st = statSync(join(dir, n));
          return `${n} ${st.size} ${st.mtimeMs} ${(st.mode & 0o777).toString(8)}`;
        })
        .sort();
    const beforeFiles = files();
    const { code, report: r } = await report(badConfig);
    assert.deepEqual(files(), beforeFiles);
    assert.equal(code, 1, 'a failed check exits 1');
    assert.equal(r.ok, false);

    const fwd = byId(r, 'forwarding');
    assert.equal(fwd.status, 'fail');
    assert.match(fwd.fix ?? '', /sysctl -w net\.ipv4\.ip_forward=1/);

    const chain = byId(r, 'firewall-forward');
    assert.equal(chain.status, 'fail');
    assert.match(chain.message, /table inet filter chain forward .*drops portd's forwarded flows.*policy drop/);
    assert.match(chain.fix ?? '', /nft insert rule inet filter forward ct mark and 0x100 == 0x100 accept/);

    const wanCheck = byId(r, 'wan-address');
    assert.equal(wanCheck.status, 'warn');
    assert.match(wanCheck.message, /100\.64\.77\.2 .*RFC 6598.*carrier-grade NAT/);
    assert.match(wanCheck.fix ?? '', /public IPv4 address/);

    for (const id of ['frontend-upnp', 'frontend-ssdp', 'frontend-pcp']) {
      const c = byId(r, id);
      assert.equal(c.status, 'fail', `${id}: ${c.message}`);
      assert.match(c.message, /bound to 0\.0\.0\.0.*no input chain drops/);
      assert.match(c.fix ?? '', /set listenAddresses to the LAN addresses/);
    }
    const admin = byId(r, 'frontend-admin');
    assert.equal(admin.status, 'fail');
    assert.match(admin.message, /another program already listens on tcp 127\.0\.0\.1 port 8080.*portd cannot bind it/);
    assert.match(admin.fix ?? '', /ss -tlpn sport = :8080.*admin\.listen/);
    assert.equal(byId(r, 'daemon').status, 'info');
    assert.match(byId(r, 'daemon').message, /not running.*table inet portd is not there/);

    const text = await doctor(badConfig, false);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /^fail +forwarding +IPv4 forwarding is off .*→ sysctl -w/m);
    assert.match(text.stdout, /^warn +wan-address +/m);
    assert.match(text.stdout, /: [1-9]\d* fail, /);

    // the fixes as printed, run as the admin would; doctor's forward-chain verdict is what the kernel does
    await lab.must(lab.gw, ['sh', '-c', /sysctl -w net\.ipv4\.ip_forward=1/.exec(fwd.fix ?? '')![0]]);
    await lab.must(lab.gw, ['ip', 'addr', 'flush', 'dev', IF.wan]);
    await lab.must(lab.gw, ['ip', 'addr', 'add', `${ADDR.gwWan}/24`, 'dev', IF.wan]);
    squatter.stop();
    await portd.start(); // the good configuration: front-ends on the LAN address, the static forward
    const dropped = await wan.tcpProbe(ADDR.gwWan, 8443, { timeoutMs: 1500 });
    assert.equal(dropped.ok, false, 'the drop policy without the accept stops the forward');
    const { code: stillBad, report: before } = await report(portd.configPath);
    assert.equal(stillBad, 1);
    assert.equal(byId(before, 'forwarding').status, 'ok');
    assert.equal(byId(before, 'firewall-forward').status, 'fail');

    const nftFix = /nft insert rule [^;—]+accept/.exec(chain.fix ?? '')?.[0];
    assert.ok(nftFix);
    await lab.must(lab.gw, ['sh', '-c', nftFix]);
    const passes = await wan.tcpProbe(ADDR.gwWan, 8443, { timeoutMs: 3000 });
    assert.ok(passes.ok, `after the printed rule the forward passes: ${passes.error ?? ''}`);
    const { report: fixed } = await report(portd.configPath);
    assert.equal(byId(fixed, 'firewall-forward').status, 'ok');
    assert.match(byId(fixed, 'firewall-forward').message, /ct mark & 0x100 == 0x100 accept/);
  });
});
