/**
 * `npm run bench -- cold-start` (root): the first requests after a cold start, from a real client's view.
 *
 * In a namespace lab (bench/compare/lab.ts: gateway, LAN host with many addresses, WAN host), for each
 * phase and run: a fresh portd (empty database, its nft table deleted) is started as the installed package
 * runs (bench/footprint/command.ts), with the real nftables driver; once it logs `portd ready`, a separate
 * load generator process on the LAN host (bench/compare/loadgen.mjs) sends the first requests:
 *   - PCP MAP, --count fresh mappings, at concurrency 1 and 32 (targets: ≥ 1,800/s; ≥ 4,000/s, p99 < 10 ms,
 *     no timeouts)
 *   - SOAP AddPortMapping, --soap-count, at concurrency 1 and 8, with keep-alive and with one connection per
 *     request (miniupnpc's way) (targets: ≥ 600/s; ≥ 1,500/s), after the client fetched the description
 * The generator's own ceiling is measured in the same run: trivial UDP/HTTP echo servers in the gateway
 * namespace answering the same packets (bench/compare/echo.mjs). Each figure is printed with its ratio to
 * the ceiling and to its target. The configuration switches the per-client and global PCP and SOAP rate
 * limits off: they cap one generator on purpose (that is what they are for), they are not what is measured.
 * The machine's load average is recorded before and after (the rates are load-sensitive; RSS is not).
 *
 *   node --import tsx bench/cold-start.ts [--cmd "…"] [--runs 3] [--count 2000] [--soap-count 1000] [--only pcp|soap]
 *                                         [--c N] [--phase TEXT] [--stem letters] [--json out.json] [--warmup N]
 *
 * --warm: after the cold requests, as many again (fresh ports) to the same portd, reported beside them: what the
 * same request path does once warm, so a figure short of its target shows whether the cold start or the path is
 * what is missing. --timeline: the latency of each request by its place in the phase (the first tick, windows
 * of 100: median and worst), to find where a p99 comes from.
 *
 * --warmup N sets portd's `warmup` key (PCP MAPs and SOAP adds run against scratch state before `portd ready`;
 * 0 = none); without it the configuration's default applies. The A/B of docs/benchmarks.md ("Cold start") used it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { printTable } from './lib.js';
import {
  cleanupAllSync,
  createBenchLab,
  Loadgen,
  namespaceCpuMs,
  onCleanup,
  startEcho,
  sweepStale,
  type BenchLab,
  type PhaseStats,
} from './compare/lab.js';
import { startPortd } from './compare/daemons.js';
import { machineLoad, resolvePortdCommand } from './footprint/command.js';

const argS = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const argN = (name: string, d: number) => Number(argS(name) ?? d);
const RUNS = argN('runs', 3);
const COUNT = argN('count', 2000);
const SOAP_COUNT = argN('soap-count', 1000);
const PHASE_MS = 120_000;
/** --only pcp | soap: a subset of the phases (e.g. to compare node flags quickly) */
const ONLY = argS('only');
const STEM = argS('stem') ?? 'pdcs';
const WARMUP = argS('warmup');
const WARM = process.argv.includes('--warm');
const TIMELINE = process.argv.includes('--timeline');
const say = (s: string) => process.stderr.write(`cold-start: ${s}\n`);

interface Phase {
  name: string;
  kind: 'pcp' | 'soap';
  concurrency: number;
  keepAlive?: boolean;
  target: { perSecond: number; p99ms?: number };
}
const ALL_PHASES: Phase[] = [
  { name: 'PCP MAP', kind: 'pcp', concurrency: 1, target: { perSecond: 1800 } },
  { name: 'PCP MAP', kind: 'pcp', concurrency: 32, target: { perSecond: 4000, p99ms: 10 } },
  { name: 'SOAP AddPortMapping keep-alive', kind: 'soap', concurrency: 1, keepAlive: true, target: { perSecond: 600 } },
  {
    name: 'SOAP AddPortMapping keep-alive',
    kind: 'soap',
    concurrency: 8,
    keepAlive: true,
    target: { perSecond: 1500 },
  },
  { name: 'SOAP AddPortMapping close', kind: 'soap', concurrency: 1, keepAlive: false, target: { perSecond: 600 } },
  { name: 'SOAP AddPortMapping close', kind: 'soap', concurrency: 8, keepAlive: false, target: { perSecond: 1500 } },
];

const envelope = (st: string, action: string, args: string) =>
  '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
  's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
  `<s:Body><u:${action} xmlns:u="${st}">${args}</u:${action}></s:Body></s:Envelope>`;
const addBody = (st: string) =>
  envelope(
    st,
    'AddPortMapping',
    '<NewRemoteHost></NewRemoteHost><NewExternalPort>{PORT}</NewExternalPort><NewProtocol>TCP</NewProtocol>' +
      '<NewInternalPort>{PORT}</NewInternalPort><NewInternalClient>{HOST}</NewInternalClient>' +
      '<NewEnabled>1</NewEnabled>' +
      '<NewPortMappingDescription>bench</NewPortMappingDescription><NewLeaseDuration>3600</NewLeaseDuration>',
  );

