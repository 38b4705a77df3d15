/**
 * The two daemons under test, each started for real inside a bench lab's gateway namespace:
 * portd (`portd start`, nftables driver) and miniupnpd (Debian `miniupnpd-nftables`, installed with
 * apt when missing, run without -d so it daemonizes and logs only notices, as on a router).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IFS, LAN_PREFIX, childPids, rssKiB, waitFor, type BenchLab } from './lab.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Daemon {
  readonly name: 'portd' | 'miniupnpd';
  readonly pid: number;
  readonly pcp: { readonly server: string; readonly port: number };
  /** WANIPConnection control URL and the SOAPAction service type its description names */
  readonly soap: { readonly url: string; readonly serviceType: string };
  /** KiB: the daemon's own VmRSS, and with its child processes (portd keeps one `nft -i`) */
  rss(): { self: number | null; withChildren: number | null };
  /** port mappings the kernel holds for this daemon */
  kernelMappings(): Promise<number>;
  stop(): Promise<void>;
}

async function discoverControl(lab: BenchLab, descUrl: string): Promise<{ url: string; serviceType: string }> {
  let xml = '';
  await waitFor(
    async () => {
      const r = await lab.exec(lab.lan, ['curl', '-s', '--max-time', '2', descUrl]);
      xml = r.stdout;
      return r.code === 0 && xml.includes('WANIPConnection');
    },
    20_000,
    `UPnP description at ${descUrl}`,
  );
  const m = new RegExp(
    '<serviceType>(urn:schemas-upnp-org:service:WANIPConnection:\\d)</serviceType>[\\s\\S]*?' +
      '<controlURL>([^<]+)</controlURL>',
  ).exec(xml);
  if (!m) throw new Error(`no WANIPConnection control URL in ${descUrl}`);
  const base = new URL(descUrl);
  return { serviceType: m[1]!, url: new URL(m[2]!, base).href };
}

function rssOf(pid: number) {
  const self = rssKiB(pid);
  if (self === null) return { self: null, withChildren: null };
  return { self, withChildren: self + childPids(pid).reduce((a, c) => a + (rssKiB(c) ?? 0), 0) };
}

// ---------------- portd ----------------

export interface PortdOptions {
  readonly dir: string;
  readonly logLevel?: string;
  /** extra YAML lines appended to the configuration */
  readonly extra?: readonly string[];
  readonly upnp?: boolean;
  readonly timeoutMs?: number;
  /** how to run portd: `node <built>/src/cli.js` (see buildPortd) or, by default, bin/portd.js (tsx) */
  readonly cli?: string;
  /** extra node options for the daemon's process, e.g. ['--trace-gc'] */
  readonly nodeArgs?: readonly string[];
  /** dataplane driver (default nftables) */
  readonly driver?: 'nftables' | 'memory';
  /** extra keys of the dataplane section, e.g. `conntrackPath: /bin/true` */
  readonly dataplane?: string;
  /** the whole command before `start --config FILE` (e.g. the package's /usr/bin/portd); replaces cli and nodeArgs */
  readonly argv?: readonly string[];
  /** the log line that means started (default: the admin API's, the last part up) */
  readonly readyMsg?: string;
  /**
   * fetch the UPnP description to find the control URL (default true; a footprint bench leaves the daemon
   * untouched)
   */
  readonly discover?: boolean;
  /** also switch off the SOAP limits (per client and global): a cold-start bench measures portd, not its caps */
  readonly noSoapLimits?: boolean;
}

