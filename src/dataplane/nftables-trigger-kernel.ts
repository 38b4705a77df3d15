/** The trigger kernel on nftables: rules and activity sets in the driver's own table (nftables-triggers.ts). */
import type { NftablesDataplane } from './nftables.js';
import type { TriggerKernel } from './trigger-kernel.js';

export function nftablesTriggerKernel(
  dp: Pick<NftablesDataplane, 'setTriggers' | 'triggerActivity' | 'touchTrigger'>,
): TriggerKernel {
  return {
    name: 'nftables',
    // the `update @trig_<rule>_active` rules mark the host from its packets
    packetActivity: true,
    setRules: (rules) => dp.setTriggers(rules),
    activity: (rules, family) => dp.triggerActivity(rules, family),
    touch: (rule, host, seconds) => dp.touchTrigger(rule, host, seconds),
  };
}
