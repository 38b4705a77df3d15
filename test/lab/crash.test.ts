/**
 * Crash safety (issue 9 point 3), in the namespace lab with the real `portd start` process and the
 * nftables driver. Three LAN hosts churn PCP MAP / delete and UPnP AddPortMapping / DeletePortMapping
 * with short and long lifetimes; the WAN host keeps TCP connections open through two long leases.
 * portd is killed with SIGKILL at random moments (also while it starts) and restarted each time.
 * After each restart:
 *   - every lease a client was told it holds (and that has not expired) is in the table, and every
 *     mapping a client was told is deleted is not;
 *   - the kernel (`nft -j list table inet portd`) holds nothing the table does not, and the table
 *     nothing the kernel lacks; no active row is past its expiry;
 *   - the connections through the long leases still carry data.
 * Some rounds wait, with portd dead, past the expiry of a short lease that carries an open
 * connection: the connection must stop and a new one must be refused (the kernel enforces expiry
 * alone), while the long leases' connections keep working.
 * Port triggering takes part too: each round a random LAN host sends UDP to the WAN host's trigger
 * port (rule `crashgame`, 20 s idle timeout, opening TCP and UDP 7800-7801); a trigger lease active
 * before a kill and not yet expired must be active after the restart, and its range element is
 * checked against the table like every other element.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADDR, createLab, exec, labSkip, type Agent, type Lab } from './harness.js';
import { PortdProcess, addLanHost, churnAgent, kernelState } from './portd-process.js';

const skip = labSkip('crash');
const GRACE = 1;
const ROUNDS = 24;
/** rounds that also wait (portd dead) past a short lease's expiry */
const EXPIRY_EVERY = 4;
/** rounds whose kill lands while portd is starting (reconcile on start) */
const STARTUP_KILL_EVERY = 6;
const HOST_C = '192.168.77.13';
const SEED = Number(process.env['PORTD_CRASH_SEED'] ?? Date.now() % 100000);

interface Ev {
  kind: 'pcp' | 'upnp';
  key: string;
  proto: 'tcp' | 'udp';
  action: 'map' | 'del';
  outcome: 'ack' | 'refused' | 'noanswer';
  sentAt: number;
  at: number;
  lifetime?: number;
  extPort?: number;
  internalPort?: number;
  code?: number | null;
}

/** what one client was last told about one mapping */
interface Told {
  host: string;
  self: string;
  kind: 'pcp' | 'upnp';
  proto: 'tcp' | 'udp';
  /** PCP: internal port (identity); UPnP: external port (identity) */
  port: number;
  present: boolean;
  extPort: number;
  internalPort: number;
  /** the lease ends no earlier than this (request sent + lifetime) and no later than `latest` (answer + lifetime) */
  earliest: number;
  latest: number;
  /** a request went unanswered since the last answer: either state is allowed */
  uncertain: boolean;
}

interface ActiveRow {
  id: string;
  source: string;
  protocol: string;
  external_port: number;
  external_port_end: number;
  internal_address: string;
  internal_port: number;
  owner: string;
  expires_at: number | null;
}

/** helper processes of killed portd runs still alive afterwards (reparented to init), counted by the main test */
let orphans: string[] | null = null;

