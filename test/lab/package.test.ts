/**
 * The Debian package (issue 17 points 1 and 2), as an admin gets it: `npm run package` builds
 * pkg/portd_<version>_<arch>.deb once for the whole file; lintian reports no error; the .deb holds
 * compiled JavaScript and production dependencies only, the unit, the conffile and the Depends;
 * `apt-get install ./pkg/portd_*.deb` on this machine makes the `portd` user and /var/lib/portd, and
 * `portd check-config` works. Then the installed /usr/bin/portd runs as user portd with exactly
 * CAP_NET_ADMIN (ambient, through setpriv, as the unit grants it) in the lab's gateway namespace on
 * real nftables: upnpc and natpmpc map ports, the WAN host reaches LAN listeners through them and
 * through a static forward, and after kill -9 and a new start the leases are still in the API and in
 * the kernel. Without the capability it exits at once naming CAP_NET_ADMIN.
 * Root only (a failure under CI=true). The package is purged and the user removed afterwards, also
 * on failure. Takes about 2-4 minutes (most of it the build; node-gyp's SQLite compile is cached in
 * pkg/cache between runs).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADDR, createLab, exec, hasTool, labSkip, type Agent, type Lab } from './harness.js';
import { kernelState } from './portd-process.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TOKEN = 'package-lab-token-0123456789';
const EXT = ADDR.gwWan;
const FAIL_MS = 700;
const CAPS = [
  '--inh-caps',
  '-all,+net_admin',
  '--ambient-caps',
  '-all,+net_admin',
  '--bounding-set',
  '-all,+net_admin',
];
const NO_CAPS = ['--inh-caps', '-all', '--ambient-caps', '-all', '--bounding-set', '-all'];

/** a field of an installed package (dpkg-query's ${Field} format), '' when not installed */
function dpkgQuery(field: string, pkg: string): string {
  return spawnSync('dpkg-query', ['-W', `-f=\${${field}}`, pkg], { encoding: 'utf8' }).stdout;
}

/** why this suite cannot run here, or false; under CI=true a reason is a failure, never a skip */
function why(): string | false {
  const lab = labSkip('package');
  if (lab) return lab;
  const missing = ['dpkg-deb', 'apt-get', 'lintian', 'setpriv', 'upnpc', 'natpmpc', 'curl', 'g++', 'make'].filter(
    (t) => !hasTool(t),
  );
  let reason: string | false = missing.length > 0 && `missing ${missing.join(', ')} (npm test's pretest installs them)`;
  // the package installs over nothing of the admin's: no portd package, no portd user beforehand
  if (!reason && dpkgQuery('Status', 'portd').includes('ok installed'))
    reason = 'a portd package is already installed on this machine (the test installs and purges its own)';
  if (!reason && spawnSync('getent', ['passwd', 'portd']).status === 0)
    reason = 'a user portd exists already (the test creates and removes it through the package)';
  if (!reason) {
    const v = dpkgQuery('Version', 'nodejs');
    if (!v || spawnSync('dpkg', ['--compare-versions', v, 'ge', '20']).status !== 0)
      reason = `the nodejs package is ${v || 'not installed'}; the .deb needs nodejs >= 20 from dpkg (docs/install.md)`;
  }
  if (reason && process.env['CI'] === 'true') throw new Error(`package suite cannot run under CI: ${reason}`);
  if (reason) process.stderr.write(`\n*** PACKAGE LAB SKIPPED: ${reason} ***\n\n`);
  return reason;
}

const skip = why();

let installed = false;
/** purge the package and the user, whatever state the test left (also from process 'exit') */
function purgeSync(): void {
  if (installed) {
    spawnSync('apt-get', ['purge', '-y', '-q', 'portd'], {
      stdio: 'ignore',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 120_000,
    });
    installed = false;
  }
  if (spawnSync('getent', ['passwd', 'portd']).status === 0) spawnSync('userdel', ['portd'], { stdio: 'ignore' });
  if (spawnSync('getent', ['group', 'portd']).status === 0) spawnSync('groupdel', ['portd'], { stdio: 'ignore' });
}

