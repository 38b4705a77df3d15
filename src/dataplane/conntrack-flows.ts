/**
 * Where trigger firings come from in the kernel. The `triggers` chain marks the first packet of a new
 * outbound flow to a trigger port (ct mark flag 0x400 + the rule id); `conntrack -E -e NEW --mark
 * 0x400/0x400` prints one line per such flow the moment it is confirmed. portd reads that stream:
 * no polling of the conntrack table. DESTROY events are not used (they arrive late, with GC).
 *
 * Tests and the memory driver use an injected source instead (src/triggers/flows.ts).
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { isIPv4 } from 'node:net';
import { canonicalIPv6 } from '../common/ipv6.js';
import type { Logger } from 'pino';
import { argvFor, run, type CommandPrefix } from './nftables-runner.js';
import { TRIGGER_CT_FLAG, TRIGGER_CT_MASK, triggerIdOfMark, triggerMark } from './nftables-triggers.js';
import type { FlowSource, TriggerFlow } from './trigger-kernel.js';
import { spawnTied } from '../child.js';

/** `src=`/`dst=` of the original direction (the first one on the line): IPv4, or IPv6 in canonical text */
function addressOf(line: string, key: 'src' | 'dst'): string | undefined {
  const word = new RegExp(`\\b${key}=(\\S+)`).exec(line)?.[1];
  if (word === undefined) return undefined;
  return isIPv4(word) ? word : (canonicalIPv6(word) ?? undefined);
}

/**
 * parses one `conntrack -E -o timestamp` line; null for anything that is not a marked NEW tcp/udp flow.
 * `conntrack -E` reports both families when no `-f` is given (conntrack-tools 1.4.7), in the same layout:
 * `[NEW] udp 17 30 src=2001:db8:77::11 dst=2001:db8:113::2 sport=… dport=6112 … mark=66560`.
 */
export function parseConntrackEvent(line: string, now: number): TriggerFlow | null {
  if (!line.includes('[NEW]')) return null;
  const proto = /\[NEW\]\s+(tcp|udp)\s/.exec(line)?.[1] as 'tcp' | 'udp' | undefined;
  const src = addressOf(line, 'src');
  const dst = addressOf(line, 'dst');
  const dport = /\bdport=(\d+)/.exec(line)?.[1];
  const markText = /\bmark=(\d+)/.exec(line)?.[1];
  if (!proto || !src || !dst || !dport || !markText) return null;
  const ruleId = triggerIdOfMark(Number(markText));
  if (ruleId === null) return null;
  const ts = /^\[(\d+)\.(\d+)\]/.exec(line.trim());
  const at = ts ? Number(ts[1]) * 1000 + Math.floor(Number(`0.${ts[2]}`) * 1000) : now;
  return { ruleId, protocol: proto, host: src, dst, dport: Number(dport), at };
}

export interface ConntrackFlowSourceOptions extends CommandPrefix {
  readonly conntrackPath?: string;
  readonly log: Logger;
  /** restart back-off bounds (ms) */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** a long-lived `conntrack -E`, restarted with back-off when it exits */
export function createConntrackFlowSource(opts: ConntrackFlowSourceOptions): FlowSource {
  const log = opts.log.child({ component: 'trigger-flows' });
  const tool = opts.conntrackPath ?? 'conntrack';
  const minB = opts.minBackoffMs ?? 500;
  const maxB = opts.maxBackoffMs ?? 30_000;
  let child: ChildProcessWithoutNullStreams | null = null;
  let stopped = true;
  let backoff = minB;
  let restartTimer: NodeJS.Timeout | null = null;
  let handler: ((f: TriggerFlow) => void) | null = null;
  const flag = `0x${TRIGGER_CT_FLAG.toString(16)}`;

  function launch(): void {
    if (stopped) return;
    const [cmd, argv] = argvFor(opts, tool, ['-E', '-e', 'NEW', '-o', 'timestamp', '--mark', `${flag}/${flag}`]);
    let c: ChildProcessWithoutNullStreams;
    try {
      c = spawnTied(cmd, argv); // dies with portd, even on kill -9
    } catch (e) {
      log.error({ err: (e as Error).message }, 'cannot start conntrack -E: triggers fire only through the API');
      schedule();
      return;
    }
    child = c;
    const startedAt = Date.now();
    let buf = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const f = parseConntrackEvent(line, Date.now());
        if (f && handler) {
          try {
            handler(f);
          } catch (e) {
            log.error({ err: (e as Error).message }, 'trigger flow handler failed');
          }
        }
      }
      if (buf.length > 65536) buf = '';
    });
    c.stderr.on('data', (d: Buffer) => {
      err = (err + d.toString('utf8')).slice(-2000);
    });
    c.on('error', (e) => {
      log.error({ err: e.message }, 'conntrack -E failed to run: triggers fire only through the API');
    });
    c.on('close', (code, signal) => {
      if (child === c) child = null;
      if (stopped) return;
      // ran a while: start over quickly; failed at once: back off
      if (Date.now() - startedAt > 10_000) backoff = minB;
      log.warn(
        { code, signal, stderr: err.trim().split('\n').slice(-2).join(' | '), retryMs: backoff },
        'conntrack -E ended; restarting',
      );
      schedule();
    });
    log.info({ cmd: [cmd, ...argv].join(' ') }, 'reading trigger flows from conntrack events');
  }

  function schedule(): void {
    if (stopped || restartTimer) return;
    restartTimer = setTimeout(() => {
      restartTimer = null;
      launch();
    }, backoff);
    restartTimer.unref();
    backoff = Math.min(maxB, backoff * 2);
  }

  return {
    kind: 'conntrack',
    get running() {
      return child !== null;
    },
    async forget(ruleId, host) {
      // `conntrack -D` takes one family at a time (ipv4 without -f): a host's own, or both for the whole rule
      const families = host ? [isIPv4(host) ? 'ipv4' : 'ipv6'] : ['ipv4', 'ipv6'];
      for (const family of families) {
        const args = [
          '-D',
          '-f',
          family,
          ...(host ? ['--orig-src', host] : []),
          '--mark',
          `0x${triggerMark(ruleId).toString(16)}/0x${TRIGGER_CT_MASK.toString(16)}`,
        ];
        try {
          const r = await run(opts, tool, args, { timeoutMs: 10_000 });
          if (r.code !== 0 && !/0 flow entries/.test(r.stderr))
            log.warn({ args: args.join(' '), stderr: r.stderr.trim().slice(0, 200) }, 'could not forget trigger flows');
        } catch (e) {
          log.warn({ err: (e as Error).message }, 'could not forget trigger flows');
        }
      }
    },
    start(onFlow) {
      handler = onFlow;
      if (!stopped) return;
      stopped = false;
      launch();
    },
    async stop() {
      stopped = true;
      if (restartTimer) {
        clearTimeout(restartTimer);
        restartTimer = null;
      }
      const c = child;
      child = null;
      if (!c) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          c.kill('SIGKILL');
          resolve();
        }, 2000);
        c.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        c.kill('SIGTERM');
      });
    },
  };
}
