/**
 * Where portd's idle RSS goes (issue 17, footprint): one portd in the nftables namespace lab (or the loopback
 * default with --loopback), measured after --settle seconds like bench/footprint.ts, then broken down: VmRSS
 * with its anonymous and file-backed parts, the threads alive (names from /proc/<pid>/task/<tid>/comm), and
 * /proc/<pid>/smaps grouped by what each mapping is (the node binary, a shared library, [heap], anonymous
 * mappings of V8 and malloc). Repeats --runs times and prints the ranges. A tool for finding the next
 * megabyte, not a bench with a target: bench/footprint.ts is that.
 *
 *   node --import tsx bench/footprint/probe.ts [--cmd "node --flags dist/src/cli.js"] [--env K=V,K2=V2]
 *        [--settle 20] [--late 50] [--runs 2] [--loopback] [--leases 0] [--smaps] [--log copy-of-portd-log]
 *        [--json out.json]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanupAllSync, createBenchLab, onCleanup, quiesce, sweepStale } from '../compare/lab.js';
import { startPortd } from '../compare/daemons.js';
import { machineLoad, memOf, resolvePortdCommand } from './command.js';
import { LOOPBACK_HOSTS, pcpPreload, startLoopbackPortd } from './loopback.js';

const argS = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const has = (name: string) => process.argv.includes(`--${name}`);
const SETTLE_S = Number(argS('settle') ?? 20);
const RUNS = Number(argS('runs') ?? 2);
const LEASES = Number(argS('leases') ?? 0);
/** a second idle sample this long after ready (0: none): past the WAL checkpointer's due point (30 s) */
const LATE_S = Number(argS('late') ?? 0);
const STEM = argS('stem') ?? 'pdpr';
const ENV = Object.fromEntries(
  (argS('env') ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
const say = (s: string) => process.stderr.write(`probe: ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** the threads of a pid by name (`node` ×1, `libuv-worker` ×4, …) */
function threads(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    const n = readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
    out[n] = (out[n] ?? 0) + 1;
  }
  return out;
}

/** smaps Rss (KiB) grouped by mapping: the file's base name, [heap], [stack], anon (rw or rwx) */
function smaps(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let key = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const [, perms, path] = head;
      key = path ? `${path.replace(/^.*\//, '')} ${perms![0]}${perms![1]}${perms![2]}` : `anon ${perms}`;
      continue;
    }
    const m = /^Rss:\s+(\d+) kB/.exec(line);
    if (m) out[key] = (out[key] ?? 0) + Number(m[1]);
  }
  return Object.fromEntries(
    Object.entries(out)
      .filter(([, v]) => v >= 256)
      .sort((a, b) => b[1] - a[1]),
  );
}

interface Sample {
  rss: number;
  anon: number;
  file: number;
  threads: Record<string, number>;
  smaps?: Record<string, number>;
  withLeases?: { rss: number; anon: number; file: number } | null;
  late?: { rss: number; anon: number; file: number } | null;
}

async function once(argv: readonly string[], run: number): Promise<Sample> {
  const lab = await createBenchLab({ stem: `${STEM}${run}`, wanPrefix: '11.22.33', hosts: 32 });
  const dir = mkdtempSync(join(tmpdir(), 'portd-probe-'));
  const rm = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const envArgv = Object.keys(ENV).length ? ['env', ...Object.entries(ENV).map(([k, v]) => `${k}=${v}`)] : [];
  try {
    let pid: number;
    let stop: () => void;
    let logFile: string;
    if (has('loopback')) {
      ({ pid, logFile, stop } = await startLoopbackPortd(lab, dir, [...envArgv, ...argv]));
    } else {
      const d = await startPortd(lab, {
        dir,
        argv: [...envArgv, ...argv],
        readyMsg: 'portd ready',
        discover: false,
        logLevel: argS('log-level') ?? 'info',
      });
      pid = d.pid;
      logFile = d.logFile;
      stop = () => void d.stop();
    }
    // `env K=V node …` execs node: same pid
    await sleep(SETTLE_S * 1000);
    const m = memOf(pid)!;
    const s: Sample = { ...m, threads: threads(pid), ...(has('smaps') ? { smaps: smaps(pid) } : {}) };
    if (LATE_S > SETTLE_S) {
      await sleep((LATE_S - SETTLE_S) * 1000);
      s.late = memOf(pid);
    }
    if (LEASES > 0) {
      // the loopback portd listens on the gateway's lo: the generator runs there too
      await pcpPreload(lab, {
        server: has('loopback') ? '127.0.0.1' : lab.gwLan,
        hosts: has('loopback') ? LOOPBACK_HOSTS : lab.hosts,
        count: LEASES,
        ...(has('loopback') ? { ns: lab.gw } : {}),
      });
      await quiesce(lab.gw, { maxMs: 60_000 });
      await sleep(SETTLE_S * 1000);
      s.withLeases = memOf(pid);
    }
    stop();
    const keep = argS('log');
    if (keep) writeFileSync(`${keep}.${run}`, readFileSync(logFile));
    return s;
  } finally {
    await lab.teardown();
    rm();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  sweepStale(STEM);
  const cmd = resolvePortdCommand(argS('cmd'), say);
  say(`runs as: ${Object.keys(ENV).length ? JSON.stringify(ENV) + ' ' : ''}${cmd.argv.join(' ')}`);
  const samples: Sample[] = [];
  for (let i = 0; i < RUNS; i++) {
    const s = await once(cmd.argv, i);
    say(
      `run ${i + 1}: rss ${s.rss} (anon ${s.anon} + file ${s.file})` +
        (s.late ? `; at ${LATE_S} s: ${s.late.rss} (${s.late.anon}+${s.late.file})` : '') +
        (s.withLeases ? `; ${LEASES} leases: ${s.withLeases.rss} (${s.withLeases.anon}+${s.withLeases.file})` : '') +
        ` threads ${JSON.stringify(s.threads)}`,
    );
    samples.push(s);
  }
  const range = (k: 'rss' | 'anon' | 'file') => {
    const v = samples.map((s) => s[k]);
    return `${Math.min(...v)}–${Math.max(...v)}`;
  };
  const out = {
    cmd: cmd.label,
    env: ENV,
    loopback: has('loopback'),
    load: machineLoad(),
    rss: range('rss'),
    anon: range('anon'),
    file: range('file'),
    late: samples.map((s) => s.late?.rss ?? null),
    withLeases: samples.map((s) => s.withLeases?.rss ?? null),
    samples,
  };
  process.stdout.write(
    `${JSON.stringify({ ...out, samples: undefined })}\n` +
      (has('smaps') ? `${JSON.stringify(samples[samples.length - 1]?.smaps, null, 1)}\n` : ''),
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
    process.stderr.write(`probe: ${(e as Error).stack ?? e}\n`);
    cleanupAllSync();
    process.exit(1);
  });
