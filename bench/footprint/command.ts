/**
 * How a bench runs portd: the installed package layout when it exists (`pkg/root/usr/bin/portd`, the sh
 * wrapper `npm run package` stages, which execs node with usr/lib/portd/node-options), else the stand-in
 * the package is made of: `node <flags of config/node-options> dist/src/cli.js` after `npm run build`.
 * `--cmd "prog arg …"` (split on spaces) replaces both, e.g. `--cmd "node dist/src/cli.js"` for no flags.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** the flags of a node-options file: whitespace-separated, `#` to the end of the line is a comment */
export function parseNodeOptions(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*$/, ''))
    .join(' ')
    .split(/\s+/)
    .filter(Boolean);
}

export interface PortdCommand {
  /** argv prefix; `start --config FILE` is appended */
  readonly argv: readonly string[];
  /** what it is, for the report */
  readonly label: string;
}

export function resolvePortdCommand(cmd: string | undefined, log: (s: string) => void): PortdCommand {
  if (cmd) {
    const argv = cmd.split(/\s+/).filter(Boolean);
    // relative paths after the program are the checkout's (the daemon runs with cwd = ROOT)
    return { argv: argv.map((a, i) => (i > 0 && a.endsWith('.js') && !isAbsolute(a) ? join(ROOT, a) : a)), label: cmd };
  }
  const wrapper = join(ROOT, 'pkg', 'root', 'usr', 'bin', 'portd');
  if (existsSync(wrapper)) return { argv: [wrapper], label: 'pkg/root/usr/bin/portd (installed layout)' };
  log(
    'no pkg/root/usr/bin/portd: building dist/ (npm run build) and running node <config/node-options> dist/src/cli.js',
  );
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      timeout: 300_000,
    },
  );
  const cli = join(ROOT, 'dist', 'src', 'cli.js');
  if (r.status !== 0)
    log(`tsc reported errors (build used anyway): ${String(r.stdout).split('\n').slice(0, 3).join(' ')}`);
  if (!existsSync(cli)) throw new Error(`npm run build produced no ${cli}`);
  const flags = parseNodeOptions(readFileSync(join(ROOT, 'config', 'node-options'), 'utf8'));
  return {
    argv: [process.execPath, ...flags, cli],
    label: `node ${flags.join(' ')} dist/src/cli.js (stand-in for the package)`.replace(/ {2,}/g, ' '),
  };
}

/** VmRSS, RssAnon, RssFile (MiB, one decimal) of a pid, from /proc/<pid>/status */
export function memOf(pid: number): { rss: number; anon: number; file: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const g = (k: string) => Math.round((Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN) / 1024) * 10) / 10;
    return { rss: g('VmRSS'), anon: g('RssAnon'), file: g('RssFile') };
  } catch {
    return null;
  }
}

/** the machine's load: 1-minute load average and the number of CPUs, for the report */
export function machineLoad(): { loadavg1: number; cpus: number } {
  const l = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  return { loadavg1: l, cpus: Number(spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()) };
}
