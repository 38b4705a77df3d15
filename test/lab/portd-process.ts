/**
 * The real `portd start` process inside the lab's gateway namespace (bin/portd.js, nftables driver),
 * for the crash and fault suites: start, wait until every part listens, kill -9, restart.
 * Optionally inside a private mount namespace that holds a small tmpfs (MountHolder), so a test can
 * fill "the disk" without touching the host's mounts. Everything started here is killed on exit.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, exec, must, type ExecResult, type Lab } from './harness.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const live = new Set<ChildProcess>();
let hooked = false;
function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const c of live) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
}

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly time: number;
  readonly [k: string]: unknown;
}

/**
 * A private mount namespace (util-linux `unshare -m`) holding a tmpfs of `sizeKiB` at `dir`, kept
 * alive by a sleeping process. The host never sees the mount; it disappears with the holder.
 */
export class MountHolder {
  private constructor(
    readonly dir: string,
    private readonly child: ChildProcess,
  ) {}
  get pid(): number {
    return this.child.pid ?? -1;
  }

  static async create(dir: string, sizeKiB: number): Promise<MountHolder> {
    hook();
    mkdirSync(dir, { recursive: true });
    const child = spawn(
      'unshare',
      [
        '-m',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        `mount -t tmpfs -o size=${sizeKiB}k,mode=0755 portd-test "${dir}" && echo mounted && exec sleep 100000`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    live.add(child);
    child.on('exit', () => live.delete(child));
    await new Promise<void>((resolve, reject) => {
      let err = '';
      const t = setTimeout(() => reject(new Error(`mount holder did not start: ${err}`)), 10_000);
      child.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
      });
      child.stdout?.on('data', (d: Buffer) => {
        if (d.toString().includes('mounted')) {
          clearTimeout(t);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`mount holder exited ${code}: ${err}`));
      });
    });
    return new MountHolder(dir, child);
  }

  /** a shell command inside the mount namespace (sees the tmpfs) */
  sh(script: string, timeoutMs = 30_000): Promise<ExecResult> {
    return exec(null, ['nsenter', '-t', String(this.pid), '-m', '--', 'sh', '-c', script], { timeoutMs });
  }

  /** argv prefix that runs a command inside this mount namespace */
  prefix(): string[] {
    return ['nsenter', '-t', String(this.pid), '-m', '--'];
  }

  close(): void {
    try {
      this.child.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export interface PortdProcessOptions {
  readonly lab: Lab;
  /** directory with the configuration (and usually the database) */
  readonly dir: string;
  /** YAML text of the configuration */
  readonly config: string;
  /** run inside this private mount namespace */
  readonly mounts?: MountHolder;
  /** echo portd's log lines to stderr (debugging) */
  readonly verbose?: boolean;
}

/** `portd start` in the gateway namespace, restartable */
export class PortdProcess {
  private child: ChildProcess | null = null;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  /** every log line since the process was created (all runs), bounded */
  readonly logs: LogLine[] = [];
  private readonly waiters = new Set<(l: LogLine) => void>();
  readonly configPath: string;
  starts = 0;
  stderr = '';

  constructor(private readonly opts: PortdProcessOptions) {
    hook();
    this.configPath = join(opts.dir, 'portd.yaml');
    writeFileSync(this.configPath, opts.config);
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }
  get running(): boolean {
    return this.child !== null && this.exitInfo === null;
  }
  get exit(): { code: number | null; signal: NodeJS.Signals | null } | null {
    return this.exitInfo;
  }

  /** starts portd and resolves once the admin API listens (it starts last: every front-end is up) */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.running) throw new Error('portd is already running');
    const argv = [
      ...(this.opts.mounts?.prefix() ?? []),
      'ip',
      'netns',
      'exec',
      this.opts.lab.gw,
      process.execPath,
      join(ROOT, 'bin', 'portd.js'),
      'start',
      '--config',
      this.configPath,
    ];
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exitInfo = null;
    this.starts++;
    live.add(child);
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (this.opts.verbose) process.stderr.write(`[portd] ${line}\n`);
        let l: LogLine;
        try {
          l = JSON.parse(line) as LogLine;
        } catch {
          continue;
        }
        this.logs.push(l);
        if (this.logs.length > 20_000) this.logs.splice(0, 5_000);
        for (const w of [...this.waiters]) w(l);
      }
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-8000);
      if (this.opts.verbose) process.stderr.write(`[portd!] ${d.toString()}`);
    });
    const exited = new Promise<void>((resolve) =>
      child.on('exit', (code, signal) => {
        live.delete(child);
        if (this.child === child) this.exitInfo = { code, signal };
        resolve();
      }),
    );
    // ready: the admin API listens (it starts last); fatal: a level-60 line; or the process died
    const outcome = this.waitForLog((l) => l.msg === 'admin API and dashboard listening' || l.level >= 60, timeoutMs);
    const died = exited.then(() => 'died' as const);
    const r = await Promise.race([outcome, died]);
    if (r === 'died') {
      outcome.catch(() => undefined);
      throw new Error(`portd exited while starting (${JSON.stringify(this.exitInfo)}): ${this.stderr}`);
    }
    if (r.level >= 60) throw new Error(`portd could not start: ${String(r['err'] ?? r.msg)}`);
  }

  /**
   * resolves with the first log line that matches: from index `from` of `logs` when given (take it
   * before the action whose line is awaited: stdout lines arrive in batches of up to 100 ms, so the
   * line may be in before or after the call), else from now on
   */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs: number, from?: number): Promise<LogLine> {
    const already = from === undefined ? undefined : this.logs.slice(from).find(pred);
    if (already) return Promise.resolve(already);
    return new Promise((resolve, reject) => {
      const w = (l: LogLine) => {
        if (pred(l)) {
          clearTimeout(t);
          this.waiters.delete(w);
          resolve(l);
        }
      };
      const t = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`no matching portd log line within ${timeoutMs} ms`));
      }, timeoutMs);
      t.unref();
      this.waiters.add(w);
    });
  }

  /** log lines matching since index `from` */
  since(from: number, pred: (l: LogLine) => boolean = () => true): LogLine[] {
    return this.logs.slice(from).filter(pred);
  }

  /** kill -9 and wait until the process is gone */
  async kill9(): Promise<void> {
    const c = this.child;
    if (!c || this.exitInfo !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }

  /** SIGTERM (clean stop), SIGKILL after `timeoutMs` */
  async stop(timeoutMs = 8000): Promise<void> {
    const c = this.child;
    if (!c || this.exitInfo !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    await gone;
    clearTimeout(t);
  }

  /** the admin API from inside the gateway (curl); returns the parsed JSON body */
  async api(
    path: string,
    token: string,
    opts: { method?: string; body?: unknown } = {},
  ): Promise<{ status: number; body: unknown }> {
    const argv = [
      'curl',
      '-s',
      '-m',
      '5',
      '-o',
      '-',
      '-w',
      '\n%{http_code}',
      '-H',
      `Authorization: Bearer ${token}`,
      '-X',
      opts.method ?? 'GET',
    ];
    if (opts.body !== undefined) argv.push('-H', 'Content-Type: application/json', '--data', JSON.stringify(opts.body));
    argv.push(`http://127.0.0.1:8080${path}`);
    const r = await exec(this.opts.lab.gw, argv, { timeoutMs: 10_000 });
    const i = r.stdout.lastIndexOf('\n');
    const status = Number(r.stdout.slice(i + 1));
    let body: unknown = r.stdout.slice(0, i);
    try {
      body = JSON.parse(body as string);
    } catch {
      /* text */
    }
    return { status, body };
  }
}

// ---------- the kernel side: our table's elements ----------

export interface KernelFwd {
  readonly set: string;
  readonly protocol: string;
  readonly externalPort: string;
  readonly internal: string;
  readonly peer: string | null;
  readonly expires: number | null;
}

function scalar(v: unknown): string {
  if (typeof v === 'string' || typeof v === 'number') return String(v);
  if (v && typeof v === 'object' && 'range' in v) {
    const r = (v as { range: unknown[] }).range;
    return `${String(r[0])}-${String(r[1])}`;
  }
  if (v && typeof v === 'object' && 'concat' in v) return (v as { concat: unknown[] }).concat.map(scalar).join(' . ');
  return JSON.stringify(v);
}

/**
 * Every forwarding element and live-port element of `table inet <table>` as the kernel holds it
 * (`nft -j list table`, read independently of portd's own parser). null when the table is missing.
 */
export async function kernelState(
  lab: Lab,
  table = 'portd',
): Promise<{
  fwd: KernelFwd[];
  live: { set: string; port: string; expires: number | null }[];
  ext4: string[];
  rules: number;
} | null> {
  const r = await exec(lab.gw, ['nft', '-j', 'list', 'table', 'inet', table], { timeoutMs: 20_000 });
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new Error(`nft list table: ${r.stderr}`);
  }
  const doc = JSON.parse(r.stdout) as { nftables: Record<string, unknown>[] };
  const fwd: KernelFwd[] = [];
  const liveEls: { set: string; port: string; expires: number | null }[] = [];
  const ext4: string[] = [];
  let rules = 0;
  for (const item of doc.nftables) {
    if (item['rule']) {
      rules++;
      continue;
    }
    const s = (item['map'] ?? item['set']) as { name: string; elem?: unknown[] } | undefined;
    if (!s) continue;
    for (const raw of s.elem ?? []) {
      let key: unknown = raw;
      let data: unknown = null;
      if (item['map'] && Array.isArray(raw)) {
        key = raw[0];
        data = raw[1];
      }
      let expires: number | null = null;
      if (key && typeof key === 'object' && 'elem' in key) {
        const el = (key as { elem: { val: unknown; expires?: number; timeout?: number } }).elem;
        expires = el.expires ?? el.timeout ?? null;
        key = el.val;
      }
      const k = scalar(key).split(' . ');
      if (s.name === 'ext4') {
        ext4.push(k[0] ?? '');
        continue;
      }
      if (s.name.startsWith('live_')) {
        liveEls.push({ set: s.name, port: k[0] ?? '', expires });
        continue;
      }
      if (!s.name.startsWith('fwd4')) continue;
      const peer = s.name === 'fwd4_peer' ? (k.shift() ?? null) : null;
      fwd.push({
        set: s.name,
        protocol: k[0] ?? '',
        externalPort: k[1] ?? '',
        internal: scalar(data).replace(' . ', ':'),
        peer,
        expires,
      });
    }
  }
  return { fwd, live: liveEls, ext4, rules };
}

