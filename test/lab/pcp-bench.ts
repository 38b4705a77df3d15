/**
 * The PCP benchmark (bench/pcp.ts) with the nftables driver, inside the lab's gateway namespace.
 * Root only.   node --import tsx test/lab/pcp-bench.ts [count=2000] [preload=0]
 * PCP_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" passes node flags to the gateway process.
 * Prints the JSON result and a table; the lab is always torn down.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { printTable } from '../../bench/lib.js';
import { createLab } from './harness.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const count = process.argv[2] ?? '2000';
const preload = process.argv[3] ?? '0';

export async function runLabBench(): Promise<unknown> {
  const lab = await createLab();
  const dir = mkdtempSync(join(tmpdir(), 'portd-lab-pcp-bench-'));
  try {
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.gw,
        process.execPath,
        ...(process.env['PCP_BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean),
        '--import',
        'tsx',
        join(HERE, 'pcp-gateway.ts'),
        dir,
        'bench',
        count,
        preload,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], cwd: join(HERE, '..', '..') },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const code = await new Promise<number>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(-1);
      }, 900_000);
      child.on('exit', (c) => {
        clearTimeout(t);
        resolve(c ?? -1);
      });
    });
    if (code !== 0) throw new Error(`lab bench exited ${code}`);
    return JSON.parse(out.trim().split('\n').pop() ?? '{}');
  } finally {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const res = (await runLabBench()) as {
    phases: Record<string, unknown>[];
    echo: Record<string, unknown>[];
    driver: string;
    preload: number;
    cpus: number;
  };
  console.log(JSON.stringify(res, null, 2));
  printTable(
    `PCP in the lab, ${res.driver} dataplane, ${(res as { preloaded?: number }).preloaded ?? res.preload} leases ` +
      `preloaded (${res.cpus} CPUs)`,
    [...res.phases, ...((res as { frontend?: Record<string, unknown>[] }).frontend ?? []), ...res.echo],
  );
}
