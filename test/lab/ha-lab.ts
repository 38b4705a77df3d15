/**
 * The HA lab (issue 18 item 4): two gateways A and B on one LAN segment and one WAN segment, keepalived VRRP
 * between them moving the virtual addresses, PostgreSQL in a namespace of its own, a LAN client and a WAN host.
 *
 *                 ┌─ A: lan0 192.168.77.2  wan0 203.0.113.12 ─┐
 *   client .11 ─ lanbr                                        wanbr ─ wan 203.0.113.2
 *   pg .250 ───┘  └─ B: lan0 192.168.77.3  wan0 203.0.113.13 ─┘
 *                     virtual: 192.168.77.1 (LAN), 203.0.113.1 (WAN), on the VRRP master only
 *
 * The two bridges live in a namespace of their own (`s`, the "switch"), so taking A's links down is
 * `ip link set lan0/wan0 down` in A and nothing else notices but VRRP.
 *
 * PostgreSQL listens on TCP 192.168.77.250 (a veth on the LAN bridge), not on a Unix socket: a socket would be
 * reachable from A even with its links down (the file system is shared), which is not the failure a real pair
 * sees. Over TCP, A's links going down leaves A's sessions open on the server with nobody behind them — the
 * case the fence must survive (docs/ha.md, "Fencing").
 *
 * keepalived runs per node (`-P -n`, its own pid files and config in the lab's temp dir), VRRP version 3 with
 * `advert_int` in centiseconds, `nopreempt` (a node coming back does not take the master role back), and a
 * `vrrp_script` checking that node's portd every second (fall 1): portd killed → the instance goes FAULT
 * within a second, sends priority 0, and the peer takes over without waiting out the master-down interval
 * (vrrp_track_process would be instant, but needs the process events connector, absent in a namespace).
 * keepalived writes its state changes to `notify_fifo`, which portd reads (src/ha/).
 *
 * Everything is removed on teardown and on exit/signals (namespaces, and every process in them: keepalived,
 * postgres, agents, the gateway processes).
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPostgresBin } from '../helpers/postgres.js';
import { Agent, exec, must, trackNamespace, type ExecResult } from './harness.js';

export const HA = {
  vipLan: '192.168.77.1',
  vipWan: '203.0.113.1',
  aLan: '192.168.77.2',
  aWan: '203.0.113.12',
  bLan: '192.168.77.3',
  bWan: '203.0.113.13',
  client: '192.168.77.11',
  wanHost: '203.0.113.2',
  pg: '192.168.77.250',
  pgPort: 5432,
  vrid: 77,
} as const;

export type NodeName = 'A' | 'B';

export interface HaLabOptions {
  /** VRRP advertisement interval in seconds (VRRPv3: centisecond steps); default 0.2 */
  readonly advertInt?: number;
  /** the check keepalived runs every second on each node (vrrp_script, no spaces: no shell); fails → FAULT */
  readonly trackScript?: (node: NodeName) => string;
  readonly verbose?: boolean;
  /**
   * conntrackd on both gateways (FTFW, unicast UDP over lan0): the master's conntrack table is synced to the
   * backup's external cache, and keepalived's notify_master commits it into the new master's kernel (as
   * Debian's primary-backup.sh example does)
   */
  readonly conntrackd?: boolean;
}

