/**
 * portd's metrics core (src/common/metrics-core.ts) writes the Prometheus text exposition byte for byte as
 * prom-client does (the same calls on both, outputs compared), and createMetrics() does not load
 * prom-client until the process metrics are asked for.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import * as prom from 'prom-client';
import * as core from '../../src/common/metrics-core.js';
import { createMetrics } from '../../src/metrics.js';

type Lib = {
  Registry: new () => unknown;
  Counter: new (c: object) => { inc(...a: unknown[]): void; labels(...a: unknown[]): { inc(v?: number): void } };
  Gauge: new (c: object) => { set(...a: unknown[]): void; inc(...a: unknown[]): void; dec(...a: unknown[]): void };
  Histogram: new (c: object) => { observe(...a: unknown[]): void };
};

/** the same metrics and calls on either library */
function exercise(lib: Lib) {
  const r = new lib.Registry();
  const registers = [r];
  const c = new lib.Counter({
    name: 'portd_requests_total',
    help: 'Requests',
    labelNames: ['frontend', 'result'],
    registers,
  });
  const plain = new lib.Counter({ name: 'portd_dataplane_errors_total', help: 'Failed dataplane batches', registers });
  const unused = new lib.Counter({
    name: 'portd_x_total',
    help: 'help with \\ and\nnewline',
    labelNames: ['k'],
    registers,
  });
  const g = new lib.Gauge({
    name: 'portd_leases_active',
    help: 'Active leases by source',
    labelNames: ['source'],
    registers,
  });
  const h = new lib.Histogram({
    name: 'portd_request_duration_seconds',
    help: 'Request latency by front-end',
    labelNames: ['frontend'],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers,
  });
  const h0 = new lib.Histogram({
    name: 'portd_writer_tick_requests',
    help: 'Requests per tick',
    buckets: [1, 2, 4],
    registers,
  });
  c.inc({ frontend: 'pcp', result: '0' });
  c.inc({ result: '0', frontend: 'pcp' }, 2);
  c.inc({ frontend: 'upnp', result: 'a"b\\c\nd' });
  c.labels('natpmp', '3').inc();
  c.labels({ frontend: 'natpmp', result: '3' }).inc(0.5);
  plain.inc();
  void unused;
  g.set({ source: 'pcp' }, 3);
  g.set({ source: 'upnp' }, 0.1 + 0.2);
  g.inc({ source: 'pcp' });
  g.dec({ source: 'pcp' }, 2);
  for (const v of [0.0001, 0.0005, 0.0007, 0.3, 1, 7]) h.observe({ frontend: 'pcp' }, v);
  h.observe({ frontend: 'upnp' }, 0.02);
  h0.observe(3);
  h0.observe(1);
  return r as {
    metrics(): Promise<string>;
    getSingleMetricAsString(n: string): Promise<string>;
    getSingleMetric(n: string): { get(): Promise<unknown> };
  };
}

describe('metrics core', () => {
  it('the same exposition text as prom-client, whole and per metric', async () => {
    const ours = exercise(core as unknown as Lib);
    const theirs = exercise(prom as unknown as Lib);
    assert.equal(await ours.metrics(), await theirs.metrics());
    for (const n of ['portd_requests_total', 'portd_request_duration_seconds', 'portd_x_total'])
      assert.equal(await ours.getSingleMetricAsString(n), await theirs.getSingleMetricAsString(n), n);
    const strip = (x: unknown) => JSON.parse(JSON.stringify(x, (k, v) => (k === 'exemplar' ? undefined : v)));
    for (const n of ['portd_requests_total', 'portd_request_duration_seconds', 'portd_leases_active'])
      assert.deepEqual(strip(await ours.getSingleMetric(n).get()), strip(await theirs.getSingleMetric(n).get()), n);
  });

  it('refuses an undeclared label and a counter going down, as prom-client does', () => {
    const c = new core.Counter({ name: 'a_total', help: 'a', labelNames: ['x'] });
    assert.throws(() => c.inc({ y: '1' } as never), /label "y" is not declared/);
    assert.throws(() => c.inc({ x: '1' }, -1), /only goes up/);
  });

  it('createMetrics loads prom-client only for the process metrics; they follow ours in /metrics', async () => {
    const m = createMetrics({ defaultMetrics: 'on-demand' });
    m.requests.inc({ frontend: 'pcp', result: '0' });
    assert.equal(m.registry.getSingleMetric('portd_process_process_resident_memory_bytes'), undefined);
    assert.doesNotMatch(await m.registry.metrics(), /portd_process_/);
    await m.startDefaultMetrics();
    const text = await m.registry.metrics();
    assert.match(text, /^portd_process_process_resident_memory_bytes \d+/m);
    assert.ok(text.indexOf('portd_requests_total') < text.indexOf('portd_process_'));
    assert.ok(m.registry.getSingleMetric('portd_process_process_resident_memory_bytes'));
    // in a fresh process: importing src/metrics.ts and counting loads no prom-client module
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        "const loaded = () => Object.keys(require.cache).some((k) => k.includes('/prom-client/'));" +
          "import('./src/metrics.ts').then(async ({ createMetrics }) => {" +
          " const m = createMetrics({ defaultMetrics: 'on-demand' });" +
          " m.requests.inc({ frontend: 'pcp', result: '0' }); await m.registry.metrics(); const before = loaded();" +
          ' await m.startDefaultMetrics(); console.log(JSON.stringify({ before, after: loaded() })); })',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim()), { before: false, after: true });
  });
});
