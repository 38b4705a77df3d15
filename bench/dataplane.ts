/**
 * Dataplane benchmark (root only): the nftables driver's map elements vs one rule per mapping
 * (miniupnpd's way), side by side in one run, inside a network namespace of its own.
 *
 * For 1k, 10k and 100k existing mappings: single add and single delete latency (p50/p99, one tick
 * each, through the driver's `nft -i`), batch throughput (1000 adds / 1000 deletes in one tick),
 * and the same single add/delete with plain `add rule` / `delete rule handle` in a scratch table
 * (sent through the same kind of long-lived `nft -i`, so only the kernel/nft costs differ). IPv6
 * pinholes (issue 15) the same way, with as many existing pinholes, and their ratio to the mappings.
 *
 *   node --import tsx bench/dataplane.ts [--sizes 1000,10000,100000] [--samples 100] [--json out.json]
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { createNftablesDataplane } from '../src/dataplane/nftables.js';
import { NftInteractive, nftScript, run as runCmd } from '../src/dataplane/nftables-runner.js';
import type { DataplaneEntry } from '../src/dataplane/types.js';

export interface Stat {
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  readonly n: number;
}
export interface SizeResult {
  readonly size: number;
  /** ms */
  readonly map: {
    readonly load: number;
    readonly add: Stat;
    readonly del: Stat;
    readonly batchAdd1000: number;
    readonly batchDel1000: number;
  };
  readonly rule: { readonly load: number; readonly add: Stat; readonly del: Stat };
  /** IPv6 pinholes (no translation), as many existing as mappings above */
  readonly pinhole: { readonly load: number; readonly add: Stat; readonly del: Stat };
}
export interface BenchResult {
  readonly name: 'dataplane';
  readonly nft: string;
  readonly kernel: string;
  readonly transport: { readonly nftF: Stat; readonly nftI: Stat; readonly netlink: Stat };
  readonly sizes: SizeResult[];
  readonly ratios: {
    readonly mapAddFlat: number;
    readonly mapDelFlat: number;
    readonly ruleVsMapDelAtLargest: number;
    readonly ruleVsMapAddAtLargest: number;
  };
}

function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))] ?? NaN;
  return {
    p50: +q(0.5).toFixed(3),
    p99: +q(0.99).toFixed(3),
    mean: +(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)).toFixed(3),
    n: s.length,
  };
}

/** the k-th mapping: tcp ports first, then udp (fwd4 holds 2 x 65535 single ports) */
function mapping(k: number, timeoutSeconds: number | null = 3600): DataplaneEntry {
  const udp = k >= 65000;
  const port = 1 + (k % 65000);
  return {
    id: `b${k}`,
    protocol: udp ? 'udp' : 'tcp',
    externalAddress: '203.0.113.1',
    externalPort: port,
    externalPortEnd: port,
    internalAddress: `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255 || 1}`,
    internalPort: port,
    remoteAddress: null,
    timeoutSeconds,
  };
}

