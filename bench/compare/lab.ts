/**
 * A namespace lab for benchmarks: one gateway, one LAN host carrying many addresses (the load
 * generator binds one per simulated client), one WAN host. Everything made here is removed on
 * teardown() and on exit / SIGINT / SIGTERM / SIGHUP, also when the run fails: namespaces (their
 * nft tables go with them), every process started inside them (also daemons that fork), children.
 *
 *   lan 192.168.77.2..N ── br0 [gw 192.168.77.1] wan0 ── wan <W>.2
 *                                               <W>.1
 * The WAN prefix is a parameter: miniupnpd refuses documentation and private WAN addresses, so its
 * lab uses 11.22.33.0/24, which exists only inside these namespaces.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec, JsonLineChannel, must, type ExecResult } from '../../test/lab/harness.js';

const HERE = dirname(fileURLToPath(import.meta.url));

const liveNamespaces = new Set<string>();
const liveChildren = new Set<ChildProcess>();
const syncCleanups = new Set<() => void>();
let hooked = false;

function killNamespaceSync(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split(/\s+/)
      .filter(Boolean);
    for (const p of pids) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  } catch {
    /* no such namespace */
  }
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    /* gone */
  }
  liveNamespaces.delete(ns);
}

export function cleanupAllSync(): void {
  for (const f of [...syncCleanups]) {
    try {
      f();
    } catch {
      /* best effort */
    }
  }
  syncCleanups.clear();
  for (const c of liveChildren) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  liveChildren.clear();
  for (const ns of [...liveNamespaces]) killNamespaceSync(ns);
}

function installHooks(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up the bench lab\n`);
      cleanupAllSync();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
  process.on('uncaughtException', (e) => {
    process.stderr.write(`uncaught: ${e.stack ?? e.message}\n`);
    cleanupAllSync();
    process.exit(1);
  });
}

/** a synchronous cleanup step run on exit/signal (e.g. remove a temp dir); returns its remover */
export function onCleanup(f: () => void): () => void {
  syncCleanups.add(f);
  return () => syncCleanups.delete(f);
}

/** namespaces of an earlier run of ours that was killed hard (names are ours: the stem is unique to these benches) */
export function sweepStale(stemPrefix: string): void {
  let names: string[] = [];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '');
  } catch {
    return;
  }
  for (const n of names) if (n.startsWith(stemPrefix) && /^[a-z]+\d*[glw]$/.test(n)) killNamespaceSync(n);
}

export interface BenchLab {
  readonly gw: string;
  readonly lan: string;
  readonly wan: string;
  readonly gwLan: string;
  readonly gwWan: string;
  readonly wanPrefix: string;
  /** LAN client addresses, all on the LAN host */
  readonly hosts: readonly string[];
  exec(ns: string, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<ExecResult>;
  must(ns: string, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<string>;
  /** a long-lived process inside a namespace; killed on teardown */
  spawnIn(
    ns: string,
    argv: readonly string[],
    opts?: { stdio?: Parameters<typeof spawn>[2]['stdio']; cwd?: string },
  ): ChildProcess;
  teardown(): Promise<void>;
}

export const LAN_PREFIX = '192.168.77';
export const IFS = { lan: 'br0', wan: 'wan0' } as const;

export async function createBenchLab(opts: { stem: string; wanPrefix: string; hosts?: number }): Promise<BenchLab> {
  installHooks();
  const { stem, wanPrefix } = opts;
  const gw = `${stem}g`,
    lan = `${stem}l`,
    wan = `${stem}w`;
  const nHosts = Math.min(250, opts.hosts ?? 200);
  const hosts = Array.from({ length: nHosts }, (_, i) => `${LAN_PREFIX}.${2 + i}`);
  const children: ChildProcess[] = [];
  const teardown = async () => {
    for (const c of children.splice(0)) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* gone */
      }
      liveChildren.delete(c);
    }
    for (const ns of [gw, lan, wan]) killNamespaceSync(ns);
  };
  const ip = (argv: string[]) => must(null, ['ip', ...argv]);
  try {
    for (const ns of [gw, lan, wan]) {
      liveNamespaces.add(ns);
      await ip(['netns', 'add', ns]);
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await ip(['-n', gw, 'link', 'add', IFS.lan, 'type', 'bridge']);
    await ip(['-n', gw, 'addr', 'add', `${LAN_PREFIX}.1/24`, 'dev', IFS.lan]);
    await ip(['-n', gw, 'link', 'set', IFS.lan, 'up']);
    await ip(['-n', gw, 'link', 'add', 'lan1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', lan]);
    await ip(['-n', gw, 'link', 'set', 'lan1', 'master', IFS.lan, 'up']);
    await must(null, ['ip', '-n', lan, '-batch', '-'], {
      input: hosts.map((h) => `addr add ${h}/24 dev eth0`).join('\n') + '\n',
    });
    await ip(['-n', lan, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', lan, 'route', 'add', 'default', 'via', `${LAN_PREFIX}.1`]);
    await ip(['-n', gw, 'link', 'add', IFS.wan, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', wan]);
    await ip(['-n', gw, 'addr', 'add', `${wanPrefix}.1/24`, 'dev', IFS.wan]);
    await ip(['-n', gw, 'link', 'set', IFS.wan, 'up']);
    await ip(['-n', wan, 'addr', 'add', `${wanPrefix}.2/24`, 'dev', 'eth0']);
    await ip(['-n', wan, 'link', 'set', 'eth0', 'up']);
    await must(gw, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    // the LAN veth must have carrier and the bridge must forward before the first packet is timed
    await waitFor(
      async () => (await exec(lan, ['ip', 'link', 'show', 'eth0'])).stdout.includes('LOWER_UP'),
      10_000,
      'LAN link has no carrier',
    );
  } catch (err) {
    await teardown();
    throw err;
  }
  return {
    gw,
    lan,
    wan,
    gwLan: `${LAN_PREFIX}.1`,
    gwWan: `${wanPrefix}.1`,
    wanPrefix,
    hosts,
    exec: (ns, argv, o) => exec(ns, argv, o),
    must: (ns, argv, o) => must(ns, argv, o),
    spawnIn(ns, argv, o = {}) {
      const c = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: o.stdio ?? 'pipe', cwd: o.cwd });
      children.push(c);
      liveChildren.add(c);
      c.once('exit', () => liveChildren.delete(c));
      return c;
    },
    teardown,
  };
}

export async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out (${timeoutMs} ms): ${what}`);
}