export function portdConfig(_lab: Pick<BenchLab, 'wanPrefix'>, o: PortdOptions): string {
  return (
    [
      `logLevel: ${o.logLevel ?? 'info'}`,
      `interfaces: { wan: ${IFS.wan}, lan: [${IFS.lan}] }`,
      'externalAddress: auto',
      'listenAddresses: null',
      `stateDir: ${o.dir}`,
      `database: { path: ${join(o.dir, 'portd.sqlite')}, synchronous: normal }`,
      `dataplane: { driver: ${o.driver ?? 'nftables'}, table: portd, hairpin: true, reconcileInterval: 60, ` +
        `grace: 5${o.dataplane ? `, ${o.dataplane}` : ''} }`,
      'policy:',
      '  secureMode: true',
      // miniupnpd has no per-client quota: lift portd's (default 128) so 10k mappings from 32 hosts fit
      '  maxLeasesPerClient: 1000000',
      '  lifetime: { pcp: { min: 120, max: 86400 }, natpmp: { min: 120, max: 86400 } }',
      `  rules: ["allow 1024-65535 ${LAN_PREFIX}.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"]`,
      `upnp: { enabled: ${o.upnp ?? true}, httpPort: 5000, ssdp: true${o.noSoapLimits ? ', rateLimit: 0' : ''} }`,
      // miniupnpd has no PCP rate limit: switch portd's (default 100/s per client) off
      'pcp: { enabled: true, port: 5351, rateLimit: 0 }',
      // nor a global PCP/NAT-PMP cap: the PCP phases run at 10k+ requests/s from 32 hosts
      `limits: { pcpRequestsPerSecond: 0${o.noSoapLimits ? ', soapRequestsPerSecond: 0' : ''} }`,
      'natpmp: { enabled: true }',
      'admin: { listen: "127.0.0.1:8080", token: "bench-token-0123456789" }',
      'staticForwards: []',
      'triggers: []',
      ...(o.extra ?? []),
    ].join('\n') + '\n'
  );
}

export interface PortdProcess extends Daemon {
  readonly logFile: string;
  /** ms from spawn until the admin API listened (everything up) */
  readonly readyMs: number;
  /** the 'dataplane reconciled on start' log line's fields */
  readonly reconcile: { ms: number; active: number; drift: number } | null;
}

export function logLines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  const out: Record<string, unknown>[] = [];
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      /* partial line */
    }
  }
  return out;
}

export async function startPortd(lab: BenchLab, o: PortdOptions): Promise<PortdProcess> {
  const cfg = join(o.dir, 'portd.yaml');
  writeFileSync(cfg, portdConfig(lab, o));
  const logFile = join(o.dir, 'portd.log');
  const fd = openSync(logFile, 'a');
  const t0 = performance.now();
  const child = lab.spawnIn(
    lab.gw,
    [
      ...(o.argv ?? [process.execPath, ...(o.nodeArgs ?? []), o.cli ?? join(ROOT, 'bin', 'portd.js')]),
      'start',
      '--config',
      cfg,
    ],
    { stdio: ['ignore', fd, fd], cwd: ROOT },
  );
  closeSync(fd);
  let exited: string | null = null;
  child.once('exit', (c, s) => {
    exited = `exited ${c ?? s}`;
  });
  await waitFor(
    () => {
      if (exited)
        throw new Error(`portd ${exited} during start; log ${logFile}:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
      const ready = o.readyMsg ?? 'admin API and dashboard listening';
      return logLines(logFile).some((l) => l['msg'] === ready);
    },
    o.timeoutMs ?? 120_000,
    'portd start',
  );
  const readyMs = Math.round(performance.now() - t0);
  const rl = logLines(logFile).find((l) => l['msg'] === 'dataplane reconciled on start');
  const pid = child.pid!;
  const soap =
    o.upnp === false || o.discover === false
      ? { url: '', serviceType: '' }
      : await discoverControl(lab, `http://${lab.gwLan}:5000/igd1/desc.xml`);
  return {
    name: 'portd',
    pid,
    logFile,
    readyMs,
    reconcile: rl ? { ms: Number(rl['ms']), active: Number(rl['active']), drift: Number(rl['drift']) } : null,
    pcp: { server: lab.gwLan, port: 5351 },
    soap,
    rss: () => rssOf(pid),
    async kernelMappings() {
      const out = await lab.must(lab.gw, ['nft', '-j', 'list', 'table', 'inet', 'portd'], { timeoutMs: 60_000 });
      const j = JSON.parse(out) as { nftables: { map?: { name: string; elem?: unknown[] } }[] };
      return j.nftables.reduce((a, x) => a + (x.map?.name.startsWith('fwd4') ? (x.map.elem?.length ?? 0) : 0), 0);
    },
    async stop() {
      if (child.exitCode !== null || exited) return;
      child.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          r(null);
        }, 10_000);
        child.once('exit', () => {
          clearTimeout(t);
          r(null);
        });
      });
    },
  };
}

