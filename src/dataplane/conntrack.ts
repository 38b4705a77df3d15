/**
 * Ending the established flows of ended leases: `conntrack -D` by original destination
 * (our external address and the lease's external port; for an IPv6 pinhole its internal endpoint, which
 * is its external one). The kernel rule in our forward chain
 * already stops marked flows whose port is no longer live; deleting the entries frees them at
 * once and keeps a later lease on the same port from inheriting the old NAT binding.
 *
 * Every `conntrack -D` walks the whole conntrack hash (≈ 11 ms of system CPU here, 262,144 buckets,
 * even when nothing matches), and a lease usually has no flow at all: 10,000 leases expiring together
 * cost ≈ 2 minutes of CPU that way. So each run lists the flows to our external address(es) once
 * (`conntrack -L --orig-dst`, one walk) and deletes only the ports that have one. The kernel element is
 * gone before this runs (the lease ended in a committed tick), so no new flow can be forwarded to the
 * port between the listing and the deletes; a packet in flight at that moment is left to the kernel rule.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { run, type CommandPrefix } from './nftables-runner.js';
import type { DataplaneEntry } from './types.js';

/** ports of one range we delete one by one; wider ranges are left to the kernel drop rule */
export const MAX_FLOW_PORTS_PER_ENTRY = 256;

export interface ConntrackOptions extends CommandPrefix {
  readonly conntrackPath: string;
  readonly log: Logger;
}

/** collects `conntrack -D` argument lists for ports of entries, each distinct one once */
function deleteArgsCollector(): { add(e: DataplaneEntry, port: number): void; out: string[][] } {
  const out: string[][] = [];
  const seen = new Set<string>();
  return {
    out,
    add(e, port) {
      const args = [
        '-D',
        '-f',
        // a pinhole's flows: original destination = the internal endpoint (its external one, no translation)
        e.family === 6 ? 'ipv6' : 'ipv4',
        '-p',
        e.protocol,
        '--orig-dst',
        e.externalAddress,
        '--orig-port-dst',
        String(port),
      ];
      if (e.remoteAddress !== null) args.push('--orig-src', e.remoteAddress);
      const k = args.join(' ');
      if (seen.has(k)) return;
      seen.add(k);
      out.push(args);
    },
  };
}

/** `conntrack -D` argument lists for these entries (pure) */
export function flowDeleteArgs(entries: readonly DataplaneEntry[]): string[][] {
  const c = deleteArgsCollector();
  for (const e of entries) {
    const last = Math.min(e.externalPortEnd, e.externalPort + MAX_FLOW_PORTS_PER_ENTRY - 1);
    for (let p = e.externalPort; p <= last; p++) c.add(e, p);
  }
  return c.out;
}

/** a flow from `conntrack -L` output, original direction (the first src/dst/dport of the line) */
export interface ListedFlow {
  readonly protocol: string;
  readonly src: string;
  readonly dst: string;
  readonly dport: number;
}

/** parses `conntrack -L` lines (`tcp 6 99 ESTABLISHED src=A dst=B sport=X dport=Y ... src=...`) */
export function parseFlows(text: string): ListedFlow[] {
  const out: ListedFlow[] = [];
  for (const line of text.split('\n')) {
    const protocol = /^\s*(\S+)/.exec(line)?.[1];
    const src = /\bsrc=(\S+)/.exec(line)?.[1];
    const dst = /\bdst=(\S+)/.exec(line)?.[1];
    const dport = /\bdport=(\d+)/.exec(line)?.[1];
    if (protocol && src && dst && dport) out.push({ protocol, src, dst, dport: Number(dport) });
  }
  return out;
}

/** `conntrack -D` argument lists for the ports of these entries that have a listed flow (pure) */
export function flowDeleteArgsFor(entries: readonly DataplaneEntry[], flows: readonly ListedFlow[]): string[][] {
  const byPort = new Map<string, ListedFlow[]>();
  for (const f of flows) {
    const k = `${f.protocol}/${f.dst}/${f.dport}`;
    const list = byPort.get(k);
    if (list) list.push(f);
    else byPort.set(k, [f]);
  }
  const c = deleteArgsCollector();
  if (byPort.size === 0) return c.out;
  for (const e of entries) {
    for (let p = e.externalPort; p <= e.externalPortEnd; p++) {
      const here = byPort.get(`${e.protocol}/${e.externalAddress}/${p}`);
      if (!here || (e.remoteAddress !== null && !here.some((f) => f.src === e.remoteAddress))) continue;
      c.add(e, p);
    }
  }
  return c.out;
}

export interface FlowEnder {
  /** deletes the flows; never throws (best effort), returns the number of conntrack commands that failed to run */
  end(entries: readonly DataplaneEntry[]): Promise<number>;
}

