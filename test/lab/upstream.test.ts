/**
 * Chaining upstream in the three-tier lab (test/lab/upstream-lab.ts): LAN host → portd (the gateway, WAN
 * 100.64.77.2) → an upstream NAT in its own namespace → the Internet host. For each upstream a LAN client
 * maps a port; its answer names the public endpoint; the Internet host reaches the LAN host through both NATs
 * on that endpoint; the admin API shows the upstream mapping per lease; an upstream that restarts without its
 * state gets the mapping back; a delete closes both NATs.
 *
 * Upstreams: portd itself over PCP; Debian's miniupnpd (miniupnpd-nftables) over PCP, NAT-PMP and UPnP IGD,
 * with miniupnpd's addressing (it refuses documentation WAN addresses). Root only; under CI=true a missing
 * tool or package fails, never skips. ≈ 60-90 s in all.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { decodePcpResponse, encodePcpRequest, nonceFromHex, ResultCode } from '../../protocols/pcp/index.js';
import { hasTool, labSkip, type Agent, type Lab } from './harness.js';
import { PortdProcess } from './portd-process.js';
import { createUpstreamLab, IF3, type UpstreamLab } from './upstream-lab.js';

const TOKEN = 'lab-token-0123456789';
const FAIL_MS = 700;
const MINIUPNPD = '/usr/sbin/miniupnpd';

/** a missing tool skips locally and fails under CI=true */
function need(...tools: string[]): string | false {
  for (const t of tools) {
    const ok = t.startsWith('/') ? existsSync(t) : hasTool(t);
    if (ok) continue;
    if (process.env['CI'] === 'true') throw new Error(`upstream lab cannot run under CI: ${t} is not installed`);
    return `${t} not installed`;
  }
  return false;
}

const labSkipped = labSkip('upstream');

function gatewayConfig(dir: string, upstream: string): string {
  return (
    [
      'logLevel: info',
      'interfaces: { wan: wan0, lan: [br0] }',
      'externalAddress: auto',
      `stateDir: ${dir}`,
      `database: { path: ${join(dir, 'gw.sqlite')} }`,
      'dataplane: { driver: nftables, table: portd, hairpin: true, reconcileInterval: 5 }',
      'policy:',
      '  secureMode: true',
      '  lifetime: { pcp: { min: 2, max: 86400 }, natpmp: { min: 2, max: 86400 }, upnp: { min: 1, max: 604800 } }',
      '  rules: ["allow 1024-65535 192.168.77.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
      'upnp: { enabled: true, httpPort: 5000, ssdp: true }',
      'pcp: { rateLimit: 0 }',
      `admin: { listen: "127.0.0.1:8080", token: "${TOKEN}" }`,
      `upstream: ${upstream}`,
    ].join('\n') + '\n'
  );
}

/** portd as the upstream NAT: its LAN is the gateway's WAN (100.64.77.0/24) */
function upstreamPortdConfig(dir: string): string {
  return (
    [
      'logLevel: info',
      `interfaces: { wan: ${IF3.upWan}, lan: [${IF3.upLan}] }`,
      'externalAddress: auto',
      `stateDir: ${dir}`,
      `database: { path: ${join(dir, 'up.sqlite')} }`,
      'dataplane: { driver: nftables, table: portd, hairpin: false, reconcileInterval: 5 }',
      'policy:',
      '  secureMode: true',
      '  rules: ["allow 1024-65535 100.64.77.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
      'upnp: { enabled: false }',
      'pcp: { rateLimit: 0 }',
      `admin: { listen: "127.0.0.1:8080", token: "${TOKEN}" }`,
    ].join('\n') + '\n'
  );
}

/** the PCP client the tests drive: one MAP from hostA, the decoded answer */
async function pcpMap(
  host: Agent,
  gw: string,
  client: string,
  o: { internalPort: number; externalPort: number; lifetime: number; nonce: string },
) {
  const hex = Buffer.from(
    encodePcpRequest({
      version: 2,
      opcode: 1,
      lifetime: o.lifetime,
      clientAddress: client,
      options: [],
      map: {
        nonce: nonceFromHex(o.nonce),
        protocol: 6,
        internalPort: o.internalPort,
        externalPort: o.externalPort,
        externalAddress: '0.0.0.0',
      },
    }),
  ).toString('hex');
  const r = await host.call('udpBytes', { host: gw, port: 5351, hex, timeoutMs: 4000 });
  assert.ok(r.ok, JSON.stringify(r));
  return decodePcpResponse(Buffer.from(String(r.reply), 'hex'));
}