/** --c N: only the phases of that concurrency (e.g. to profile one phase under --cmd "perf record …") */
const ONLY_C = argS('c');
/** --phase TEXT: only the phases whose name contains it (e.g. keep-alive) */
const ONLY_NAME = argS('phase');
const PHASES = ALL_PHASES.filter(
  (p) =>
    (!ONLY || p.kind === ONLY) &&
    (ONLY_C === undefined || p.concurrency === Number(ONLY_C)) &&
    (ONLY_NAME === undefined || p.name.includes(ONLY_NAME)),
);

const pcpHosts = (lab: BenchLab) => lab.hosts.slice(0, 32);
const soapHosts = (lab: BenchLab) => lab.hosts.slice(32, 64);

function job(lab: BenchLab, p: Phase, target: { pcp: number; http: string; st: string }, shift = 0) {
  return p.kind === 'pcp'
    ? {
        op: 'pcp',
        server: lab.gwLan,
        port: target.pcp,
        hosts: pcpHosts(lab),
        proto: 6,
        firstPort: 10_000 + shift,
        count: COUNT,
        samples: TIMELINE,
        lifetime: 3600,
        concurrency: p.concurrency,
        maxMs: PHASE_MS,
      }
    : {
        op: 'soap',
        url: target.http,
        soapAction: `${target.st}#AddPortMapping`,
        template: addBody(target.st),
        hosts: soapHosts(lab),
        firstPort: 20_000 + shift,
        count: SOAP_COUNT,
        samples: TIMELINE,
        concurrency: p.concurrency,
        keepAlive: p.keepAlive,
        maxMs: PHASE_MS,
      };
}

/** latency by the request's place in the phase: the first `c` (the first tick), then windows of 100 */
function timeline(samples: NonNullable<PhaseStats['samples']>, c: number): string {
  const byStart = [...samples].sort((a, b) => a[0] - b[0]);
  const part = (xs: typeof byStart, label: string) => {
    const l = xs.map((x) => x[1]).sort((a, b) => a - b);
    return `${label}: p50 ${l[Math.floor(l.length / 2)]?.toFixed(1)} max ${l[l.length - 1]?.toFixed(1)}`;
  };
  const out = [part(byStart.slice(0, c), `first ${c}`)];
  for (let i = c; i < byStart.length; i += 100) out.push(part(byStart.slice(i, i + 100), `${i}-`));
  return out.join(' | ');
}

