/**
 * The trigger kernel in memory, beside the memory dataplane (the loopback default and tests): no
 * packets, so touch() is the only activity (API firings, or a test calling it).
 */
import { isIPv4 } from 'node:net';
import { canonicalIPv6 } from '../common/ipv6.js';
import type { AddressFamily } from '../common/net-types.js';
import type { TriggerKernel, TriggerKernelRule } from './trigger-kernel.js';

export function createMemoryTriggerKernel(now: () => number): TriggerKernel & { rules: readonly TriggerKernelRule[] } {
  const deadlines = new Map<string, Map<string, number>>();
  const self = {
    name: 'memory',
    packetActivity: false,
    rules: [] as readonly TriggerKernelRule[],
    async setRules(rules: readonly TriggerKernelRule[]) {
      self.rules = [...rules];
      for (const name of [...deadlines.keys()]) if (!rules.some((r) => r.name === name)) deadlines.delete(name);
    },
    async activity(rules: readonly string[], family: AddressFamily = 4) {
      const t = now();
      const out = new Map<string, Map<string, number | null>>();
      for (const name of rules) {
        const m = new Map<string, number | null>();
        for (const [host, d] of deadlines.get(name) ?? [])
          if (d > t && isIPv4(host) === (family === 4)) m.set(host, d - t);
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
      // IPv6 hosts under their canonical text, as the kernel's listing gives them
      m.set(isIPv4(host) ? host : (canonicalIPv6(host) ?? host), now() + seconds * 1000);
    },
  };
  return self;
}
