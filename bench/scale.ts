/**
 * Scale (root): portd holding 1,000 and then 100,000 active leases, started for real (`portd start`,
 * compiled like `npm run build`) in a namespace lab, with the nftables driver (the real figure) and the
 * memory driver (portd's own cost without the kernel's).
 *
 * Leases are preloaded by writing rows into the SQLite file before start, through the lease store's
 * own schema (src/leases/store.ts); portd then reconciles them into the kernel on start. Per size:
 *   - start-up: portd start → 'dataplane reconciled on start' (the log line's ms), and spawn → ready
 *   - RSS (VmRSS) after start, kernel elements
 *   - PCP MAP create latency p50/p99 at concurrency 1 and 32, and renew at 1 (fresh tcp ports)
 *   - a restart (SIGTERM, start again) with the kernel holding every element: reconcile ms, drift, ready
 * and with the large size, an expiry burst: 10,000 of the leases due within the same second, while a
 * client keeps sending PCP MAP requests (concurrency 1, 2 ms apart): its p50/p99/max before and during
 * the burst, how long the burst took (first to last 'lease expired' log line), and the kernel after it.
 *
 *   node --import tsx bench/scale.ts [--driver nftables|memory|both] [--leases 100000] [--small 1000]
 *                                    [--burst 10000] [--count 2000] [--burst-after 90] [--conntrack-path /bin/true]
 *                                    [--keep-logs] [--no-doc] [--json out.json]
 *                                    [--log-level debug] [--large-only]
 *                                    [--portd-node-args '--cpu-prof --cpu-prof-dir=/tmp/x']
 *                                    [--no-restart]
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore } from '../src/leases/store.js';
import { cleanupAllSync, createBenchLab, Loadgen, onCleanup, sweepStale, type PhaseStats } from './compare/lab.js';
import { buildPortd, logLines, portdMemory, startPortd, type PortdProcess } from './compare/daemons.js';
import { mdTable, writeSection } from './compare/doc.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const argS = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? dflt) : dflt;
};
const LARGE = arg('leases', 100_000);
const SMALL = arg('small', 1000);
const BURST = arg('burst', 10_000);
const COUNT = arg('count', 2000);
const BURST_AFTER_S = arg('burst-after', 90);
const DRIVERS =
  argS('driver', 'both') === 'both'
    ? (['nftables', 'memory'] as const)
    : [argS('driver', 'nftables') as 'nftables' | 'memory'];
/** e.g. /bin/true: the nftables driver without `conntrack -D` on ended leases (to isolate its cost) */
const CONNTRACK = argS('conntrack-path', '');
/** node options for portd itself, e.g. --portd-node-args --trace-gc (its output lands in the kept portd.log) */
const NODE_ARGS = argS('portd-node-args', '').split(' ').filter(Boolean);
/** portd's log level (debug shows every nft batch with its ms: diagnostics; the figures then include the logging) */
const LOG_LEVEL = argS('log-level', 'info');
/** skip the small size (diagnostic runs of the burst only) */
const LARGE_ONLY = process.argv.includes('--large-only');
/** skip the restart measurement (portd stopped and started again with the kernel holding the elements) */
const NO_RESTART = process.argv.includes('--no-restart');
const STEM = 'pdscl';
// 100k leases and a 10k expiry burst: the global caps (limits.*) raised so the bench measures scale, not refusals
const SCALE_LIMITS = ['limits: { maxActiveLeases: 0, maxEndedLeases: 0, pcpRequestsPerSecond: 0 }'];
const say = (s: string) => process.stderr.write(`scale: ${s}\n`);
const r1 = (x: number | null | undefined, d = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d;

/**
 * Writes `n` active PCP leases (half tcp, half udp, external ports from 10000, internal = external)
 * into a fresh database with the store's schema. The first `burst` udp leases expire within the
 * second starting at `burstAt` (epoch ms); the rest in two hours.
 */
async function preload(dbPath: string, n: number, burst: number, burstAt: number | null): Promise<number> {
  const t0 = performance.now();
  const store = openStore({ path: dbPath });
  const now = Date.now();
  const half = Math.ceil(n / 2);
  if (half > 65535 - 10000) throw new Error(`${n} leases do not fit in ports 10000-65535 of tcp and udp`);
  const tx = store.db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const udp = i >= half;
      const k = udp ? i - half : i;
      const port = 10000 + k;
      const host = `192.168.77.${100 + (k % 150)}`;
      const due = udp && burstAt !== null && k < burst ? burstAt + (k % 1000) : now + 7200_000;
      store.s.insert.run({
        id: `s${i.toString(16).padStart(10, '0')}`,
        source: 'pcp',
        protocol: udp ? 'udp' : 'tcp',
        external_address: '203.0.113.1',
        external_port: port,
        external_port_end: port,
        internal_address: host,
        internal_port: port,
        remote_address: null,
        remote_prefix: null,
        remote_port: null,
        owner: host,
        description: '',
        nonce: 'ab'.repeat(12),
        created_at: now,
        updated_at: now,
        expires_at: due,
        requested_lifetime: 7200,
        read_only: 0,
        rule: null,
      });
    }
  });
  tx();
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  await store.close();
  return Math.round(performance.now() - t0);
}

