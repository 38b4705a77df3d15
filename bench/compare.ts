/**
 * `npm run bench:compare` (root): the same load against portd and against miniupnpd, in one run,
 * each daemon started for real in its own, identical namespace lab (bench/compare/lab.ts):
 *
 *   - the load generator's own ceiling: trivial UDP and HTTP echo servers in the gateway namespace
 *   - PCP MAP creates/s and p50/p99 at concurrency 1 and 32 (fresh ports, table starting empty)
 *   - SOAP AddPortMapping/s at concurrency 1 and 8: keep-alive and one connection per request for portd,
 *     one connection per request for miniupnpd (it closes the connection after every answer)
 *   - with 10,000 mappings present (preloaded by PCP at concurrency 4, in steps of 1,000, whose rate is
 *     recorded): RSS (/proc/<pid>/status VmRSS), kernel mappings, PCP create / PCP delete / SOAP add /
 *     SOAP delete latency at concurrency 1
 *
 * Prints the JSON result and a markdown table with portd/miniupnpd ratios, and writes both into
 * docs/benchmarks.md (section "compare"). Every phase is bounded in count and time; the whole run by
 * --max-minutes; namespaces (with their nft tables) and processes are removed on exit, failure and signals.
 *
 *   node --import tsx bench/compare.ts [--count 1000] [--soap-count 500] [--preload 10000] [--at-size 300]
 *                                      [--only portd|miniupnpd] [--max-minutes 60] [--no-doc] [--json out.json]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cleanupAllSync,
  createBenchLab,
  Loadgen,
  onCleanup,
  quiesce,
  startEcho,
  sweepStale,
  type BenchLab,
  type PhaseStats,
} from './compare/lab.js';
import { buildPortd, ensureMiniupnpd, startMiniupnpd, startPortd, type Daemon } from './compare/daemons.js';
import { mdTable, writeSection } from './compare/doc.js';
import { execFileSync } from 'node:child_process';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const argS = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const COUNT = arg('count', 1000);
const SOAP_COUNT = arg('soap-count', 500);
const PRELOAD = arg('preload', 10_000);
const AT_SIZE = arg('at-size', 300);
/** preload concurrency: miniupnpd's cost per create grows with the mappings it holds (~120 ms at 5k), so 32 in flight
 * would exceed the generator's 3 s retransmission timer and collapse into retries */
const PRELOAD_C = arg('preload-concurrency', 4);
const MAX_MINUTES = arg('max-minutes', 75);
const ONLY = argS('only');
const PHASE_MS = 300_000;
const STEM = 'pdcmp';
/** node <build>/src/cli.js (compiled like `npm run build`), or bin/portd.js through tsx with --tsx */
let PORTD_CLI: string | undefined;

const say = (s: string) => process.stderr.write(`compare: ${s}\n`);

interface Row {
  phase: string;
  concurrency: number;
  mode?: string;
  present: number;
  n: number;
  ok: number;
  perSecond: number;
  p50ms: number | null;
  p99ms: number | null;
  maxms: number | null;
  errors: number;
  timeouts?: number;
  quietAfterMs?: number;
}

function row(phase: string, concurrency: number, present: number, r: PhaseStats, mode?: string): Row {
  if (r.error) throw new Error(`${phase}: ${r.error}`);
  const errors =
    Object.entries(r.codes)
      .filter(([k]) => k !== '0' && k !== '200')
      .reduce((a, [, v]) => a + v, 0) +
    (r.lost ?? 0) +
    r.unsent;
  return {
    phase,
    concurrency,
    ...(mode ? { mode } : {}),
    present,
    n: r.n,
    ok: r.ok,
    perSecond: r.perSecond,
    p50ms: r.p50ms,
    p99ms: r.p99ms,
    maxms: r.maxms,
    errors,
    ...(r.timeouts !== undefined ? { timeouts: r.timeouts } : {}),
  };
}

const envelope = (st: string, action: string, args: string) =>
  '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
  `s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} ` +
  `xmlns:u="${st}">${args}</u:${action}></s:Body></s:Envelope>`;