/** the installed /usr/bin/portd inside the gateway namespace, as user portd through setpriv */
class InstalledPortd {
  child: ChildProcess | null = null;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  stdout = '';
  stderr = '';
  constructor(
    private readonly lab: Lab,
    private readonly configPath: string,
  ) {}

  spawn(caps: string[]): Promise<void> {
    const argv = ['netns', 'exec', this.lab.gw, 'setpriv', '--reuid', 'portd', '--regid', 'portd', '--init-groups'];
    argv.push(...caps, '/usr/bin/portd', 'start', '--config', this.configPath);
    const child = spawn('ip', argv, { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exit = null;
    this.stdout = '';
    this.stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      this.stdout += d.toString();
      if (process.env['LAB_LOG']) process.stderr.write(`[portd] ${d.toString()}`);
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    return new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        if (this.child === child) this.exit = { code, signal };
        resolve();
      }),
    );
  }

  /** starts with exactly CAP_NET_ADMIN and resolves once the admin API (started last) listens */
  async start(timeoutMs = 30_000): Promise<void> {
    const exited = this.spawn(CAPS);
    const t0 = Date.now();
    while (!this.stdout.includes('"admin API and dashboard listening"')) {
      if (this.exit) throw new Error(`portd exited while starting (${JSON.stringify(this.exit)}): ${this.stderr}`);
      if (Date.now() - t0 > timeoutMs) throw new Error(`portd not ready in ${timeoutMs} ms: ${this.stderr}`);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 50))]);
    }
  }

  async kill9(): Promise<void> {
    const c = this.child;
    if (!c || this.exit) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }

  async api(path: string): Promise<{ status: number; body: unknown }> {
    const r = await exec(
      this.lab.gw,
      [
        'curl',
        '-s',
        '-m',
        '5',
        '-w',
        '\n%{http_code}',
        '-H',
        `Authorization: Bearer ${TOKEN}`,
        `http://127.0.0.1:8080${path}`,
      ],
      { timeoutMs: 10_000 },
    );
    const i = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(i + 1)), body: JSON.parse(r.stdout.slice(0, i) || 'null') as unknown };
  }
}

interface ApiLease {
  id: string;
  source: string;
  protocol: string;
  externalPort: number;
  internalAddress: string;
  internalPort: number;
}

