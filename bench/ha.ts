/**
 * Failover time over 20 kills (issue 18 item 5): the HA pair lab (test/lab/ha-lab.ts: gateways A and B under
 * keepalived VRRPv3 unicast, advert_int 0.2, nopreempt; PostgreSQL in a namespace of its own), one mapping made
 * through the active node, then per series `--kills` rounds of:
 *   1. the failure on the active node: `kill` (SIGKILL of its node process) or `links` (lan0 and wan0 down);
 *   2. from that instant, three clocks at once, each a bounded poll:
 *      reach — the WAN host's TCP probes of the mapped port (one sent every 25 ms, overlapping, 250 ms timeout
 *              each) answered by the LAN host, counting only probes sent once the virtual addresses are on the
 *              peer (before that a killed node's kernel still forwards: its elements outlive it, so an early
 *              answer is not the peer's);
 *      vip   — the LAN virtual address on the peer (`ip addr`, every 25 ms);
 *      fence — the peer's node reporting `active` (it took the ha_fence generation), every 50 ms;
 *   3. the failed node back (restarted, or links up) as the standby, and its kernel's entries equal to the table
 *      before the next round; the peer is now the active node, so the roles alternate.
 * Printed: JSON (every round), and per series n, min, median, p90, max of each clock with its ratio to the 3 s
 * budget, and the load average (this machine is shared: wall-clock figures carry the load beside them).
 *
 * The node is the lab's (test/lab/ha-node.ts: portd's dataplane, fence, follower and role controller around a
 * stand-in writer), started by `nodeCommand` below: the one place to change when the lab runs the real
 * `portd start` with `ha.enabled`.
 *
 *   node --import tsx bench/ha.ts [--kills 20] [--series kill,links] [--json out.json]
 *   npm run bench -- ha
 */
import { rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHaLab, HA, type HaLab, type NodeName } from '../test/lab/ha-lab.js';
import {
  type Agent,
  hasTool,
  JsonLineChannel,
  labAvailable,
  type LabProcess,
  startLabProcess,
} from '../test/lab/harness.js';
import { percentile, printTable, round } from './lib.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const argOf = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const KILLS = Math.max(1, Math.min(100, Number(argOf('kills') ?? 20)));
const SERIES = (argOf('series') ?? 'kill,links').split(',').filter((s): s is Series => s === 'kill' || s === 'links');
const JSON_OUT = argOf('json') ?? null;
const BUDGET_MS = 3000; // issue 18 item 4: the WAN host reaches the mapped port through the peer within 3 s
const CLOCK_MS = 10_000; // each clock gives up after this long (the round then counts as a failure)
const EXT_PORT = 8100;
const INT_PORT = 9100;

type Series = 'kill' | 'links';

interface Reply {
  ok: boolean;
  error?: string;
  role?: string;
  entries?: string[];
}

/**
 * How a node is started: the one place to change when the lab runs the real portd. The check keepalived runs
 * every second finds the process by the node name its command line ends with.
 */
const nodeCommand = (lab: HaLab, node: NodeName) => ({
  script: join(HERE, '..', 'test', 'lab', 'ha-node.ts'),
  args: [lab.pgUrl, lab.fifo(node), node],
});
const trackScript = (node: NodeName) => `/usr/bin/pgrep -f ha-node.ts.+.${node}$`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const peerOf = (n: NodeName): NodeName => (n === 'A' ? 'B' : 'A');

interface Round {
  series: Series;
  round: number;
  failed: NodeName;
  reachMs: number | null;
  vipMs: number | null;
  fenceMs: number | null;
  /** the longest time between two answered probes around the failure (0: never unreachable) */
  gapMs: number | null;
  /** the failed node back as the standby with its kernel equal to the table, from its restart / links up */
  backMs: number | null;
  error?: string;
}