/** the k-th IPv6 pinhole: a LAN host in 2001:db8:77::/64, its own port, no translation */
function pinhole(k: number, timeoutSeconds: number | null = 3600): DataplaneEntry {
  const port = 1 + (k % 65000);
  const host = `2001:db8:77::${((k >> 16) + 1).toString(16)}:${(k & 0xffff).toString(16)}`;
  return {
    id: `p${k}`,
    family: 6,
    protocol: k % 2 ? 'udp' : 'tcp',
    externalAddress: host,
    externalPort: port,
    externalPortEnd: port,
    internalAddress: host,
    internalPort: port,
    remoteAddress: null,
    timeoutSeconds,
  };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

export async function run(
  opts: { sizes?: number[]; samples?: number; log?: (s: string) => void } = {},
): Promise<BenchResult> {
  const sizes = opts.sizes ?? [1000, 10_000, 100_000];
  const samples = opts.samples ?? 100;
  const say = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  if (process.getuid?.() !== 0) throw new Error('bench/dataplane needs root (it creates a network namespace)');
  const ns = `pdbench${process.pid}`;
  const cleanup = () => {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      /* gone */
    }
  };
  process.once('exit', cleanup);
  execFileSync('ip', ['netns', 'add', ns]);
  const prefix = { netns: ns };
  const log = pino({ level: 'warn' });
  try {
    const nftVersion = (await runCmd(prefix, 'nft', ['--version'])).stdout.trim();
    const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
    const dp = createNftablesDataplane({
      table: 'portdbench',
      wan: 'wan0',
      lan: ['br0'],
      hairpin: true,
      frontendPorts: { tcp: [5000], udp: [1900] },
      log,
      netns: ns,
    });
    await dp.init();
    await dp.setExternalAddresses(['203.0.113.1']);

    // transport: one element per tick via nft -f (a process per tick), the long-lived nft -i, and the
    // in-process netlink socket (the driver's default, `dp`)
    const base = {
      table: 'portdbench',
      wan: 'wan0',
      lan: ['br0'],
      hairpin: true,
      frontendPorts: { tcp: [5000], udp: [1900] },
      log,
      netns: ns,
    } as const;
    const viaF = createNftablesDataplane({ ...base, interactive: false, netlink: false });
    const viaI = createNftablesDataplane({ ...base, netlink: false });
    const tf: number[] = [];
    const ti: number[] = [];
    const tn: number[] = [];
    for (let i = 0; i < samples; i++) {
      const e = mapping(120_000 + i);
      tf.push(await timed(() => viaF.apply({ remove: [], add: [e] })));
      tf.push(await timed(() => viaF.apply({ remove: [e], add: [] })));
      ti.push(await timed(() => viaI.apply({ remove: [], add: [e] })));
      ti.push(await timed(() => viaI.apply({ remove: [e], add: [] })));
      tn.push(await timed(() => dp.apply({ remove: [], add: [e] })));
      tn.push(await timed(() => dp.apply({ remove: [e], add: [] })));
    }
    await viaF.close();
    await viaI.close();
    const transport = { nftF: stat(tf), nftI: stat(ti), netlink: stat(tn) };
    say(
      `transport: nft -f per tick p50 ${transport.nftF.p50} ms, nft -i p50 ${transport.nftI.p50} ms, netlink p50 ` +
        `${transport.netlink.p50} ms`,
    );

    // scratch table for one-rule-per-mapping
    await nftScript(
      prefix,
      'nft',
      'add table ip rulebench\nadd chain ip rulebench pre { type nat hook prerouting priority dstnat; policy ' +
        'accept; }\n',
    );
    const rules = new NftInteractive(prefix, 'nft', 600_000);
    const ruleText = (k: number) => {
      const m = mapping(k);
      return (
        `add rule ip rulebench pre ip daddr 203.0.113.1 ${m.protocol} dport ${m.externalPort} dnat to ` +
        `${m.internalAddress}:${m.internalPort}`
      );
    };

    const out: SizeResult[] = [];
    let ruleCount = 0;
    for (const size of sizes) {
      if (size + 2 * samples + 2000 > 130_000) throw new Error(`size ${size} too large for single-port keys`);
      // --- maps: load `size` mappings in one reconcile batch
      const entries = Array.from({ length: size }, (_, k) => mapping(k));
      const load = await timed(() => dp.reset(entries));
      const add: number[] = [];
      const del: number[] = [];
      for (let i = 0; i < samples; i++) {
        const e = mapping(size + i);
        add.push(await timed(() => dp.apply({ remove: [], add: [e] })));
      }
      for (let i = 0; i < samples; i++) {
        // delete existing mappings spread over the table
        const e = mapping(Math.floor((i * size) / samples));
        del.push(await timed(() => dp.apply({ remove: [e], add: [] })));
      }
      const batch = Array.from({ length: 1000 }, (_, i) => mapping(size + samples + i));
      const batchAdd1000 = await timed(() => dp.apply({ remove: [], add: batch }));
      const batchDel1000 = await timed(() => dp.apply({ remove: batch, add: [] }));
      say(
        `maps  @${size}: load ${load.toFixed(0)} ms, add p50 ${stat(add).p50} ms, del p50 ${stat(del).p50} ms, ` +
          `1000 adds ${batchAdd1000.toFixed(1)} ms, 1000 dels ${batchDel1000.toFixed(1)} ms`,
      );

      // --- pinholes: `size` of them in the kernel instead of the mappings, then single adds and deletes
      const pins = Array.from({ length: size }, (_, k) => pinhole(k));
      const pinLoad = await timed(() => dp.reset(pins));
      const padd: number[] = [];
      const pdel: number[] = [];
      for (let i = 0; i < samples; i++)
        padd.push(await timed(() => dp.apply({ remove: [], add: [pinhole(size + i)] })));
      for (let i = 0; i < samples; i++) {
        const e = pinhole(Math.floor((i * size) / samples));
        pdel.push(await timed(() => dp.apply({ remove: [e], add: [] })));
      }
      say(
        `pinholes @${size}: load ${pinLoad.toFixed(0)} ms, add p50 ${stat(padd).p50} ms, del p50 ${stat(pdel).p50} ms`,
      );

      // --- rules: bring the chain to `size` rules
      const lines: string[] = [];
      for (let k = ruleCount; k < size; k++) lines.push(ruleText(k));
      const ruleLoad = await timed(() => nftScript(prefix, 'nft', lines.join('\n') + '\n', 600_000));
      ruleCount = size;
      const radd: number[] = [];
      for (let i = 0; i < samples; i++) radd.push(await timed(() => rules.run(ruleText(200_000 + i))));
      // handles of the rules to delete (listing is not timed: miniupnpd keeps its own bookkeeping too)
      const listing = (
        await runCmd(prefix, 'nft', ['-a', 'list', 'chain', 'ip', 'rulebench', 'pre'], { timeoutMs: 600_000 })
      ).stdout;
      const handles = [...listing.matchAll(/# handle (\d+)/g)].map((m) => Number(m[1]));
      const rdel: number[] = [];
      // the rules just added first (so the chain returns to `size`), then spread ones
      const victims = handles.slice(-samples);
      for (const h of victims) rdel.push(await timed(() => rules.run(`delete rule ip rulebench pre handle ${h}`)));
      // keep the chain at `size` for the next round: re-add what we deleted is not needed (victims were the extra ones)
      say(`rules @${size}: load ${ruleLoad.toFixed(0)} ms, add p50 ${stat(radd).p50} ms, del p50 ${stat(rdel).p50} ms`);
      out.push({
        size,
        map: {
          load: +load.toFixed(1),
          add: stat(add),
          del: stat(del),
          batchAdd1000: +batchAdd1000.toFixed(2),
          batchDel1000: +batchDel1000.toFixed(2),
        },
        rule: { load: +ruleLoad.toFixed(1), add: stat(radd), del: stat(rdel) },
        pinhole: { load: +pinLoad.toFixed(1), add: stat(padd), del: stat(pdel) },
      });
    }
    rules.kill();
    await dp.destroy();
    const first = out[0]!;
    const last = out[out.length - 1]!;
    return {
      name: 'dataplane',
      nft: nftVersion,
      kernel,
      transport,
      sizes: out,
      ratios: {
        mapAddFlat: +(last.map.add.p50 / first.map.add.p50).toFixed(2),
        mapDelFlat: +(last.map.del.p50 / first.map.del.p50).toFixed(2),
        ruleVsMapDelAtLargest: +(last.rule.del.p50 / last.map.del.p50).toFixed(1),
        ruleVsMapAddAtLargest: +(last.rule.add.p50 / last.map.add.p50).toFixed(1),
      },
    };
  } finally {
    cleanup();
  }
}

export function formatTable(r: BenchResult): string {
  const rows = [
    '| existing | map add p50/p99 ms | map del p50/p99 ms | 1000 adds / 1000 dels in one tick ms | map load ms | ' +
      'rule add p50/p99 ms | rule del p50/p99 ms | rule/map del | pinhole add / del p50 ms | pinhole/map add, del |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const s of r.sizes) {
    rows.push(
      `| ${s.size} | ${s.map.add.p50} / ${s.map.add.p99} | ${s.map.del.p50} / ${s.map.del.p99} | ` +
        `${s.map.batchAdd1000.toFixed(1)} / ${s.map.batchDel1000.toFixed(1)} | ${s.map.load.toFixed(0)} | ` +
        `${s.rule.add.p50} / ${s.rule.add.p99} | ${s.rule.del.p50} / ${s.rule.del.p99} | ` +
        `${(s.rule.del.p50 / s.map.del.p50).toFixed(1)}× | ${s.pinhole.add.p50} / ${s.pinhole.del.p50} | ` +
        `${(s.pinhole.add.p50 / s.map.add.p50).toFixed(2)}×, ${(s.pinhole.del.p50 / s.map.del.p50).toFixed(2)}× |`,
    );
  }
  rows.push('');
  rows.push(
    `transport, one element per tick: nft -f per tick p50 ${r.transport.nftF.p50} ms · nft -i p50 ` +
      `${r.transport.nftI.p50} ms · netlink p50 ${r.transport.netlink.p50} ms`,
  );
  rows.push(
    `flatness (largest / smallest, p50): add ${r.ratios.mapAddFlat}×, delete ${r.ratios.mapDelFlat}× · rules vs ` +
      `maps at the largest size: delete ${r.ratios.ruleVsMapDelAtLargest}×, add ${r.ratios.ruleVsMapAddAtLargest}×`,
  );
  rows.push(`(${r.nft}, kernel ${r.kernel})`);
  return rows.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const sizes = arg('--sizes')?.split(',').map(Number);
  const samples = arg('--samples') ? Number(arg('--samples')) : undefined;
  const r = await run({ ...(sizes ? { sizes } : {}), ...(samples ? { samples } : {}) });
  const json = arg('--json');
  if (json) writeFileSync(json, JSON.stringify(r, null, 2));
  process.stdout.write(JSON.stringify(r) + '\n\n' + formatTable(r) + '\n');
}