const addBody = (st: string) =>
  envelope(
    st,
    'AddPortMapping',
    '<NewRemoteHost></NewRemoteHost><NewExternalPort>{PORT}</NewExternalPort><NewProtocol>TCP</NewProtocol>' +
      '<NewInternalPort>{PORT}</NewInternalPort><NewInternalClient>{HOST}</NewInternalClient>' +
      '<NewEnabled>1</NewEnabled><NewPortMappingDescription>bench</NewPortMappingDescription>' +
      '<NewLeaseDuration>3600</NewLeaseDuration>',
  );
const delBody = (st: string) =>
  envelope(
    st,
    'DeletePortMapping',
    '<NewRemoteHost></NewRemoteHost><NewExternalPort>{PORT}</NewExternalPort><NewProtocol>TCP</NewProtocol>',
  );

// LAN client addresses: PCP phases use 32 hosts; each SOAP phase its own 16 (portd limits a LAN host to
// 50 SOAP requests/s, burst 200 — not configurable — so no phase may send more than ~150 per host)
const PCP_HOSTS = (lab: BenchLab) => lab.hosts.slice(0, 32);
const soapHosts = (lab: BenchLab, set: number) => lab.hosts.slice(32 + 16 * set, 48 + 16 * set);

async function ceiling(): Promise<Row[]> {
  const lab = await createBenchLab({ stem: `${STEM}e`, wanPrefix: '203.0.113', hosts: 120 });
  try {
    const echo = await startEcho(lab, lab.gw, lab.gwLan);
    const g = await Loadgen.start(lab);
    const rows: Row[] = [];
    const hosts = PCP_HOSTS(lab);
    rows.push(
      row(
        'UDP echo (PCP-sized)',
        1,
        0,
        await g.pcp({
          server: lab.gwLan,
          port: echo.udp,
          hosts,
          proto: 6,
          firstPort: 10000,
          count: COUNT * 2,
          lifetime: 3600,
          concurrency: 1,
          maxMs: PHASE_MS,
        }),
      ),
    );
    rows.push(
      row(
        'UDP echo (PCP-sized)',
        32,
        0,
        await g.pcp({
          server: lab.gwLan,
          port: echo.udp,
          hosts,
          proto: 6,
          firstPort: 10000,
          count: COUNT * 2,
          lifetime: 3600,
          concurrency: 32,
          maxMs: PHASE_MS,
        }),
      ),
    );
    const url = `http://${lab.gwLan}:${echo.http}/ctl`;
    const st = 'urn:schemas-upnp-org:service:WANIPConnection:1';
    let set = 0;
    for (const keepAlive of [true, false])
      for (const c of [1, 8]) {
        rows.push(
          row(
            'HTTP echo (SOAP-sized)',
            c,
            0,
            await g.soap({
              url,
              soapAction: `${st}#AddPortMapping`,
              template: addBody(st),
              hosts: soapHosts(lab, set++ % 4),
              firstPort: 20000,
              count: SOAP_COUNT * 2,
              concurrency: c,
              keepAlive,
              maxMs: PHASE_MS,
            }),
            keepAlive ? 'keep-alive' : 'close',
          ),
        );
      }
    g.stop();
    echo.stop();
    return rows;
  } finally {
    await lab.teardown();
  }
}

interface DaemonResult {
  name: string;
  version: string;
  tsxIdleRssKiB?: { self: number | null; withChildren: number | null };
  rssKiB: {
    idle: { self: number | null; withChildren: number | null };
    atPreload: { self: number | null; withChildren: number | null };
    end: { self: number | null; withChildren: number | null };
  };
  kernelMappingsAtPreload: number;
  preload: {
    reached: number;
    seconds: number;
    steps: { present: number; perSecond: number; p99ms: number | null; errors: number }[];
  };
  phases: Row[];
  startMs?: number;
}