describe('crash safety: kill -9 under churn, real portd, nftables', { skip, timeout: 300_000 }, () => {
  let lab: Lab;
  let dir: string;
  let portd: PortdProcess;
  let removeC: (() => void) | null = null;
  const churners: { name: string; self: string; agent: Agent; pcpPorts: number[]; upnpPorts: number[] }[] = [];
  let echoA: Agent, echoB: Agent, echoC: Agent, wan: Agent;

  before(async () => {
    lab = await createLab();
    dir = mkdtempSync(join(tmpdir(), 'portd-crash-'));
    const c = await addLanHost(lab, 'c', HOST_C);
    removeC = c.remove;
    portd = new PortdProcess({
      lab,
      dir,
      verbose: process.env['LAB_LOG'] === 'portd',
      config:
        [
          'logLevel: info',
          'interfaces: { wan: wan0, lan: [br0] }',
          'externalAddress: auto',
          `stateDir: ${dir}`,
          `database: { path: ${join(dir, 'portd.sqlite')}, synchronous: normal }`,
          `dataplane: { driver: nftables, table: portd, hairpin: true, reconcileInterval: 5, grace: ${GRACE} }`,
          'policy:',
          '  secureMode: true',
          '  maxLeasesPerClient: 500',
          '  lifetime: { pcp: { min: 2, max: 86400 }, natpmp: { min: 2, max: 86400 }, upnp: { min: 1, max: 604800 } }',
          '  rules: ["allow 1024-65535 192.168.77.0/24 1-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
          'upnp: { enabled: true, httpPort: 5000, ssdp: false }',
          'pcp: { rateLimit: 0 }',
          'limits: { pcpRequestsPerSecond: 0 }', // the churn drives PCP past the global default too
          'admin: { listen: "127.0.0.1:8080", token: "lab-token-0123456789" }',
          'triggers:',
          '  - name: crashgame',
          '    match: { protocol: udp, ports: "7777" }',
          '    open: [{ protocol: tcp, ports: "7800-7801" }, { protocol: udp, ports: "7800-7801" }]',
          '    idleTimeout: 20',
        ].join('\n') + '\n',
    });
    // the gateway masquerades LAN traffic to the WAN like any home router (a table of the lab's own)
    const nat = await lab.nft(
      'table ip labnat {\n  chain post {\n    type nat hook postrouting priority srcnat + 10; policy ' +
        'accept;\n    oifname "wan0" masquerade\n  }\n}\n',
    );
    assert.equal(nat.code, 0, nat.stderr);
    await portd.start();
    const hosts = [
      ['A', lab.lanA, ADDR.hostA],
      ['B', lab.lanB, ADDR.hostB],
      ['C', c.ns, HOST_C],
    ] as const;
    for (const [i, [name, ns, self]] of hosts.entries()) {
      const base = 21000 + i * 20;
      churners.push({
        name,
        self,
        agent: await churnAgent(ns, `churn${name}`, self),
        pcpPorts: Array.from({ length: 6 }, (_, k) => base + k),
        upnpPorts: Array.from({ length: 6 }, (_, k) => 24000 + i * 20 + k),
      });
    }
    echoA = await lab.agent(lab.lanA, 'hostA');
    echoB = await lab.agent(lab.lanB, 'hostB');
    echoC = await lab.agent(c.ns, 'hostC');
    wan = await lab.agent(lab.wan, 'wan');
    assert.ok((await echoA.listen('tcp', 9200)).ok);
    assert.ok((await echoB.listen('tcp', 9201)).ok);
    assert.ok((await echoC.listen('tcp', 9300)).ok);
    assert.ok((await wan.listen('udp', 7777)).ok); // the "game server" the trigger rule watches for
  });

  after(async () => {
    try {
      await portd?.stop();
    } catch {
      /* killed */
    }
    await lab?.teardown();
    removeC?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test(`${ROUNDS} kills at random moments: acknowledged leases survive, kernel = table, nothing open past expiry`, async () => {
    const t0 = performance.now();
    let rand = SEED >>> 0;
    const random = () => {
      rand = (rand * 1103515245 + 12345) >>> 0;
      return rand / 4294967296;
    };
    const told = new Map<string, Told>();
    const stats = {
      kills: 0,
      killsDuringStart: 0,
      acks: 0,
      refused: 0,
      unanswered: 0,
      ops: 0,
      leasesChecked: 0,
      deletesChecked: 0,
      kernelElementsChecked: 0,
      expiredWhileDead: 0,
      flowsCutAtExpiry: 0,
      flowChecks: 0,
      triggerFlows: 0,
      triggerLeasesChecked: 0,
      restartsWithDrift: 0,
      orphans: 0,
      violations: [] as string[],
    };
    const refusedCodes = new Map<string, number>();
    const violation = (round: number, what: string) => {
      stats.violations.push(`round ${round}: ${what}`);
    };

    function record(host: string, self: string, evs: Ev[]): void {
      for (const e of evs) {
        const id = `${host}/${e.key}`;
        const port = e.kind === 'pcp' ? e.internalPort! : e.extPort!;
        let t = told.get(id);
        if (!t) {
          t = {
            host,
            self,
            kind: e.kind,
            proto: e.proto,
            port,
            present: false,
            extPort: 0,
            internalPort: 0,
            earliest: 0,
            latest: 0,
            uncertain: true,
          };
          told.set(id, t);
        }
        if (e.outcome === 'ack') {
          stats.acks++;
          t.uncertain = false;
          if (e.action === 'del') {
            t.present = false;
            continue;
          }
          t.present = true;
          t.extPort = e.extPort!;
          t.internalPort = e.internalPort!;
          t.earliest = e.sentAt + e.lifetime! * 1000;
          t.latest = e.at + e.lifetime! * 1000;
        } else if (e.outcome === 'noanswer') {
          stats.unanswered++;
          t.uncertain = true;
        } else {
          stats.refused++;
          const k = `${e.kind} ${e.action} ${e.code ?? '?'}`;
          refusedCodes.set(k, (refusedCodes.get(k) ?? 0) + 1);
        }
      }
    }

    async function pauseAll(): Promise<void> {
      await Promise.all(
        churners.map(async (c) => {
          const r = (await c.agent.call('pause', { timeoutMs: 5000 })) as unknown as {
            ok: boolean;
            ops: number;
            events: Ev[];
          };
          assert.ok(r.ok, `pause ${c.name}`);
          stats.ops += r.ops;
          record(c.name, c.self, r.events);
        }),
      );
    }
    async function resumeAll(round: number): Promise<void> {
      for (const [i, c] of churners.entries()) {
        const r = await c.agent.call('churn', {
          seed: SEED * 31 + round * 7 + i,
          pcpPorts: c.pcpPorts,
          upnpPorts: c.upnpPorts,
          concurrency: 2,
          shortLifetimes: [2, 3, 4],
          longLifetimes: [60, 300],
        });
        assert.ok(r.ok, r.error);
      }
    }
    async function single(c: (typeof churners)[number], op: string, args: Record<string, unknown>): Promise<Ev> {
      const r = (await c.agent.call(op, args)) as unknown as { ok: boolean; ev: Ev };
      assert.ok(r.ok);
      // the agent's event list holds this answer too (and any churn answers so far): record them in order
      const d = (await c.agent.call('drain')) as unknown as { events: Ev[] };
      record(c.name, c.self, d.events);
      return r.ev;
    }

    function readTable(): ActiveRow[] {
      const db = new Database(join(dir, 'portd.sqlite'), { readonly: true, fileMustExist: true });
      try {
        return db
          .prepare(
            'SELECT id, source, protocol, external_port, external_port_end, internal_address, internal_port, ' +
              `owner, expires_at FROM leases WHERE state = 'active'`,
          )
          .all() as ActiveRow[];
      } finally {
        db.close();
      }
    }

    /** after a restart: acknowledged state is in the table, the kernel equals the table */
    async function checkAfterRestart(round: number): Promise<void> {
      const rows = readTable();
      const now = Date.now();
      const byInternal = new Map<string, ActiveRow>();
      const byExternal = new Map<string, ActiveRow>();
      const ext = (r: ActiveRow) =>
        r.external_port === r.external_port_end
          ? `${r.protocol}/${r.external_port}`
          : `${r.protocol}/${r.external_port}-${r.external_port_end}`;
      for (const r of rows) {
        byExternal.set(ext(r), r);
        if (r.source === 'pcp' || r.source === 'natpmp')
          byInternal.set(`${r.protocol}/${r.internal_address}/${r.internal_port}`, r);
        if (r.expires_at !== null && r.expires_at < now - 1500)
          violation(
            round,
            `table: lease ${r.id} (${r.protocol} ${r.external_port}) active ${now - r.expires_at} ms past its expiry`,
          );
      }
      for (const [id, t] of told) {
        if (t.uncertain) continue;
        const row =
          t.kind === 'pcp' ? byInternal.get(`${t.proto}/${t.self}/${t.port}`) : byExternal.get(`${t.proto}/${t.port}`);
        const mine = row && (t.kind === 'pcp' ? row.source === 'pcp' : row.source === 'upnp' && row.owner === t.self);
        if (t.present) {
          if (t.earliest <= now + 1000) continue; // expired (or about to): may be gone
          stats.leasesChecked++;
          if (!row || !mine) {
            violation(round, `acknowledged ${id} (external ${t.extPort}) missing from the table`);
            continue;
          }
          if (
            row.external_port !== t.extPort ||
            row.internal_address !== t.self ||
            row.internal_port !== t.internalPort
          ) {
            violation(
              round,
              `acknowledged ${id} differs: table has ${row.external_port} -> ` +
                `${row.internal_address}:${row.internal_port}, client was told ${t.extPort} -> ` +
                `${t.self}:${t.internalPort}`,
            );
          }
          if (row.expires_at !== null && row.expires_at < t.earliest - 1000)
            violation(round, `acknowledged ${id} shortened: expires ${row.expires_at}, told ≥ ${t.earliest}`);
        } else {
          stats.deletesChecked++;
          if (row && mine) violation(round, `deleted ${id} (acknowledged) is back in the table as ${row.id}`);
        }
      }
      const k = await kernelState(lab);
      if (!k) {
        violation(round, 'kernel table missing after restart');
        return;
      }
      const seen = new Set<string>();
      for (const el of k.fwd) {
        stats.kernelElementsChecked++;
        const row = byExternal.get(`${el.protocol}/${el.externalPort}`);
        // a range that keeps its ports maps to an address only
        const internal =
          el.set === 'fwd4_range' ? row?.internal_address : row && `${row.internal_address}:${row.internal_port}`;
        if (!row || internal !== el.internal) {
          violation(
            round,
            `kernel holds ${el.set} ${el.protocol} ${el.externalPort} -> ${el.internal}, the table does not`,
          );
          continue;
        }
        if (row.expires_at !== null && row.expires_at + GRACE * 1000 + 1500 < now)
          violation(round, `kernel holds ${el.protocol} ${el.externalPort} past its lease's expiry`);
        seen.add(ext(row));
      }
      for (const lv of k.live) {
        const proto = lv.set.startsWith('live_tcp') ? 'tcp' : 'udp';
        if (!byExternal.has(`${proto}/${lv.port}`))
          violation(round, `kernel live set holds ${proto} ${lv.port}, the table does not`);
      }
      for (const r of rows) {
        if (r.expires_at !== null && r.expires_at < now + 1500) continue; // may be expiring right now
        if (!seen.has(ext(r)))
          violation(round, `table lease ${r.id} (${r.protocol} ${r.external_port}) missing in the kernel`);
      }
    }

    // two long leases with open connections from the WAN host, kept through every kill
    const a = churners[0]!,
      b = churners[1]!,
      c = churners[2]!;
    const longPcp = await single(a, 'pcp', { proto: 'tcp', internalPort: 9200, suggestedPort: 29200, lifetime: 3600 });
    assert.equal(longPcp.outcome, 'ack', JSON.stringify(longPcp));
    const longUpnp = await single(b, 'upnpAdd', { proto: 'tcp', extPort: 29201, internalPort: 9201, duration: 3600 });
    assert.equal(longUpnp.outcome, 'ack', JSON.stringify(longUpnp));
    const conns: number[] = [];
    for (const port of [longPcp.extPort!, 29201]) {
      const r = await wan.tcpConnect(ADDR.gwWan, port);
      assert.ok(r.ok, `connect through ${port}: ${r.error}`);
      assert.match((await wan.tcpSend(r.conn!, 'hello')).reply ?? '', /\|203\.0\.113\.2\|hello$/);
      conns.push(r.conn!);
    }
    const flowsAlive = async (round: number, when: string) => {
      for (const [i, conn] of conns.entries()) {
        stats.flowChecks++;
        const r = await wan.tcpSend(conn, `r${round}`, 2500);
        if (!r.ok || !(r.reply ?? '').endsWith(`|r${round}`))
          violation(round, `connection ${i} through a live lease broke ${when}: ${r.error ?? r.reply}`);
      }
    };

    await resumeAll(0);
    for (let round = 1; round <= ROUNDS; round++) {
      // a short lease with an open connection, expiring while portd is dead
      let short: { ev: Ev; conn: number } | null = null;
      if (round % EXPIRY_EVERY === 1) {
        const ev = await single(c, 'pcp', { proto: 'tcp', internalPort: 9300, suggestedPort: 29300, lifetime: 3 });
        if (ev.outcome === 'ack') {
          const r = await wan.tcpConnect(ADDR.gwWan, ev.extPort!);
          assert.ok(r.ok, `connect through the short lease: ${r.error}`);
          assert.ok((await wan.tcpSend(r.conn!, 'x')).ok);
          short = { ev, conn: r.conn! };
        }
      }
      // a trigger flow from a random LAN host (the rule is held by one host at a time)
      const flowFrom = [echoA, echoB, echoC][Math.floor(random() * 3)]!;
      void flowFrom.udpProbe(ADDR.wanHost, 7777, { data: `r${round}`, timeoutMs: 1000 }).then((r) => {
        if (r.ok) stats.triggerFlows++;
      });
      await new Promise((r) => setTimeout(r, 150 + Math.floor(random() * 1800)));
      // trigger leases as the table holds them just before the kill (a trigger has no client to answer)
      const triggersBefore = readTable().filter((r) => r.source === 'trigger');
      await portd.kill9();
      stats.kills++;
      await pauseAll();

      if (short) {
        // portd is dead: only the kernel can end the lease and its flow
        const due = short.ev.at + short.ev.lifetime! * 1000 + GRACE * 1000 + 1500;
        await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
        stats.expiredWhileDead++;
        const sent = await wan.tcpSend(short.conn, 'after-expiry', 1200);
        if (sent.ok)
          violation(
            round,
            `connection through the expired lease ${short.ev.extPort} still carries data with portd dead`,
          );
        else stats.flowsCutAtExpiry++;
        await wan.tcpClose(short.conn);
        const probe = await wan.tcpProbe(ADDR.gwWan, short.ev.extPort!, { timeoutMs: 800 });
        if (probe.ok)
          violation(round, `new connection to the expired lease ${short.ev.extPort} accepted with portd dead`);
        // every other acknowledged lease past its expiry is gone from the kernel too
        const k = await kernelState(lab);
        const now = Date.now();
        for (const t of told.values()) {
          if (t.uncertain || !t.present || t.latest + GRACE * 1000 + 1200 > now) continue;
          const el = k?.fwd.find(
            (e) =>
              e.protocol === t.proto &&
              Number(e.externalPort) === t.extPort &&
              e.internal === `${t.self}:${t.internalPort}`,
          );
          if (el)
            violation(
              round,
              `kernel still forwards ${t.proto} ${t.extPort} ${now - t.latest} ms after the lease's expiry ` +
                '(portd dead)',
            );
        }
        await flowsAlive(round, 'while portd was dead');
      }

      if (round % STARTUP_KILL_EVERY === 3) {
        // a kill while portd starts (reconcile on start in progress or just done)
        const starting = portd.start().catch(() => undefined);
        await new Promise((r) => setTimeout(r, 300 + Math.floor(random() * 700)));
        await portd.kill9();
        await starting;
        stats.kills++;
        stats.killsDuringStart++;
      }
      const logFrom = portd.logs.length;
      await portd.start();
      // the kill landed between a kernel batch and its commit (or during a reconcile): the start repaired it
      if (portd.since(logFrom, (l) => l.msg === 'dataplane reconciled on start' && l['drift'] !== 0).length > 0)
        stats.restartsWithDrift++;
      await checkAfterRestart(round);
      const after = new Set(readTable().map((r) => r.id));
      for (const t of triggersBefore) {
        if (t.expires_at !== null && t.expires_at < Date.now() + 1000) continue; // idle: may have ended
        stats.triggerLeasesChecked++;
        if (!after.has(t.id))
          violation(
            round,
            `trigger lease ${t.id} (${t.owner}, ${t.protocol} ${t.external_port}-${t.external_port_end}) active ` +
              'before the kill is gone',
          );
      }
      await flowsAlive(round, 'after the restart');
      assert.deepEqual(stats.violations, [], `after round ${round}`);
      if (performance.now() - t0 > 200_000) break; // bounded: never run away
      await resumeAll(round);
    }
    await pauseAll();
    // helpers of killed portd processes left behind (reparented to init) in the gateway namespace
    const pids = (await exec(null, ['ip', 'netns', 'pids', lab.gw])).stdout.split(/\s+/).filter(Boolean);
    orphans = [];
    for (const pid of pids) {
      const st = await exec(null, ['ps', '-o', 'ppid=,args=', '-p', pid]);
      if (/^\s*1\s/.test(st.stdout)) {
        stats.orphans++;
        orphans.push(st.stdout.trim().replace(/^1\s+/, ''));
      }
    }
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    process.stderr.write(
      `crash: seed ${SEED}, ${seconds} s, ${JSON.stringify({ ...stats, violations: stats.violations.length })}, ` +
        `refusals ${JSON.stringify(Object.fromEntries(refusedCodes))}\n`,
    );
    assert.deepEqual(stats.violations, []);
    assert.ok(stats.kills >= 20, `only ${stats.kills} kills`);
    assert.ok(stats.acks > 500, `only ${stats.acks} acknowledged requests`);
    assert.ok(stats.leasesChecked > 100 && stats.deletesChecked > 50, JSON.stringify(stats));
    assert.ok(stats.flowsCutAtExpiry >= 3, JSON.stringify(stats));
    assert.ok(stats.triggerLeasesChecked >= 5, JSON.stringify(stats));
  });

  // a killed portd must not leave its long-lived helpers behind: on a router whose supervisor restarts
  // only the main process (procd), each crash would add one. `nft -i` ends on EOF of its stdin; `conntrack -E`
  // and `ip monitor` are started through setpriv --pdeathsig KILL (src/child.ts).
  test('no helper process outlives a killed portd', () => {
    assert.ok(orphans !== null, 'the churn test ran');
    assert.deepEqual([...new Set(orphans)], []);
  });
});
