/**
 * portd's own counters, gauges and histograms, written out in the Prometheus text exposition format
 * (version 0.0.4) exactly as prom-client writes them (test/unit/metrics-core.test.ts compares the two
 * byte for byte). Why not prom-client itself: it and @opentelemetry/api are 51 modules, ≈ 5 MiB of the
 * idle RSS (docs/benchmarks.md, "footprint"), and the metrics are updated on hot paths from the first
 * request on, so they cannot wait for it. prom-client is still what collects the process metrics
 * (`portd_process_*`), loaded when the admin app is built: attach() adds its registry to the output.
 */

export type Labels = Record<string, string | number>;
export interface MetricValue {
  value: number;
  labels: Labels;
  metricName?: string;
}
export interface MetricSnapshot {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values: MetricValue[];
  aggregator: 'sum';
}
interface Metric {
  readonly name: string;
  get(): Promise<MetricSnapshot>;
  /** the metric's lines (HELP, TYPE, samples), no trailing newline */
  text(): string;
}
/** what attach() takes: a prom-client Registry, by shape */
export interface ForeignRegistry {
  metrics(): Promise<string>;
  getSingleMetric(name: string): unknown;
  getSingleMetricAsString(name: string): Promise<string>;
  getMetricsAsArray(): readonly unknown[];
}

const escapeHelp = (s: string) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeValue = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const num = (v: number) => (v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v));
const pairs = (l: Labels) =>
  Object.entries(l)
    .map(([k, v]) => `${k}="${escapeValue(String(v))}"`)
    .join(',');
const braces = (l: Labels) => {
  const p = pairs(l);
  return p ? `{${p}}` : '';
};

interface Config<N extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly N[];
}

/** the series of one metric by label set; key = the values in labelNames order (prom-client: same set, same series) */
function series<N extends string, S>(cfg: Config<N>, make: (labels: Labels) => S) {
  const names: readonly string[] = cfg.labelNames ?? [];
  const map = new Map<string, { labels: Labels; s: S }>();
  const of = (labels: Partial<Record<N, string | number>> | undefined): S => {
    const l = (labels ?? {}) as Labels;
    let key = '';
    for (const k in l) if (!names.includes(k)) throw new Error(`metric ${cfg.name}: label "${k}" is not declared`);
    for (const n of names) key += `${l[n] ?? ''}\u0000`;
    let e = map.get(key);
    if (!e) {
      e = { labels: { ...l }, s: make(l) };
      map.set(key, e);
    }
    return e.s;
  };
  const fromArgs = (args: readonly (string | number | Partial<Record<N, string | number>>)[]) =>
    typeof args[0] === 'object'
      ? (args[0] as Partial<Record<N, string | number>>)
      : (Object.fromEntries(names.map((n, i) => [n, args[i]]).filter(([, v]) => v !== undefined)) as Partial<
          Record<N, string | number>
        >);
  return { map, of, fromArgs, unlabelled: names.length === 0 };
}

function head(cfg: Config<string>, type: string) {
  return [`# HELP ${cfg.name} ${escapeHelp(cfg.help)}`, `# TYPE ${cfg.name} ${type}`];
}

export class Counter<N extends string = string> implements Metric {
  readonly name: string;
  private readonly s;
  constructor(private readonly cfg: Config<N> & { registers?: readonly Registry[] }) {
    this.name = cfg.name;
    this.s = series(cfg, () => ({ v: 0 }));
    if (this.s.unlabelled) this.s.of(undefined);
    for (const r of cfg.registers ?? []) r.register(this);
  }
  inc(labels?: Partial<Record<N, string | number>> | number, value = 1): void {
    if (typeof labels === 'number') {
      value = labels;
      labels = undefined;
    }
    if (!(value >= 0)) throw new Error(`metric ${this.name}: a counter only goes up (inc ${value})`);
    this.s.of(labels).v += value;
  }
  labels(...args: (string | number | Partial<Record<N, string | number>>)[]): { inc(value?: number): void } {
    const cell = this.s.of(this.s.fromArgs(args));
    const name = this.name;
    return {
      inc(value = 1) {
        if (!(value >= 0)) throw new Error(`metric ${name}: a counter only goes up (inc ${value})`);
        cell.v += value;
      },
    };
  }
  async get(): Promise<MetricSnapshot> {
    const values = [...this.s.map.values()].map((e) => ({ value: e.s.v, labels: e.labels }));
    return { name: this.name, help: this.cfg.help, type: 'counter', values, aggregator: 'sum' };
  }
  text(): string {
    const out = head(this.cfg, 'counter');
    for (const e of this.s.map.values()) out.push(`${this.name}${braces(e.labels)} ${num(e.s.v)}`);
    return out.join('\n');
  }
}

