/**
 * Probe answers (issue 16 part 2): how fast portd answers what port-mapper clients send to find it, idle and with
 * another client loading the gateway. In a namespace lab (root): the real `portd start` (nftables driver) in the
 * gateway, the probing client a separate process on a LAN host (bench/probes-client.mjs), a bounded PCP MAP + SOAP
 * AddPortMapping load from the second LAN host (bench/compare/loadgen.mjs), and a trivial UDP echo in the gateway
 * namespace as the ceiling of the same round trip (bench/compare/echo.mjs).
 *
 * - burst (Tailscale's portmapper): a NAT-PMP external-address request, a PCP ANNOUNCE and three SSDP M-SEARCHes
 *   (unicast ssdp:all to the gateway, multicast ssdp:all, multicast IGD:1; MX 2) at once; Tailscale waits 250 ms;
 * - sequential (libp2p, Syncthing): SSDP IGD:1, then NAT-PMP, then PCP, each after the previous answer.
 * Each probe's time runs from its send to the first answer on its socket. Printed: JSON, and a table with p50/p99
 * per probe, the ratio of p99 to the 250 ms budget and of p50 to the echo's p50 in the same phase.
 *
 *   node --import tsx bench/probes.ts [--rounds 60] [--seq-rounds 40] [--load-ms 25000] [--json out.json]
 *   npm run bench -- probes
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDR, JsonLineChannel, createLab, type Lab } from '../test/lab/harness.js';
import { PortdProcess } from '../test/lab/portd-process.js';
import { percentile, printTable, round } from './lib.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const jsonOut = (() => {
  const i = process.argv.indexOf('--json');
  return i > 0 ? process.argv[i + 1] : null;
})();
const ROUNDS = arg('rounds', 60);
const SEQ_ROUNDS = arg('seq-rounds', 40);
const LOAD_MS = arg('load-ms', 25_000);
const BUDGET_MS = 250; // Tailscale's portmapper waits this long for the answers
const TIMEOUT_MS = 1000;
const GAP_MS = 100;
/** extra addresses of the probing host: the rounds rotate over them, so the per-source SSDP search limit
 *  (10/s) never applies to the bench itself */
const SOURCES = [ADDR.hostA, ...Array.from({ length: 10 }, (_, i) => `192.168.77.${20 + i}`)];
const ECHO_PORT = 7777;

type Probe = { ms: number[]; lost: number };
type Reply = Record<string, unknown> & { error?: string };

function child(ns: string, argv: string[]): { proc: ChildProcess; ch: JsonLineChannel<Reply>; stderr: () => string } {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, ...argv], { stdio: 'pipe' });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const ch = new JsonLineChannel<Reply>(proc, (why) => ({ error: `${argv[0]} ${why}: ${err.slice(-500)}` }));
  return { proc, ch, stderr: () => err };
}

async function call(c: JsonLineChannel<Reply>, job: Record<string, unknown>, timeoutMs: number): Promise<Reply> {
  const r = await c.call(job, timeoutMs);
  if (r.error) throw new Error(r.error);
  return r;
}

const envelope = (st: string, action: string, args: string) =>
  '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
  's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
  `<s:Body><u:${action} xmlns:u="${st}">${args}</u:${action}></s:Body></s:Envelope>`;
const IPCONN = 'urn:schemas-upnp-org:service:WANIPConnection:1';
const ADD =
  '<NewRemoteHost></NewRemoteHost><NewExternalPort>{PORT}</NewExternalPort><NewProtocol>TCP</NewProtocol>' +
  '<NewInternalPort>{PORT}</NewInternalPort><NewInternalClient>{HOST}</NewInternalClient><NewEnabled>1</NewEnabled>' +
  '<NewPortMappingDescription>probes</NewPortMappingDescription><NewLeaseDuration>3600</NewLeaseDuration>';

interface Row {
  phase: string;
  mode: string;
  probe: string;
  n: number;
  lost: number;
  p50ms: number;
  p99ms: number;
  maxms: number;
}

function rows(phase: string, mode: string, out: Record<string, Probe>): Row[] {
  return Object.entries(out).map(([probe, p]) => {
    const s = [...p.ms].sort((a, b) => a - b);
    return {
      phase,
      mode,
      probe,
      n: s.length + p.lost,
      lost: p.lost,
      p50ms: round(percentile(s, 50)),
      p99ms: round(percentile(s, 99)),
      maxms: round(s.at(-1) ?? NaN),
    };
  });
}

