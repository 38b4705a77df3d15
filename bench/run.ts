// `npm run bench`: every benchmark, each in its own process (so RSS figures are its own), bounded in time.
// Each prints JSON and a table with the ratio to its anchor. Root-only benches (network namespaces) are
// skipped with a line when not root. Pass names to run a subset: `npm run bench -- leases pcp`.
import { spawnSync } from 'node:child_process';

const all: { name: string; file: string; root: boolean; args?: string[] }[] = [
  { name: 'leases', file: 'bench/leases.ts', root: false },
  { name: 'pcp', file: 'bench/pcp.ts', root: false },
  { name: 'upnp', file: 'bench/upnp.ts', root: false },
  // one host at its rate limits for ≈ 0.5 h of fast clock: database size and another client's p99, end ÷ start
  { name: 'churn', file: 'bench/churn.ts', root: false },
  // grants on PostgreSQL (a throwaway cluster) beside SQLite, literal statements vs set-based ticks, on the socket
  // and 2 and 10 ms away behind a delay proxy (issue 18)
  { name: 'pg', file: 'bench/pg.ts', root: false, args: ['--rtt', '2,10'] },
  { name: 'dataplane', file: 'bench/dataplane.ts', root: true },
  // the PCP and UPnP benches in a namespace lab with the nftables driver, with 0 and 100k leases held
  { name: 'lab-pcp', file: 'test/lab/pcp-bench.ts', root: true, args: ['2000', '0'] },
  { name: 'lab-pcp-100k', file: 'test/lab/pcp-bench.ts', root: true, args: ['2000', '100000'] },
  { name: 'lab-upnp', file: 'test/lab/upnp-bench.ts', root: true, args: ['2000', '0'] },
  { name: 'lab-upnp-100k', file: 'test/lab/upnp-bench.ts', root: true, args: ['2000', '100000'] },
  // 1k vs 100k leases, nftables and memory drivers, expiry burst; writes docs/benchmarks.md (section scale)
  { name: 'scale', file: 'bench/scale.ts', root: true },
  // the installed package's RSS idle and with 10k leases, the loopback default, miniupnpd beside it (issue 17)
  { name: 'footprint', file: 'bench/footprint.ts', root: true },
  // the first 2,000 PCP MAPs / SOAP adds after `portd ready`, from a LAN host, three fresh starts each (issue 17)
  { name: 'cold-start', file: 'bench/cold-start.ts', root: true },
  // answer times of the probes Tailscale (at once) and libp2p/Syncthing (one after another) send, idle and under a
  // PCP/SOAP load from another LAN host, against the 250 ms budget and a UDP echo (issue 16)
  { name: 'probes', file: 'bench/probes.ts', root: true },
  // the HA pair lab: kill -9 / links down of the active node, 20 rounds each: reach, addresses, fence (issue 18)
  { name: 'ha', file: 'bench/ha.ts', root: true },
];
const only = process.argv.slice(2);
let failed = false;
for (const b of all.filter((x) => only.length === 0 || only.includes(x.name))) {
  if (b.root && process.getuid?.() !== 0) {
    console.error(`bench: skipping ${b.name} (needs root for a network namespace)`);
    continue;
  }
  console.error(`\n=== bench ${b.name} ===`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--expose-gc', b.file, ...(b.args ?? [])], {
    stdio: 'inherit',
    timeout: 20 * 60_000,
  });
  if (r.status !== 0) {
    console.error(`bench: ${b.name} failed (${r.status ?? r.signal})`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