// ---------- the load generator, inside the LAN namespace ----------

export interface PhaseStats {
  n: number;
  ok: number;
  wallMs: number;
  perSecond: number;
  p50ms: number | null;
  p90ms: number | null;
  p99ms: number | null;
  maxms: number | null;
  codes: Record<string, number>;
  timeouts?: number;
  lost?: number;
  unsent: number;
  startedAtEpochMs?: number;
  samples?: [number, number, number | string][];
  error?: string;
}

export interface PcpJob {
  server: string;
  port: number;
  hosts: readonly string[];
  proto: 6 | 17;
  firstPort: number;
  count: number;
  lifetime: number;
  concurrency: number;
  maxMs?: number;
  gapMs?: number;
  samples?: boolean;
  timeoutMs?: number;
  retries?: number;
}
export interface SoapJob {
  url: string;
  soapAction: string;
  template: string;
  hosts: readonly string[];
  firstPort: number;
  count: number;
  concurrency: number;
  keepAlive: boolean;
  maxMs?: number;
  samples?: boolean;
}

export class Loadgen {
  private readonly channel: JsonLineChannel<PhaseStats>;
  private constructor(private readonly child: ChildProcess) {
    this.channel = new JsonLineChannel<PhaseStats>(
      child,
      (why) =>
        ({ error: why === 'exited' ? 'load generator exited' : 'load generator did not answer in time' }) as PhaseStats,
    );
  }
  static async start(lab: BenchLab, ns = lab.lan): Promise<Loadgen> {
    const c = lab.spawnIn(ns, [process.execPath, join(HERE, 'loadgen.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const g = new Loadgen(c);
    const p = await g.call({ op: 'ping' }, 10_000);
    if (p.error) throw new Error(`load generator did not start: ${p.error}`);
    return g;
  }
  call(job: Record<string, unknown>, timeoutMs: number): Promise<PhaseStats> {
    return this.channel.call(job, timeoutMs);
  }
  pcp(job: PcpJob): Promise<PhaseStats> {
    return this.call({ op: 'pcp', ...job }, (job.maxMs ?? 120_000) + 15_000);
  }
  soap(job: SoapJob): Promise<PhaseStats> {
    return this.call({ op: 'soap', ...job }, (job.maxMs ?? 120_000) + 15_000);
  }
  stop(): void {
    try {
      this.child.stdin!.end();
      this.child.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** trivial UDP + HTTP echo servers in `ns` on `host`: the generator's own ceiling */
export async function startEcho(
  lab: BenchLab,
  ns: string,
  host: string,
): Promise<{ udp: number; http: number; stop(): void }> {
  const c = lab.spawnIn(ns, [process.execPath, join(HERE, 'echo.mjs'), host, '0', '0'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let b = '';
    const t = setTimeout(() => reject(new Error('echo servers did not start')), 10_000);
    c.stdout!.on('data', (d: Buffer) => {
      b += d.toString();
      const i = b.indexOf('\n');
      if (i >= 0) {
        clearTimeout(t);
        resolve(b.slice(0, i));
      }
    });
    c.once('exit', () => {
      clearTimeout(t);
      reject(new Error('echo servers exited'));
    });
  });
  const r = JSON.parse(line) as { udp: number; http: number };
  return {
    ...r,
    stop: () => {
      try {
        c.stdin!.end();
        c.kill('SIGKILL');
      } catch {
        /* gone */
      }
    },
  };
}

/** VmRSS of a process in KiB (from /proc/<pid>/status), null when it is gone */
export function rssKiB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** the pids of a process's children (one level), from /proc/<pid>/task/<pid>/children */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** CPU time (ms) used so far by every process in a namespace (utime + stime of each, from /proc/<pid>/stat) */
export function namespaceCpuMs(ns: string): number {
  let pids: string[] = [];
  try {
    pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean);
  } catch {
    return 0;
  }
  let ticks = 0;
  for (const p of pids) {
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
    } catch {
      /* exited */
    }
  }
  return ticks * 10; // USER_HZ is 100 on Linux
}

/**
 * Waits until the processes of `ns` use less than `busyMs` of CPU per second (work a daemon does after
 * answering — e.g. portd's `conntrack -D` for ended leases — must not land in the next phase's figures).
 * Bounded by maxMs; returns how long it waited.
 */
export async function quiesce(ns: string, opts: { maxMs?: number; busyMs?: number } = {}): Promise<number> {
  const t0 = Date.now();
  const maxMs = opts.maxMs ?? 120_000,
    busyMs = opts.busyMs ?? 50;
  let last = namespaceCpuMs(ns);
  for (let i = 0; i < 1000 && Date.now() - t0 < maxMs; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = namespaceCpuMs(ns);
    if (now - last < busyMs) break;
    last = now;
  }
  return Date.now() - t0;
}