/**
 * Compiles portd (tsconfig.build.json) into `dir` — what `npm run build` ships — so the daemon runs as
 * plain JavaScript, without tsx in the process. Returns the path of its cli.js.
 */
export function buildPortd(dir: string): string {
  // type errors elsewhere in a tree under work still emit JavaScript; only a missing cli.js is fatal
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', dir],
    { stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000, encoding: 'utf8' },
  );
  if (r.status !== 0)
    process.stderr.write(
      `tsc reported errors (build used anyway):\n${String(r.stdout).split('\n').slice(0, 5).join('\n')}\n`,
    );
  // modules resolve from the build's location: give it the checkout's node_modules
  execFileSync('ln', ['-sfn', join(ROOT, 'node_modules'), join(dir, 'node_modules')]);
  const cli = join(dir, 'src', 'cli.js');
  if (!existsSync(cli)) throw new Error(`build produced no ${cli}`);
  return cli;
}

// ---------------- miniupnpd ----------------

const MINIUPNPD = '/usr/sbin/miniupnpd';
const NFT_INIT = '/etc/miniupnpd/nft_init.sh';
const NFT_REMOVEALL = '/etc/miniupnpd/nft_removeall.sh';

/** installs Debian's miniupnpd-nftables when it is missing; returns its version line */
export function ensureMiniupnpd(log: (s: string) => void): string {
  const installed = () => {
    try {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} format, not a template
      return execFileSync('dpkg-query', ['-W', '-f', '${Status} ${Version}', 'miniupnpd-nftables'], {
        encoding: 'utf8',
      });
    } catch {
      return '';
    }
  };
  if (!installed().startsWith('install ok installed') || !existsSync(MINIUPNPD) || !existsSync(NFT_INIT)) {
    log('installing miniupnpd-nftables with apt-get (it starts no service)…');
    execFileSync('apt-get', ['install', '-y', '-q', 'miniupnpd-nftables'], {
      stdio: ['ignore', 2, 'inherit'], // apt's progress to stderr: stdout carries the bench's JSON
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 300_000,
    });
  }
  const v = installed();
  if (!v.startsWith('install ok installed')) throw new Error('miniupnpd-nftables could not be installed');
  return `miniupnpd-nftables ${v.replace('install ok installed ', '')}`;
}

const NFT_NAMES = {
  table: 'miniupnpd',
  chain: 'miniupnpd',
  pre: 'prerouting_miniupnpd',
  post: 'postrouting_miniupnpd',
} as const;

export function miniupnpdConfig(dir: string): string {
  return (
    [
      `ext_ifname=${IFS.wan}`,
      `listening_ip=${IFS.lan}`,
      'http_port=5000',
      'enable_upnp=yes',
      // NAT-PMP and PCP share this switch in miniupnpd 2.x
      'enable_natpmp=yes',
      'secure_mode=yes',
      'system_uptime=yes',
      'notify_interval=900',
      'clean_ruleset_interval=600',
      'min_lifetime=120',
      'max_lifetime=86400',
      `uuid=${randomUUID()}`,
      `lease_file=${join(dir, 'upnp.leases')}`,
      `upnp_table_name=${NFT_NAMES.table}`,
      `upnp_nat_table_name=${NFT_NAMES.table}`,
      `upnp_forward_chain=${NFT_NAMES.chain}`,
      `upnp_nat_chain=${NFT_NAMES.pre}`,
      `upnp_nat_postrouting_chain=${NFT_NAMES.post}`,
      `allow 1024-65535 ${LAN_PREFIX}.0/24 1024-65535`,
      'deny 0-65535 0.0.0.0/0 0-65535',
    ].join('\n') + '\n'
  );
}

