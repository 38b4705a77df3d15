/**
 * PCP PEER needs the NAT's view of an existing outbound flow (RFC 6887 §12): the external
 * address and port the flow was translated to, and a way to keep the flow alive.
 * The server depends on the small `ConntrackApi` interface; `createConntrackCli` implements it
 * with the `conntrack` tool (conntrack-tools), so tests can inject a fake.
 *
 * The kernel resets a flow's timeout on every packet it passes (nf_ct_refresh: UDP back to 30 s,
 * 120 s once it is a stream), so one `conntrack -U --timeout` only lasts until the flow's next
 * packet — for an active flow, milliseconds. The CLI implementation therefore *holds* each
 * extended flow until its PEER lifetime ends: a keeper lists the flows every `keepIntervalMs`
 * (below the kernel's shortest UDP timeout) and lengthens again any held flow whose timeout fell
 * below the time it still has. It never shortens a flow; when a hold ends the flow is left to
 * conntrack's own timeout. Holds live in memory: a restart loses them, as it resets the PCP epoch.
 *
 * Every `conntrack` run forks a process that walks the whole conntrack table, so the CLI runs one at
 * a time for the whole daemon (a bounded queue; past it a lookup or extend fails at once and the
 * PEER answer is NO_RESOURCES), answers a lookup from a cache for about a second (keyed by the flow
 * looked up; identical lookups in flight share one run), and does not run `-U` again for a flow it
 * lengthened within that second. The global PEER rate (limits.peerLookupsPerSecond) is the
 * handler's.
 */
import { execFile } from 'node:child_process';

export interface FlowQuery {
  readonly protocol: 'tcp' | 'udp';
  readonly internalAddress: string;
  readonly internalPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
}

export interface FlowInfo {
  /** where the NAT sends the flow from on the WAN side (the reply tuple's destination) */
  readonly externalAddress: string;
  readonly externalPort: number;
  /** seconds conntrack will keep the flow without traffic */
  readonly timeout: number | null;
}

export interface ConntrackApi {
  /** the translated endpoint of the outbound flow internal → remote, or null when there is none */
  lookup(q: FlowQuery): Promise<FlowInfo | null>;
  /** keep the flow for at least `seconds`; false when the flow is gone */
  extend(q: FlowQuery, seconds: number): Promise<boolean>;
  /** stop keeping the flow extended (PEER with lifetime 0): conntrack's own timeout applies again */
  release?(q: FlowQuery): void;
}

/** `conntrack` run with arguments: exit code and stdout+stderr (injectable for tests) */
export type ConntrackRunner = (args: string[]) => Promise<{ code: number; out: string }>;

export interface ConntrackCliOptions {
  readonly path?: string;
  readonly timeoutMs?: number;
  /** how often held flows are checked; must stay below the kernel's shortest UDP timeout (30 s). Default 10 s */
  readonly keepIntervalMs?: number;
  /** most flows held at once; an extend beyond it fails (the PEER answer is NO_RESOURCES). Default 4096 */
  readonly maxHeld?: number;
  /**
   * `conntrack` runs waiting or running at once beyond which lookups and extends fail (ConntrackBusyError). Default 64
   * (above the default PEER rate, 50/s)
   */
  readonly maxQueued?: number;
  /** how long a lookup's answer (a flow or none) is reused, ms. Default 1000 */
  readonly cacheMs?: number;
  /** most answers cached. Default 4096 */
  readonly maxCached?: number;
  /** ms clock (tests) */
  readonly now?: () => number;
  /** replaces running the tool (tests) */
  readonly run?: ConntrackRunner;
}

export interface ConntrackCli extends ConntrackApi {
  release(q: FlowQuery): void;
  /** flows currently held */
  held(): number;
  /** one keeper pass now (the timer calls it; tests call it directly) */
  keep(): Promise<void>;
  /** stop the keeper and forget every hold */
  close(): void;
}

/** the queue of `conntrack` runs is full: the caller answers NO_RESOURCES (a short error) */
export class ConntrackBusyError extends Error {
  constructor(queued: number) {
    super(`${queued} conntrack runs already queued; try again shortly`);
    this.name = 'ConntrackBusyError';
  }
}