async function phase(name: string, probe: JsonLineChannel<Reply>): Promise<Row[]> {
  const base = { gw: ADDR.gwLan, sources: SOURCES, gapMs: GAP_MS, timeoutMs: TIMEOUT_MS };
  const long = (n: number) => n * (GAP_MS + 6 * TIMEOUT_MS) + 10_000;
  const echo = await call(
    probe,
    { op: 'echo', ...base, host: ADDR.gwLan, port: ECHO_PORT, rounds: ROUNDS, gapMs: 20 },
    long(ROUNDS),
  );
  const burst = await call(probe, { op: 'burst', ...base, rounds: ROUNDS }, long(ROUNDS));
  const seq = await call(probe, { op: 'sequential', ...base, rounds: SEQ_ROUNDS }, long(SEQ_ROUNDS));
  const strip = (r: Reply) =>
    Object.fromEntries(Object.entries(r).filter(([k]) => k !== 'id')) as Record<string, Probe>;
  return [
    ...rows(name, 'echo', strip(echo)),
    ...rows(name, 'burst', strip(burst)),
    ...rows(name, 'sequential', strip(seq)),
  ];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the probes bench needs root (network namespaces)');
  const lab: Lab = await createLab();
  const dir = mkdtempSync(join(tmpdir(), 'portd-probes-'));
  const kids: ChildProcess[] = [];
  let portd: PortdProcess | null = null;
  try {
    for (const a of SOURCES.slice(1)) await lab.must(lab.lanA, ['ip', 'addr', 'add', `${a}/24`, 'dev', 'eth0']);
    portd = new PortdProcess({
      lab,
      dir,
      config:
        [
          'logLevel: info', // PortdProcess waits for an info line
          'interfaces: { wan: wan0, lan: [br0] }',
          'externalAddress: auto',
          `stateDir: ${dir}`,
          `database: { path: ${join(dir, 'portd.sqlite')}, synchronous: normal }`,
          'dataplane: { driver: nftables, table: portd, hairpin: true }',
          'policy:',
          '  secureMode: true',
          '  maxLeasesPerClient: 200000',
          '  rules: ["allow 1024-65535 192.168.77.0/24 1-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
          'upnp: { enabled: true, httpPort: 5000, ssdp: true, rateLimit: 0 }',
          'pcp: { rateLimit: 0 }',
          'limits: { pcpRequestsPerSecond: 0 }',
          'admin: { listen: "127.0.0.1:8080", token: "bench-token-0123456789" }',
        ].join('\n') + '\n',
    });
    await portd.start(60_000);
    const echo = child(lab.gw, [join(HERE, 'compare', 'echo.mjs'), ADDR.gwLan, String(ECHO_PORT), '0']);
    kids.push(echo.proc);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`echo did not start: ${echo.stderr()}`)), 10_000);
      echo.proc.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('"ready":true')) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const probe = child(lab.lanA, [join(HERE, 'probes-client.mjs')]);
    kids.push(probe.proc);
    await call(probe.ch, { op: 'ping' }, 10_000);

    const idle = await phase('idle', probe.ch);

    // a bounded load from the second LAN host: PCP MAP (UDP ports) and SOAP AddPortMapping (TCP ports)
    const pcpGen = child(lab.lanB, [join(HERE, 'compare', 'loadgen.mjs')]);
    const soapGen = child(lab.lanB, [join(HERE, 'compare', 'loadgen.mjs')]);
    kids.push(pcpGen.proc, soapGen.proc);
    const hosts = [ADDR.hostB];
    const pcpLoad = call(
      pcpGen.ch,
      {
        op: 'pcp',
        server: ADDR.gwLan,
        port: 5351,
        hosts,
        proto: 17,
        firstPort: 2000,
        count: 60_000,
        lifetime: 3600,
        concurrency: 4,
        maxMs: LOAD_MS,
      },
      LOAD_MS + 30_000,
    );
    const soapLoad = call(
      soapGen.ch,
      {
        op: 'soap',
        url: `http://${ADDR.gwLan}:5000/igd1/ctl/IPConn`,
        soapAction: `${IPCONN}#AddPortMapping`,
        template: envelope(IPCONN, 'AddPortMapping', ADD),
        hosts,
        firstPort: 2000,
        count: 60_000,
        concurrency: 2,
        keepAlive: true,
        maxMs: LOAD_MS,
      },
      LOAD_MS + 30_000,
    );
    await new Promise((r) => setTimeout(r, 1000)); // the load is running
    const t0 = performance.now();
    const loaded = await phase('loaded', probe.ch);
    const loadedMs = performance.now() - t0;
    const [pcpR, soapR] = await Promise.all([pcpLoad, soapLoad]);
    const load = {
      pcp: { perSecond: pcpR['perSecond'], p50ms: pcpR['p50ms'], p99ms: pcpR['p99ms'], ok: pcpR['ok'] },
      soap: { perSecond: soapR['perSecond'], p50ms: soapR['p50ms'], p99ms: soapR['p99ms'], ok: soapR['ok'] },
      probesWithinLoadMs: Math.round(loadedMs),
      loadMs: LOAD_MS,
    };

    const all = [...idle, ...loaded];
    const echoP50 = (ph: string) => all.find((r) => r.phase === ph && r.probe === 'echo')?.p50ms ?? NaN;
    const table = all.map((r) => ({
      ...r,
      'p99 / 250 ms': round(r.p99ms / BUDGET_MS, 3),
      'p50 / echo p50': r.probe === 'echo' ? 1 : round(r.p50ms / echoP50(r.phase), 1),
    }));
    const result = { bench: 'probes', budgetMs: BUDGET_MS, rounds: ROUNDS, seqRounds: SEQ_ROUNDS, load, rows: table };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify(result, null, 2)}\n`);
    printTable('probe answers (ms; budget 250 ms)', table);
    printTable('load from the second LAN host during the loaded phase', [
      { kind: 'PCP MAP', ...load.pcp },
      { kind: 'SOAP AddPortMapping', ...load.soap },
    ]);
    process.stdout.write(
      `\nthe loaded probes ran ${load.probesWithinLoadMs} ms of the ${LOAD_MS} ms load` +
        `${load.probesWithinLoadMs + 1000 > LOAD_MS ? ' (longer than the load: raise --load-ms)' : ''}\n`,
    );
  } finally {
    for (const k of kids) k.kill('SIGKILL');
    if (portd?.running) await portd.stop().catch(() => undefined);
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench probes: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);
