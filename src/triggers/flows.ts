/**
 * A flow source fed by hand: the loopback default (memory driver, firings through the API) and tests.
 * The kernel's source, `conntrack -E`, is src/dataplane/conntrack-flows.ts.
 */
import type { FlowSource, TriggerFlow } from '../dataplane/trigger-kernel.js';

/** for tests and the memory driver: flows are pushed by hand */
export function createManualFlowSource(): FlowSource & { push(f: TriggerFlow): void } {
  let handler: ((f: TriggerFlow) => void) | null = null;
  return {
    kind: 'manual',
    get running() {
      return handler !== null;
    },
    start(onFlow) {
      handler = onFlow;
    },
    async stop() {
      handler = null;
    },
    push(f) {
      handler?.(f);
    },
  };
}
