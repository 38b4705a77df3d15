/** Port triggering's public face: the manager, its kernel and flow sources, and the wiring helper. */
import type { Logger } from 'pino';
import type { Dataplane } from '../dataplane/types.js';
import type { NftablesDataplane } from '../dataplane/nftables.js';
import type { Metrics } from '../metrics.js';
import { createConntrackFlowSource, type FlowSource } from './flows.js';
import { createMemoryTriggerKernel, nftablesTriggerKernel } from './kernel.js';
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
export { createConntrackFlowSource, createManualFlowSource, parseConntrackEvent } from './flows.js';
export type { FlowSource, TriggerFlow } from './flows.js';
export { createMemoryTriggerKernel, nftablesTriggerKernel } from './kernel.js';
export type { TriggerKernel } from './kernel.js';
export { TRIGGER_PRESETS, TRIGGER_PRESET_NAMES } from './presets.js';

export interface StartTriggersOptions {
  readonly config: TriggerSettings & { readonly dataplane: { readonly conntrackPath: string } };
  readonly leases: TriggerLeases;
  readonly dataplane: Dataplane;
  readonly log: Logger;
  readonly metrics?: Metrics;
  readonly clock: { now(): number };
  /** run conntrack inside this namespace (tests); portd itself runs in the gateway's namespace */
  readonly netns?: string;
  readonly pollMs?: number;
}

/**
 * Builds and starts the trigger manager on the dataplane in use: with nftables, kernel rules +
 * `conntrack -E` firings + activity sets; with the memory driver, firings only through the API.
 */
export async function startTriggers(o: StartTriggersOptions): Promise<TriggerManager> {
  let kernel;
  let flows: FlowSource | null = null;
  if (o.dataplane.driver === 'nftables') {
    kernel = nftablesTriggerKernel(o.dataplane as NftablesDataplane);
    flows = createConntrackFlowSource({
      conntrackPath: o.config.dataplane.conntrackPath,
      log: o.log,
      ...(o.netns ? { netns: o.netns } : {}),
    });
  } else {
    kernel = createMemoryTriggerKernel(() => o.clock.now());
  }
  const m = createTriggerManager({
    leases: o.leases,
    kernel,
    flows,
    config: o.config,
    log: o.log,
    clock: o.clock,
    ...(o.metrics ? { metrics: o.metrics } : {}),
    ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
  });
  await m.start();
  return m;
}