/**
 * The package ships nft_init.sh / nft_removeall.sh, which source miniupnpd_functions.sh (not shipped):
 * copy them into `dir` with that variables file, and keep the script's scratch file in `dir` too.
 */
function writeNftScripts(dir: string): { init: string; removeAll: string } {
  writeFileSync(
    join(dir, 'miniupnpd_functions.sh'),
    [
      '# variables for the nft_*.sh scripts of miniupnpd-nftables (the package does not ship this file)',
      'NFT=$(command -v nft)',
      `TABLE="${NFT_NAMES.table}"`,
      `NAT_TABLE="${NFT_NAMES.table}"`,
      `CHAIN="${NFT_NAMES.chain}"`,
      `PREROUTING_CHAIN="${NFT_NAMES.pre}"`,
      `POSTROUTING_CHAIN="${NFT_NAMES.post}"`,
    ].join('\n') + '\n',
  );
  const init = join(dir, 'nft_init.sh');
  writeFileSync(init, readFileSync(NFT_INIT, 'utf8').replaceAll('/tmp/miniupnpd.nft', join(dir, 'miniupnpd.nft')));
  const removeAll = join(dir, 'nft_removeall.sh');
  copyFileSync(NFT_REMOVEALL, removeAll);
  return { init, removeAll };
}

export async function startMiniupnpd(lab: BenchLab, dir: string): Promise<Daemon> {
  const scripts = writeNftScripts(dir);
  await lab.must(lab.gw, ['sh', scripts.init]);
  const conf = join(dir, 'miniupnpd.conf');
  writeFileSync(conf, miniupnpdConfig(dir));
  const pidFile = join(dir, 'miniupnpd.pid');
  // without -d it forks into the background and writes the pid file; the namespace teardown kills it in any case
  const r = await lab.exec(lab.gw, [MINIUPNPD, '-f', conf, '-P', pidFile], { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`miniupnpd did not start (${r.code}): ${r.stderr}`);
  let pid = 0;
  await waitFor(
    () => {
      try {
        pid = Number(readFileSync(pidFile, 'utf8').trim());
      } catch {
        return false;
      }
      return pid > 0 && rssKiB(pid) !== null;
    },
    15_000,
    'miniupnpd pid file',
  );
  const soap = await discoverControl(lab, `http://${lab.gwLan}:5000/rootDesc.xml`);
  return {
    name: 'miniupnpd',
    pid,
    pcp: { server: lab.gwLan, port: 5351 },
    soap,
    rss: () => rssOf(pid),
    async kernelMappings() {
      const out = await lab.must(lab.gw, ['nft', '-j', 'list', 'chain', 'inet', NFT_NAMES.table, NFT_NAMES.pre], {
        timeoutMs: 60_000,
      });
      const j = JSON.parse(out) as { nftables: { rule?: unknown }[] };
      return j.nftables.filter((x) => x.rule).length;
    },
    async stop() {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      await waitFor(() => rssKiB(pid) === null, 10_000, 'miniupnpd exit').catch(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      });
      await lab.exec(lab.gw, ['sh', scripts.removeAll]);
    },
  };
}

/** portd's V8 heap and external memory (MiB) from its own metrics endpoint (admin API inside the gateway namespace) */
export async function portdMemory(
  lab: BenchLab,
): Promise<{ heapUsedMiB: number | null; heapTotalMiB: number | null; externalMiB: number | null }> {
  const r = await lab.exec(lab.gw, [
    'curl',
    '-s',
    '--max-time',
    '5',
    '-H',
    'authorization: Bearer bench-token-0123456789',
    'http://127.0.0.1:8080/metrics',
  ]);
  const get = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(r.stdout);
    return m ? Math.round((Number(m[1]) / 1048576) * 10) / 10 : null;
  };
  return {
    heapUsedMiB: get('portd_process_nodejs_heap_size_used_bytes'),
    heapTotalMiB: get('portd_process_nodejs_heap_size_total_bytes'),
    externalMiB: get('portd_process_nodejs_external_memory_bytes'),
  };
}