async function runDaemon(name: 'portd' | 'miniupnpd', version: string): Promise<DaemonResult> {
  const lab = await createBenchLab({
    stem: `${STEM}${name === 'portd' ? 'p' : 'm'}`,
    wanPrefix: name === 'portd' ? '203.0.113' : '11.22.33',
    hosts: 200,
  });
  const dir = mkdtempSync(join(tmpdir(), `portd-compare-${name}-`));
  const unclean = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  let d: Daemon | null = null;
  let g: Loadgen | null = null;
  try {
    const t0 = performance.now();
    d = name === 'portd' ? await startPortd(lab, { dir, cli: PORTD_CLI }) : await startMiniupnpd(lab, dir);
    const startMs = Math.round(performance.now() - t0);
    say(`${name} up (pid ${d.pid}, ${startMs} ms); control ${d.soap.url} (${d.soap.serviceType})`);
    g = await Loadgen.start(lab);
    await new Promise((r) => setTimeout(r, 500));
    const idle = d.rss();
    const phases: Row[] = [];
    // between phases, wait until the gateway namespace is idle: what a daemon does after answering
    // (portd: conntrack -D for ended leases) is charged to the phase that caused it, not the next one
    const add = async (r: Row) => {
      phases.push(r);
      r.quietAfterMs = await quiesce(lab.gw);
    };
    await quiesce(lab.gw);
    const pcp = (firstPort: number, count: number, concurrency: number, lifetime: number, proto: 6 | 17 = 6) =>
      g!.pcp({
        server: d!.pcp.server,
        port: d!.pcp.port,
        hosts: PCP_HOSTS(lab),
        proto,
        firstPort,
        count,
        lifetime,
        concurrency,
        maxMs: PHASE_MS,
      });
    const soap = (
      action: 'AddPortMapping' | 'DeletePortMapping',
      firstPort: number,
      count: number,
      concurrency: number,
      keepAlive: boolean,
      set: number,
    ) =>
      g!.soap({
        url: d!.soap.url,
        soapAction: `${d!.soap.serviceType}#${action}`,
        template: action === 'AddPortMapping' ? addBody(d!.soap.serviceType) : delBody(d!.soap.serviceType),
        hosts: soapHosts(lab, set),
        firstPort,
        count,
        concurrency,
        keepAlive,
        maxMs: PHASE_MS,
      });

    // --- throughput, table starting empty ---
    say(`${name}: PCP creates`);
    await add(row('PCP MAP create', 1, 0, await pcp(10000, COUNT, 1, 3600)));
    await add(row('PCP MAP create', 32, COUNT, await pcp(10000 + COUNT, COUNT, 32, 3600)));
    await add(row('PCP MAP delete', 32, 2 * COUNT, await pcp(10000, 2 * COUNT, 32, 0)));
    const modes = name === 'portd' ? [true, false] : [false];
    let set = 0;
    for (const keepAlive of modes) {
      say(`${name}: SOAP ${keepAlive ? 'keep-alive' : 'close'}`);
      const mode = keepAlive ? 'keep-alive' : 'close';
      const base = 20000;
      await add(
        row('SOAP AddPortMapping', 1, 0, await soap('AddPortMapping', base, SOAP_COUNT, 1, keepAlive, set), mode),
      );
      await add(
        row(
          'SOAP AddPortMapping',
          8,
          SOAP_COUNT,
          await soap('AddPortMapping', base + SOAP_COUNT, SOAP_COUNT, 8, keepAlive, set + 1),
          mode,
        ),
      );
      await add(
        row(
          'SOAP DeletePortMapping',
          8,
          2 * SOAP_COUNT,
          await soap('DeletePortMapping', base, SOAP_COUNT, 8, keepAlive, set),
          mode,
        ),
      );
      await add(
        row(
          'SOAP DeletePortMapping',
          8,
          SOAP_COUNT,
          await soap('DeletePortMapping', base + SOAP_COUNT, SOAP_COUNT, 8, keepAlive, set + 1),
          mode,
        ),
      );
      set += 2;
    }

    // --- preload to PRELOAD mappings (udp, so the measured tcp ports stay free) ---
    say(`${name}: preloading ${PRELOAD} mappings by PCP at concurrency ${PRELOAD_C}`);
    const steps: DaemonResult['preload']['steps'] = [];
    const p0 = performance.now();
    let reached = 0;
    const step = Math.max(1, Math.min(1000, PRELOAD));
    for (let present = 0; present < PRELOAD && performance.now() - p0 < 35 * 60_000; ) {
      const n = Math.min(step, PRELOAD - present);
      const r = await pcp(30000 + present, n, PRELOAD_C, 86400, 17);
      if (r.error) throw new Error(`preload: ${r.error}`);
      present += n;
      reached += r.ok;
      const errors = r.n - r.ok + (r.lost ?? 0) + r.unsent;
      steps.push({ present, perSecond: r.perSecond, p99ms: r.p99ms, errors });
      say(`${name}: ${present} present, ${r.perSecond}/s, p99 ${r.p99ms} ms${errors ? `, ${errors} errors` : ''}`);
    }
    const preloadSeconds = Math.round((performance.now() - p0) / 100) / 10;
    await quiesce(lab.gw);
    await new Promise((r) => setTimeout(r, 1000));
    const atPreload = d.rss();
    const kernel = await d.kernelMappings();
    say(`${name}: ${kernel} mappings in the kernel, RSS ${atPreload.self} KiB`);

    // --- latency with PRELOAD present, concurrency 1 ---
    say(`${name}: latency with ${reached} present`);
    await add(row('PCP MAP create', 1, reached, await pcp(50000, AT_SIZE, 1, 3600)));
    await add(row('PCP MAP delete', 1, reached + AT_SIZE, await pcp(50000, AT_SIZE, 1, 0)));
    const ka = name === 'portd';
    await add(
      row(
        'SOAP AddPortMapping',
        1,
        reached,
        await soap('AddPortMapping', 55000, AT_SIZE, 1, ka, set),
        ka ? 'keep-alive' : 'close',
      ),
    );
    await add(
      row(
        'SOAP DeletePortMapping',
        1,
        reached + AT_SIZE,
        await soap('DeletePortMapping', 55000, AT_SIZE, 1, ka, set),
        ka ? 'keep-alive' : 'close',
      ),
    );
    const end = d.rss();
    return {
      name,
      version,
      startMs,
      rssKiB: { idle, atPreload, end },
      kernelMappingsAtPreload: kernel,
      preload: { reached, seconds: preloadSeconds, steps },
      phases,
    };
  } finally {
    g?.stop();
    try {
      await d?.stop();
    } catch (e) {
      say(`stopping ${name}: ${(e as Error).message}`);
    }
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
    unclean();
  }
}

