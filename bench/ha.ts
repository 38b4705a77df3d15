/**
 * Failover time over 20 kills (issue 18 item 5): the HA pair lab (test/lab/ha-lab.ts: gateways A and B under
 * keepalived VRRPv3 unicast, advert_int 0.2, nopreempt; PostgreSQL in a namespace of its own) running the real
 * `portd start` with `ha.enabled` on each gateway (test/lab/ha-portd.ts, as test/lab/ha-clients.test.ts runs
 * it), one mapping made by natpmpc on the LAN host through the LAN virtual address, then per series `--kills`
 * rounds of:
 *   1. the failure on the active node: `kill` (kill -9 of its portd) or `links` (lan0 and wan0 down);
 *   2. from that instant, three clocks at once, each a bounded poll:
 *      reach — the WAN host's TCP probes of the mapped port (one sent every 25 ms, overlapping, 250 ms timeout
 *              each) answered by the LAN host, counting only probes sent once the virtual addresses are on the
 *              peer (before that a killed node's kernel still forwards: its elements outlive it, so an early
 *              answer is not the peer's);
 *      vip   — the LAN virtual address on the peer (`ip addr`, every 25 ms);
 *      fence — the peer's portd logging `ha: node is active` (it took the ha_fence generation): the line's own
 *              time (pino's epoch ms) minus the failure's instant, the log polled every 25 ms;
 *   3. the failed node back (portd started again, or links up): its latest role line `ha: node is standby`, and
 *      its kernel's TCP forwards (`nft list map inet portd fwd4` in its namespace) equal to the table, before
 *      the next round; the peer is now the active node, so the roles alternate.
 * Printed: JSON (every round), and per series n, min, median, p90, max of each clock with its ratio to the 3 s
 * budget, and the load average (this machine is shared: wall-clock figures carry the load beside them).
 *
 *   node --import tsx bench/ha.ts [--kills 20] [--series kill,links] [--json out.json]
 *   npm run bench -- ha
 */
import { rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { createHaLab, HA, type NodeName } from '../test/lab/ha-lab.js';
import {
  isRole,
  kernelTcp,
  PortdNode,
  portdTrackScript,
  startPair,
  tableTcp,
  writePortdConfig,
} from '../test/lab/ha-portd.js';
import { type Agent, hasTool, labAvailable } from '../test/lab/harness.js';
import { percentile, printTable, round } from './lib.js';

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

const TOKEN = 'bench-ha-admin-token-0123456789';

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
  if (!hasTool('natpmpc')) throw new Error('bench ha needs natpmpc (apt-get install natpmpc)');
  const lab = await createHaLab({ advertInt: 0.2, trackScript: portdTrackScript, verbose: !!process.env['LAB_LOG'] });
  // the harness removes the namespaces (and everything in them) on SIGINT/SIGTERM and exits; the lab's temp dir
  // (PostgreSQL's data, ≈ 40 MiB) goes with the exit too
  const removeDir = () => rmSync(lab.dir, { recursive: true, force: true });
  process.on('exit', removeDir);
  const nodes = {
    A: new PortdNode(lab.ns.A, writePortdConfig(lab, 'A', TOKEN)),
    B: new PortdNode(lab.ns.B, writePortdConfig(lab, 'B', TOKEN)),
  } satisfies Record<NodeName, PortdNode>;
  // an interrupted run: no portd outlives the bench (the harness removes the namespaces)
  process.on('exit', () => {
    for (const n of Object.values(nodes)) if (n.running) n.child?.kill('SIGKILL');
  });
  const rounds: Round[] = [];
  const load: Record<string, { before: number[]; after: number[] }> = {};
  try {
    const waitFor = async (what: string, ms: number, stepMs: number, ok: () => Promise<boolean>) => {
      const t0 = Date.now();
      for (let i = 0; i < Math.ceil(ms / stepMs) + 1 && Date.now() - t0 < ms; i++) {
        if (await ok()) return Date.now() - t0;
        await sleep(stepMs);
      }
      throw new Error(`${what}: not within ${ms} ms`);
    };
    const kernelMatches = async (node: NodeName) => {
      try {
        return (await kernelTcp(lab, node)).join() === (await tableTcp(lab)).join();
      } catch {
        return false; // its table not (yet) there
      }
    };

    const wan: Agent = await lab.agent(lab.ns.wan, 'wan');
    const client: Agent = await lab.agent(lab.ns.client, 'client');
    if (!(await client.listen('tcp', INT_PORT)).ok) throw new Error('the LAN host could not listen');
    await startPair(lab, nodes);
    // the mapping, made by a real client through the LAN virtual address (NAT-PMP, an hour: longer than the run)
    const n = await lab.exec(
      lab.ns.client,
      ['natpmpc', '-g', HA.vipLan, '-a', String(EXT_PORT), String(INT_PORT), 'tcp', '3600'],
      { timeoutMs: 15_000 },
    );
    if (!/Mapped public port \d+ protocol TCP/.test(n.stdout)) throw new Error(`natpmpc through A: ${n.stdout}`);
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
          if ((await lab.vipHolder()) !== failed || nodes[failed].role() !== 'active')
            throw new Error(`${failed} is not the active node before the round`);
          let vipAt: number | null = null;
          const fromPeer = nodes[peer].lines.length;
          const fromFailed = nodes[failed].lines.length;
          const t0 = Date.now();
          if (series === 'kill') nodes[failed].child?.kill('SIGKILL');
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
            for (let k = 0; k < CLOCK_MS / 25 && within(); k++) {
              const l = nodes[peer].lines.slice(fromPeer).find(isRole('active'));
              if (l) return l.time - t0;
              await sleep(25);
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
          if (series === 'kill') {
            await nodes[failed].kill9(); // gone (the SIGKILL above), its exit seen
            nodes[failed].start();
          } else await lab.linksUp(failed);
          // a standby line of this run of the node (start() clears the lines) after the failure, and the latest
          const from = series === 'kill' ? 0 : fromFailed;
          const standby = async () =>
            nodes[failed].role() === 'standby' && nodes[failed].lines.slice(from).some(isRole('standby'));
          await waitFor(`${failed} standby`, 40_000, 50, standby);
          await waitFor(`${failed}'s kernel matches the table`, 10_000, 50, () => kernelMatches(failed));
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
    for (const n of Object.values(nodes)) await n.kill9();
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
  const out = { bench: 'ha', node: 'portd start', budgetMs: BUDGET_MS, advertInt: 0.2, kills: KILLS, summary, rounds };
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