export interface HaLab {
  readonly dir: string;
  readonly ns: {
    readonly A: string;
    readonly B: string;
    readonly client: string;
    readonly wan: string;
    readonly pg: string;
    readonly sw: string;
  };
  /** node-postgres URL of the lab's database (TCP 192.168.77.250:5432, user portd, trust on the LAN) */
  readonly pgUrl: string;
  /** runs one SQL statement through psql on the server's Unix socket (from the test's own namespace); rows as lines */
  sql(statement: string): Promise<string[]>;
  /** the fifo keepalived writes that node's state changes to */
  fifo(node: NodeName): string;
  exec(ns: string, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<ExecResult>;
  must(ns: string, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<string>;
  startKeepalived(node: NodeName): Promise<void>;
  stopKeepalived(node: NodeName): void;
  /** which node holds the LAN virtual address now (null: none) */
  vipHolder(): Promise<NodeName | null>;
  linksDown(node: NodeName): Promise<void>;
  linksUp(node: NodeName): Promise<void>;
  agent(ns: string, label: string): Promise<Agent>;
  teardown(): Promise<void>;
}

const AGENT = join(dirname(fileURLToPath(import.meta.url)), 'agent.mjs');
let seq = 0;

function keepalivedConf(o: {
  node: NodeName;
  fifo: string;
  advertInt: number;
  track: string | null;
  notifyMaster: string | null;
}): string {
  const me = o.node === 'A' ? { lan: HA.aLan, prio: 150 } : { lan: HA.bLan, prio: 100 };
  const peer = o.node === 'A' ? HA.bLan : HA.aLan;
  // keepalived's process tracking (vrrp_track_process) needs the process events connector, which the kernel
  // offers in the initial network namespace only ("errno 111"): a check script every second instead
  const track = o.track
    ? `vrrp_script portd {
  script "${o.track}"
  interval 1
  timeout 1
  fall 1
  rise 1
  user root
}
`
    : '';
  return `global_defs {
  router_id ha${o.node}
  notify_fifo ${o.fifo}
  vrrp_garp_master_delay 0
  vrrp_garp_master_repeat 2
  vrrp_version 3
  script_user root
}
${track}vrrp_instance gw {
  state BACKUP
  nopreempt
  interface lan0
  virtual_router_id ${HA.vrid}
  priority ${me.prio}
  advert_int ${o.advertInt}
  unicast_src_ip ${me.lan}
  unicast_peer {
    ${peer}
  }
  virtual_ipaddress {
    ${HA.vipLan}/24 dev lan0
    ${HA.vipWan}/24 dev wan0
  }
  track_interface {
    wan0
  }
${o.notifyMaster ? `  notify_master "${o.notifyMaster}"\n` : ''}${o.track ? '  track_script {\n    portd\n  }\n' : ''}}
`;
}

/** the lab; throws (after removing what it made) when it cannot be built */
export async function createHaLab(opts: HaLabOptions = {}): Promise<HaLab> {
  const stem = `ph${process.pid % 100000}${seq++}`;
  const ns = { A: `${stem}A`, B: `${stem}B`, client: `${stem}c`, wan: `${stem}w`, pg: `${stem}p`, sw: `${stem}s` };
  const removers = Object.values(ns).map((n) => trackNamespace(n));
  const dir = mkdtempSync(join(tmpdir(), 'portd-ha-lab-'));
  chmodSync(dir, 0o711); // the postgres user walks through it to its data dir
  const keepalived = new Map<NodeName, ChildProcessWithoutNullStreams>();
  const conntrackds = new Map<NodeName, ReturnType<typeof spawn>>();
  const agents: Agent[] = [];
  const step = async (n: string | null, argv: string[]) => {
    if (opts.verbose) process.stderr.write(`ha-lab: ${n ? `[${n}] ` : ''}${argv.join(' ')}\n`);
    await must(n, argv);
  };
  const teardown = async () => {
    for (const a of agents.splice(0)) a.stop();
    for (const k of keepalived.values()) k.kill('SIGKILL');
    keepalived.clear();
    for (const k of conntrackds.values()) k.kill('SIGKILL');
    conntrackds.clear();
    // killing the namespaces' processes takes postgres and anything else started inside with it
    for (const r of removers) r();
    rmSync(dir, { recursive: true, force: true });
  };
  const pgBin = findPostgresBin();
  try {
    if (!pgBin) throw new Error('PostgreSQL server not installed (apt-get install postgresql)');
    for (const n of Object.values(ns)) {
      await step(null, ['ip', 'netns', 'add', n]);
      await step(null, ['ip', '-n', n, 'link', 'set', 'lo', 'up']);
    }
    for (const br of ['lanbr', 'wanbr']) {
      await step(null, ['ip', '-n', ns.sw, 'link', 'add', br, 'type', 'bridge']);
      await step(null, ['ip', '-n', ns.sw, 'link', 'set', br, 'up']);
    }
    let port = 0;
    const plug = async (n: string, ifname: string, br: string, addr: string) => {
      const p = `p${port++}`;
      await step(null, ['ip', '-n', ns.sw, 'link', 'add', p, 'type', 'veth', 'peer', 'name', ifname, 'netns', n]);
      await step(null, ['ip', '-n', ns.sw, 'link', 'set', p, 'master', br, 'up']);
      await step(null, ['ip', '-n', n, 'addr', 'add', `${addr}/24`, 'dev', ifname]);
      await step(null, ['ip', '-n', n, 'link', 'set', ifname, 'up']);
    };
    await plug(ns.A, 'lan0', 'lanbr', HA.aLan);
    await plug(ns.A, 'wan0', 'wanbr', HA.aWan);
    await plug(ns.B, 'lan0', 'lanbr', HA.bLan);
    await plug(ns.B, 'wan0', 'wanbr', HA.bWan);
    await plug(ns.client, 'eth0', 'lanbr', HA.client);
    await plug(ns.wan, 'eth0', 'wanbr', HA.wanHost);
    await plug(ns.pg, 'eth0', 'lanbr', HA.pg);
    await step(null, ['ip', '-n', ns.client, 'route', 'add', 'default', 'via', HA.vipLan]);
    for (const g of [ns.A, ns.B]) {
      await step(g, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      // a gratuitous ARP for the virtual address must replace the peers' cache entries (and create them)
      await step(g, ['sysctl', '-qw', 'net.ipv4.conf.all.arp_accept=1']);
    }
    for (const h of [ns.client, ns.wan]) await step(h, ['sysctl', '-qw', 'net.ipv4.conf.all.arp_accept=1']);
    await startLabPostgres(pgBin, ns.pg, join(dir, 'pg'));
  } catch (e) {
    await teardown();
    throw e;
  }
  const fifo = (node: NodeName) => join(dir, `keepalived-${node}.fifo`);
  /** starts conntrackd in the node's namespace; returns the script keepalived runs on becoming master */
  const startConntrackd = async (node: NodeName): Promise<string> => {
    const d = join(dir, `ctd-${node}`);
    mkdirSync(d, { recursive: true });
    const [me, peer] = node === 'A' ? [HA.aLan, HA.bLan] : [HA.bLan, HA.aLan];
    const conf = join(d, 'conntrackd.conf');
    writeFileSync(
      conf,
      `Sync {
  Mode FTFW {
  }
  UDP {
    IPv4_address ${me}
    IPv4_Destination_Address ${peer}
    Port 3780
    Interface lan0
    Checksum on
  }
}
General {
  HashSize 8192
  HashLimit 65536
  LogFile ${join(d, 'conntrackd.log')}
  Syslog off
  LockFile ${join(d, 'lock')}
  UNIX {
    Path ${join(d, 'ctl')}
  }
  Filter From Userspace {
    Protocol Accept {
      TCP
      UDP
    }
    Address Ignore {
      IPv4_address 127.0.0.1
      IPv4_address ${HA.vipLan}
      IPv4_address ${HA.aLan}
      IPv4_address ${HA.bLan}
      IPv4_address ${HA.pg}
    }
  }
}
`,
    );
    const ctd = spawn('ip', ['netns', 'exec', ns[node], 'conntrackd', '-C', conf], { stdio: 'ignore' });
    conntrackds.set(node, ctd);
    await new Promise((r) => setTimeout(r, 300));
    if (ctd.exitCode !== null) throw new Error(`conntrackd on ${node} exited ${ctd.exitCode}`);
    const script = join(d, 'primary.sh');
    // Debian's primary-backup.sh "primary": commit the external cache, flush it, resync the internal cache
    // from the kernel, and send a bulk update to the peer
    writeFileSync(script, `#!/bin/sh\nfor o in -c -f -R -B; do /usr/sbin/conntrackd -C ${conf} $o; done\nexit 0\n`, {
      mode: 0o755,
    });
    return script;
  };
  return {
    dir,
    ns,
    pgUrl: `postgresql://portd@${HA.pg}:${HA.pgPort}/postgres`,
    fifo,
    async sql(statement) {
      const outText = await must(null, [
        'psql',
        '-h',
        join(dir, 'pg'),
        '-U',
        'portd',
        '-d',
        'postgres',
        '-At',
        '-c',
        statement,
      ]);
      return outText.split('\n').filter(Boolean);
    },
    exec: (n, argv, o) => exec(n, argv, o),
    must: (n, argv, o) => must(n, argv, o),
    async startKeepalived(node) {
      const d = join(dir, `ka-${node}`);
      mkdirSync(d, { recursive: true });
      const conf = join(d, 'keepalived.conf');
      writeFileSync(
        conf,
        keepalivedConf({
          node,
          fifo: fifo(node),
          advertInt: opts.advertInt ?? 0.2,
          track: opts.trackScript?.(node) ?? null,
          notifyMaster: opts.conntrackd ? await startConntrackd(node) : null,
        }),
      );
      const child = spawn(
        'ip',
        [
          'netns',
          'exec',
          ns[node],
          'keepalived',
          '-P',
          '-n',
          '-l',
          '-G',
          '-f',
          conf,
          '-p',
          join(d, 'k.pid'),
          '-r',
          join(d, 'v.pid'),
          '-c',
          join(d, 'c.pid'),
        ],
        { stdio: 'pipe' },
      );
      child.stdout.on('data', (b: Buffer) => {
        if (opts.verbose) process.stderr.write(`[ka ${node}] ${b.toString()}`);
      });
      child.stderr.on('data', (b: Buffer) => {
        if (opts.verbose) process.stderr.write(`[ka ${node}] ${b.toString()}`);
      });
      child.stdin.end();
      keepalived.set(node, child);
      await new Promise((r) => setTimeout(r, 200));
      if (child.exitCode !== null) throw new Error(`keepalived on ${node} exited ${child.exitCode}`);
    },
    stopKeepalived(node) {
      keepalived.get(node)?.kill('SIGKILL');
      keepalived.delete(node);
    },
    async vipHolder() {
      for (const node of ['A', 'B'] as const) {
        const r = await exec(ns[node], ['ip', '-4', '-o', 'addr', 'show', 'dev', 'lan0']);
        if (r.stdout.includes(`${HA.vipLan}/`)) return node;
      }
      return null;
    },
    async linksDown(node) {
      await step(ns[node], ['ip', 'link', 'set', 'lan0', 'down']);
      await step(ns[node], ['ip', 'link', 'set', 'wan0', 'down']);
    },
    async linksUp(node) {
      await step(ns[node], ['ip', 'link', 'set', 'lan0', 'up']);
      await step(ns[node], ['ip', 'link', 'set', 'wan0', 'up']);
    },
    async agent(n, label) {
      const child = spawn('ip', ['netns', 'exec', n, process.execPath, AGENT, label], { stdio: 'pipe' });
      const a = new Agent(n, label, child);
      agents.push(a);
      const p = await a.call('ping');
      if (!p.ok) throw new Error(`agent ${label} in ${n} did not start: ${p.error ?? ''}`);
      return a;
    },
    teardown,
  };
}

/**
 * PostgreSQL inside its namespace on TCP (HA.pg), trust for the LAN /24, fsync off (durability of the server is
 * not under test; the fence and the follower are). Stopped by killing the namespace's processes.
 */
async function startLabPostgres(bin: string, n: string, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  chownSync(dir, uid, gid);
  const data = join(dir, 'data');
  const as = (cmd: string, args: string[]) => ['runuser', '-u', 'postgres', '--', join(bin, cmd), ...args];
  await must(null, as('initdb', ['-D', data, '-U', 'portd', '--auth=trust', '-E', 'UTF8', '--no-sync']), {
    timeoutMs: 60_000,
  });
  writeFileSync(
    join(data, 'postgresql.conf'),
    `\nlisten_addresses = '${HA.pg}'\nport = ${HA.pgPort}\nunix_socket_directories = '${dir}'\nfsync = off\n` +
      'synchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\nshared_buffers = 16MB\n' +
      // a session whose node vanished (links down) is noticed within ≈ 3 s instead of the kernel's 2 h
      'tcp_keepalives_idle = 1\ntcp_keepalives_interval = 1\ntcp_keepalives_count = 2\n',
    { flag: 'a' },
  );
  writeFileSync(join(data, 'pg_hba.conf'), 'local all all trust\nhost all all 192.168.77.0/24 trust\n', { flag: 'a' });
  await must(n, as('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '30', 'start']), {
    timeoutMs: 40_000,
  });
}
