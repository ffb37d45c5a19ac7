import { MeshfedError } from './errors.ts';
import { exposition, PROMETHEUS_CONTENT_TYPE } from './metrics-text.ts';

/**
 * meshfed's metrics: counters, gauges and histograms with labels, kept in a registry that writes the
 * Prometheus text format (core/metrics-text.ts) and hands its families as plain data to the supervisor of a
 * multi-process gateway, which adds them up (core/metrics-aggregate.ts).
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

/**
 * How the supervisor of a multi-process gateway merges a family's series from each process: counters and
 * histograms add up, and so do gauges unless they say otherwise (`omit`: left out of the merged view).
 */
export type Aggregator = 'sum' | 'max' | 'min' | 'average' | 'first' | 'omit';

export type LabelValues<L extends string> = Partial<Record<L, string | number>>;

/** One sample line of a family. */
export interface MetricSample {
  labels: Record<string, string>;
  value: number;
  /** the sample's own name where it is not the family's: a histogram's `_bucket`, `_sum` and `_count` */
  metricName?: string;
}

/** A family as data: what a registry writes out, and what a worker sends its supervisor. */
export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  aggregator: Aggregator;
  values: MetricSample[];
}

export interface MetricConfig<L extends string, M> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  /** the registries that expose it (none: a metric read only by its owner) */
  registers: readonly Registry[];
  aggregator?: Aggregator;
  /** runs before each read, to set values computed at scrape time */
  collect?: (this: M) => void | Promise<void>;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function refuse(message: string): never {
  throw new MeshfedError('MESHFED_INTERNAL', message);
}

/** The base of every family: its name, help and label names, checked once, and its read at scrape time. */
export abstract class Metric<L extends string = string> {
  abstract readonly type: MetricType;
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly aggregator: Aggregator;
  readonly #collect: ((this: never) => void | Promise<void>) | undefined;

  constructor(config: MetricConfig<L, never>, reserved: readonly string[] = []) {
    const { name } = config;
    if (!METRIC_NAME.test(name))
      refuse(`metric name ${JSON.stringify(name)} is not a Prometheus metric name`);
    if (!config.help) refuse(`metric ${name} has no help text`);
    const labelNames = config.labelNames ?? [];
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__') || reserved.includes(l))
        refuse(`metric ${name}: ${JSON.stringify(l)} cannot be a label name`);
    }
    if (new Set(labelNames).size !== labelNames.length) refuse(`metric ${name} names a label twice`);
    this.name = name;
    this.help = config.help;
    this.labelNames = labelNames;
    this.aggregator = config.aggregator ?? 'sum';
    this.#collect = config.collect;
  }

  /** Registers this family in each registry; the subclasses call it once their own fields are set. */
  protected registerIn(registers: readonly Registry[]): void {
    for (const r of registers) r.register(this);
  }

  /** The family's series as they are now, after its collect callback ran. */
  async get(): Promise<MetricFamily> {
    if (this.#collect) await this.#collect.call(this as never);
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.samples(),
    };
  }

  protected abstract samples(): MetricSample[];
}

/**
 * A family's series by their label values, made on first use. A series' labels are written in the order the
 * family declares them; a label left out of a call is left out of its series, and one the family does not
 * declare is refused.
 */
class SeriesTable<L extends string, S> {
  readonly #series = new Map<string, S>();
  readonly #metric: string;
  readonly #labelNames: readonly L[];
  readonly #names: ReadonlySet<string>;
  readonly #make: (labels: Record<string, string>) => S;

  constructor(metric: Metric<L>, make: (labels: Record<string, string>) => S) {
    this.#metric = metric.name;
    this.#labelNames = metric.labelNames;
    this.#names = new Set(metric.labelNames);
    this.#make = make;
  }