interface Phase {
  phase: string;
  concurrency: number;
  n: number;
  perSecond: number;
  p50ms: number | null;
  p99ms: number | null;
  maxms: number | null;
  errors: number;
}
const phase = (name: string, c: number, r: PhaseStats): Phase => {
  if (r.error) throw new Error(`${name}: ${r.error}`);
  return {
    phase: name,
    concurrency: c,
    n: r.n,
    perSecond: r.perSecond,
    p50ms: r.p50ms,
    p99ms: r.p99ms,
    maxms: r.maxms,
    errors: r.n - r.ok + (r.lost ?? 0) + r.unsent,
  };
};

function pct(xs: number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return r1(s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!, 3);
}

interface SizeResult {
  driver: string;
  leases: number;
  preloadMs: number;
  startup: { reconcileMs: number | null; activeAtStart: number | null; readyMs: number };
  rssMiB: number | null;
  rssWithChildrenMiB: number | null;
  kernelElements: number | null;
  heap: { heapUsedMiB: number | null; heapTotalMiB: number | null; externalMiB: number | null };
  phases: Phase[];
  /** a second start with the kernel holding the elements (null: --no-restart) */
  restart: {
    reconcileMs: number | null;
    drift: number | null;
    active: number | null;
    readyMs: number;
    rssMiB: number | null;
  } | null;
  burst?: {
    leases: number;
    dueAt: string;
    expiredLogged: number;
    firstExpiredMs: number | null;
    lastExpiredMs: number | null;
    before: { n: number; p50ms: number | null; p99ms: number | null; maxms: number | null };
    during: { n: number; p50ms: number | null; p99ms: number | null; maxms: number | null; windowMs: number };
    after: { n: number; p50ms: number | null; p99ms: number | null; maxms: number | null };
    sent: number;
    errors: number;
    activeAfter: number;
    kernelAfter: number | null;
  };
}