/** a third (fourth, ...) LAN host on the lab's bridge; removed by the returned function and on exit */
export async function addLanHost(
  lab: Lab,
  suffix: string,
  address: string,
): Promise<{ ns: string; remove: () => void }> {
  const ns = `${lab.gw.slice(0, -1)}${suffix}`;
  const ifname = `lan${suffix}`;
  const remove = () => {
    try {
      const pids = execSync(['ip', 'netns', 'pids', ns]).split(/\s+/).filter(Boolean);
      for (const p of pids) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    } catch {
      /* no namespace */
    }
    try {
      execSync(['ip', 'netns', 'del', ns]);
    } catch {
      /* gone */
    }
  };
  process.on('exit', remove);
  try {
    await must(null, ['ip', 'netns', 'add', ns]);
    await must(null, ['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    await must(null, ['ip', '-n', lab.gw, 'link', 'add', ifname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await must(null, ['ip', '-n', lab.gw, 'link', 'set', ifname, 'master', 'br0', 'up']);
    await must(null, ['ip', '-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    await must(null, ['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
    await must(null, ['ip', '-n', ns, 'route', 'add', 'default', 'via', '192.168.77.1']);
  } catch (e) {
    remove();
    throw e;
  }
  return { ns, remove };
}

const CHURN_AGENT = join(dirname(fileURLToPath(import.meta.url)), 'churn-agent.mjs');

/** a PCP/UPnP client (churn-agent.mjs) inside a LAN namespace; `self` is its address there */
export async function churnAgent(ns: string, label: string, self: string, gateway = '192.168.77.1'): Promise<Agent> {
  hook();
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CHURN_AGENT, label, self, gateway], {
    stdio: 'pipe',
  });
  live.add(child);
  child.on('exit', () => live.delete(child));
  child.stderr.on('data', (d: Buffer) => {
    if (process.env['LAB_LOG']) process.stderr.write(`[${label}] ${d.toString()}`);
  });
  const a = new Agent(ns, label, child);
  const p = await a.call('ping');
  if (!p.ok) throw new Error(`churn agent ${label} in ${ns} did not start: ${p.error ?? ''}`);
  return a;
}

function execSync(argv: string[]): string {
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}
