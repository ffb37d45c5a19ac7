import type { Aggregator, MetricFamily, MetricSample } from './metrics.ts';

const COMBINE: Record<Exclude<Aggregator, 'omit'>, (values: readonly number[]) => number> = {
  sum: (v) => v.reduce((a, b) => a + b, 0),
  max: (v) => Math.max(...v),
  min: (v) => Math.min(...v),
  average: (v) => v.reduce((a, b) => a + b, 0) / v.length,
  first: (v) => v[0]!,
};

/** A sample's name and labels, the labels sorted by name: one key per series whatever the order they came in. */
function seriesKey(s: MetricSample): string {
  let key = s.metricName ?? '';
  for (const k of Object.keys(s.labels).sort()) {
    const v = s.labels[k]!;
    key += `\u0000${k}=${v.length}:${v}`;
  }
  return key;
}

/**
 * The families of several processes as one: the supervisor of a multi-process gateway with its workers.
 * Families merge by name, in the order first seen, with the first one's help, type and aggregator; their
 * series merge by name and labels, by that aggregator (a family marked `omit` is left out). A NaN sample
 * says a process has no reading (an event-loop figure with nothing measured yet): it is left out, so it
 * cannot turn the others' figure into NaN.
 */
export function aggregate(perProcess: readonly (readonly MetricFamily[])[]): MetricFamily[] {
  const byName = new Map<string, MetricFamily[]>();
  for (const families of perProcess) {
    for (const f of families) {
      const same = byName.get(f.name);
      if (same) same.push(f);
      else byName.set(f.name, [f]);
    }
  }
  const out: MetricFamily[] = [];
  for (const [name, families] of byName) {
    const { help, type, aggregator } = families[0]!;
    if (aggregator === 'omit') continue;
    const series = new Map<string, { sample: MetricSample; values: number[] }>();
    for (const f of families) {
      for (const s of f.values) {
        if (Number.isNaN(s.value)) continue;
        const key = seriesKey(s);
        const have = series.get(key);
        if (have) have.values.push(s.value);
        else series.set(key, { sample: s, values: [s.value] });
      }
    }
    const combine = COMBINE[aggregator];
    const values = Array.from(series.values(), ({ sample, values }) => {
      const merged: MetricSample = { labels: sample.labels, value: combine(values) };
      if (sample.metricName !== undefined) merged.metricName = sample.metricName;
      return merged;
    });
    out.push({ name, help, type, aggregator, values });
  }
  return out;
}