async function runSize(
  driver: 'nftables' | 'memory',
  leases: number,
  withBurst: boolean,
  cli: string,
): Promise<SizeResult> {
  const lab = await createBenchLab({ stem: `${STEM}${driver[0]}`, wanPrefix: '203.0.113', hosts: 40 });
  const dir = mkdtempSync(join(tmpdir(), `portd-scale-${driver}-`));
  const unclean = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  let d: PortdProcess | null = null;
  let g: Loadgen | null = null;
  try {
    const dbPath = join(dir, 'portd.sqlite');
    const burstAt = withBurst ? Date.now() + BURST_AFTER_S * 1000 : null;
    const preloadMs = await preload(dbPath, leases, withBurst ? BURST : 0, burstAt);
    say(`${driver} ${leases}: ${leases} rows written in ${preloadMs} ms; starting portd`);
    d = await startPortd(lab, {
      dir,
      cli,
      upnp: false,
      driver,
      timeoutMs: 300_000,
      nodeArgs: NODE_ARGS,
      logLevel: LOG_LEVEL,
      dataplane: CONNTRACK && driver === 'nftables' ? `conntrackPath: ${CONNTRACK}` : undefined,
      extra: SCALE_LIMITS,
    });
    say(
      `${driver} ${leases}: ready in ${d.readyMs} ms, reconcile ${d.reconcile?.ms} ms (${d.reconcile?.active} active)`,
    );
    await new Promise((r) => setTimeout(r, 2000));
    const rss = d.rss();
    const heap = await portdMemory(lab);
    const first = {
      reconcileMs: d.reconcile?.ms ?? null,
      activeAtStart: d.reconcile?.active ?? null,
      readyMs: d.readyMs,
    };
    const kernelElements = driver === 'nftables' ? await d.kernelMappings() : null;
    g = await Loadgen.start(lab);
    const hosts = lab.hosts.slice(0, 32);
    const pcp = (
      firstPort: number,
      count: number,
      concurrency: number,
      lifetime: number,
      extra: { gapMs?: number; samples?: boolean; maxMs?: number } = {},
    ) =>
      g!.pcp({
        server: d!.pcp.server,
        port: d!.pcp.port,
        hosts,
        proto: 6,
        firstPort,
        count,
        lifetime,
        concurrency,
        maxMs: extra.maxMs ?? 120_000,
        ...extra,
      });
    const phases: Phase[] = [];
    phases.push(phase('PCP MAP create', 1, await pcp(2000, COUNT, 1, 3600)));
    phases.push(phase('PCP MAP create', 32, await pcp(2000 + COUNT, COUNT, 32, 3600)));
    phases.push(phase('PCP MAP renew', 1, await pcp(2000, COUNT, 1, 7200)));
    // a restart (SIGTERM, start again): the kernel still holds every element, so the reconcile on start
    // should not list them (the driver counts the live-port sets instead) and finds no drift
    let restart: SizeResult['restart'] = null;
    if (!NO_RESTART) {
      g.stop();
      g = null;
      await d.stop();
      // startPortd appends to portd.log and waits for its ready line: the first run's log moves aside
      renameSync(d.logFile, join(dir, 'portd-first.log'));
      d = await startPortd(lab, {
        dir,
        cli,
        upnp: false,
        driver,
        timeoutMs: 300_000,
        nodeArgs: NODE_ARGS,
        logLevel: LOG_LEVEL,
        dataplane: CONNTRACK && driver === 'nftables' ? `conntrackPath: ${CONNTRACK}` : undefined,
        extra: SCALE_LIMITS,
      });
      const rl = logLines(d.logFile).find((l) => l['msg'] === 'dataplane reconciled on start');
      restart = {
        reconcileMs: rl ? Number(rl['ms']) : null,
        drift: rl ? Number(rl['drift']) : null,
        active: rl ? Number(rl['active']) : null,
        readyMs: d.readyMs,
        rssMiB: null,
      };
      await new Promise((r) => setTimeout(r, 2000));
      restart.rssMiB = r1((d.rss().self ?? NaN) / 1024);
      say(`${driver} ${leases}: restart ${JSON.stringify(restart)}`);
      g = await Loadgen.start(lab);
    }
    const out: SizeResult = {
      driver,
      leases,
      preloadMs,
      startup: first,
      rssMiB: r1((rss.self ?? NaN) / 1024),
      rssWithChildrenMiB: r1((rss.withChildren ?? NaN) / 1024),
      heap,
      kernelElements,
      phases,
      restart,
    };
    if (burstAt !== null) {
      const lead = burstAt - Date.now() - 3000;
      if (lead < 0)
        throw new Error(
          `the burst was due ${-lead} ms before the client could start: raise --burst-after (now ${BURST_AFTER_S} s)`,
        );
      say(`${driver} ${leases}: waiting ${Math.round(lead / 1000)} s for the burst of ${BURST} expiries`);
      await new Promise((r) => setTimeout(r, lead));
      // a client that keeps asking: creates on tcp ports 60000+ (free), 2 ms apart, from 3 s before the burst to ~9 s
      // after
      const r = await pcp(60000, 5000, 1, 3600, { gapMs: 2, samples: true, maxMs: 12_000 });
      if (r.error) throw new Error(`burst client: ${r.error}`);
      await new Promise((res) => setTimeout(res, 1000));
      const expired = logLines(d.logFile).filter((l) => l['msg'] === 'lease expired');
      const times = expired.map((l) => Number(l['time'])).filter(Number.isFinite);
      const first = times.length ? Math.min(...times) : null,
        last = times.length ? Math.max(...times) : null;
      const t0 = r.startedAtEpochMs ?? 0;
      const end = Math.max(burstAt + 1000, last ?? 0);
      const sel = (f: (at: number) => boolean) => (r.samples ?? []).filter(([rel]) => f(t0 + rel)).map(([, l]) => l);
      const stats = (xs: number[]) => ({ n: xs.length, p50ms: pct(xs, 50), p99ms: pct(xs, 99), maxms: pct(xs, 100) });
      const db = new Database(join(dir, 'portd.sqlite'), { readonly: true, fileMustExist: true });
      const activeAfter = (db.prepare(`SELECT count(*) AS n FROM leases WHERE state = 'active'`).get() as { n: number })
        .n;
      db.close();
      out.burst = {
        leases: BURST,
        dueAt: new Date(burstAt).toISOString(),
        expiredLogged: expired.length,
        firstExpiredMs: first === null ? null : first - burstAt,
        lastExpiredMs: last === null ? null : last - burstAt,
        before: stats(sel((at) => at < burstAt)),
        during: { ...stats(sel((at) => at >= burstAt && at <= end)), windowMs: end - burstAt },
        after: stats(sel((at) => at > end)),
        sent: r.n + (r.lost ?? 0),
        errors: r.n - r.ok + (r.lost ?? 0),
        activeAfter,
        kernelAfter: driver === 'nftables' ? await d.kernelMappings() : null,
      };
      say(`${driver} ${leases}: burst ${JSON.stringify(out.burst)}`);
    }
    return out;
  } finally {
    g?.stop();
    try {
      await d?.stop();
    } catch {
      /* teardown kills it */
    }
    await lab.teardown();
    if (process.argv.includes('--keep-logs')) say(`kept ${dir} (portd.log, portd.sqlite)`);
    else rmSync(dir, { recursive: true, force: true });
    unclean();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    say('needs root: portd runs in a network namespace (also with the memory driver)');
    process.exit(1);
  }
  const watchdog = setTimeout(() => {
    say('run exceeded 45 minutes; cleaning up');
    cleanupAllSync();
    process.exit(1);
  }, 45 * 60_000);
  watchdog.unref();
  sweepStale(STEM);
  const buildDir = mkdtempSync(join(tmpdir(), 'portd-scale-build-'));
  onCleanup(() => rmSync(buildDir, { recursive: true, force: true }));
  say('compiling portd (tsconfig.build.json) into a temporary directory');
  const cli = buildPortd(buildDir);
  const results: SizeResult[] = [];
  for (const driver of DRIVERS) {
    if (!LARGE_ONLY) results.push(await runSize(driver, SMALL, false, cli));
    results.push(await runSize(driver, LARGE, true, cli));
  }
  if (LARGE_ONLY) {
    console.log(JSON.stringify({ name: 'scale', results }, null, 2));
    const jp = argS('json', '');
    if (jp) writeFileSync(jp, JSON.stringify({ name: 'scale', results }, null, 2));
    clearTimeout(watchdog);
    return;
  }
  rmSync(buildDir, { recursive: true, force: true });
  const rows: Record<string, unknown>[] = [];
  for (const driver of DRIVERS) {
    const s = results.find((r) => r.driver === driver && r.leases === SMALL)!,
      l = results.find((r) => r.driver === driver && r.leases === LARGE)!;
    const ratio = (a: number | null | undefined, b: number | null | undefined) =>
      a == null || b == null || b === 0 ? '—' : `${r1(a / b, 2)}×`;
    const add = (metric: string, a: number | null | undefined, b: number | null | undefined, note = '') =>
      rows.push({
        driver,
        metric,
        [`${SMALL} leases`]: a ?? '—',
        [`${LARGE} leases`]: b ?? '—',
        [`${LARGE / 1000}k ÷ ${SMALL / 1000}k`]: ratio(b, a),
        note,
      });
    add(
      'start: reconcile ms (log line)',
      s.startup.reconcileMs,
      l.startup.reconcileMs,
      "'dataplane reconciled on start'",
    );
    add(
      'start: spawn → ready ms',
      s.startup.readyMs,
      l.startup.readyMs,
      'node start, config, database, reconcile, front-ends, admin',
    );
    if (s.restart && l.restart) {
      add(
        'restart: reconcile ms (kernel holds the elements)',
        s.restart.reconcileMs,
        l.restart.reconcileMs,
        `drift ${s.restart.drift} / ${l.restart.drift}; ${s.restart.active} / ${l.restart.active} active`,
      );
      add(
        'restart: spawn → ready ms',
        s.restart.readyMs,
        l.restart.readyMs,
        `RSS after: ${s.restart.rssMiB} / ${l.restart.rssMiB} MiB`,
      );
    }
    add('RSS MiB', s.rssMiB, l.rssMiB, `with children (nft -i): ${s.rssWithChildrenMiB} / ${l.rssWithChildrenMiB}`);
    add(
      'V8 heap used MiB (portd metrics)',
      s.heap.heapUsedMiB,
      l.heap.heapUsedMiB,
      `heap total: ${s.heap.heapTotalMiB} / ${l.heap.heapTotalMiB}; external: ${s.heap.externalMiB} / ` +
        `${l.heap.externalMiB}`,
    );
    if (driver === 'nftables') add('kernel map elements after start', s.kernelElements, l.kernelElements);
    for (const [p, c] of [
      ['PCP MAP create', 1],
      ['PCP MAP create', 32],
      ['PCP MAP renew', 1],
    ] as const) {
      const a = s.phases.find((x) => x.phase === p && x.concurrency === c),
        b = l.phases.find((x) => x.phase === p && x.concurrency === c);
      add(`${p} p50 ms, concurrency ${c}`, a?.p50ms, b?.p50ms);
      add(
        `${p} p99 ms, concurrency ${c}`,
        a?.p99ms,
        b?.p99ms,
        `/s: ${a?.perSecond} / ${b?.perSecond}; errors ${a?.errors} / ${b?.errors}`,
      );
    }
    if (l.burst) {
      const b = l.burst;
      rows.push({
        driver,
        metric: `expiry burst: ${b.leases} leases due within one second`,
        [`${SMALL} leases`]: '',
        [`${LARGE} leases`]:
          `${b.expiredLogged} expired, first +${b.firstExpiredMs} ` + `ms, last +${b.lastExpiredMs} ms after due`,
        [`${LARGE / 1000}k ÷ ${SMALL / 1000}k`]: '',
        note:
          'active after: ' +
          `${b.activeAfter}${b.kernelAfter !== null ? `, kernel elements after: ${b.kernelAfter}` : ''}`,
      });
      rows.push({
        driver,
        metric: 'client PCP p50 / p99 / max ms before the burst',
        [`${SMALL} leases`]: '',
        [`${LARGE} leases`]: `${b.before.p50ms} / ${b.before.p99ms} / ${b.before.maxms}`,
        [`${LARGE / 1000}k ÷ ${SMALL / 1000}k`]: '',
        note: `${b.before.n} requests`,
      });
      rows.push({
        driver,
        metric: 'client PCP p50 / p99 / max ms during the burst',
        [`${SMALL} leases`]: '',
        [`${LARGE} leases`]: `${b.during.p50ms} / ${b.during.p99ms} / ${b.during.maxms}`,
        [`${LARGE / 1000}k ÷ ${SMALL / 1000}k`]: '',
        note: `${b.during.n} requests in the ${b.during.windowMs} ms from due time to the last expiry`,
      });
      rows.push({
        driver,
        metric: 'client PCP p50 / p99 / max ms after the burst',
        [`${SMALL} leases`]: '',
        [`${LARGE} leases`]: `${b.after.p50ms} / ${b.after.p99ms} / ${b.after.maxms}`,
        [`${LARGE / 1000}k ÷ ${SMALL / 1000}k`]: '',
        note: `${b.after.n} requests; the client sent ${b.sent} in 12 s (unanswered: ${b.errors})`,
      });
    }
  }
  const meta = {
    conntrackPath: CONNTRACK || null,
    started: new Date().toISOString(),
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? '',
    kernel: os.release(),
    node: process.version,
    leases: LARGE,
    small: SMALL,
    burst: BURST,
    count: COUNT,
  };
  const json = JSON.stringify({ name: 'scale', meta, results, summary: rows }, null, 2);
  console.log(json);
  const jp = argS('json', '');
  if (jp) writeFileSync(jp, json);
  const md = [
    `### Scale: ${SMALL.toLocaleString('en')} vs ${LARGE.toLocaleString('en')} active leases (\`node --import ` +
      `tsx bench/scale.ts\`, ${meta.started.slice(0, 10)})`,
    '',
    `${meta.cpus} CPUs (${meta.cpu}), kernel ${meta.kernel}, node ${meta.node}. portd compiled ` +
      '(tsconfig.build.json), started for real in a namespace lab; leases written',
    'into the SQLite file before start (half tcp, half udp, PCP), reconciled into the kernel by portd on start. ' +
      'Latency phases: ' +
      `${COUNT} PCP MAP requests on fresh tcp ports from 32 LAN addresses, load generator ` +
      'bench/compare/loadgen.mjs on the LAN host.',
    ...(CONNTRACK
      ? [
          `**Diagnostic run: the nftables driver's dataplane.conntrackPath is ${CONNTRACK}, so ended leases do ` +
            `not run \`conntrack -D\`.**`,
        ]
      : []),
    `Expiry burst: ${BURST.toLocaleString('en')} of the ${LARGE.toLocaleString('en')} leases due within the same ` +
      'second while one client sends PCP MAP creates (concurrency 1, 2 ms apart).',
    '',
    mdTable(rows),
  ].join('\n');
  console.log(`\n${md}`);
  if (!process.argv.includes('--no-doc')) {
    const section = CONNTRACK ? 'scale-noconntrack' : 'scale';
    writeSection(section, md);
    say(`written to docs/benchmarks.md (section ${section})`);
  }
  clearTimeout(watchdog);
}

main().then(
  () => {
    cleanupAllSync();
    process.exit(0);
  },
  (e) => {
    say(`failed: ${(e as Error).stack ?? e}`);
    cleanupAllSync();
    process.exit(1);
  },
);