/** idle RSS of portd run the way a checkout runs it (bin/portd.js → tsx), for comparison with the build */
async function portdTsxIdle(): Promise<{ self: number | null; withChildren: number | null }> {
  const lab = await createBenchLab({ stem: `${STEM}t`, wanPrefix: '203.0.113', hosts: 4 });
  const dir = mkdtempSync(join(tmpdir(), 'portd-compare-tsx-'));
  try {
    const d = await startPortd(lab, { dir });
    await new Promise((r) => setTimeout(r, 1000));
    const rss = d.rss();
    await d.stop();
    return rss;
  } finally {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------- the report ----------

const r1 = (x: number | null | undefined, d = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d;
const mib = (kib: number | null) => (kib === null ? null : r1(kib / 1024));
function find(
  rows: Row[] | undefined,
  phase: string,
  c: number,
  mode?: string,
  present?: 'empty' | 'loaded',
): Row | undefined {
  return rows?.find(
    (r) =>
      r.phase === phase &&
      r.concurrency === c &&
      (mode === undefined || r.mode === mode) &&
      (present === undefined || (present === 'loaded' ? r.present >= PRELOAD / 2 : r.present < PRELOAD / 2)),
  );
}

export function summaryTable(res: {
  ceiling: Row[];
  portd?: DaemonResult;
  miniupnpd?: DaemonResult;
}): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const ratio = (a: number | null | undefined, b: number | null | undefined) =>
    a == null || b == null || b === 0 ? null : r1(a / b, 2);
  const add = (
    metric: string,
    p: number | null | undefined,
    m: number | null | undefined,
    ceil: number | null | undefined,
    note = '',
  ) =>
    out.push({
      metric,
      portd: p ?? '—',
      miniupnpd: m ?? '—',
      'portd / miniupnpd': ratio(p, m) ?? '—',
      'generator ceiling': ceil ?? '—',
      note,
    });
  const P = res.portd?.phases,
    M = res.miniupnpd?.phases,
    C = res.ceiling;
  for (const c of [1, 32]) {
    const p = find(P, 'PCP MAP create', c, undefined, 'empty'),
      m = find(M, 'PCP MAP create', c, undefined, 'empty'),
      e = find(C, 'UDP echo (PCP-sized)', c);
    add(
      `PCP MAP creates/s, concurrency ${c}`,
      p?.perSecond,
      m?.perSecond,
      e?.perSecond,
      `table ${p?.present ?? 0}→${(p?.present ?? 0) + COUNT}`,
    );
    add(`PCP MAP create p99 ms, concurrency ${c}`, p?.p99ms, m?.p99ms, e?.p99ms);
  }
  for (const c of [1, 8]) {
    const pk = find(P, 'SOAP AddPortMapping', c, 'keep-alive', 'empty'),
      pc = find(P, 'SOAP AddPortMapping', c, 'close', 'empty'),
      m = find(M, 'SOAP AddPortMapping', c, 'close', 'empty');
    const ek = find(C, 'HTTP echo (SOAP-sized)', c, 'keep-alive'),
      ec = find(C, 'HTTP echo (SOAP-sized)', c, 'close');
    add(
      `SOAP AddPortMapping/s, concurrency ${c}`,
      pk?.perSecond,
      m?.perSecond,
      ek?.perSecond,
      'portd keep-alive (what it supports) vs miniupnpd one connection per request (all it supports)',
    );
    add(
      `SOAP AddPortMapping/s, concurrency ${c}, both one connection per request`,
      pc?.perSecond,
      m?.perSecond,
      ec?.perSecond,
    );
    add(`SOAP AddPortMapping p99 ms, concurrency ${c}`, pk?.p99ms, m?.p99ms, ek?.p99ms, 'portd keep-alive');
  }
  const pl = res.portd?.preload.reached,
    ml = res.miniupnpd?.preload.reached;
  for (const [phase, label] of [
    ['PCP MAP delete', 'PCP MAP delete'],
    ['SOAP DeletePortMapping', 'SOAP DeletePortMapping'],
    ['PCP MAP create', 'PCP MAP create'],
    ['SOAP AddPortMapping', 'SOAP AddPortMapping'],
  ] as const) {
    const p = find(P, phase, 1, undefined, 'loaded'),
      m = find(M, phase, 1, undefined, 'loaded');
    add(
      `${label} p50 ms with ${PRELOAD} mappings present`,
      p?.p50ms,
      m?.p50ms,
      null,
      `present: portd ${p?.present ?? '—'}, miniupnpd ${m?.present ?? '—'}`,
    );
    add(`${label} p99 ms with ${PRELOAD} mappings present`, p?.p99ms, m?.p99ms, null);
  }
  add(
    'RSS MiB, idle',
    mib(res.portd?.rssKiB.idle.self ?? null),
    mib(res.miniupnpd?.rssKiB.idle.self ?? null),
    null,
    'portd: the node process running the compiled build' +
      (res.portd?.tsxIdleRssKiB
        ? `; through tsx (bin/portd.js in a checkout): ${mib(res.portd.tsxIdleRssKiB.self)} MiB`
        : ''),
  );
  add(
    `RSS MiB with ${PRELOAD} mappings`,
    mib(res.portd?.rssKiB.atPreload.self ?? null),
    mib(res.miniupnpd?.rssKiB.atPreload.self ?? null),
    null,
    `mappings reached: portd ${pl ?? '—'}, miniupnpd ${ml ?? '—'}`,
  );
  add(
    `RSS MiB with ${PRELOAD} mappings, with child processes`,
    mib(res.portd?.rssKiB.atPreload.withChildren ?? null),
    mib(res.miniupnpd?.rssKiB.atPreload.withChildren ?? null),
    null,
    'portd keeps one `nft -i` (structure, ranges) and writes elements over netlink; miniupnpd talks netlink itself',
  );
  add(
    `kernel mappings with ${PRELOAD} present`,
    res.portd?.kernelMappingsAtPreload,
    res.miniupnpd?.kernelMappingsAtPreload,
    null,
    'portd: map elements; miniupnpd: DNAT rules',
  );
  add(
    `time to preload ${PRELOAD} by PCP, concurrency ${PRELOAD_C} (s)`,
    res.portd?.preload.seconds,
    res.miniupnpd?.preload.seconds,
    null,
  );
  return out;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    say('needs root (network namespaces, nftables, apt-get)');
    process.exit(1);
  }
  const watchdog = setTimeout(() => {
    say(`run exceeded --max-minutes ${MAX_MINUTES}; cleaning up`);
    cleanupAllSync();
    process.exit(1);
  }, MAX_MINUTES * 60_000);
  watchdog.unref();
  sweepStale(STEM);
  const miniVersion = ONLY === 'portd' ? '' : ensureMiniupnpd(say);
  const nftVersion = execFileSync('nft', ['--version'], { encoding: 'utf8' }).trim();
  const started = new Date().toISOString();
  say('generator ceiling (echo servers)');
  const ceil = await ceiling();
  const res: { ceiling: Row[]; portd?: DaemonResult; miniupnpd?: DaemonResult } = { ceiling: ceil };
  if (ONLY !== 'miniupnpd') {
    if (!process.argv.includes('--tsx')) {
      const buildDir = mkdtempSync(join(tmpdir(), 'portd-compare-build-'));
      onCleanup(() => rmSync(buildDir, { recursive: true, force: true }));
      say('compiling portd (tsconfig.build.json) into a temporary directory');
      PORTD_CLI = buildPortd(buildDir);
    }
    res.portd = await runDaemon('portd', `0.1.0 (nftables driver, ${PORTD_CLI ? 'compiled JavaScript' : 'tsx'})`);
    if (PORTD_CLI) res.portd.tsxIdleRssKiB = await portdTsxIdle();
  }
  if (ONLY !== 'portd') res.miniupnpd = await runDaemon('miniupnpd', miniVersion);
  const table = summaryTable(res);
  const meta = {
    started,
    host: {
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model ?? '',
      kernel: os.release(),
      node: process.version,
      nft: nftVersion,
      load: os.loadavg().map((x) => r1(x, 2)),
    },
    count: COUNT,
    soapCount: SOAP_COUNT,
    preload: PRELOAD,
    atSize: AT_SIZE,
  };
  const out = { name: 'compare', meta, ...res, summary: table };
  const json = JSON.stringify(out, null, 2);
  console.log(json);
  const jsonPath = argS('json');
  if (jsonPath) writeFileSync(jsonPath, json);
  const md = [
    `### portd vs miniupnpd, side by side (\`npm run bench:compare\`, ${started.slice(0, 10)})`,
    '',
    `${meta.host.cpus} CPUs (${meta.host.cpu}), kernel ${meta.host.kernel}, node ${meta.host.node}, ` +
      `${nftVersion}; ${miniVersion || 'miniupnpd not run'}.`,
    'Each daemon runs for real in its own, identical namespace lab (gateway, one LAN host with 200 addresses, ' +
      'one WAN host);',
    'the load generator (bench/compare/loadgen.mjs, plain node, the same client for both) runs on the LAN host. ' +
      'Phases run in the order listed, table starting empty;',
    `PCP phases: ${COUNT} requests, 32 LAN source addresses; SOAP phases: ${SOAP_COUNT} requests, 16 LAN source ` +
      `addresses each; "with ${PRELOAD} present": ${AT_SIZE} requests at concurrency 1 after preloading ${PRELOAD} ` +
      `UDP mappings by PCP at concurrency ${PRELOAD_C}. PCP client: 3 s timeout (RFC 6887's initial retransmission ` +
      'time), 2 retries, latency from the first send.',
    'Ratio = portd ÷ miniupnpd: above 1 is better for the "/s" rows, below 1 is better for ms and MiB rows.',
    '',
    mdTable(table),
    '',
    `PCP MAP create rate while the table grows (the preload, concurrency ${PRELOAD_C}, 1,000 requests per step):`,
    '',
    mdTable(
      (res.portd ?? res.miniupnpd)?.preload.steps.map((st, i) => {
        const m = res.miniupnpd?.preload.steps[i],
          p = res.portd?.preload.steps[i];
        return {
          'mappings held after the step': st.present,
          'portd /s': p?.perSecond ?? '—',
          'portd p99 ms': p?.p99ms ?? '—',
          'miniupnpd /s': m?.perSecond ?? '—',
          'miniupnpd p99 ms': m?.p99ms ?? '—',
        };
      }) ?? [],
    ),
    '',
    '<details><summary>every phase (JSON rows)</summary>',
    '',
    '```json',
    JSON.stringify({ ceiling: res.ceiling, portd: res.portd, miniupnpd: res.miniupnpd }, null, 1),
    '```',
    '</details>',
  ].join('\n');
  console.log(`\n${md}`);
  if (!process.argv.includes('--no-doc')) {
    writeSection('compare', md);
    say('written to docs/benchmarks.md (section compare)');
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