  of(labels: LabelValues<L> | undefined): S {
    let key = '';
    if (labels !== undefined) {
      for (const k in labels) {
        if (!this.#names.has(k)) refuse(`metric ${this.#metric} has no label ${JSON.stringify(k)}`);
      }
      // each value with its length before it: no two label sets share a key, whatever their values hold
      for (const n of this.#labelNames) {
        const v = labels[n];
        key += v === undefined ? '-' : `${String(v).length}:${v}`;
      }
    }
    let s = this.#series.get(key);
    if (s === undefined) {
      const own: Record<string, string> = {};
      for (const n of this.#labelNames) {
        const v = labels?.[n];
        if (v !== undefined) own[n] = String(v);
      }
      s = this.#make(own);
      this.#series.set(key, s);
    }
    return s;
  }

  clear(): void {
    this.#series.clear();
  }

  values(): IterableIterator<S> {
    return this.#series.values();
  }
}

interface Series {
  labels: Record<string, string>;
  value: number;
}

/** A counter's or gauge's series: one number per label set. */
abstract class ValueMetric<L extends string> extends Metric<L> {
  readonly #series = new SeriesTable<L, Series>(this, (labels) => ({ labels, value: 0 }));

  constructor(config: MetricConfig<L, never>) {
    super(config);
    this.reset();
    this.registerIn(config.registers);
  }

  /** Forgets every series; a family without labels keeps its one series, at 0. */
  reset(): void {
    this.#series.clear();
    if (this.labelNames.length === 0) this.#series.of(undefined);
  }

  protected seriesOf(labels: LabelValues<L> | undefined): Series {
    return this.#series.of(labels);
  }

  protected samples(): MetricSample[] {
    return Array.from(this.#series.values(), (s) => ({ labels: s.labels, value: s.value }));
  }
}

/** `(labels, value)` or `(value)`: the two ways a value is given. */
function split<L extends string>(
  a: LabelValues<L> | number | undefined,
  b: number | undefined,
): [LabelValues<L> | undefined, number | undefined] {
  return typeof a === 'object' ? [a, b] : [undefined, a];
}

export class Counter<L extends string = string> extends ValueMetric<L> {
  readonly type = 'counter';

  constructor(config: MetricConfig<L, Counter<L>>) {
    super(config as MetricConfig<L, never>);
  }

  /** Adds `value` (default 1) to the series of `labels`; a counter only goes up. */
  inc(value?: number): void;
  inc(labels: LabelValues<L>, value?: number): void;
  inc(a?: LabelValues<L> | number, b?: number): void {
    const [labels, value = 1] = split(a, b);
    if (!(value >= 0 && value !== Infinity))
      refuse(`metric ${this.name}: a counter cannot be increased by ${value}`);
    this.seriesOf(labels).value += value;
  }
}

export class Gauge<L extends string = string> extends ValueMetric<L> {
  readonly type = 'gauge';

  constructor(config: MetricConfig<L, Gauge<L>>) {
    super(config as MetricConfig<L, never>);
  }

  set(value: number): void;
  set(labels: LabelValues<L>, value: number): void;
  set(a: LabelValues<L> | number, b?: number): void {
    const [labels, value] = split(a, b);
    if (typeof value !== 'number') refuse(`metric ${this.name}: a gauge cannot be set to ${value}`);
    this.seriesOf(labels).value = value;
  }

  inc(value?: number): void;
  inc(labels: LabelValues<L>, value?: number): void;
  inc(a?: LabelValues<L> | number, b?: number): void {
    const [labels, value = 1] = split(a, b);
    this.seriesOf(labels).value += value;
  }
}

/** One histogram series: its counts per bucket bound (not cumulative), their sum and count. */
export interface HistogramSeries {
  labels: Record<string, string>;
  /** calls per bound, in the order of the family's buckets; what is above the last bound is only in count */
  buckets: ArrayLike<number>;
  sum: number;
  count: number;
}

export interface HistogramConfig<L extends string> extends MetricConfig<L, Histogram<L>> {
  /** upper bounds, ascending; `+Inf` is always added */
  buckets: readonly number[];
  /**
   * The series to expose, read at each scrape in place of what observe() recorded: for a family whose counts
   * live elsewhere (the golden metrics keep theirs per label tuple, so a call costs no label lookup).
   */
  series?: () => Iterable<HistogramSeries>;
}

export class Histogram<L extends string = string> extends Metric<L> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  readonly #read: (() => Iterable<HistogramSeries>) | undefined;
  readonly #series: SeriesTable<L, HistogramSeries & { buckets: Float64Array }>;
  readonly #bounds: readonly string[];