async function main(): Promise<void> {
  const avail = labAvailable();
  if (!avail.ok) throw new Error(`bench ha needs the lab: ${avail.why}`);
  if (!hasTool('keepalived')) throw new Error('bench ha needs keepalived (apt-get install keepalived)');
  const lab = await createHaLab({ advertInt: 0.2, trackScript, verbose: !!process.env['LAB_LOG'] });
  // the harness removes the namespaces (and everything in them) on SIGINT/SIGTERM and exits; the lab's temp dir
  // (PostgreSQL's data, ≈ 40 MiB) goes with the exit too
  const removeDir = () => rmSync(lab.dir, { recursive: true, force: true });
  process.on('exit', removeDir);
  const nodes: Partial<Record<NodeName, { proc: LabProcess; ch: JsonLineChannel<Reply> }>> = {};
  const rounds: Round[] = [];
  const load: Record<string, { before: number[]; after: number[] }> = {};
  try {
    const startNode = async (node: NodeName) => {
      const c = nodeCommand(lab, node);
      const proc = await startLabProcess(lab.ns[node], c.script, c.args, { timeoutMs: 40_000 });
      nodes[node] = { proc, ch: new JsonLineChannel<Reply>(proc.child, (w) => ({ ok: false, error: `node ${w}` })) };
    };
    const call = (node: NodeName, msg: Record<string, unknown>, ms = 5000): Promise<Reply> =>
      nodes[node]?.ch.call(msg, ms) ?? Promise.resolve({ ok: false, error: `${node} not running` });
    const waitFor = async (what: string, ms: number, stepMs: number, ok: () => Promise<boolean>) => {
      const t0 = Date.now();
      for (let i = 0; i < Math.ceil(ms / stepMs) + 1 && Date.now() - t0 < ms; i++) {
        if (await ok()) return Date.now() - t0;
        await sleep(stepMs);
      }
      throw new Error(`${what}: not within ${ms} ms`);
    };
    const tableEntries = async () =>
      (
        await lab.sql(
          `SELECT protocol || '/' || external_port || '>' || internal_address || ':' || internal_port
           FROM leases WHERE state = 'active'`,
        )
      ).sort();
    const kernelMatches = async (node: NodeName) =>
      ((await call(node, { op: 'kernel' })).entries ?? []).join() === (await tableEntries()).join();
    const isRole = async (node: NodeName, role: string) => (await call(node, { op: 'status' })).role === role;

    const wan: Agent = await lab.agent(lab.ns.wan, 'wan');
    const client: Agent = await lab.agent(lab.ns.client, 'client');
    if (!(await client.listen('tcp', INT_PORT)).ok) throw new Error('the LAN host could not listen');
    await startNode('A');
    await startNode('B');
    await lab.startKeepalived('A');
    await waitFor('A active', 15_000, 100, () => isRole('A', 'active'));
    await lab.startKeepalived('B');
    await waitFor('B standby', 15_000, 100, () => isRole('B', 'standby'));
    const g = await call('A', {
      op: 'grant',
      leaseId: `lease-${EXT_PORT}`,
      externalPort: EXT_PORT,
      internalAddress: HA.client,
      internalPort: INT_PORT,
      lifetime: 3600,
    });
    if (!g.ok) throw new Error(`grant through A: ${g.error}`);
    const probe = async () => {
      const r = await wan.tcpProbe(HA.vipWan, EXT_PORT, { timeoutMs: 250, data: 'x' });
      return r.ok && r.reply === `client|${HA.wanHost}|x`;
    };
    await waitFor('the mapping through A', 5000, 50, probe);
    await waitFor("B's kernel follows", 5000, 50, () => kernelMatches('B'));

    let active: NodeName = 'A';
    for (const series of SERIES) {
      load[series] = { before: loadavg().map((x) => round(x, 2)), after: [] };
      for (let i = 0; i < KILLS; i++) {
        const failed = active;
        const peer = peerOf(failed);
        const r: Round = {
          series,
          round: i + 1,
          failed,
          reachMs: null,
          vipMs: null,
          fenceMs: null,
          gapMs: null,
          backMs: null,
        };
        rounds.push(r);
        try {
          if ((await lab.vipHolder()) !== failed || !(await isRole(failed, 'active')))
            throw new Error(`${failed} is not the active node before the round`);
          let vipAt: number | null = null;
          const t0 = Date.now();
          if (series === 'kill') nodes[failed]!.proc.child.kill('SIGKILL');
          else await lab.linksDown(failed);
          const within = () => Date.now() - t0 < CLOCK_MS;
          const vip = (async () => {
            for (let k = 0; k < CLOCK_MS / 25 && within(); k++) {
              if ((await lab.vipHolder()) === peer) {
                vipAt = Date.now();
                return vipAt - t0;
              }
              await sleep(25);
            }
            return null;
          })();
          const fence = (async () => {
            for (let k = 0; k < CLOCK_MS / 50 && within(); k++) {
              if (await isRole(peer, 'active')) return Date.now() - t0;
              await sleep(50);
            }
            return null;
          })();
          // a probe every 25 ms without waiting for the previous one (each times out after 250 ms): a probe lost
          // in the switch-over does not hide the next 250 ms
          const reach = (async () => {
            const oks: number[] = [];
            // an object, not a `let`: it is set in the probes' callbacks
            const hit: { at: number | null } = { at: null };
            const inFlight: Promise<void>[] = [];
            for (let k = 0; k < CLOCK_MS / 25 && within() && hit.at === null; k++) {
              const sent = Date.now();
              inFlight.push(
                probe().then((ok) => {
                  if (!ok) return;
                  const at = Date.now();
                  oks.push(at);
                  if (vipAt !== null && sent >= vipAt && (hit.at === null || at < hit.at)) hit.at = at;
                }),
              );
              await sleep(25);
            }
            await Promise.all(inFlight);
            const until = hit.at;
            if (until === null) return { ms: null, gap: null };
            const seen = [t0, ...oks.filter((x) => x <= until).sort((x, y) => x - y)];
            const gap = Math.max(...seen.slice(1).map((x, j) => x - seen[j]!));
            return { ms: until - t0, gap };
          })();
          const [v, f, a] = await Promise.all([vip, fence, reach]);
          Object.assign(r, { vipMs: v, fenceMs: f, reachMs: a.ms, gapMs: a.gap });
          if (v === null || f === null || a.ms === null) throw new Error('a clock ran out');
          // the failed node back as the standby, its kernel equal to the table
          const tb = Date.now();
          if (series === 'kill') await startNode(failed);
          else await lab.linksUp(failed);
          await waitFor(`${failed} standby`, 20_000, 100, () => isRole(failed, 'standby'));
          await waitFor(`${failed}'s kernel matches the table`, 10_000, 100, () => kernelMatches(failed));
          r.backMs = Date.now() - tb;
          // keepalived on the failed node is BACKUP again (its check passes) before the next failure
          await sleep(1500);
          active = peer;
        } catch (e) {
          r.error = (e as Error).message;
          process.stderr.write(`bench ha: ${series} round ${i + 1}: ${r.error}\n`);
          break;
        } finally {
          process.stderr.write(
            `bench ha: ${series} ${i + 1}/${KILLS} ${failed}→${peer}: reach ${r.reachMs} vip ${r.vipMs} ` +
              `fence ${r.fenceMs} back ${r.backMs} ms\n`,
          );
        }
      }
      load[series]!.after = loadavg().map((x) => round(x, 2));
      if (rounds.some((x) => x.error)) break;
    }
  } finally {
    for (const n of Object.values(nodes)) await n?.proc.stop();
    await lab.teardown();
  }
  report(rounds, load);
  if (rounds.some((x) => x.error)) process.exitCode = 1;
}

