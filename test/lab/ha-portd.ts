/**
 * The HA pair's node as the real `portd start` with `ha.enabled` on PostgreSQL (issue 18 items 3-5), for the lab
 * (test/lab/ha-clients.test.ts) and the bench (bench/ha.ts): the configuration file each gateway runs, the process
 * in its namespace with its JSON log lines kept, and its kernel's TCP forwards read back.
 *
 * keepalived's check finds the process by its configuration file's name (`portdTrackScript`), so the file is
 * named after the node.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HA, type HaLab, type NodeName } from './ha-lab.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** one pino line of portd's log */
export interface Line {
  level: number;
  msg: string;
  /** pino's epoch milliseconds: the instant portd logged it (same clock as the lab's Date.now()) */
  time: number;
  role?: string;
  generation?: number | null;
  [k: string]: unknown;
}

/** keepalived's check (no shell, no spaces): this node's portd, found by its configuration file */
export const portdTrackScript = (node: NodeName): string => `/usr/bin/pgrep -f portd-${node}.yaml`;

export const isRole =
  (role: 'active' | 'standby') =>
  (l: Line): boolean =>
    l.msg === `ha: node is ${role}`;
export const frontendsUp = (l: Line): boolean => l.msg === 'admin API and dashboard listening';

/**
 * Writes `<lab.dir>/portd-<node>/portd-<node>.yaml`: the lab's interfaces, the WAN virtual address as the external
 * address, PostgreSQL, UPnP without SSDP, the admin API on 127.0.0.1 (the namespace's), `ha` on this node's FIFO.
 */
export function writePortdConfig(lab: HaLab, node: NodeName, adminToken: string): string {
  const dir = join(lab.dir, `portd-${node}`);
  mkdirSync(dir, { recursive: true });
  const cfg = join(dir, `portd-${node}.yaml`);
  writeFileSync(
    cfg,
    [
      'interfaces: { wan: wan0, lan: [lan0] }',
      `externalAddress: ${HA.vipWan}`,
      `stateDir: ${dir}`,
      `database: { driver: postgres, url: "${lab.pgUrl}" }`,
      'dataplane: { driver: nftables, table: portd, reconcileInterval: 2 }',
      `logLevel: ${process.env['HA_LOG_LEVEL'] ?? 'info'}`,
      'policy: { rules: ["allow 1024-65535 192.168.77.0/24 1-65535"] }',
      'upnp: { enabled: true, httpPort: 5000, ssdp: false }',
      `admin: { listen: "127.0.0.1:8080", token: "${adminToken}" }`,
      `ha: { enabled: true, node: ${node}, keepalived: { fifo: ${lab.fifo(node)}, instance: gw }, ` +
        'idleInTransactionTimeout: 1000 }',
    ].join('\n'),
  );
  return cfg;
}

/** `portd start` inside a gateway namespace; its JSON log lines kept (from the latest start) */
export class PortdNode {
  child: ChildProcess | null = null;
  lines: Line[] = [];
  out = '';
  constructor(
    readonly ns: string,
    readonly config: string,
  ) {}
  start(): void {
    this.lines = [];
    this.out = '';
    const c = spawn(
      'ip',
      ['netns', 'exec', this.ns, process.execPath, join(ROOT, 'bin', 'portd.js'), 'start', '--config', this.config],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = c;
    let buf = '';
    c.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (process.env['LAB_LOG']) process.stderr.write(`[${this.ns}] ${l}\n`);
        try {
          this.lines.push(JSON.parse(l) as Line);
        } catch {
          /* not JSON */
        }
      }
    });
    c.stderr!.on('data', (d: Buffer) => {
      this.out = (this.out + d.toString()).slice(-4000);
    });
  }
  get running(): boolean {
    const c = this.child;
    return !!c && c.exitCode === null && c.signalCode === null;
  }
  /** the role of its latest `ha: node is …` line, null before the first */
  role(): 'active' | 'standby' | null {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      if (isRole('active')(this.lines[i]!)) return 'active';
      if (isRole('standby')(this.lines[i]!)) return 'standby';
    }
    return null;
  }
  /** the first log line from index `from` on that matches, within ms */
  async wait(pred: (l: Line) => boolean, ms: number, from = 0): Promise<Line> {
    const t0 = Date.now();
    for (;;) {
      const l = this.lines.slice(from).find(pred);
      if (l) return l;
      if (this.child?.exitCode !== null) throw new Error(`portd in ${this.ns} exited: ${this.out}`);
      if (Date.now() - t0 > ms) throw new Error(`no such log line from portd in ${this.ns} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  async kill9(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }
}

/** the node's kernel TCP forwards (`nft list map inet portd fwd4`) as `ext>address:port`, sorted */
export async function kernelTcp(lab: HaLab, node: NodeName): Promise<string[]> {
  return (await lab.must(lab.ns[node], ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']))
    .split(/[,{}\n]/)
    .map((s) => s.trim().match(/^tcp \. (\d+) .*?: ([\d.]+) \. (\d+)/))
    .filter((m) => m !== null)
    .map((m) => `${m![1]}>${m![2]}:${m![3]}`)
    .sort();
}

/** the table's active TCP leases in `kernelTcp`'s form */
export async function tableTcp(lab: HaLab): Promise<string[]> {
  return (
    await lab.sql(
      `SELECT external_port || '>' || internal_address || ':' || internal_port FROM leases
       WHERE state = 'active' AND protocol = 'tcp' ORDER BY 1`,
    )
  ).sort();
}

/**
 * The pair brought up as every HA lab wants it: both portds started (each a standby), keepalived on A (A active,
 * its front-ends up), then keepalived on B (B the backup)
 */
export async function startPair(lab: HaLab, nodes: Record<NodeName, PortdNode>): Promise<void> {
  nodes.A.start();
  nodes.B.start();
  await nodes.A.wait(isRole('standby'), 40_000);
  await nodes.B.wait(isRole('standby'), 40_000);
  await lab.startKeepalived('A');
  await nodes.A.wait(isRole('active'), 15_000);
  await nodes.A.wait(frontendsUp, 15_000);
  await lab.startKeepalived('B');
}
