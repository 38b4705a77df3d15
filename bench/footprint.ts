/**
 * `npm run bench -- footprint` (root): portd's memory, as a router runs it, beside miniupnpd's in the same run.
 *
 * Each daemon is started for real in its own namespace lab (bench/compare/lab.ts, WAN 11.22.33.0/24, which
 * miniupnpd requires and which exists only inside the namespaces): portd with the nftables driver, run as
 * the installed package (bench/footprint/command.ts: pkg/root/usr/bin/portd, else its stand-in), and the
 * loopback default (config/portd.yaml's memory driver, in a namespace of its own). Nobody touches a daemon
 * before it is measured (no UPnP description fetch, no admin request). Figures (VmRSS, and its anonymous
 * and file-backed parts, /proc/<pid>/status; RSS does not depend on the machine's load):
 *   - ready: right after the `portd ready` line (miniupnpd: its pid file)
 *   - idle: --samples samples 10 s apart from --settle seconds on (default 40: past the WAL checkpointer's
 *     due point at 30 s and V8's memory reducer); the table gives their range, the ratios use the largest
 *   - 10k: after --leases PCP MAPs from a separate load generator on the LAN host, then the same samples
 * Beside them the daemon's CPU time per MAP of the preload (/proc/<pid>/stat), to show a memory change did not
 * make requests dearer, and the machine's load before and after.
 * Ratios to the anchors: the targets (issue 17: idle ≤ 60 MiB, ≤ 80 MiB with 10,000 leases) and miniupnpd.
 *
 *   node --import tsx bench/footprint.ts [--cmd "node --flags dist/src/cli.js"] [--leases 10000] [--settle 40]
 *                                        [--samples 3]
 *                                        [--no-miniupnpd] [--no-loopback] [--json out.json]
 *                                        [--miniupnpd-seconds 300]
 * miniupnpd's preload is bounded in time (--miniupnpd-seconds): its cost per mapping grows with its rules
 * (it made 3,562 of 10,000 in 600 s on a loaded 2-CPU VM); its row gives the count it reached.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { printTable } from './lib.js';
import { cleanupAllSync, createBenchLab, onCleanup, quiesce, sweepStale, type BenchLab } from './compare/lab.js';
import { ensureMiniupnpd, startMiniupnpd, startPortd } from './compare/daemons.js';
import { machineLoad, memOf, resolvePortdCommand } from './footprint/command.js';
import { LOOPBACK_HOSTS, pcpPreload, startLoopbackPortd } from './footprint/loopback.js';

const argS = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const argN = (name: string, d: number) => Number(argS(name) ?? d);
const has = (name: string) => process.argv.includes(`--${name}`);
const LEASES = argN('leases', 10_000);
const SETTLE_S = argN('settle', 40);
const SAMPLES = Math.max(1, argN('samples', 3));
const MINIUPNPD_S = argN('miniupnpd-seconds', 300);
const TARGET = { idle: 60, leases: 80 } as const;
// namespaces are named <stem><part><g|l|w>; a second run at the same time needs its own (--stem, letters only)
const STEM = argS('stem') ?? 'pdfp';
const say = (s: string) => process.stderr.write(`footprint: ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Mem = { rss: number; anon: number; file: number } | null;
interface Result {
  daemon: string;
  command: string;
  ready: Mem;
  /** the largest of the idle samples (by rss) */
  idle: Mem;
  idleSamples: Mem[];
  leases: number;
  withLeases: Mem;
  withLeasesSamples: Mem[];
  /** the daemon's CPU time (user + system) per MAP of the preload, µs */
  cpuUsPerMap?: number;
  /** portd: its `nft -i` and other children, MiB */
  childrenMiB?: number;
  preload?: { perSecond: number; ok: number; lost: number | undefined };
}

function childrenMiB(pid: number): number {
  let kib = 0;
  try {
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean))
      kib += (memOf(Number(c))?.rss ?? 0) * 1024;
  } catch {
    /* gone */
  }
  return Math.round((kib / 1024) * 10) / 10;
}

