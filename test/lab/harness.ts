/**
 * Network-namespace lab: a gateway, two LAN hosts and a WAN host, all in namespaces this process
 * creates and always removes (teardown(), and on exit / SIGINT / SIGTERM).
 *
 *   lanA 192.168.77.11 ─┐                        ┌─ wan 203.0.113.2 (+ .3)
 *                       ├─ br0 [gw] wan0 ────────┘
 *   lanB 192.168.77.12 ─┘ 192.168.77.1   203.0.113.1
 *
 * Names are short and unique per process: pd<pid><n><role>. Traffic stays inside these namespaces.
 *
 * With `ipv6` (optional, off by default so the IPv4 suites stay as they were): LAN 2001:db8:77::/64
 * (gateway ::1, hosts ::11 and ::12, and with `temporary` a second "privacy" address each), WAN
 * 2001:db8:113::/64 (gateway ::1, WAN host ::2), forwarding on, DAD off, no NAT66, and the lab's own
 * default-deny inbound IPv6 policy in the gateway (`table inet lab`, see LAB6_RULESET).
 */
import { execFileSync, spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const ADDR = {
  gwLan: '192.168.77.1',
  gwWan: '203.0.113.1',
  hostA: '192.168.77.11',
  hostB: '192.168.77.12',
  wanHost: '203.0.113.2',
  wanHost2: '203.0.113.3',
} as const;

export const IF = { lan: 'br0', wan: 'wan0' } as const;

/** the IPv6 plan (RFC 3849 documentation prefixes); the temporary addresses only with `ipv6: { temporary: true }` */
export const ADDR6 = {
  lanPrefix: '2001:db8:77::/64',
  wanPrefix: '2001:db8:113::/64',
  gwLan: '2001:db8:77::1',
  gwWan: '2001:db8:113::1',
  hostA: '2001:db8:77::11',
  hostB: '2001:db8:77::12',
  /**
   * stand-ins for RFC 8981 temporary addresses: random-looking interface identifiers on the same interface
   * (same MAC) as the stable one; with `temporary` they are the hosts' default source address
   */
  hostATemp: '2001:db8:77:0:5c1e:a9f3:7b20:d411',
  hostBTemp: '2001:db8:77:0:e2b4:16c8:3f9a:c512',
  wanHost: '2001:db8:113::2',
} as const;

/**
 * The lab's own inbound IPv6 policy in the gateway, as an admin's firewall would be: established and
 * related flows pass, LAN → WAN passes, everything else forwarded to the LAN is dropped unless portd
 * marked its flow with conntrack bit 0x100 (the coexistence contract of docs/nftables.md: portd's forward
 * chain runs at `filter - 1`, before this one, and sets the bit on the flows it lets in). IPv4 is not
 * touched here (the IPv4 suites bring their own policy where they need one).
 */
export const LAB6_RULESET = `table inet lab {
  chain forward {
    type filter hook forward priority filter; policy accept;
    meta nfproto ipv6 ct state established,related accept
    meta nfproto ipv6 iifname "${IF.lan}" oifname "${IF.wan}" accept
    meta nfproto ipv6 ct mark & 0x100 == 0x100 accept
    meta nfproto ipv6 drop
  }
}
`;

const AGENT = join(dirname(fileURLToPath(import.meta.url)), 'agent.mjs');

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** can this process build the lab? (root, ip, nft, a namespace can be made) */
export function labAvailable(): { ok: boolean; why: string } {
  if (process.platform !== 'linux') return { ok: false, why: 'not Linux' };
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    return { ok: false, why: 'not root (the lab creates network namespaces)' };
  for (const tool of ['ip', 'nft']) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'ignore' });
    } catch {
      try {
        execFileSync(tool, ['--version'], { stdio: 'ignore' });
      } catch {
        return { ok: false, why: `${tool} not installed` };
      }
    }
  }
  const probe = `pdprobe${process.pid}`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
  } catch (err) {
    return { ok: false, why: `cannot create a network namespace: ${(err as Error).message.split('\n')[0]}` };
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
    } catch {
      /* was not made */
    }
  }
  return { ok: true, why: '' };
}

/**
 * For `describe(name, { skip: labSkip() }, ...)`: false when the lab can run; a reason (and one loud
 * line) when it cannot; throws under CI=true, where a lab that cannot run is a failure.
 */
export function labSkip(suite: string): string | false {
  const a = labAvailable();
  if (a.ok) return false;
  if (process.env['CI'] === 'true') throw new Error(`lab suite ${suite} cannot run under CI: ${a.why}`);
  process.stderr.write(`\n*** LAB SKIPPED (${suite}): ${a.why} — run as root to prove the dataplane ***\n\n`);
  return a.why;
}

