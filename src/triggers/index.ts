/** Port triggering's public face: the manager, the hand-fed flow source, and the start helper. */
import type { Logger } from 'pino';
import type { FlowSource, TriggerKernel } from '../dataplane/trigger-kernel.js';
import type { Metrics } from '../metrics.js';
import { createTriggerManager, type TriggerLeases, type TriggerManager, type TriggerSettings } from './manager.js';

export { createTriggerManager } from './manager.js';
export type {
  TriggerManager,
  TriggerManagerOptions,
  TriggerView,
  FireResult,
  MutationResult,
  TriggerLeases,
  TriggerSettings,
} from './manager.js';
export { createManualFlowSource } from './flows.js';

export interface StartTriggersOptions {
  readonly config: TriggerSettings;
  readonly leases: TriggerLeases;
  /** the kernel side, chosen by src/main.ts with the dataplane: nftables sets, or memory */
  readonly kernel: TriggerKernel;
  /** where kernel firings come from (`conntrack -E` with nftables); null: firings only through the API */
  readonly flows: FlowSource | null;
  readonly log: Logger;
  readonly metrics?: Metrics;
  readonly clock: { now(): number };
  readonly pollMs?: number;
}

/** Builds and starts the trigger manager on the kernel and flow source it is given. */
export async function startTriggers(o: StartTriggersOptions): Promise<TriggerManager> {
  const m = createTriggerManager({
    leases: o.leases,
    kernel: o.kernel,
    flows: o.flows,
    config: o.config,
    log: o.log,
    clock: o.clock,
    ...(o.metrics ? { metrics: o.metrics } : {}),
    ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
  });
  await m.start();
  return m;
}