/** SAMPLES samples of a pid, the first SETTLE_S seconds from now, then 10 s apart */
async function samples(pid: number): Promise<Mem[]> {
  const out: Mem[] = [];
  await sleep(SETTLE_S * 1000);
  for (let i = 0; i < SAMPLES; i++) {
    if (i > 0) await sleep(10_000);
    out.push(memOf(pid));
  }
  return out;
}
const largest = (m: Mem[]): Mem => m.reduce((a, b) => ((b?.rss ?? 0) > (a?.rss ?? 0) ? b : a), null);
const rangeOf = (m: Mem[]) => {
  const v = m.map((x) => x?.rss ?? NaN);
  return Math.min(...v) === Math.max(...v) ? `${v[0]}` : `${Math.min(...v)}–${Math.max(...v)}`;
};

/** user + system CPU seconds of a pid so far (/proc/<pid>/stat, clock ticks of 1/100 s) */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /, '')
      .split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}
const usPer = (cpu: number, n: number) => (n > 0 ? Math.round((cpu * 1e6) / n) : undefined);

/** LEASES PCP MAPs from the lab's LAN hosts to the gateway */
async function preload(lab: BenchLab, concurrency: number, maxMs?: number) {
  const r = await pcpPreload(lab, {
    server: lab.gwLan,
    hosts: lab.hosts,
    count: LEASES,
    concurrency,
    ...(maxMs ? { maxMs } : {}),
  });
  return { perSecond: r.perSecond, ok: r.ok, lost: r.lost };
}

