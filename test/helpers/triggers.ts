/**
 * A trigger manager on a real lease table (test/helpers/leases.ts: temp SQLite, memory dataplane, fixed clock)
 * and the memory trigger kernel, wired as src/main.ts wires them: the lease table asks the manager which ports
 * are a trigger's. `triggerSetups` registers the file's `after` hook that closes every setup it made.
 */
import { after } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/index.js';
import type { Config } from '../../src/config/types.js';
import type { LeaseEvent } from '../../src/leases/types.js';
import { createManualFlowSource } from '../../src/triggers/flows.js';
import { createMemoryTriggerKernel } from '../../src/dataplane/memory-triggers.js';
import { createTriggerManager } from '../../src/triggers/manager.js';
import { makeTable } from './leases.js';

/** a config with the memory dataplane, `extra` top-level YAML (e.g. a policy line) and these trigger rules */
export function triggerConfig(triggers: string, extra = ''): Config {
  return parseConfig(
    `interfaces: { wan: lo, lan: [lo] }\nexternalAddress: 203.0.113.1\ndataplane: { driver: memory }\n${extra}` +
      `triggers:\n${triggers}\n`,
  );
}

export interface TriggerSetupOptions {
  /** the lease table's directory (a restart on the same database) */
  readonly dir?: string;
  /** top-level YAML lines before `triggers:` */
  readonly extra?: string;
}

export function setupTriggers(disposers: (() => Promise<void>)[], triggers: string, opts: TriggerSetupOptions = {}) {
  let portRule: (protocol: 'tcp' | 'udp', port: number) => string | null = () => null;
  const t = makeTable({ ...(opts.dir ? { dir: opts.dir } : {}), triggerPort: (p, port) => portRule(p, port) });
  const kernel = createMemoryTriggerKernel(() => t.clock.now());
  const flows = createManualFlowSource();
  const cfg = triggerConfig(triggers, opts.extra);
  const m = createTriggerManager({
    leases: t.table,
    kernel,
    flows,
    config: cfg,
    log: pino({ level: process.env['TEST_LOG'] ?? 'silent' }),
    metrics: t.metrics,
    clock: t.clock,
    pollMs: 0,
    statsFlushMs: 0,
  });
  portRule = (p, port) => m.portRule(p, port);
  const events: LeaseEvent[] = [];
  t.table.on((e) => events.push(e));
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await m.close();
    await t.close();
  };
  disposers.push(async () => {
    await close();
    await t.dispose();
  });
  return { ...t, m, kernel, flows, cfg, events, close };
}

/** a `setup(triggers = defaults, opts)` for one test file; every setup it made is closed in the file's `after` */
export function triggerSetups(defaults: string) {
  const disposers: (() => Promise<void>)[] = [];
  after(async () => {
    for (const d of disposers.reverse()) await d();
  });
  return (triggers = defaults, opts: TriggerSetupOptions = {}) => setupTriggers(disposers, triggers, opts);
}