describe('the Debian package, installed, unprivileged on nftables', { skip, timeout: 900_000 }, () => {
  let deb = '';
  let lab: Lab | null = null;
  let dir = '';
  let portd: InstalledPortd | null = null;
  let hostA: Agent, hostB: Agent, wan: Agent;
  const timings: Record<string, number> = {};

  before(async () => {
    process.on('exit', purgeSync);
    const t0 = Date.now();
    // one build for every test in this file (lintian runs in its own test below)
    const out = execFileSync(process.execPath, [join(ROOT, 'scripts/package.mjs'), '--no-lint'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 600_000,
    });
    deb = out.trim().split('\n').pop() ?? '';
    timings['build'] = Date.now() - t0;
    assert.ok(existsSync(deb), `package.mjs printed ${out}`);
  });

  after(async () => {
    await portd?.kill9();
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
    purgeSync();
    process.stderr.write(`package lab timings (ms): ${JSON.stringify(timings)}\n`);
  });

  test('the file is pkg/portd_<version>_<arch>.deb and lintian reports no error', () => {
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
    assert.equal(deb, join(ROOT, 'pkg', `portd_${version}_${arch}.deb`));
    const t0 = Date.now();
    const r = spawnSync('lintian', ['--tag-display-limit', '0', deb], { encoding: 'utf8', timeout: 300_000 });
    timings['lintian'] = Date.now() - t0;
    const errors = r.stdout.split('\n').filter((l) => l.startsWith('E: '));
    assert.deepEqual(errors, [], r.stdout);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  test('contents: compiled JavaScript and production dependencies only; unit, conffile, wrapper, docs, Depends', () => {
    const list = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 64 << 20 })
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(l.indexOf('./') + 1).replace(/ -> .*$/, ''));
    assert.ok(list.length > 100, 'a real tree');
    assert.deepEqual(
      list.filter((p) => /\.(ts|mts|cts|map)$/.test(p)),
      [],
      'no TypeScript, no declarations, no maps',
    );
    assert.deepEqual(
      list.filter((p) => p.startsWith('/usr/lib/portd/src/')),
      [],
      'no src/',
    );
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    assert.ok('tsx' in pkg.devDependencies && 'pino-pretty' in pkg.devDependencies, 'tsx and pino-pretty are dev-only');
    for (const dev of [...Object.keys(pkg.devDependencies), 'esbuild', 'prebuild-install']) {
      assert.ok(!list.some((p) => p.includes(`/node_modules/${dev}/`)), `${dev} is not in the package`);
    }
    for (const dep of Object.keys(pkg.dependencies)) {
      assert.ok(list.includes(`/usr/lib/portd/node_modules/${dep}/package.json`), `${dep} is in the package`);
    }
    for (const f of [
      '/usr/bin/portd',
      '/usr/lib/portd/bin/portd.js',
      '/usr/lib/portd/dist/src/cli.js',
      '/usr/lib/portd/node-options',
      '/usr/lib/portd/package.json',
      '/usr/lib/portd/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
      '/lib/systemd/system/portd.service',
      '/etc/portd/portd.yaml',
      '/usr/share/doc/portd/copyright',
      '/usr/share/doc/portd/install.md',
      '/usr/share/man/man8/portd.8.gz',
    ])
      assert.ok(list.includes(f), `${f} is in the package`);
    // koffi: the one prebuilt binary for this machine, none for other systems or libcs
    const koffi = list.filter((p) => p.endsWith('koffi.node'));
    assert.equal(koffi.length, 1, koffi.join(' '));
    assert.ok(
      !list.some((p) => /node_modules\/(better-sqlite3\/(deps|src)|koffi\/(vendor|src\/koffi\/src\/.*\.cc))/.test(p)),
    );

    const file = (p: string) =>
      execFileSync('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -xO ".${p}"`, 'sh', deb], { encoding: 'utf8' });
    const shipped = JSON.parse(file('/usr/lib/portd/package.json')) as Record<string, unknown>;
    assert.equal(shipped['devDependencies'], undefined);
    assert.equal(shipped['type'], 'module');
    assert.match(
      file('/lib/systemd/system/portd.service'),
      /^ExecStart=\/usr\/bin\/portd start --config \/etc\/portd\/portd\.yaml$/m,
    );
    assert.match(file('/lib/systemd/system/portd.service'), /^AmbientCapabilities=CAP_NET_ADMIN$/m);
    assert.equal(file('/etc/portd/portd.yaml'), readFileSync(join(ROOT, 'config/router.example.yaml'), 'utf8'));

    const field = (f: string) => execFileSync('dpkg-deb', ['-f', deb, f], { encoding: 'utf8' }).trim();
    const depends = field('Depends');
    for (const d of [/\bnodejs \(>= 20\)/, /\bnftables\b/, /\bconntrack\b/, /\biproute2\b/])
      assert.match(depends, d, depends);
    assert.equal(field('Package'), 'portd');
    const conffiles = execFileSync('dpkg-deb', ['-I', deb, 'conffiles'], { encoding: 'utf8' });
    assert.equal(conffiles.trim(), '/etc/portd/portd.yaml');
    const sizeKiB = Math.round(statSync(deb).size / 1024);
    process.stderr.write(`package: ${sizeKiB} KiB, Installed-Size ${field('Installed-Size')} KiB\n`);
    assert.ok(sizeKiB < 8 * 1024, `the .deb stays small (${sizeKiB} KiB)`);
  });

  test('apt-get install ./pkg/portd_*.deb: user portd, /var/lib/portd 0700, not enabled, check-config works', async () => {
    const t0 = Date.now();
    installed = true; // from here on, cleanup purges (also if the install fails half-way)
    const r = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', deb], {
      encoding: 'utf8',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 300_000,
    });
    timings['install'] = Date.now() - t0;
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const pw = execFileSync('getent', ['passwd', 'portd'], { encoding: 'utf8' }).trim().split(':');
    assert.ok(Number(pw[2]) < 1000, `a system user: ${pw.join(':')}`);
    assert.equal(pw[5], '/var/lib/portd');
    const st = statSync('/var/lib/portd');
    assert.equal(st.mode & 0o777, 0o700);
    assert.equal(st.uid, Number(pw[2]));
    assert.ok(!existsSync('/etc/systemd/system/multi-user.target.wants/portd.service'), 'not enabled on install');
    assert.equal(statSync('/etc/portd/portd.yaml').mode & 0o777, 0o640);
    // as an admin types it: the default configuration path, nothing else
    const c = spawnSync('portd', ['check-config'], { encoding: 'utf8', cwd: '/' });
    assert.equal(c.status, 0, c.stdout + c.stderr);
    assert.match(c.stderr + c.stdout, /\/etc\/portd\/portd\.yaml is valid/);
    const v = spawnSync('/usr/bin/portd', ['--version'], { encoding: 'utf8' });
    assert.equal(v.stdout.trim(), execFileSync('dpkg-deb', ['-f', deb, 'Version'], { encoding: 'utf8' }).trim());
  });

  test('as user portd with only CAP_NET_ADMIN: upnpc and natpmpc map, forwards work, leases survive kill -9', async () => {
    assert.ok(installed, 'installed by the previous test');
    lab = await createLab();
    // the configuration where portd (not root) can read it; the state in the package's /var/lib/portd
    dir = mkdtempSync(join(tmpdir(), 'portd-package-'));
    chmodSync(dir, 0o755);
    const configPath = join(dir, 'portd.yaml');
    writeFileSync(
      configPath,
      `${[
        'logLevel: info',
        'interfaces: { wan: wan0, lan: [br0] }',
        'externalAddress: auto',
        'stateDir: /var/lib/portd',
        'database: { path: /var/lib/portd/portd.sqlite }',
        'dataplane: { driver: nftables, table: portd, reconcileInterval: 5 }',
        'policy:',
        '  rules: ["allow 1024-65535 192.168.77.0/24 1-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
        'upnp: { enabled: true, httpPort: 5000, ssdp: true }',
        `admin: { listen: "127.0.0.1:8080", token: "${TOKEN}" }`,
        'staticForwards:',
        `  - { protocol: tcp, externalPort: 8443, internal: "${ADDR.hostB}:9443", description: lab-static }`,
      ].join('\n')}\n`,
    );
    chmodSync(configPath, 0o644);
    // LAN hosts reach the WAN through the gateway like behind any home router (a table of the lab's own)
    const nat = await lab.nft(
      'table ip labnat {\n  chain post {\n    type nat hook postrouting priority srcnat + 10; policy accept;\n    ' +
        'oifname "wan0" masquerade\n  }\n}\n',
    );
    assert.equal(nat.code, 0, nat.stderr);
    hostA = await lab.agent(lab.lanA, 'hostA');
    hostB = await lab.agent(lab.lanB, 'hostB');
    wan = await lab.agent(lab.wan, 'wan');
    assert.ok((await hostA.listen('tcp', 9001)).ok);
    assert.ok((await hostA.listen('udp', 9102)).ok);
    assert.ok((await hostB.listen('tcp', 9443)).ok);

    portd = new InstalledPortd(lab, configPath);
    const t0 = Date.now();
    await portd.start();
    timings['start'] = Date.now() - t0;
    // it really is user portd with CAP_NET_ADMIN alone (bit 12: 0x1000), effective and ambient
    const status = await exec(null, ['cat', `/proc/${portd.child?.pid}/status`]);
    const uid = execFileSync('id', ['-u', 'portd'], { encoding: 'utf8' }).trim();
    assert.match(status.stdout, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s`, 'm'));
    assert.match(status.stdout, /^CapEff:\s+0000000000001000$/m);
    assert.match(status.stdout, /^CapAmb:\s+0000000000001000$/m);
    assert.match(status.stdout, /^CapBnd:\s+0000000000001000$/m);

    // a real UPnP client (SSDP discovery, SOAP) and a real NAT-PMP client
    assert.equal((await wan.tcpProbe(EXT, 8001, { timeoutMs: FAIL_MS })).ok, false, 'closed before the mapping');
    const up = await lab.exec(
      lab.lanA,
      ['upnpc', '-m', 'eth0', '-i', '-e', 'pkg', '-a', ADDR.hostA, '9001', '8001', 'TCP', '600'],
      {
        timeoutMs: 30_000,
      },
    );
    assert.match(up.stdout, /is redirected to internal 192\.168\.77\.11:9001/, up.stdout + up.stderr);
    const pmp = await lab.exec(lab.lanA, ['natpmpc', '-g', ADDR.gwLan, '-a', '8102', '9102', 'udp', '600'], {
      timeoutMs: 15_000,
    });
    assert.match(pmp.stdout, /Mapped public port 8102 protocol UDP to local port 9102/, pmp.stdout + pmp.stderr);

    const through = async (when: string) => {
      const t = await wan.tcpProbe(EXT, 8001, { data: 'up' });
      assert.equal(t.reply, `hostA|${ADDR.wanHost}|up`, `${when}: UPnP mapping ${t.error ?? ''}`);
      const u = await wan.udpProbe(EXT, 8102, { data: 'pmp' });
      assert.equal(u.reply, `hostA|${ADDR.wanHost}|pmp`, `${when}: NAT-PMP mapping ${u.error ?? ''}`);
      const s = await wan.tcpProbe(EXT, 8443, { data: 'static' });
      assert.equal(s.reply, `hostB|${ADDR.wanHost}|static`, `${when}: static forward ${s.error ?? ''}`);
    };
    await through('first run');

    const leases = async () => {
      const r = await (portd as InstalledPortd).api('/api/v1/leases');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return ((r.body as { leases: ApiLease[] }).leases ?? [])
        .map((l) => `${l.id} ${l.source} ${l.protocol} ${l.externalPort}->${l.internalAddress}:${l.internalPort}`)
        .sort();
    };
    const gwLab = lab;
    const kernel = async () =>
      ((await kernelState(gwLab))?.fwd ?? []).map((f) => `${f.protocol} ${f.externalPort}->${f.internal}`).sort();
    const before1 = await leases();
    assert.equal(before1.length, 3, before1.join('\n'));
    assert.ok(before1.some((l) => / upnp tcp 8001->192\.168\.77\.11:9001$/.test(l)));
    assert.ok(before1.some((l) => / natpmp udp 8102->192\.168\.77\.11:9102$/.test(l)));
    assert.ok(before1.some((l) => / static tcp 8443->192\.168\.77\.12:9443$/.test(l)));
    const kernel1 = await kernel();
    assert.deepEqual(kernel1, [
      'tcp 8001->192.168.77.11:9001',
      'tcp 8443->192.168.77.12:9443',
      'udp 8102->192.168.77.11:9102',
    ]);

    // kill -9, then the same user and capability again: the same leases, from the database, in the kernel
    await portd.kill9();
    const t1 = Date.now();
    await portd.start();
    timings['restart'] = Date.now() - t1;
    assert.deepEqual(await leases(), before1, 'the same leases (same ids) after kill -9 and a restart');
    assert.deepEqual(await kernel(), kernel1, 'and the same kernel elements');
    await through('after kill -9 and a restart');
  });

  test('without CAP_NET_ADMIN the installed portd exits at once, naming it and what to do', async () => {
    assert.ok(installed && lab && portd, 'needs the install and the lab of the tests before');
    await portd.kill9();
    const t0 = Date.now();
    const exited = portd.spawn(NO_CAPS);
    const deadline = new Promise<'late'>((r) => setTimeout(() => r('late'), 5000));
    const r = await Promise.race([exited.then(() => 'exited' as const), deadline]);
    const ms = Date.now() - t0;
    timings['noCapExit'] = ms;
    assert.equal(r, 'exited', `still running after 5 s: ${portd.stderr}`);
    assert.notEqual(portd.exit?.code, 0);
    assert.ok(ms < 3000, `exited in ${ms} ms`);
    assert.match(portd.stderr, /PORTD_NO_CAP_NET_ADMIN: CAP_NET_ADMIN is missing/, portd.stderr);
    assert.match(portd.stderr, /hint: .*AmbientCapabilities=CAP_NET_ADMIN/, portd.stderr);
    // it stopped before touching the kernel: the table and its leases are as the last run left them
    assert.equal((await kernelState(lab))?.fwd.length, 3);
  });
});