  constructor(config: HistogramConfig<L>) {
    super(config as MetricConfig<L, never>, ['le']);
    const b = config.buckets;
    if (b.length === 0 || b.some((x, i) => !Number.isFinite(x) || (i > 0 && x <= b[i - 1]!)))
      refuse(`metric ${this.name}: buckets must be finite and strictly ascending`);
    this.buckets = [...b];
    this.#bounds = b.map(String);
    this.#read = config.series;
    this.#series = new SeriesTable(this, (labels) => ({
      labels,
      buckets: new Float64Array(this.buckets.length),
      sum: 0,
      count: 0,
    }));
    this.registerIn(config.registers);
  }

  observe(value: number): void;
  observe(labels: LabelValues<L>, value: number): void;
  observe(a: LabelValues<L> | number, b?: number): void {
    const [labels, value] = split(a, b);
    if (typeof value !== 'number' || Number.isNaN(value))
      refuse(`metric ${this.name}: cannot observe ${value}`);
    const s = this.#series.of(labels);
    const i = this.buckets.findIndex((bound) => value <= bound);
    if (i !== -1) s.buckets[i]!++;
    s.sum += value;
    s.count++;
  }

  reset(): void {
    this.#series.clear();
  }

  /** Per series: the cumulative count at each bound with `le` first, `+Inf`, then `_sum` and `_count`. */
  protected samples(): MetricSample[] {
    const out: MetricSample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.#read?.() ?? this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.buckets[i]!;
        out.push({ labels: { le: this.#bounds[i]!, ...s.labels }, value: acc, metricName: bucket });
      }
      out.push(
        { labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket },
        { labels: s.labels, value: s.sum, metricName: `${this.name}_sum` },
        { labels: s.labels, value: s.count, metricName: `${this.name}_count` },
      );
    }
    return out;
  }
}

/** The families of one process, by name, in the order they were made. */
export class Registry {
  readonly contentType = PROMETHEUS_CONTENT_TYPE;
  readonly #metrics = new Map<string, Metric>();

  /** Adds a family; a second family of the same name is refused (the same one again changes nothing). */
  register(metric: Metric): void {
    const have = this.#metrics.get(metric.name);
    if (have !== undefined && have !== metric)
      refuse(
        `metric ${metric.name} is registered twice: a registry holds one metric of a name (share the first)`,
      );
    this.#metrics.set(metric.name, metric);
  }

  getSingleMetric(name: string): Metric | undefined {
    return this.#metrics.get(name);
  }

  /** Every family's series, each collected as it is read (concurrently: collects may wait on I/O). */
  getMetricsAsJSON(): Promise<MetricFamily[]> {
    return Promise.all(Array.from(this.#metrics.values(), (m) => m.get()));
  }

  /** The exposition of one family ('' when there is none of that name). */
  async getSingleMetricAsString(name: string): Promise<string> {
    const m = this.#metrics.get(name);
    return m === undefined ? '' : exposition([await m.get()]);
  }

  /** The Prometheus text exposition of every family. */
  async metrics(): Promise<string> {
    return exposition(await this.getMetricsAsJSON());
  }
}

/** One registry per process, built in the composition root and handed to every component. */
export function createRegistry(): Registry {
  return new Registry();
}

/** Latency buckets in seconds, from 100us to 10s: cross-cluster calls span that whole range. */
export const LATENCY_BUCKETS = [
  0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/**
 * The registry's counter of that name, made on first use: several components of one process (sources, nodes in
 * tests and benchmarks) may share one registry, which refuses a second metric of the same name.
 */
export function sharedCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
): Counter<L> {
  const have = registry.getSingleMetric(name);
  if (have === undefined) return new Counter({ name, help, labelNames, registers: [registry] });
  if (!(have instanceof Counter)) refuse(`metric ${name} is registered, but not as a counter`);
  return have as Counter<L>;
}
