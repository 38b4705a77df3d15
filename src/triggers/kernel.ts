/**
 * What the trigger manager needs from the kernel: install the rules, read per-host activity from
 * the small `trig_<rule>_active` sets, and mark a host active by hand (API firings). The nftables
 * driver provides it; the memory version keeps activity in a map for tests and the loopback default.
 */
import type { TriggerKernelRule } from '../dataplane/nftables-triggers.js';
import type { NftablesDataplane } from '../dataplane/nftables.js';

export interface TriggerKernel {
  readonly kind: 'nftables' | 'memory';
  setRules(rules: readonly TriggerKernelRule[]): Promise<void>;
  /** rule -> host -> ms left before the host counts as idle (null = no timeout) */
  activity(rules: readonly string[]): Promise<Map<string, Map<string, number | null>>>;
  touch(rule: string, host: string, seconds: number): Promise<void>;
}

export function nftablesTriggerKernel(
  dp: Pick<NftablesDataplane, 'setTriggers' | 'triggerActivity' | 'touchTrigger'>,
): TriggerKernel {
  return {
    kind: 'nftables',
    setRules: (rules) => dp.setTriggers(rules),
    activity: (rules) => dp.triggerActivity(rules),
    touch: (rule, host, seconds) => dp.touchTrigger(rule, host, seconds),
  };
}

/** activity kept in memory: touch() is the only "packet" (API firings, or a test calling it) */
export function createMemoryTriggerKernel(now: () => number): TriggerKernel & { rules: readonly TriggerKernelRule[] } {
  const deadlines = new Map<string, Map<string, number>>();
  const self = {
    kind: 'memory' as const,
    rules: [] as readonly TriggerKernelRule[],
    async setRules(rules: readonly TriggerKernelRule[]) {
      self.rules = [...rules];
      for (const name of [...deadlines.keys()]) if (!rules.some((r) => r.name === name)) deadlines.delete(name);
    },
    async activity(rules: readonly string[]) {
      const t = now();
      const out = new Map<string, Map<string, number | null>>();
      for (const name of rules) {
        const m = new Map<string, number | null>();
        for (const [host, d] of deadlines.get(name) ?? []) if (d > t) m.set(host, d - t);
        out.set(name, m);
      }
      return out;
    },
    async touch(rule: string, host: string, seconds: number) {
      let m = deadlines.get(rule);
      if (!m) {
        m = new Map();
        deadlines.set(rule, m);
      }
      m.set(host, now() + seconds * 1000);
    },
  };
  return self;
}