async function portdInLab(argv: readonly string[], label: string): Promise<Result> {
  const lab = await createBenchLab({ stem: `${STEM}p`, wanPrefix: '11.22.33', hosts: 32 });
  const dir = mkdtempSync(join(tmpdir(), 'portd-footprint-'));
  const rm = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  try {
    const d = await startPortd(lab, { dir, argv, readyMsg: 'portd ready', discover: false, logLevel: 'info' });
    const ready = memOf(d.pid);
    const idleSamples = await samples(d.pid);
    say(`portd (nftables) idle ${rangeOf(idleSamples)} MiB; ${LEASES} PCP MAPs from the LAN host…`);
    const cpu0 = cpuSeconds(d.pid);
    const pre = await preload(lab, 32);
    const cpuUsPerMap = usPer(cpuSeconds(d.pid) - cpu0, pre.ok);
    await quiesce(lab.gw, { maxMs: 60_000 });
    const withLeasesSamples = await samples(d.pid);
    const res: Result = {
      daemon: 'portd (nftables, lab)',
      command: label,
      ready,
      idle: largest(idleSamples),
      idleSamples,
      leases: pre.ok,
      withLeases: largest(withLeasesSamples),
      withLeasesSamples,
      ...(cpuUsPerMap ? { cpuUsPerMap } : {}),
      childrenMiB: childrenMiB(d.pid),
      preload: pre,
    };
    await d.stop();
    return res;
  } finally {
    await lab.teardown();
    rm();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * the loopback default (config/portd.yaml, memory driver) in a namespace with only lo: its ports collide with
 * nobody's
 */
async function portdLoopback(argv: readonly string[], label: string): Promise<Result> {
  const lab = await createBenchLab({ stem: `${STEM}o`, wanPrefix: '11.22.33', hosts: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'portd-footprint-lo-'));
  const rm = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  try {
    const { pid, stop } = await startLoopbackPortd(lab, dir, argv);
    const ready = memOf(pid);
    const idleSamples = await samples(pid);
    const cpu0 = cpuSeconds(pid);
    const r = await pcpPreload(lab, { server: '127.0.0.1', hosts: LOOPBACK_HOSTS, count: LEASES, ns: lab.gw });
    const cpuUsPerMap = usPer(cpuSeconds(pid) - cpu0, r.ok);
    const withLeasesSamples = await samples(pid);
    stop();
    return {
      daemon: 'portd (loopback default, memory driver)',
      command: label,
      ready,
      idle: largest(idleSamples),
      idleSamples,
      leases: r.ok,
      withLeases: largest(withLeasesSamples),
      withLeasesSamples,
      ...(cpuUsPerMap ? { cpuUsPerMap } : {}),
      preload: { perSecond: r.perSecond, ok: r.ok, lost: r.lost },
    };
  } finally {
    await lab.teardown();
    rm();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function miniupnpd(): Promise<Result> {
  const version = ensureMiniupnpd(say);
  const lab = await createBenchLab({ stem: `${STEM}m`, wanPrefix: '11.22.33', hosts: 32 });
  const dir = mkdtempSync(join(tmpdir(), 'portd-footprint-mu-'));
  const rm = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  try {
    const d = await startMiniupnpd(lab, dir);
    const ready = memOf(d.pid);
    const idleSamples = await samples(d.pid);
    const idle = largest(idleSamples);
    say(
      `miniupnpd idle ${idle?.rss} MiB; ${LEASES} PCP MAPs (concurrency 4: its cost per create grows with its rules; ` +
        `at most ${MINIUPNPD_S} s)…`,
    );
    const cpu0 = cpuSeconds(d.pid);
    const pre = await preload(lab, 4, MINIUPNPD_S * 1000);
    const cpuUsPerMap = usPer(cpuSeconds(d.pid) - cpu0, pre.ok);
    say(`miniupnpd made ${pre.ok} of ${LEASES} mappings`);
    const withLeasesSamples = await samples(d.pid);
    await d.stop();
    return {
      daemon: 'miniupnpd',
      command: version,
      ready,
      idle,
      idleSamples,
      leases: pre.ok,
      withLeases: largest(withLeasesSamples),
      withLeasesSamples,
      ...(cpuUsPerMap ? { cpuUsPerMap } : {}),
      preload: pre,
    };
  } finally {
    await lab.teardown();
    rm();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the footprint bench needs root (network namespaces)');
  sweepStale(STEM);
  const loadBefore = machineLoad();
  const cmd = resolvePortdCommand(argS('cmd'), say);
  say(`portd runs as: ${cmd.argv.join(' ')}`);
  const results: Result[] = [await portdInLab(cmd.argv, cmd.label)];
  if (!has('no-loopback')) results.push(await portdLoopback(cmd.argv, cmd.label));
  if (!has('no-miniupnpd')) results.push(await miniupnpd());
  const mu = results.find((r) => r.daemon === 'miniupnpd');
  const ratio = (a: number | undefined, b: number | undefined) => (a && b ? Math.round((a / b) * 100) / 100 : null);
  const rows = results.map((r) => ({
    daemon: r.daemon,
    'ready MiB': r.ready?.rss,
    'idle MiB': rangeOf(r.idleSamples),
    'largest (anon+file)': `${r.idle?.rss} (${r.idle?.anon}+${r.idle?.file})`,
    'idle ÷ 60': ratio(r.idle?.rss, TARGET.idle),
    'idle ÷ miniupnpd': ratio(r.idle?.rss, mu?.idle?.rss),
    leases: r.leases,
    'with leases MiB': rangeOf(r.withLeasesSamples),
    'largest (anon+file) ': `${r.withLeases?.rss} (${r.withLeases?.anon}+${r.withLeases?.file})`,
    'with ÷ 80': ratio(r.withLeases?.rss, TARGET.leases),
    'with ÷ miniupnpd': ratio(r.withLeases?.rss, mu?.withLeases?.rss),
    'children MiB': r.childrenMiB ?? '',
    'CPU µs/MAP': r.cpuUsPerMap ?? '',
  }));
  const out = {
    bench: 'footprint',
    node: process.version,
    settleSeconds: SETTLE_S,
    samples: SAMPLES,
    load: { before: loadBefore, after: machineLoad() },
    target: TARGET,
    results,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  printTable(
    `footprint: VmRSS of each daemon (portd: ${cmd.label}); anchors: the targets and miniupnpd; ` +
      `load ${out.load.before.loadavg1} → ${out.load.after.loadavg1} on ${out.load.after.cpus} CPUs`,
    rows,
  );
  const json = argS('json');
  if (json) writeFileSync(json, JSON.stringify(out, null, 2) + '\n');
}

main()
  .then(() => {
    cleanupAllSync();
    process.exit(0);
  })
  .catch((e) => {
    process.stderr.write(`footprint: ${(e as Error).stack ?? e}\n`);
    cleanupAllSync();
    process.exit(1);
  });