function report(rounds: Round[], load: Record<string, { before: number[]; after: number[] }>): void {
  const stats = (xs: (number | null)[]) => {
    const s = xs.filter((x): x is number => x !== null).sort((a, b) => a - b);
    const q = (p: number) => (s.length ? percentile(s, p) : null);
    return { n: s.length, min: s[0] ?? null, median: q(50), p90: q(90), max: s.at(-1) ?? null };
  };
  const summary = Object.keys(load).map((series) => {
    const rs = rounds.filter((r) => r.series === series && !r.error);
    return {
      series,
      rounds: rs.length,
      failures: rounds.filter((r) => r.series === series && r.error).length,
      reach: stats(rs.map((r) => r.reachMs)),
      vip: stats(rs.map((r) => r.vipMs)),
      fence: stats(rs.map((r) => r.fenceMs)),
      gap: stats(rs.map((r) => r.gapMs)),
      back: stats(rs.map((r) => r.backMs)),
      load: load[series],
    };
  });
  const out = { bench: 'ha', budgetMs: BUDGET_MS, advertInt: 0.2, kills: KILLS, summary, rounds };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  if (JSON_OUT) writeFileSync(JSON_OUT, `${JSON.stringify(out, null, 2)}\n`);
  const ratio = (x: number | null) => (x === null ? '' : String(round(x / BUDGET_MS, 2)));
  const rows = summary.flatMap((s) =>
    (['reach', 'vip', 'fence', 'gap', 'back'] as const).map((k) => {
      const st = s[k];
      return {
        series: s.series,
        clock: k,
        n: st.n,
        minMs: st.min ?? '',
        medianMs: st.median ?? '',
        p90Ms: st.p90 ?? '',
        maxMs: st.max ?? '',
        'median÷3s': k === 'back' ? '' : ratio(st.median),
        'p90÷3s': k === 'back' ? '' : ratio(st.p90),
        'max÷3s': k === 'back' ? '' : ratio(st.max),
        load: `${s.load?.before.join(' ')} → ${s.load?.after.join(' ')}`,
      };
    }),
  );
  printTable(`HA failover over ${KILLS} rounds per series (advert_int 0.2 s, budget 3 s)`, rows);
}

await main();