function failures(r: PhaseStats): number {
  const codes = Object.entries(r.codes ?? {});
  return codes.reduce((a, [c, n]) => a + (c === '0' || c === '200' ? 0 : n), 0) + (r.lost ?? 0) + (r.unsent ?? 0);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the cold-start bench needs root (network namespaces)');
  sweepStale(STEM);
  const loadBefore = machineLoad();
  const cmd = resolvePortdCommand(argS('cmd'), say);
  say(`portd runs as: ${cmd.argv.join(' ')}`);
  const lab = await createBenchLab({ stem: STEM, wanPrefix: '203.0.113', hosts: 64 });
  const dirs: string[] = [];
  const rm = onCleanup(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const g = await Loadgen.start(lab);
  const results: {
    phase: string;
    concurrency: number;
    run: number;
    readyMs?: number;
    cpuUs: number | null;
    r: PhaseStats;
    warm?: { cpuUs: number | null; r: PhaseStats };
  }[] = [];
  const ceilings = new Map<string, PhaseStats>();
  try {
    // the generator's ceiling: the same jobs against trivial echo servers in the gateway namespace
    const echo = await startEcho(lab, lab.gw, lab.gwLan);
    for (const p of PHASES) {
      const st = 'urn:schemas-upnp-org:service:WANIPConnection:1';
      const r = await g.call(
        job(lab, p, { pcp: echo.udp, http: `http://${lab.gwLan}:${echo.http}/ctl`, st }),
        PHASE_MS + 15_000,
      );
      if (r.error) throw new Error(`echo ${p.name}: ${r.error}`);
      ceilings.set(`${p.name}/${p.concurrency}`, r);
    }
    echo.stop();
    for (let run = 1; run <= RUNS; run++) {
      for (const p of PHASES) {
        await lab.exec(lab.gw, ['nft', 'delete', 'table', 'inet', 'portd']);
        const dir = mkdtempSync(join(tmpdir(), 'portd-cold-'));
        dirs.push(dir);
        const d = await startPortd(lab, {
          dir,
          argv: cmd.argv,
          readyMsg: 'portd ready',
          discover: p.kind === 'soap',
          noSoapLimits: true,
          logLevel: 'info',
          ...(WARMUP !== undefined ? { extra: [`warmup: ${Number(WARMUP)}`] } : {}),
        });
        // CPU time of the gateway namespace (portd, its nft -i and helpers) per answered request: unlike the
        // rates, it hardly moves with the machine's load, so flags and changes compare on a shared machine
        const cpu0 = namespaceCpuMs(lab.gw);
        const r = await g.call(job(lab, p, { pcp: 5351, http: d.soap.url, st: d.soap.serviceType }), PHASE_MS + 15_000);
        const cpuUs = r.ok > 0 ? Math.round(((namespaceCpuMs(lab.gw) - cpu0) * 1000) / r.ok) : null;
        let warm: { cpuUs: number | null; r: PhaseStats } | undefined;
        if (WARM && !r.error) {
          const cpu1 = namespaceCpuMs(lab.gw);
          const shift = p.kind === 'pcp' ? COUNT : SOAP_COUNT;
          const w = await g.call(
            job(lab, p, { pcp: 5351, http: d.soap.url, st: d.soap.serviceType }, shift),
            PHASE_MS + 15_000,
          );
          warm = { r: w, cpuUs: w.ok > 0 ? Math.round(((namespaceCpuMs(lab.gw) - cpu1) * 1000) / w.ok) : null };
        }
        await d.stop();
        if (r.error) throw new Error(`${p.name} c${p.concurrency}: ${r.error}`);
        results.push({
          phase: p.name,
          concurrency: p.concurrency,
          run,
          readyMs: d.readyMs,
          cpuUs,
          r,
          ...(warm ? { warm } : {}),
        });
        say(
          `run ${run} ${p.name} c${p.concurrency}: ${r.perSecond}/s p99 ${r.p99ms} ms, ${cpuUs} µs CPU/request ` +
            `(ready in ${d.readyMs} ms)` +
            (warm ? `; warm: ${warm.r.perSecond}/s p99 ${warm.r.p99ms} ms, ${warm.cpuUs} µs CPU/request` : '') +
            `; load ${machineLoad().loadavg1}`,
        );
        if (TIMELINE && r.samples) say(`timeline ${p.name} c${p.concurrency}: ${timeline(r.samples, p.concurrency)}`);
      }
    }
  } finally {
    g.stop();
    await lab.teardown();
    rm();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
  const rows = PHASES.map((p) => {
    const mine = results.filter((x) => x.phase === p.name && x.concurrency === p.concurrency);
    const ceil = ceilings.get(`${p.name}/${p.concurrency}`)!;
    const rates = mine.map((x) => x.r.perSecond);
    const worst = Math.min(...rates);
    return {
      phase: p.name,
      c: p.concurrency,
      'runs /s': rates.join(' · '),
      'runs p99 ms': mine.map((x) => x.r.p99ms).join(' · '),
      'timeouts+errors': mine.map((x) => `${x.r.timeouts ?? 0}+${failures(x.r)}`).join(' · '),
      'echo /s': ceil.perSecond,
      'worst ÷ echo': Math.round((worst / ceil.perSecond) * 100) / 100,
      target: `${p.target.perSecond}/s${p.target.p99ms ? `, p99<${p.target.p99ms}` : ''}`,
      'worst ÷ target': Math.round((worst / p.target.perSecond) * 100) / 100,
      met: mine.every(
        (x) =>
          x.r.perSecond >= p.target.perSecond &&
          (p.target.p99ms === undefined || (x.r.p99ms ?? Infinity) < p.target.p99ms) &&
          (x.r.timeouts ?? 0) === 0 &&
          failures(x.r) === 0,
      )
        ? 'yes'
        : 'no',
      'CPU µs/req': mine.map((x) => x.cpuUs).join(' · '),
      ...(WARM
        ? {
            'warm /s': mine.map((x) => x.warm?.r.perSecond).join(' · '),
            'warm p99 ms': mine.map((x) => x.warm?.r.p99ms).join(' · '),
            'warm CPU µs/req': mine.map((x) => x.warm?.cpuUs).join(' · '),
          }
        : {}),
      'ready ms': mine.map((x) => x.readyMs).join(' · '),
    };
  });
  const out = {
    bench: 'cold-start',
    node: process.version,
    command: cmd.label,
    load: { before: loadBefore, after: machineLoad() },
    count: COUNT,
    soapCount: SOAP_COUNT,
    ceilings: Object.fromEntries([...ceilings].map(([k, v]) => [k, { perSecond: v.perSecond, p99ms: v.p99ms }])),
    results: results.map((x) => ({
      phase: x.phase,
      concurrency: x.concurrency,
      run: x.run,
      readyMs: x.readyMs,
      cpuUsPerRequest: x.cpuUs,
      perSecond: x.r.perSecond,
      p50ms: x.r.p50ms,
      p99ms: x.r.p99ms,
      maxms: x.r.maxms,
      timeouts: x.r.timeouts ?? 0,
      failures: failures(x.r),
      ...(x.warm
        ? {
            warm: {
              perSecond: x.warm.r.perSecond,
              p99ms: x.warm.r.p99ms,
              cpuUsPerRequest: x.warm.cpuUs,
              timeouts: x.warm.r.timeouts ?? 0,
              failures: failures(x.warm.r),
            },
          }
        : {}),
    })),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  printTable(
    `cold start: the first requests after portd ready (${cmd.label}); anchors: the echo ceiling and the targets`,
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
    process.stderr.write(`cold-start: ${(e as Error).stack ?? e}\n`);
    cleanupAllSync();
    process.exit(1);
  });
