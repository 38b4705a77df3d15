/**
 * Reads the facts `portd doctor` judges, once, from the real system: /proc/sys, the interfaces, the nft
 * ruleset, the tools' versions, capabilities, the state files and a running portd. Nothing is changed:
 * `nft -c` only checks portd's table structure (under a scratch name), the database is only stat'ed.
 */
import { accessSync, constants, lstatSync, readFileSync, type Stats } from 'node:fs';
import { networkInterfaces, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { readCapabilities } from '../capabilities.js';
import type { Config } from '../config/types.js';
import type { LocalSocket } from '../dataplane/local-ports.js';
import { run } from '../dataplane/nftables-runner.js';
import type { CommandFact, DoctorFacts, PathFact } from './types.js';

export interface GatherOptions {
  readonly configPath: string;
  readonly config: Config;
  readonly env: NodeJS.ProcessEnv;
  /** ms for each command and the admin API request */
  readonly timeoutMs?: number;
}

function readTrim(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

async function command(tool: string, args: readonly string[], timeoutMs: number, input?: string): Promise<CommandFact> {
  try {
    const r = await run({}, tool, args, { timeoutMs, ...(input !== undefined ? { input } : {}) });
    return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    return { code: -1, stdout: '', stderr: '', error: (e as Error).message };
  }
}

export function pathFact(path: string): PathFact {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch {
    return { path, exists: false };
  }
  const isDirectory = st.isDirectory();
  let writable = true;
  try {
    accessSync(path, isDirectory ? constants.W_OK | constants.X_OK : constants.W_OK);
  } catch {
    writable = false;
  }
  return { path, exists: true, isDirectory, mode: st.mode & 0o7777, uid: st.uid, writable };
}

/** the nearest ancestor of a missing path that exists */
function existingParent(path: string): PathFact | null {
  let p = resolve(path);
  for (let i = 0; i < 64; i++) {
    const up = dirname(p);
    if (up === p) return null;
    const f = pathFact(up);
    if (f.exists) return f;
    p = up;
  }
  return null;
}

function lanAddresses(names: readonly string[]): Record<string, string[]> {
  const all = networkInterfaces();
  const out: Record<string, string[]> = {};
  for (const n of names) out[n] = (all[n] ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address);
  return out;
}

function lockFact(dbPath: string): DoctorFacts['lock'] {
  const text = readTrim(`${dbPath}.lock`);
  if (text === null) return null;
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) return { pid: null, alive: false, capabilities: null };
  let alive = false;
  try {
    process.kill(pid, 0);
    alive = true;
  } catch (e) {
    alive = (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  return { pid, alive, capabilities: alive ? readCapabilities(`/proc/${pid}/status`) : null };
}

async function daemonStatus(o: GatherOptions, timeoutMs: number): Promise<DoctorFacts['daemon']> {
  const { adminClientTarget } = await import('../admin/cli-commands.js');
  let tokenFromFile: string | null = null;
  for (const f of [o.config.admin.tokenFile, join(o.config.stateDir, 'admin-token')]) {
    if (!f || tokenFromFile) continue;
    tokenFromFile = readTrim(f) || null;
  }
  const target = adminClientTarget({ config: o.config, env: o.env, tokenFromFile });
  try {
    const res = await fetch(`${target.baseUrl}/api/v1/status`, {
      headers: target.token ? { authorization: `Bearer ${target.token}` } : {},
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { reachable: true, httpStatus: res.status, body };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    return { reachable: false, error: `${target.baseUrl}: ${err.cause?.code ?? err.message}` };
  }
}

async function netlinkFact(config: Config): Promise<true | string> {
  if (config.dataplane.driver !== 'nftables' || !config.dataplane.netlink) return 'not used';
  try {
    const { openNfNetlink } = await import('../dataplane/nf-netlink.js');
    const s = openNfNetlink();
    if (typeof s === 'string') return s;
    s.close();
    return true;
  } catch (e) {
    return (e as Error).message;
  }
}

/** `nft -c -f -` of portd's table structure under a scratch name: a check, the kernel keeps nothing */
async function nftCheck(config: Config, timeoutMs: number): Promise<CommandFact | null> {
  if (config.dataplane.driver !== 'nftables' || config.interfaces.lan.length === 0) return null;
  const { asFile, renderInit } = await import('../dataplane/nftables-script.js');
  let script: string;
  try {
    script = asFile(
      renderInit({
        table: `${config.dataplane.table}_doctor`.slice(0, 32),
        wan: config.interfaces.wan,
        lan: [...config.interfaces.lan],
        hairpin: config.dataplane.hairpin,
        frontendPorts: { tcp: [config.upnp.httpPort], udp: [1900, config.pcp.port] },
      }),
    );
  } catch (e) {
    return { code: -1, stdout: '', stderr: (e as Error).message };
  }
  return command(config.dataplane.nftPath, ['-c', '-f', '-'], timeoutMs, script);
}

async function iptablesFact(timeoutMs: number): Promise<DoctorFacts['iptables']> {
  const v = await command('iptables', ['-V'], timeoutMs);
  if (v.error || v.code !== 0) return null;
  return {
    version: v.stdout.trim() || v.stderr.trim(),
    forward: await command('iptables', ['-S', 'FORWARD'], timeoutMs),
  };
}

/** sockets accepting new traffic in this namespace (/proc/net is the reader's namespace) */
async function socketsFact(): Promise<DoctorFacts['sockets']> {
  const { parseProcNet } = await import('../dataplane/local-ports.js');
  const out: LocalSocket[] = [];
  let read = 0;
  for (const [file, proto] of [
    ['tcp', 'tcp'],
    ['tcp6', 'tcp'],
    ['udp', 'udp'],
    ['udp6', 'udp'],
  ] as const) {
    const text = readTrim(`/proc/net/${file}`);
    if (text === null) continue;
    read++;
    out.push(...parseProcNet(text, proto));
  }
  return read > 0 ? out : null;
}

/**
 * One STUN check (stun.servers), sent from the WAN address like portd's own: fewer and shorter retransmissions
 * than the daemon's (3 requests, rto ≤ 200 ms: under 4 s a silent server), so doctor stays quick.
 */
async function stunFact(c: GatherOptions['config'], wanAddress: string | undefined): Promise<DoctorFacts['stun']> {
  const servers = c.stun?.servers ?? [];
  if (servers.length === 0) return null;
  const { createStunClient } = await import('../dataplane/stun-client.js');
  const pino = (await import('pino')).default;
  const client = createStunClient({
    servers,
    rtoMs: Math.min(c.stun!.rto, 200),
    transmissions: Math.min(c.stun!.transmissions, 3),
    log: pino({ level: 'silent' }),
    bindAddress: () => (c.externalAddress === 'auto' ? wanAddress : undefined),
  });
  const o = await client.check();
  return o.ok
    ? { ok: true, server: o.server, address: o.mapped.address, port: o.mapped.port }
    : { ok: false, error: o.error };
}

export async function gatherFacts(o: GatherOptions): Promise<DoctorFacts> {
  const t = o.timeoutMs ?? 10_000;
  const c = o.config;
  const wanName = c.interfaces.wan;
  const { readInterfaceAddresses } = await import('../dataplane/external-address.js');
  const wan = readInterfaceAddresses({ interface: wanName }).then(
    (addresses) => ({ addresses }),
    (e: Error) => ({ error: e.message.split('\n')[0] ?? e.message }),
  );
  const nft = c.dataplane.nftPath;
  const [wanFact, rulesetRun, nftVersion, check, conntrackVersion, iptables, netlink, daemon, sockets, stun] =
    await Promise.all([
      wan,
      command(nft, ['-j', '-t', 'list', 'ruleset'], t), // terse: no set elements (portd's maps may hold 100k)
      command(nft, ['--version'], t),
      nftCheck(c, t),
      command(c.dataplane.conntrackPath, ['--version'], t),
      iptablesFact(t),
      netlinkFact(c),
      daemonStatus(o, t), // the first admin request builds the lazy admin app: seconds on a busy small CPU
      socketsFact(),
      wan.then((w) => stunFact(c, 'addresses' in w ? w.addresses[0] : undefined)),
    ]);
  let ruleset: DoctorFacts['ruleset'];
  if (rulesetRun.error || rulesetRun.code !== 0)
    ruleset = { error: rulesetRun.error ?? (rulesetRun.stderr.trim() || `exit ${rulesetRun.code}`) };
  else {
    try {
      ruleset = { json: JSON.parse(rulesetRun.stdout || '{"nftables":[]}') };
    } catch (e) {
      ruleset = { error: `nft printed no JSON (built without JSON support?): ${(e as Error).message}` };
    }
  }
  const dbPath = resolve(c.database.path);
  const dbDir = dirname(dbPath);
  const stateDir = resolve(c.stateDir);
  const files = {
    databaseDir: pathFact(dbDir),
    database: pathFact(dbPath),
    wal: pathFact(`${dbPath}-wal`),
    stateDir: pathFact(stateDir),
    stateParent: null as PathFact | null,
    databaseParent: null as PathFact | null,
    adminToken: pathFact(join(stateDir, 'admin-token')),
  };
  if (!files.stateDir.exists) files.stateParent = existingParent(stateDir);
  if (!files.databaseDir.exists) files.databaseParent = existingParent(dbDir);
  const ns = '/proc/sys/net';
  return {
    configPath: o.configPath,
    config: c,
    sysctl: {
      ipv4Forward: readTrim(`${ns}/ipv4/ip_forward`),
      ipv6Forward: readTrim(`${ns}/ipv6/conf/all/forwarding`),
      rpFilterAll: readTrim(`${ns}/ipv4/conf/all/rp_filter`),
      rpFilterWan: /^[\w.-]+$/.test(wanName) ? readTrim(`${ns}/ipv4/conf/${wanName}/rp_filter`) : null,
      conntrackCount: readTrim(`${ns}/netfilter/nf_conntrack_count`),
      conntrackMax: readTrim(`${ns}/netfilter/nf_conntrack_max`),
    },
    wan: wanFact,
    lanAddresses: lanAddresses(c.interfaces.lan),
    ruleset,
    nftVersion,
    nftCheck: check,
    conntrackVersion,
    netlink,
    kernel: release() || null,
    capabilities: readCapabilities(),
    euid: process.geteuid?.() ?? -1,
    iptables,
    files,
    lock: dbPath === ':memory:' ? null : lockFact(dbPath),
    sockets,
    daemon,
    stun,
  };
}