function run(bin: string, args: string[], timeoutMs: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(bin, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as { code: number }).code
          : 1
        : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

function tupleArgs(q: FlowQuery): string[] {
  return [
    '-p',
    q.protocol,
    '--orig-src',
    q.internalAddress,
    '--orig-dst',
    q.remoteAddress,
    '--sport',
    String(q.internalPort),
    '--dport',
    String(q.remotePort),
  ];
}

/**
 * Parse one line of `conntrack -L` output, e.g.
 * `tcp 6 431999 ESTABLISHED src=192.168.77.11 dst=203.0.113.5 sport=40000 dport=80 src=203.0.113.5 dst=203.0.113.1
 * sport=80 dport=40000 [ASSURED] mark=0 use=1`
 * The second src=/dst= group is the reply tuple; its dst/dport is the external endpoint.
 */
export function parseConntrackLine(line: string): FlowInfo | null {
  const words = line.trim().split(/\s+/);
  const proto = words[0];
  const timeout = proto === 'tcp' || proto === 'udp' ? Number(words[2]) : NaN;
  const dsts = words.filter((w) => w.startsWith('dst=')).map((w) => w.slice(4));
  const dports = words.filter((w) => w.startsWith('dport=')).map((w) => Number(w.slice(6)));
  const externalAddress = dsts[1];
  const externalPort = dports[1];
  if (!externalAddress || externalPort === undefined || !Number.isInteger(externalPort)) return null;
  return { externalAddress, externalPort, timeout: Number.isFinite(timeout) ? timeout : null };
}

/** a flow's original tuple and timeout from one `conntrack -L` line (the keeper matches held flows by it) */
export function parseConntrackTuple(line: string): (FlowQuery & { timeout: number | null }) | null {
  const words = line.trim().split(/\s+/);
  const protocol = words[0];
  if (protocol !== 'tcp' && protocol !== 'udp') return null;
  const first = (key: string): string | undefined => words.find((w) => w.startsWith(`${key}=`))?.slice(key.length + 1);
  const src = first('src'),
    dst = first('dst'),
    sport = Number(first('sport')),
    dport = Number(first('dport'));
  if (!src || !dst || !Number.isInteger(sport) || !Number.isInteger(dport)) return null;
  const timeout = Number(words[2]);
  return {
    protocol,
    internalAddress: src,
    remoteAddress: dst,
    internalPort: sport,
    remotePort: dport,
    timeout: Number.isFinite(timeout) ? timeout : null,
  };
}

function flowKey(q: FlowQuery): string {
  return `${q.protocol} ${q.internalAddress}:${q.internalPort} ${q.remoteAddress}:${q.remotePort}`;
}

/** "N flow entries have been updated" with N ≥ 1 */
function updatedSome(out: string): boolean {
  const m = /(\d+) flow entr(?:y|ies) ha(?:s|ve) been updated/.exec(out);
  return m !== null && Number(m[1]) > 0;
}

export function createConntrackCli(opts: ConntrackCliOptions = {}): ConntrackCli {
  const bin = opts.path ?? 'conntrack';
  const timeoutMs = opts.timeoutMs ?? 2000;
  const exec: ConntrackRunner = opts.run ?? ((args) => run(bin, args, timeoutMs));
  const now = opts.now ?? Date.now;
  const keepIntervalMs = opts.keepIntervalMs ?? 10_000;
  const maxHeld = opts.maxHeld ?? 4096;
  const maxQueued = Math.max(1, opts.maxQueued ?? 64);
  const cacheMs = opts.cacheMs ?? 1000;
  const maxCached = opts.maxCached ?? 4096;
  /** flow key → the flow, when its hold ends (ms), and when and for how long `-U` last ran for it */
  const holds = new Map<string, { q: FlowQuery; until: number; updatedAt: number; seconds: number }>();
  /** flow key → a lookup's answer and when it was read */
  const cache = new Map<string, { at: number; flow: FlowInfo | null }>();
  const lookups = new Map<string, Promise<FlowInfo | null>>();
  const extending = new Map<string, { seconds: number; p: Promise<boolean> }>();
  let timer: ReturnType<typeof setInterval> | null = null;
  let keeping: Promise<void> | null = null;
  let tail: Promise<unknown> = Promise.resolve();
  let queued = 0;

  const secondsLeft = (until: number): number => Math.ceil((until - now()) / 1000);

  /**
   * One `conntrack` at a time. `must` runs (the keeper's) always queue; others fail at once when
   * maxQueued runs wait, so a flood of PEER requests cannot pile up processes or memory.
   */
  function serial(args: string[], must = false): Promise<{ code: number; out: string }> {
    if (!must && queued >= maxQueued) return Promise.reject(new ConntrackBusyError(queued));
    queued++;
    const p = tail
      .then(() => exec(args))
      .finally(() => {
        queued--;
      });
    tail = p.catch(() => undefined);
    return p;
  }

  function remember(k: string, flow: FlowInfo | null): void {
    if (cacheMs <= 0) return;
    if (cache.size >= maxCached) {
      for (const [key, c] of cache) if (now() - c.at >= cacheMs) cache.delete(key);
      if (cache.size >= maxCached) cache.clear();
    }
    cache.set(k, { at: now(), flow });
  }

  /** the kernel's answer for a flow: cached for cacheMs, one run shared by identical lookups in flight */
  function kernelLookup(q: FlowQuery): Promise<FlowInfo | null> {
    const k = flowKey(q);
    const c = cache.get(k);
    if (c && now() - c.at < cacheMs) return Promise.resolve(c.flow);
    const pending = lookups.get(k);
    if (pending) return pending;
    const p = serial(['-L', ...tupleArgs(q)])
      .then((r) => {
        let flow: FlowInfo | null = null;
        if (r.code === 0) {
          for (const line of r.out.split('\n')) {
            flow = parseConntrackLine(line);
            if (flow) break;
          }
        }
        remember(k, flow);
        return flow;
      })
      .finally(() => {
        lookups.delete(k);
      });
    lookups.set(k, p);
    return p;
  }

  async function update(q: FlowQuery, seconds: number, must = false): Promise<boolean> {
    const r = await serial(['-U', ...tupleArgs(q), '--timeout', String(Math.max(1, Math.floor(seconds)))], must);
    return r.code === 0 && updatedSome(r.out);
  }

  /** the hold promises at least `seconds` from now (never less than it promised already) */
  function hold(k: string, q: FlowQuery, seconds: number, ran: boolean): void {
    const h = holds.get(k);
    const until = Math.max(h?.until ?? 0, now() + Math.max(1, Math.floor(seconds)) * 1000);
    holds.set(k, {
      q,
      until,
      updatedAt: ran ? now() : (h?.updatedAt ?? now()),
      seconds: ran ? seconds : (h?.seconds ?? seconds),
    });
    if (!timer) {
      timer = setInterval(() => {
        void keep();
      }, keepIntervalMs);
      timer.unref?.();
    }
  }

  function stopTimer(): void {
    if (timer) clearInterval(timer);
    timer = null;
  }

  async function pass(): Promise<void> {
    for (const [k, h] of holds) if (secondsLeft(h.until) <= 0) holds.delete(k);
    if (holds.size === 0) {
      stopTimer();
      return;
    }
    // one listing per pass, not one per held flow: each `conntrack` call walks the whole table
    const r = await serial(['-L', '-f', 'ipv4'], true);
    if (r.code !== 0) return; // keep the holds; the next pass tries again
    const present = new Map<string, number | null>();
    for (const line of r.out.split('\n')) {
      const t = parseConntrackTuple(line);
      if (t) present.set(flowKey(t), t.timeout);
    }
    for (const [k, h] of [...holds]) {
      if (!present.has(k)) {
        holds.delete(k);
        continue;
      } // the flow ended (closed, flushed): nothing to hold
      const left = secondsLeft(h.until);
      const timeout = present.get(k) ?? null;
      if (left <= 0) {
        holds.delete(k);
        continue;
      }
      // only lengthen: traffic resets the timeout below what the hold promises; a longer one is left alone
      if (timeout !== null && timeout >= left) continue;
      if (!(await update(h.q, left, true))) holds.delete(k);
    }
    if (holds.size === 0) stopTimer();
  }

  function keep(): Promise<void> {
    keeping ??= pass().finally(() => {
      keeping = null;
    });
    return keeping;
  }

  return {
    async lookup(q) {
      const f = await kernelLookup(q);
      if (!f) return null;
      // a held flow keeps at least its hold, whatever traffic just reset the kernel's timeout to
      const h = holds.get(flowKey(q));
      const left = h ? secondsLeft(h.until) : 0;
      return left > 0 && (f.timeout === null || f.timeout < left) ? { ...f, timeout: left } : f;
    },
    async extend(q, seconds) {
      const k = flowKey(q);
      const h = holds.get(k);
      if (!h && holds.size >= maxHeld) return false;
      // `-U` ran for this flow within the last cacheMs for at least as long: the hold promises the
      // rest and the keeper lengthens the kernel's timeout to it (no second process for a burst)
      if (h && now() - h.updatedAt < cacheMs && h.seconds >= seconds) {
        hold(k, q, seconds, false);
        return true;
      }
      const pending = extending.get(k);
      if (pending && pending.seconds >= seconds) {
        const ok = await pending.p;
        if (ok) hold(k, q, seconds, false);
        return ok;
      }
      const p = update(q, seconds)
        .then((ok) => {
          cache.delete(k); // the flow's timeout changed
          if (!ok) {
            holds.delete(k);
            return false;
          }
          // a renewal never shortens a hold (RFC 6887 §12.3: the lifetime is a minimum)
          hold(k, q, seconds, true);
          return true;
        })
        .finally(() => {
          if (extending.get(k)?.p === p) extending.delete(k);
        });
      extending.set(k, { seconds, p });
      return p;
    },
    release(q) {
      holds.delete(flowKey(q));
      cache.delete(flowKey(q));
      if (holds.size === 0) stopTimer();
    },
    held: () => holds.size,
    keep,
    close() {
      stopTimer();
      holds.clear();
      cache.clear();
    },
  };
}