export function hasTool(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// ---------- cleanup of everything, also on exit / signals ----------

const liveNamespaces = new Set<string>();
const liveAgents = new Set<ChildProcessWithoutNullStreams>();
let hooksInstalled = false;

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

/**
 * For labs built on top of createLab (test/lab/upstream-lab.ts): a namespace made outside createLab is
 * removed with the others on exit / signals; the returned function removes it now.
 */
export function trackNamespace(ns: string): () => void {
  installHooks(true);
  liveNamespaces.add(ns);
  return () => killNamespaceSync(ns);
}

function cleanupAllSync(): void {
  for (const a of liveAgents) {
    try {
      a.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  liveAgents.clear();
  for (const ns of [...liveNamespaces]) killNamespaceSync(ns);
}

function installHooks(signals: boolean): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupAllSync);
  if (!signals) return; // the caller handles signals itself (scripts/lab.ts stops portd gently first)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupAllSync();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

// ---------- commands ----------

export function exec(
  ns: string | null,
  argv: readonly string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<ExecResult> {
  const [cmd, args] = ns ? ['ip', ['netns', 'exec', ns, ...argv]] : [argv[0] ?? 'true', argv.slice(1)];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timeout: ${argv.join(' ')}`));
    }, opts.timeoutMs ?? 30_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.on('error', () => {
      /* exited before reading its input; close reports */
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** like exec, but throws with stderr when the command fails */
export async function must(
  ns: string | null,
  argv: readonly string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const r = await exec(ns, argv, opts);
  if (r.code !== 0) throw new Error(`${ns ? `[${ns}] ` : ''}${argv.join(' ')} -> ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

// ---------- agents: long-lived node processes inside a namespace ----------

export interface AgentReply {
  readonly ok: boolean;
  readonly error?: string;
  readonly reply?: string;
  readonly conn?: number;
  readonly sock?: number;
  readonly port?: number;
  readonly label?: string;
}

/**
 * Requests to a child that answers JSON lines tagged with the request's id (the lab agents,
 * bench/compare's load generator): each call resolves with its answer, or with `failure(...)` when the
 * child stays silent past the timeout or goes away.
 */
export class JsonLineChannel<R> {
  private seq = 0;
  private buf = '';
  private readonly waiting = new Map<number, (r: R) => void>();
  constructor(
    private readonly child: ChildProcess,
    private readonly failure: (why: 'silent' | 'exited') => R,
  ) {
    child.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        try {
          const { id, ...msg } = JSON.parse(line) as { id: number };
          this.waiting.get(id)?.(msg as R);
          this.waiting.delete(id);
        } catch {
          /* not ours */
        }
      }
    });
    child.on('close', () => {
      for (const w of this.waiting.values()) w(failure('exited'));
      this.waiting.clear();
    });
  }

  call(msg: Record<string, unknown>, timeoutMs: number): Promise<R> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        resolve(this.failure('silent'));
      }, timeoutMs);
      this.waiting.set(id, (r) => {
        clearTimeout(t);
        resolve(r);
      });
      this.child.stdin!.write(JSON.stringify({ id, ...msg }) + '\n');
    });
  }
}

export class Agent {
  private readonly channel: JsonLineChannel<AgentReply>;
  constructor(
    readonly ns: string,
    readonly label: string,
    private readonly child: ChildProcessWithoutNullStreams,
  ) {
    this.channel = new JsonLineChannel<AgentReply>(child, (why) => ({
      ok: false,
      error: why === 'exited' ? 'agent exited' : 'agent did not answer',
    }));
  }

  call(op: string, args: Record<string, unknown> = {}): Promise<AgentReply> {
    const timeoutMs = (typeof args['timeoutMs'] === 'number' ? args['timeoutMs'] : 2000) + 5000;
    return this.channel.call({ op, ...args }, timeoutMs);
  }

  listen(proto: 'tcp' | 'udp', port: number, host?: string): Promise<AgentReply> {
    return this.call('listen', { proto, port, host });
  }
  /** connect, send, wait for the echo, close */
  tcpProbe(
    host: string,
    port: number,
    opts: { timeoutMs?: number; localAddress?: string; data?: string } = {},
  ): Promise<AgentReply> {
    return this.call('tcpProbe', {
      host,
      port,
      timeoutMs: opts.timeoutMs ?? 1500,
      localAddress: opts.localAddress,
      data: opts.data,
    });
  }
  udpProbe(
    host: string,
    port: number,
    opts: { timeoutMs?: number; localAddress?: string; data?: string } = {},
  ): Promise<AgentReply> {
    return this.call('udpProbe', {
      host,
      port,
      timeoutMs: opts.timeoutMs ?? 1500,
      localAddress: opts.localAddress,
      data: opts.data,
    });
  }
  tcpConnect(
    host: string,
    port: number,
    opts: { timeoutMs?: number; localAddress?: string } = {},
  ): Promise<AgentReply> {
    return this.call('tcpConnect', { host, port, timeoutMs: opts.timeoutMs ?? 1500, localAddress: opts.localAddress });
  }
  tcpSend(conn: number, data: string, timeoutMs = 1500): Promise<AgentReply> {
    return this.call('tcpSend', { conn, data, timeoutMs });
  }
  tcpClose(conn: number): Promise<AgentReply> {
    return this.call('tcpClose', { conn });
  }
  udpOpen(opts: { localAddress?: string; port?: number } = {}): Promise<AgentReply> {
    return this.call('udpOpen', opts);
  }
  udpSend(sock: number, host: string, port: number, data: string, timeoutMs = 1500): Promise<AgentReply> {
    return this.call('udpSend', { sock, host, port, data, timeoutMs });
  }
  udpClose(sock: number): Promise<AgentReply> {
    return this.call('udpClose', { sock });
  }

