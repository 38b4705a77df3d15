import { Counter, Gauge, Histogram, Registry } from './common/metrics-core.js';

/**
 * All portd metrics on one registry, created once per running instance (no globals: tests build their own).
 * The metrics are portd's own (common/metrics-core.ts: the same Prometheus text as prom-client, without loading
 * it). The process metrics (CPU, memory, event loop, GC: prom-client's default collectors, `portd_process_*`)
 * are registered when startDefaultMetrics() is first called — by the admin app when it is built, before any
 * scrape can come: prom-client and their observers cost idle memory on a router nobody scrapes
 * (docs/operation.md, "Resources"). `defaultMetrics: true` starts them at once (still loaded asynchronously:
 * await startDefaultMetrics() before reading them).
 */
export function createMetrics(opts: { defaultMetrics?: boolean | 'on-demand' } = {}) {
  const registry = new Registry();
  let defaults: Promise<void> | null = null;
  const startDefaultMetrics = (): Promise<void> =>
    (defaults ??= import('prom-client').then(({ Registry: PromRegistry, collectDefaultMetrics }) => {
      const process = new PromRegistry();
      collectDefaultMetrics({ register: process, prefix: 'portd_process_' });
      registry.attach(process);
    }));
  if (opts.defaultMetrics === true) void startDefaultMetrics();
  const m = {
    registry,
    /** registers the process metrics when createMetrics was asked for them (at once or on demand); idempotent */
    startDefaultMetrics: async (): Promise<void> => {
      if (opts.defaultMetrics) await startDefaultMetrics();
    },
    leasesActive: new Gauge({
      name: 'portd_leases_active',
      help: 'Active leases by source',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    // IPv6 pinholes (issue 15), by source; portd_leases_active counts them too (a pinhole is a lease)
    pinholesActive: new Gauge({
      name: 'portd_pinholes_active',
      help: 'Active IPv6 pinholes by source (included in portd_leases_active)',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    requests: new Counter({
      name: 'portd_requests_total',
      help: 'Requests by front-end and result code',
      labelNames: ['frontend', 'result'] as const,
      registers: [registry],
    }),
    requestSeconds: new Histogram({
      name: 'portd_request_duration_seconds',
      help: 'Request latency by front-end',
      labelNames: ['frontend'] as const,
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    refusals: new Counter({
      name: 'portd_refusals_total',
      help: 'Refused lease requests by reason and source',
      labelNames: ['reason', 'source'] as const,
      registers: [registry],
    }),
    leaseEvents: new Counter({
      name: 'portd_lease_events_total',
      help: 'Lease events by type and source',
      labelNames: ['type', 'source'] as const,
      registers: [registry],
    }),
    dataplaneBatchSeconds: new Histogram({
      name: 'portd_dataplane_batch_duration_seconds',
      help: 'Dataplane batch apply latency',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    }),
    dataplaneErrors: new Counter({
      name: 'portd_dataplane_errors_total',
      help: 'Failed dataplane batches',
      registers: [registry],
    }),
    writerTickSize: new Histogram({
      name: 'portd_writer_tick_requests',
      help: 'Requests per writer tick (group commit)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024],
      registers: [registry],
    }),
    writerBusyRetries: new Counter({
      name: 'portd_writer_busy_retries_total',
      help: 'Writer ticks begun again because another connection held the database write lock (SQLITE_BUSY)',
      registers: [registry],
    }),
    reconcileDrift: new Counter({
      name: 'portd_reconcile_drift_total',
      help: 'Kernel entries added or removed by reconcile',
      registers: [registry],
    }),
    badInput: new Counter({
      name: 'portd_bad_input_total',
      help: 'Malformed or hostile input dropped or refused, by front-end and kind',
      labelNames: ['frontend', 'kind'] as const,
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'portd_rate_limited_total',
      help: 'Requests dropped by a per-client rate limit',
      labelNames: ['frontend'] as const,
      registers: [registry],
    }),
    globalLimit: new Counter({
      name: 'portd_global_limit_total',
      help: 'Requests refused or dropped by a global limit (config limits.*), by limit',
      labelNames: ['limit'] as const,
      registers: [registry],
    }),
    ssdp: new Counter({
      name: 'portd_ssdp_messages_total',
      help: 'SSDP messages by kind (search, response, notify)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    gena: new Counter({
      name: 'portd_gena_total',
      help: 'GENA subscriptions and notifications by kind',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    // chaining to an upstream NAT (src/upstream/, docs/double-nat.md): mappings by state, requests by outcome
    upstreamMappings: new Gauge({
      name: 'portd_upstream_mappings',
      help: 'Upstream mappings of active leases by state (pending, active, failed)',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    upstreamRequests: new Counter({
      name: 'portd_upstream_requests_total',
      help: 'Requests to the upstream NAT by protocol (pcp, natpmp, upnp) and result',
      labelNames: ['protocol', 'result'] as const,
      registers: [registry],
    }),
    triggerFirings: new Counter({
      name: 'portd_trigger_firings_total',
      help: 'Trigger firings by rule and result',
      labelNames: ['rule', 'result'] as const,
      registers: [registry],
    }),
    // issue 16 part 3 (docs/double-nat.md): 1 behind another NAT, 0 not, -1 unknown
    wanDoubleNat: new Gauge({
      name: 'portd_wan_double_nat',
      help: 'Whether the gateway is behind another NAT: 1 yes, 0 no, -1 unknown',
      registers: [registry],
    }),
    stunRequests: new Counter({
      name: 'portd_stun_requests_total',
      help: 'STUN Binding transactions by result (success, error_response, timeout, resolve_error, send_error, ...)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
  };
  return m;
}
export type Metrics = ReturnType<typeof createMetrics>;