export function createFlowEnder(opts: ConntrackOptions): FlowEnder {
  const log = opts.log;
  // conntrack-tools >= 1.4.7 reads many commands from a file in one process (-R); older ones get one process per port
  let batchSupported: boolean | null = null;

  async function one(args: string[]): Promise<boolean> {
    try {
      const r = await run(opts, opts.conntrackPath, args, { timeoutMs: 10_000 });
      // exit 1 with "0 flow entries have been deleted" is not a failure
      if (r.code !== 0 && !/0 flow entries/.test(r.stderr)) {
        log.warn({ args: args.join(' '), stderr: r.stderr.trim().slice(0, 200) }, 'conntrack delete failed');
        return false;
      }
      return true;
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'conntrack not runnable; flows end by the kernel rule only');
      return false;
    }
  }

  /** the flows to these external addresses, one `conntrack -L` each; null when listing does not work here */
  async function listFlows(addresses: readonly (readonly ['ipv4' | 'ipv6', string])[]): Promise<ListedFlow[] | null> {
    const out: ListedFlow[] = [];
    for (const [family, a] of addresses) {
      const r = await run(opts, opts.conntrackPath, ['-L', '-f', family, '--orig-dst', a], { timeoutMs: 30_000 });
      if (r.code !== 0) {
        log.debug({ stderr: r.stderr.trim().slice(0, 200) }, 'conntrack -L failed; deleting by port without a listing');
        return null;
      }
      out.push(...parseFlows(r.stdout));
    }
    return out;
  }

  async function endNow(entries: readonly DataplaneEntry[]): Promise<number> {
    let flows: ListedFlow[] | null;
    try {
      const targets = new Map<string, readonly ['ipv4' | 'ipv6', string]>();
      for (const e of entries)
        targets.set(`${e.family ?? 4}/${e.externalAddress}`, [e.family === 6 ? 'ipv6' : 'ipv4', e.externalAddress]);
      flows = await listFlows([...targets.values()]);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'conntrack not runnable; flows end by the kernel rule only');
      return flowDeleteArgs(entries).length;
    }
    const cmds = flows === null ? flowDeleteArgs(entries) : flowDeleteArgsFor(entries, flows);
    if (cmds.length === 0) return 0;
    if (batchSupported !== false && cmds.length > 1) {
      try {
        // -R needs a real file: /dev/stdin is a socket under node's spawn and conntrack cannot open it
        const dir = mkdtempSync(join(tmpdir(), 'portd-ct-'));
        const file = join(dir, 'delete');
        writeFileSync(file, cmds.map((c) => c.join(' ')).join('\n') + '\n', { mode: 0o600 });
        let r;
        try {
          r = await run(opts, opts.conntrackPath, ['-R', file], { timeoutMs: 30_000 });
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
        if (r.code === 0) {
          batchSupported = true;
          return 0;
        }
        if (batchSupported === null && /invalid option|unknown option|-R/i.test(r.stderr)) batchSupported = false;
        else
          log.warn(
            { stderr: r.stderr.trim().slice(0, 200) },
            'conntrack batch delete reported an error; retrying one by one',
          );
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'conntrack not runnable; flows end by the kernel rule only');
        return cmds.length;
      }
    }
    let failed = 0;
    // a few at a time: each is a process
    for (let i = 0; i < cmds.length; i += 8) {
      const res = await Promise.all(cmds.slice(i, i + 8).map(one));
      failed += res.filter((ok) => !ok).length;
    }
    return failed;
  }

  // Coalescing: leases end one tick at a time (a delete at concurrency 1 is one lease per tick), and a
  // run costs ~10 ms of CPU for the listing's walk of the conntrack hash plus 1-2.5 ms of the event loop
  // to start each process. Entries wait while one run is in flight, then go together: one run at a time,
  // at most one every MIN_GAP_MS (at 20 ms back to back, UPnP deletes lost a third of their rate to it).
  // The wait costs nothing but time: the forward chain already drops packets of flows whose lease ended.
  const FLUSH_DELAY_MS = 20;
  const MIN_GAP_MS = 250;
  let lastStart = -Infinity;
  let pending: { entries: DataplaneEntry[]; waiters: ((failed: number) => void)[] } | null = null;
  let running = false;
  function flushSoon(): void {
    if (running || !pending) return;
    running = true;
    setTimeout(
      () => {
        lastStart = performance.now();
        const batch = pending!;
        pending = null;
        void endNow(batch.entries)
          .then((failed) => {
            for (const w of batch.waiters) w(failed);
          })
          .finally(() => {
            running = false;
            flushSoon();
          });
      },
      Math.max(FLUSH_DELAY_MS, MIN_GAP_MS - (performance.now() - lastStart)),
    ).unref?.();
  }
  return {
    end(entries) {
      if (entries.length === 0) return Promise.resolve(0);
      return new Promise<number>((resolve) => {
        pending ??= { entries: [], waiters: [] };
        pending.entries.push(...entries);
        pending.waiters.push(resolve);
        flushSoon();
      });
    },
  };
}
