/**
 * What bench/footprint.ts and bench/footprint/probe.ts both do to sample a portd's RSS: start the loopback
 * default (config/portd.yaml, memory driver) in a lab namespace, and load it with PCP MAPs before the sample
 * with leases. The per-client and global PCP caps and the per-client quota are lifted: one generator process
 * sends for all hosts, and those caps are not what is measured.
 */
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Loadgen, waitFor, type BenchLab, type PhaseStats } from '../compare/lab.js';
import { logLines } from '../compare/daemons.js';
import { ROOT } from './command.js';

/** the 32 client addresses a loopback portd is loaded from */
export const LOOPBACK_HOSTS: readonly string[] = Array.from({ length: 32 }, (_, i) => `127.0.0.${2 + i}`);

/**
 * `argv start --config <dir>/portd.yaml` (the loopback default, state in `dir`) in the lab's gateway
 * namespace, once it logs `portd ready`
 */
export async function startLoopbackPortd(
  lab: BenchLab,
  dir: string,
  argv: readonly string[],
): Promise<{ pid: number; logFile: string; stop: () => void }> {
  const cfg = join(dir, 'portd.yaml');
  writeFileSync(
    cfg,
    readFileSync(join(ROOT, 'config', 'portd.yaml'), 'utf8')
      .replaceAll('./var', dir)
      .replace(/^pcp:\n/m, 'pcp:\n  rateLimit: 0\n')
      .replace(/^policy:\n/m, 'policy:\n  maxLeasesPerClient: 1000000\n') + 'limits: { pcpRequestsPerSecond: 0 }\n',
  );
  const logFile = join(dir, 'portd.log');
  const fd = openSync(logFile, 'a');
  const c = lab.spawnIn(lab.gw, [...argv, 'start', '--config', cfg], { stdio: ['ignore', fd, fd], cwd: ROOT });
  closeSync(fd);
  await waitFor(
    () =>
      logLines(logFile).some((l) => l['msg'] === 'portd ready') ||
      readFileSync(logFile, 'utf8').includes('"portd ready"'),
    60_000,
    'loopback portd ready',
  );
  return { pid: c.pid!, logFile, stop: () => c.kill('SIGTERM') };
}

/**
 * `count` PCP MAPs (TCP, 7200 s, from port 10000 on, `concurrency` in flight, 32 unless told) to `server` from
 * `hosts`, sent by a load generator in namespace `ns`; throws when the generator reports an error
 */
export async function pcpPreload(
  lab: BenchLab,
  o: { server: string; hosts: readonly string[]; count: number; ns?: string; concurrency?: number; maxMs?: number },
): Promise<PhaseStats> {
  const g = await Loadgen.start(lab, o.ns);
  try {
    const r = await g.pcp({
      server: o.server,
      port: 5351,
      hosts: o.hosts,
      proto: 6,
      firstPort: 10_000,
      count: o.count,
      lifetime: 7200,
      concurrency: o.concurrency ?? 32,
      maxMs: o.maxMs ?? 600_000,
    });
    if (r.error) throw new Error(`PCP preload: ${r.error}`);
    return r;
  } finally {
    g.stop();
  }
}