export class Gauge<N extends string = string> implements Metric {
  readonly name: string;
  private readonly s;
  constructor(private readonly cfg: Config<N> & { registers?: readonly Registry[] }) {
    this.name = cfg.name;
    this.s = series(cfg, () => ({ v: 0 }));
    if (this.s.unlabelled) this.s.of(undefined);
    for (const r of cfg.registers ?? []) r.register(this);
  }
  set(labels: Partial<Record<N, string | number>> | number, value?: number): void {
    if (typeof labels === 'number') this.s.of(undefined).v = labels;
    else this.s.of(labels).v = value ?? 0;
  }
  inc(labels?: Partial<Record<N, string | number>> | number, value = 1): void {
    if (typeof labels === 'number') this.s.of(undefined).v += labels;
    else this.s.of(labels).v += value;
  }
  dec(labels?: Partial<Record<N, string | number>> | number, value = 1): void {
    if (typeof labels === 'number') this.s.of(undefined).v -= labels;
    else this.s.of(labels).v -= value;
  }
  async get(): Promise<MetricSnapshot> {
    const values = [...this.s.map.values()].map((e) => ({ value: e.s.v, labels: e.labels }));
    return { name: this.name, help: this.cfg.help, type: 'gauge', values, aggregator: 'sum' };
  }
  text(): string {
    const out = head(this.cfg, 'gauge');
    for (const e of this.s.map.values()) out.push(`${this.name}${braces(e.labels)} ${num(e.s.v)}`);
    return out.join('\n');
  }
}

export class Histogram<N extends string = string> implements Metric {
  readonly name: string;
  private readonly s;
  private readonly upper: readonly number[];
  constructor(private readonly cfg: Config<N> & { buckets: readonly number[]; registers?: readonly Registry[] }) {
    this.name = cfg.name;
    this.upper = [...cfg.buckets].sort((a, b) => a - b);
    this.s = series(cfg, () => ({ counts: new Array<number>(this.upper.length).fill(0), sum: 0, count: 0 }));
    if (this.s.unlabelled) this.s.of(undefined);
    for (const r of cfg.registers ?? []) r.register(this);
  }
  observe(labels: Partial<Record<N, string | number>> | number, value?: number): void {
    let v: number;
    let cell;
    if (typeof labels === 'number') {
      v = labels;
      cell = this.s.of(undefined);
    } else {
      v = value ?? 0;
      cell = this.s.of(labels);
    }
    // counts per bucket (not cumulative) here; cumulated when read, as prom-client does
    const u = this.upper;
    for (let i = 0; i < u.length; i++)
      if (v <= u[i]!) {
        cell.counts[i]!++;
        break;
      }
    cell.sum += v;
    cell.count++;
  }
  private rows(): MetricValue[] {
    const out: MetricValue[] = [];
    for (const e of this.s.map.values()) {
      let acc = 0;
      for (let i = 0; i < this.upper.length; i++) {
        acc += e.s.counts[i]!;
        out.push({ value: acc, metricName: `${this.name}_bucket`, labels: { le: this.upper[i]!, ...e.labels } });
      }
      out.push({ value: e.s.count, metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...e.labels } });
      out.push({ value: e.s.sum, metricName: `${this.name}_sum`, labels: { ...e.labels } });
      out.push({ value: e.s.count, metricName: `${this.name}_count`, labels: { ...e.labels } });
    }
    return out;
  }
  async get(): Promise<MetricSnapshot> {
    return { name: this.name, help: this.cfg.help, type: 'histogram', values: this.rows(), aggregator: 'sum' };
  }
  text(): string {
    const out = head(this.cfg, 'histogram');
    for (const r of this.rows()) out.push(`${r.metricName}${braces(r.labels)} ${num(r.value)}`);
    return out.join('\n');
  }
}

/** the metrics of one portd, in registration order, plus (once attached) prom-client's process metrics */
export class Registry {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
  private readonly own = new Map<string, Metric>();
  private foreign: ForeignRegistry | null = null;
  register(m: Metric): void {
    if (this.own.has(m.name)) throw new Error(`metric ${m.name} is registered twice`);
    this.own.set(m.name, m);
  }
  /** adds another registry's metrics after ours (prom-client's default collectors) */
  attach(r: ForeignRegistry): void {
    this.foreign = r;
  }
  async metrics(): Promise<string> {
    const parts = [...this.own.values()].map((m) => m.text());
    if (this.foreign && this.foreign.getMetricsAsArray().length > 0)
      parts.push((await this.foreign.metrics()).trimEnd());
    return `${parts.join('\n\n')}\n`;
  }
  getSingleMetric(name: string): { get(): Promise<MetricSnapshot> } | undefined {
    return (
      this.own.get(name) ?? (this.foreign?.getSingleMetric(name) as { get(): Promise<MetricSnapshot> } | undefined)
    );
  }
  async getSingleMetricAsString(name: string): Promise<string> {
    const m = this.own.get(name);
    if (m) return m.text();
    if (this.foreign) return this.foreign.getSingleMetricAsString(name);
    throw new Error(`no metric ${name}`);
  }
}