  stop(): void {
    liveAgents.delete(this.child);
    this.child.stdin.end();
    this.child.kill('SIGKILL');
  }
}

// ---------- the lab ----------

export interface Lab {
  readonly gw: string;
  /** IPv6 was set up (LabOptions.ipv6) */
  readonly ipv6: boolean;
  readonly lanA: string;
  readonly lanB: string;
  readonly wan: string;
  readonly namespaces: readonly string[];
  exec(ns: string, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<ExecResult>;
  must(ns: string, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<string>;
  /** `nft` inside the gateway, script on stdin */
  nft(script: string): Promise<ExecResult>;
  agent(ns: string, label: string): Promise<Agent>;
  teardown(): Promise<void>;
}

let labSeq = 0;

export interface LabOptions {
  /** install SIGINT/SIGTERM/SIGHUP hooks that tear everything down and exit (default true) */
  readonly signalHooks?: boolean;
  /** name stem; default pd<pid><n> */
  readonly name?: string;
  /** log each step */
  readonly verbose?: boolean;
  /** IPv6 too (ADDR6); `temporary`: each LAN host gets a second global address (same MAC) */
  readonly ipv6?: boolean | { readonly temporary?: boolean };
}

export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  installHooks(opts.signalHooks ?? true);
  const stem = opts.name ?? `pd${process.pid}${labSeq++}`;
  const gw = `${stem}g`,
    lanA = `${stem}a`,
    lanB = `${stem}b`,
    wan = `${stem}w`;
  const namespaces = [gw, lanA, lanB, wan];
  const agents: Agent[] = [];
  const step = async (ns: string | null, argv: string[]) => {
    if (opts.verbose) process.stderr.write(`lab: ${ns ? `[${ns}] ` : ''}${argv.join(' ')}\n`);
    await must(ns, argv);
  };

  const teardown = async () => {
    for (const a of agents.splice(0)) a.stop();
    for (const ns of namespaces) killNamespaceSync(ns);
  };

  try {
    for (const ns of namespaces) {
      liveNamespaces.add(ns);
      await step(null, ['ip', 'netns', 'add', ns]);
      await step(null, ['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      // before any link exists: links made later inherit `default`, so link-local addresses skip DAD too
      if (opts.ipv6) await step(ns, ['sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0']);
    }
    // gateway: LAN bridge with one veth per host, WAN veth to the WAN host
    await step(null, ['ip', '-n', gw, 'link', 'add', IF.lan, 'type', 'bridge']);
    await step(null, ['ip', '-n', gw, 'addr', 'add', `${ADDR.gwLan}/24`, 'dev', IF.lan]);
    await step(null, ['ip', '-n', gw, 'link', 'set', IF.lan, 'up']);
    for (const [host, ifname, addr] of [
      [lanA, 'lan1', ADDR.hostA],
      [lanB, 'lan2', ADDR.hostB],
    ] as const) {
      await step(null, ['ip', '-n', gw, 'link', 'add', ifname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host]);
      await step(null, ['ip', '-n', gw, 'link', 'set', ifname, 'master', IF.lan, 'up']);
      await step(null, ['ip', '-n', host, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      await step(null, ['ip', '-n', host, 'link', 'set', 'eth0', 'up']);
      await step(null, ['ip', '-n', host, 'route', 'add', 'default', 'via', ADDR.gwLan]);
    }
    await step(null, ['ip', '-n', gw, 'link', 'add', IF.wan, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', wan]);
    await step(null, ['ip', '-n', gw, 'addr', 'add', `${ADDR.gwWan}/24`, 'dev', IF.wan]);
    await step(null, ['ip', '-n', gw, 'link', 'set', IF.wan, 'up']);
    await step(null, ['ip', '-n', wan, 'addr', 'add', `${ADDR.wanHost}/24`, 'dev', 'eth0']);
    await step(null, ['ip', '-n', wan, 'addr', 'add', `${ADDR.wanHost2}/24`, 'dev', 'eth0']);
    await step(null, ['ip', '-n', wan, 'link', 'set', 'eth0', 'up']);
    await step(gw, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    if (opts.ipv6) await setUpIPv6(step, { gw, lanA, lanB, wan }, opts.ipv6 === true ? {} : opts.ipv6);
  } catch (err) {
    await teardown();
    throw err;
  }

  const lab: Lab = {
    gw,
    ipv6: !!opts.ipv6,
    lanA,
    lanB,
    wan,
    namespaces,
    exec: (ns, argv, o) => exec(ns, argv, o),
    must: (ns, argv, o) => must(ns, argv, o),
    nft: (script) => exec(gw, ['nft', '-f', '-'], { input: script }),
    async agent(ns, label) {
      if (!existsSync(AGENT)) throw new Error(`agent script missing: ${AGENT}`);
      const child = spawn('ip', ['netns', 'exec', ns, process.execPath, AGENT, label], { stdio: 'pipe' });
      liveAgents.add(child);
      child.stderr.on('data', (d: Buffer) => {
        if (opts.verbose) process.stderr.write(`[${label}] ${d.toString()}`);
      });
      const a = new Agent(ns, label, child);
      agents.push(a);
      const p = await a.call('ping');
      if (!p.ok) throw new Error(`agent ${label} in ${ns} did not start: ${p.error ?? ''}`);
      return a;
    },
    teardown,
  };
  return lab;
}

/**
 * IPv6 on the lab built above. DAD is off everywhere (accept_dad=0 before the addresses, `nodad` on the
 * static ones) so no test waits ≈ 1-2 s for tentative addresses; link-local addresses come up with the
 * links as usual (they exist before this runs: the kernel makes them at link-up, and DAD off makes them
 * usable at once). No router advertisements: addresses and routes are static.
 */
async function setUpIPv6(
  step: (ns: string | null, argv: string[]) => Promise<void>,
  ns: { gw: string; lanA: string; lanB: string; wan: string },
  o: { temporary?: boolean },
): Promise<void> {
  // `default` was set when each namespace was made (before its links, which inherit it); the links
  // themselves once more, in case one came up before (sysctl -e: a namespace lacks the others' names)
  for (const n of [ns.gw, ns.lanA, ns.lanB, ns.wan]) {
    const keys = ['all', 'eth0', IF.lan, IF.wan, 'lan1', 'lan2'].map((k) => `net.ipv6.conf.${k}.accept_dad=0`);
    await step(n, ['sysctl', '-qwe', ...keys]);
  }
  await step(ns.gw, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  const add = (n: string, addr: string, dev: string) =>
    step(null, ['ip', '-n', n, '-6', 'addr', 'add', `${addr}/64`, 'dev', dev, 'nodad']);
  await add(ns.gw, ADDR6.gwLan, IF.lan);
  await add(ns.gw, ADDR6.gwWan, IF.wan);
  for (const [n, stable, temp] of [
    [ns.lanA, ADDR6.hostA, ADDR6.hostATemp],
    [ns.lanB, ADDR6.hostB, ADDR6.hostBTemp],
  ] as const) {
    await add(n, stable, 'eth0');
    if (o.temporary) await add(n, temp, 'eth0');
    // a host with privacy addresses (use_tempaddr=2) sends from its temporary address (RFC 8981 §3.6):
    // said explicitly here, so which one a client uses is no accident of the order the addresses came in
    const src = o.temporary ? ['src', temp] : [];
    await step(null, ['ip', '-n', n, '-6', 'route', 'add', 'default', 'via', ADDR6.gwLan, ...src]);
  }
  await add(ns.wan, ADDR6.wanHost, 'eth0');
  await step(null, ['ip', '-n', ns.wan, '-6', 'route', 'add', 'default', 'via', ADDR6.gwWan]);
  await must(ns.gw, ['nft', '-f', '-'], { input: LAB6_RULESET });
}

export interface LabProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** closes its stdin (the gateway scripts exit on that), then SIGKILL after 5 s */
  stop(): Promise<void>;
}

/**
 * Starts a TypeScript script (through tsx) inside a namespace and waits for the `"ready":true` line
 * it prints on stdout; rejects with its stderr when it exits or stays silent for `timeoutMs`.
 * The gateway scripts (test/lab/*-gateway.ts) run this way.
 */
export async function startLabProcess(
  ns: string,
  script: string,
  args: readonly string[] = [],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<LabProcess> {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', script, ...args], {
    cwd: root,
    stdio: 'pipe',
    env: { ...process.env, ...opts.env },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (process.env['LAB_LOG']) process.stderr.write(d);
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} did not start: ${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"ready":true')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${script} exited ${code}: ${stderr}`));
    });
  });
  return {
    child,
    async stop() {
      child.removeAllListeners('exit');
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin.end();
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      child.kill('SIGKILL');
    },
  };
}
