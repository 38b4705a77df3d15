/**
 * The UPnP benchmark (bench/upnp.ts) with the nftables driver, inside the lab's gateway namespace:
 * AddPortMapping and DeletePortMapping at concurrency 1 and 8, keep-alive and one connection per
 * request, optionally with `preload` leases held by other clients, next to an HTTP echo ceiling.
 * Root only.   node --import tsx test/lab/upnp-bench.ts [count=2000] [preload=0]
 * UPNP_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" passes node flags to the gateway process;
 * LAB_CONNTRACK_PATH=/bin/true measures without ending flows (a diagnostic: what conntrack costs);
 * LAB_LOG=info gives portd an info logger on stderr (redirect it: 2>file) to see what the log lines cost;
 * UPNP_BENCH_SUBSCRIBE=1 adds one GENA subscriber (mapping-change events during the phases).
 * Prints the JSON result and a table; the lab is always torn down.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { printTable } from '../../bench/lib.js';
import { createLab } from './harness.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const count = process.argv[2] ?? '2000';
const preload = process.argv[3] ?? '0';

export async function runLabBench(): Promise<unknown> {
  const lab = await createLab();
  try {
    const nodeArgs = (process.env['UPNP_BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.gw,
        process.execPath,
        ...nodeArgs,
        '--import',
        'tsx',
        join(HERE, 'upnp-gateway.ts'),
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
      }, 1_800_000);
      child.on('exit', (c) => {
        clearTimeout(t);
        resolve(c ?? -1);
      });
    });
    if (code !== 0) throw new Error(`lab bench exited ${code}`);
    return JSON.parse(out.trim().split('\n').pop() ?? '{}');
  } finally {
    await lab.teardown();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const res = (await runLabBench()) as {
    phases: Record<string, unknown>[];
    echo: Record<string, unknown>[];
    driver: string;
    preload: number;
    preloaded?: number;
    cpus: number;
    preloadMs?: number;
  };
  console.log(JSON.stringify(res, null, 2));
  const sub = (res as { subscriber?: { notifies: number } | null }).subscriber;
  if (sub) console.log(`GENA subscriber received ${sub.notifies} NOTIFYs`);
  printTable(
    `UPnP in the lab, ${res.driver} dataplane, ${res.preloaded ?? res.preload} leases ` +
      `preloaded${res.preloadMs !== undefined ? ` in ${(res.preloadMs / 1000).toFixed(1)} s` : ''} (${res.cpus} ` +
      'CPUs)',
    [...res.phases, ...((res as { frontend?: Record<string, unknown>[] }).frontend ?? []), ...res.echo],
  );
}