interface LeaseJson {
  id: string;
  externalPort: number;
  internalPort: number;
  upstream: {
    state: string;
    protocol: string;
    server: string;
    externalAddress: string | null;
    externalPort: number | null;
  } | null;
}

async function leasesOf(portd: PortdProcess): Promise<LeaseJson[]> {
  // the admin app is built at its first connection (lazy): on a busy machine that can outlast curl's 5 s
  let r = await portd.api('/api/v1/leases', TOKEN);
  for (let i = 0; i < 3 && r.status === 0; i++) r = await portd.api('/api/v1/leases', TOKEN);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body as { leases: LeaseJson[] }).leases;
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | null | false>): Promise<T> {
  const end = Date.now() + ms;
  let last: T | null | false = null;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

describe('chaining upstream to portd over PCP, found by auto discovery (three tiers)', {
  skip: labSkipped,
  timeout: 180_000,
}, () => {
  let lab: UpstreamLab;
  let dir: string;
  let gw: PortdProcess;
  let up: PortdProcess;
  let hostA: Agent, inet: Agent;
  const nonce = 'c0ffee00c0ffee00c0ffee00';

  before(async () => {
    lab = await createUpstreamLab();
    dir = mkdtempSync(join(tmpdir(), 'portd-upstream-'));
    mkdirSync(join(dir, 'up'));
    mkdirSync(join(dir, 'gw'));
    const verbose = process.env['LAB_LOG'] === 'portd';
    up = new PortdProcess({
      lab: { ...lab.base, gw: lab.upstream } as Lab,
      dir: join(dir, 'up'),
      config: upstreamPortdConfig(join(dir, 'up')),
      verbose,
    });
    await up.start();
    gw = new PortdProcess({
      lab: lab.base,
      dir: join(dir, 'gw'),
      // auto, no server: discovery finds PCP at the WAN's default gateway (100.64.77.1)
      config: gatewayConfig(join(dir, 'gw'), '{ mode: auto, server: null, timeout: 1500, probeInterval: 2 }'),
      verbose,
    });
    await gw.start();
    hostA = await lab.agent(lab.lanA, 'hostA');
    inet = await lab.agent(lab.internet, 'inet');
    assert.ok((await hostA.listen('tcp', 9001)).ok);
  });

  after(async () => {
    await gw?.stop();
    await up?.stop();
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a PCP MAP from the LAN is answered with the public endpoint; the Internet host gets through both NATs', async () => {
    assert.equal((await inet.tcpProbe(lab.addr.upWan, 8001, { timeoutMs: FAIL_MS })).ok, false, 'closed before');
    const res = await pcpMap(hostA, lab.addr.gwLan, lab.addr.hostA, {
      internalPort: 9001,
      externalPort: 8001,
      lifetime: 600,
      nonce,
    });
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(res.map?.externalAddress, lab.addr.upWan, 'the public address, not the gateway WAN 100.64.77.2');
    const port = res.map!.externalPort;
    assert.equal(port, 8001);
    const t = await inet.tcpProbe(lab.addr.upWan, port, { data: 'hello' });
    assert.ok(t.ok, t.error);
    assert.equal(t.reply, `hostA|${lab.addr.internet}|hello`);
    // the upstream's kernel maps the public port to the gateway's WAN address
    assert.match(
      await lab.must(lab.upstream, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']),
      /tcp \. 8001 [^:]*: 100\.64\.77\.2 \. 8001/,
    );
  });

  test('the admin API shows the upstream mapping of the lease', async () => {
    const l = (await leasesOf(gw)).find((x) => x.internalPort === 9001);
    assert.ok(l, 'lease listed');
    assert.equal(l.upstream?.state, 'active');
    assert.equal(l.upstream?.protocol, 'pcp');
    assert.equal(l.upstream?.server, lab.addr.upLan);
    assert.equal(l.upstream?.externalAddress, lab.addr.upWan);
    assert.equal(l.upstream?.externalPort, 8001);
    const one = await gw.api(`/api/v1/leases/${l.id}`, TOKEN);
    assert.equal((one.body as { lease: LeaseJson }).lease.upstream?.state, 'active');
    const m = await gw.api('/metrics', TOKEN);
    assert.match(String(m.body), /portd_upstream_mappings\{state="active"\} 1/);
    assert.match(String(m.body), /portd_upstream_requests_total\{protocol="pcp",result="success"\} \d+/);
    // the upstream's public address is what UPnP GetExternalIPAddress and NAT-PMP report from now on
    const st = await gw.api('/api/v1/status', TOKEN);
    const w = (st.body as { wan: { upstreamAddress: string | null; reportedAddress: string } }).wan;
    assert.equal(w.upstreamAddress, lab.addr.upWan);
    assert.equal(w.reportedAddress, lab.addr.upWan);
  });

  test('an upstream that restarts without its state gets the mapping back (epoch reset)', async () => {
    const from = gw.logs.length;
    await up.kill9();
    await lab.must(lab.upstream, ['nft', 'delete', 'table', 'inet', 'portd']);
    rmSync(join(dir, 'up', 'up.sqlite'), { force: true });
    rmSync(join(dir, 'up', 'up.sqlite-wal'), { force: true });
    rmSync(join(dir, 'up', 'up.sqlite-shm'), { force: true });
    assert.equal((await inet.tcpProbe(lab.addr.upWan, 8001, { timeoutMs: FAIL_MS })).ok, false, 'gone with the state');
    await up.start();
    await until('the mapping re-created upstream', 20_000, async () =>
      /tcp \. 8001 [^:]*: 100\.64\.77\.2 \. 8001/.test(
        (await lab.exec(lab.upstream, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4'])).stdout,
      ),
    );
    const t = await inet.tcpProbe(lab.addr.upWan, 8001, { data: 'again' });
    assert.ok(t.ok, t.error);
    // the gateway logged why it re-created the mappings (its stdout comes in batches: wait for the line)
    await gw.waitForLog((l) => /re-creating/.test(l.msg), 5000, from);
  });

  test('a delete (lifetime 0) closes both NATs', async () => {
    const res = await pcpMap(hostA, lab.addr.gwLan, lab.addr.hostA, {
      internalPort: 9001,
      externalPort: 8001,
      lifetime: 0,
      nonce,
    });
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    await until(
      'the upstream mapping deleted',
      5000,
      async () =>
        !/tcp \. 8001 /.test((await lab.exec(lab.upstream, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4'])).stdout),
    );
    assert.doesNotMatch(await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']), /tcp \. 8001 /);
    assert.equal((await inet.tcpProbe(lab.addr.upWan, 8001, { timeoutMs: FAIL_MS })).ok, false);
  });
});

// ---------------- miniupnpd (Debian miniupnpd-nftables) as the upstream NAT ----------------

const MU = { table: 'miniupnpd', chain: 'miniupnpd', pre: 'prerouting_miniupnpd', post: 'postrouting_miniupnpd' };

/** miniupnpd in the upstream namespace, as bench/compare/daemons.ts starts it (without -d: it daemonizes) */
class Miniupnpd {
  pid = 0;
  constructor(
    private readonly lab: UpstreamLab,
    private readonly dir: string,
  ) {}

  private get conf(): string {
    return join(this.dir, 'miniupnpd.conf');
  }

  async init(): Promise<void> {
    writeFileSync(
      join(this.dir, 'miniupnpd_functions.sh'),
      [
        'NFT=$(command -v nft)',
        `TABLE="${MU.table}"`,
        `NAT_TABLE="${MU.table}"`,
        `CHAIN="${MU.chain}"`,
        `PREROUTING_CHAIN="${MU.pre}"`,
        `POSTROUTING_CHAIN="${MU.post}"`,
      ].join('\n') + '\n',
    );
    const init = readFileSync('/etc/miniupnpd/nft_init.sh', 'utf8').replaceAll(
      '/tmp/miniupnpd.nft',
      join(this.dir, 'miniupnpd.nft'),
    );
    writeFileSync(join(this.dir, 'nft_init.sh'), init);
    copyFileSync('/etc/miniupnpd/nft_removeall.sh', join(this.dir, 'nft_removeall.sh'));
    writeFileSync(
      this.conf,
      [
        `ext_ifname=${IF3.upWan}`,
        `listening_ip=${IF3.upLan}`,
        'http_port=5000',
        'enable_upnp=yes',
        'enable_natpmp=yes', // NAT-PMP and PCP share this switch in miniupnpd 2.x
        'secure_mode=yes',
        // the epoch is the daemon's own uptime, so a restart shows (with yes it is the system's)
        'system_uptime=no',
        'clean_ruleset_interval=600',
        'min_lifetime=120',
        'max_lifetime=86400',
        `uuid=${randomUUID()}`,
        `lease_file=${join(this.dir, 'upnp.leases')}`,
        `upnp_table_name=${MU.table}`,
        `upnp_nat_table_name=${MU.table}`,
        `upnp_forward_chain=${MU.chain}`,
        `upnp_nat_chain=${MU.pre}`,
        `upnp_nat_postrouting_chain=${MU.post}`,
        'allow 1024-65535 100.64.77.0/24 1024-65535',
        'deny 0-65535 0.0.0.0/0 0-65535',
      ].join('\n') + '\n',
    );
    await this.tables();
  }

  /** miniupnpd's tables, plus what its forward chain (policy drop) needs for the flows it did not map */
  private async tables(): Promise<void> {
    await this.lab.must(this.lab.upstream, ['sh', join(this.dir, 'nft_init.sh')]);
    await this.lab.must(this.lab.upstream, [
      'nft',
      'insert',
      'rule',
      'inet',
      MU.table,
      'forward',
      'ct',
      'state',
      'established,related',
      'accept',
    ]);
    await this.lab.must(this.lab.upstream, [
      'nft',
      'insert',
      'rule',
      'inet',
      MU.table,
      'forward',
      'iifname',
      IF3.upLan,
      'oifname',
      IF3.upWan,
      'accept',
    ]);
  }

  async start(): Promise<void> {
    const pidFile = join(this.dir, 'miniupnpd.pid');
    rmSync(pidFile, { force: true });
    const r = await this.lab.exec(this.lab.upstream, [MINIUPNPD, '-f', this.conf, '-P', pidFile], {
      timeoutMs: 15_000,
    });
    assert.equal(r.code, 0, `miniupnpd did not start: ${r.stderr}`);
    this.pid = await until('miniupnpd pid file', 10_000, async () => {
      try {
        const pid = Number(readFileSync(pidFile, 'utf8').trim());
        return pid > 0 ? pid : null;
      } catch {
        return null;
      }
    });
    // its HTTP server answers once it is up
    await until('miniupnpd HTTP', 10_000, async () => {
      const c = await this.lab.exec(this.lab.upstream, [
        'curl',
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '--max-time',
        '1',
        'http://100.64.77.1:5000/rootDesc.xml',
      ]);
      return c.stdout === '200';
    });
  }

  /** kill -9, and its state with it (rules, lease file): a router that rebooted */
  async crash(): Promise<void> {
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await until('miniupnpd gone', 5000, async () => {
      try {
        process.kill(this.pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    await this.lab.exec(this.lab.upstream, ['sh', join(this.dir, 'nft_removeall.sh')]);
    await this.lab.exec(this.lab.upstream, ['nft', 'delete', 'table', 'inet', MU.table]);
    rmSync(join(this.dir, 'upnp.leases'), { force: true });
    await this.tables();
  }

  /** the DNAT rules miniupnpd holds */
  async rules(): Promise<string> {
    return (await this.lab.exec(this.lab.upstream, ['nft', 'list', 'chain', 'inet', MU.table, MU.pre])).stdout;
  }
}

const miniSkip = labSkipped || need(MINIUPNPD, 'natpmpc', 'upnpc', 'curl');

for (const mode of ['pcp', 'natpmp', 'upnp'] as const) {
  // the LAN side varies too: natpmpc for a PCP upstream, the tests' PCP client for NAT-PMP, upnpc for UPnP
  const lanClient = mode === 'pcp' ? 'natpmpc' : mode === 'natpmp' ? 'PCP' : 'upnpc';
  const port = { pcp: 8011, natpmp: 8012, upnp: 8013 }[mode];
  const internal = port + 1000;
  describe(`chaining upstream to miniupnpd over ${mode} (LAN client: ${lanClient})`, {
    skip: miniSkip,
    timeout: 120_000,
  }, () => {
    let lab: UpstreamLab;
    let dir: string;
    let gw: PortdProcess;
    let mini: Miniupnpd;
    let hostA: Agent, inet: Agent;
    const nonce = 'beef0000beef0000beef0000';
    const ruleFor = new RegExp(`dport ${port} `);

    /** the LAN client maps internal → port (lifetime 600) or deletes it (0); the public port it was told */
    async function lanMap(lifetime: number): Promise<number | null> {
      if (lanClient === 'PCP') {
        const r = await pcpMap(hostA, lab.addr.gwLan, lab.addr.hostA, {
          internalPort: internal,
          externalPort: port,
          lifetime,
          nonce,
        });
        assert.equal(r.resultCode, ResultCode.SUCCESS, `PCP result ${r.resultCode}`);
        if (lifetime > 0) assert.equal(r.map?.externalAddress, lab.addr.upWan, 'the public address');
        return r.map?.externalPort ?? null;
      }
      if (lanClient === 'natpmpc') {
        const r = await lab.exec(
          lab.lanA,
          ['natpmpc', '-g', lab.addr.gwLan, '-a', String(port), String(internal), 'tcp', String(lifetime)],
          { timeoutMs: 20_000 },
        );
        assert.equal(r.code, 0, r.stdout + r.stderr);
        if (lifetime === 0) return null;
        const m = /Mapped public port (\d+) protocol TCP to local port (\d+)/.exec(r.stdout);
        assert.ok(m, r.stdout);
        return Number(m[1]);
      }
      const args =
        lifetime === 0
          ? ['-d', String(port), 'TCP']
          : ['-e', 'chain', '-a', lab.addr.hostA, String(internal), String(port), 'TCP', String(lifetime)];
      const r = await lab.exec(lab.lanA, ['upnpc', '-m', 'eth0', '-i', ...args], { timeoutMs: 30_000 });
      if (lifetime === 0) {
        assert.match(r.stdout, /returned : 0/, r.stdout + r.stderr);
        return null;
      }
      assert.match(r.stdout, new RegExp(`external \\S+:${port} TCP is redirected`), r.stdout + r.stderr);
      return port;
    }

    before(async () => {
      lab = await createUpstreamLab({ miniupnpd: true });
      dir = mkdtempSync(join(tmpdir(), `portd-upstream-${mode}-`));
      mkdirSync(join(dir, 'mini'));
      mkdirSync(join(dir, 'gw'));
      mini = new Miniupnpd(lab, join(dir, 'mini'));
      await mini.init();
      await mini.start();
      gw = new PortdProcess({
        lab: lab.base,
        dir: join(dir, 'gw'),
        config: gatewayConfig(
          join(dir, 'gw'),
          // UPnP without a server: the IGD is found by SSDP multicast on the WAN interface
          `{ mode: ${mode}, server: ${mode === 'upnp' ? 'null' : lab.addr.upLan}, timeout: 1500, probeInterval: 2 }`,
        ),
        verbose: process.env['LAB_LOG'] === 'portd',
      });
      await gw.start();
      hostA = await lab.agent(lab.lanA, 'hostA');
      inet = await lab.agent(lab.internet, 'inet');
      assert.ok((await hostA.listen('tcp', internal)).ok);
    });

    after(async () => {
      await gw?.stop();
      await lab?.teardown();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('the LAN client is told the public port; the Internet host reaches the LAN host through both NATs', async () => {
      assert.equal((await inet.tcpProbe(lab.addr.upWan, port, { timeoutMs: FAIL_MS })).ok, false, 'closed before');
      const told = await lanMap(600);
      assert.equal(told, port);
      const t = await inet.tcpProbe(lab.addr.upWan, port, { data: 'hi' });
      assert.ok(t.ok, t.error);
      assert.equal(t.reply, `hostA|${lab.addr.internet}|hi`);
      assert.match(await mini.rules(), ruleFor, 'miniupnpd holds the mapping');
      const l = (await leasesOf(gw)).find((x) => x.internalPort === internal);
      assert.equal(l?.upstream?.state, 'active');
      assert.equal(l?.upstream?.protocol, mode);
      assert.equal(l?.upstream?.externalPort, port);
      assert.equal(l?.upstream?.externalAddress, lab.addr.upWan);
    });

    test('miniupnpd restarted without its state gets the mapping back', async () => {
      await mini.crash();
      assert.doesNotMatch(await mini.rules(), ruleFor);
      await mini.start();
      await until('the mapping re-created in miniupnpd', 20_000, async () => ruleFor.test(await mini.rules()));
      const t = await inet.tcpProbe(lab.addr.upWan, port, { data: 'back' });
      assert.ok(t.ok, t.error);
    });

    test('a delete closes both NATs', async () => {
      await lanMap(0);
      await until('miniupnpd rule gone', 5000, async () => !ruleFor.test(await mini.rules()));
      assert.doesNotMatch(
        await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']),
        new RegExp(`tcp \\. ${port} `),
      );
      assert.equal((await inet.tcpProbe(lab.addr.upWan, port, { timeoutMs: FAIL_MS })).ok, false);
    });
  });
}
