import { aggregate, createRegistry, registerProcessMetrics, waitFor } from '../../core/index.ts';
import { parsePrometheusText } from '../helpers/prometheus.ts';

// The process metrics a gateway exposes under meshfed_process_, with the names operators' dashboards query.

const P = 'meshfed_process_';

const EXPECTED: [string, string][] = [
  ['process_cpu_user_seconds_total', 'counter'],
  ['process_cpu_system_seconds_total', 'counter'],
  ['process_cpu_seconds_total', 'counter'],
  ['process_start_time_seconds', 'gauge'],
  ['process_resident_memory_bytes', 'gauge'],
  ['process_virtual_memory_bytes', 'gauge'],
  ['process_heap_bytes', 'gauge'],
  ['process_open_fds', 'gauge'],
  ['process_max_fds', 'gauge'],
  ['nodejs_eventloop_lag_seconds', 'gauge'],
  ['nodejs_eventloop_lag_min_seconds', 'gauge'],
  ['nodejs_eventloop_lag_max_seconds', 'gauge'],
  ['nodejs_eventloop_lag_mean_seconds', 'gauge'],
  ['nodejs_eventloop_lag_stddev_seconds', 'gauge'],
  ['nodejs_eventloop_lag_p50_seconds', 'gauge'],
  ['nodejs_eventloop_lag_p90_seconds', 'gauge'],
  ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
  ['nodejs_active_resources', 'gauge'],
  ['nodejs_active_resources_total', 'gauge'],
  ['nodejs_active_handles', 'gauge'],
  ['nodejs_active_handles_total', 'gauge'],
  ['nodejs_active_requests', 'gauge'],
  ['nodejs_active_requests_total', 'gauge'],
  ['nodejs_heap_size_total_bytes', 'gauge'],
  ['nodejs_heap_size_used_bytes', 'gauge'],
  ['nodejs_external_memory_bytes', 'gauge'],
  ['nodejs_heap_space_size_total_bytes', 'gauge'],
  ['nodejs_heap_space_size_used_bytes', 'gauge'],
  ['nodejs_heap_space_size_available_bytes', 'gauge'],
  ['nodejs_version_info', 'gauge'],
  ['nodejs_gc_duration_seconds', 'histogram'],
];

function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return parsePrometheusText(text)
    .get(P + name)
    ?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

test('every process family is there, typed, and the exposition parses', async () => {
  const r = createRegistry();
  registerProcessMetrics(r);
  const families = parsePrometheusText(await r.metrics());
  expect([...families.values()].map((f) => [f.name, f.type])).toEqual(EXPECTED.map(([n, t]) => [P + n, t]));
  const text = await r.metrics();
  const [major = '', minor = '', patch = ''] = process.versions.node.split('.');
  expect(value(text, 'nodejs_version_info', { version: process.version, major, minor, patch })).toBe(1);
  expect(value(text, 'process_resident_memory_bytes')).toBeGreaterThan(10e6);
  expect(value(text, 'process_open_fds')).toBeGreaterThan(2);
  expect(value(text, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(1e6);
  expect(value(text, 'nodejs_heap_space_size_used_bytes', { space: 'old' })).toBeGreaterThan(0);
  const start = value(text, 'process_start_time_seconds')!;
  expect(Math.abs(start - (Date.now() / 1000 - process.uptime()))).toBeLessThan(2);
  // the three CPU counters come from one reading
  const user = value(text, 'process_cpu_user_seconds_total')!;
  const system = value(text, 'process_cpu_system_seconds_total')!;
  expect(user).toBeGreaterThan(0);
  expect(value(text, 'process_cpu_seconds_total')).toBeCloseTo(user + system, 9);
});

test('the event-loop delay figures are NaN until the monitor started by the first read has measured, then numbers', async () => {
  const r = createRegistry();
  registerProcessMetrics(r);
  const first = await r.metrics();
  for (const stat of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'])
    expect(value(first, `nodejs_eventloop_lag_${stat}_seconds`)).toBeNaN();
  expect(value(first, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
  const later = await waitFor(
    async () => {
      const t = await r.metrics();
      return Number.isNaN(value(t, 'nodejs_eventloop_lag_p99_seconds')) ? undefined : t;
    },
    { timeoutMs: 5_000, intervalMs: 25, what: 'the event-loop delay monitor to measure' },
  );
  expect(value(later, 'nodejs_eventloop_lag_min_seconds')).toBeGreaterThan(0);
  expect(value(later, 'nodejs_eventloop_lag_max_seconds')).toBeLessThan(60);
});

test('garbage collections are counted from the first read on', async () => {
  const r = createRegistry();
  registerProcessMetrics(r);
  await r.metrics();
  let garbage: unknown[] = [];
  const text = await waitFor(
    async () => {
      garbage = Array.from({ length: 50_000 }, (_, i) => ({ i }));
      const t = await r.metrics();
      const count = parsePrometheusText(t)
        .get(`${P}nodejs_gc_duration_seconds`)
        ?.samples.filter((s) => s.name.endsWith('_count'))
        .reduce((n, s) => n + s.value, 0);
      return (count ?? 0) > 0 ? t : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 1, what: 'a garbage collection to be observed' },
  );
  expect(garbage.length).toBe(50_000);
  expect(text).toMatch(
    /nodejs_gc_duration_seconds_bucket\{le="\+Inf",kind="(minor|major|incremental|weakcb)"\} \d/,
  );
});

test('across processes: start time is left out, the version comes from the first process, memory adds up', async () => {
  const a = createRegistry();
  const b = createRegistry();
  registerProcessMetrics(a);
  registerProcessMetrics(b);
  const merged = aggregate([await a.getMetricsAsJSON(), await b.getMetricsAsJSON()]);
  const names = merged.map((f) => f.name);
  expect(names).not.toContain(`${P}process_start_time_seconds`);
  expect(merged.find((f) => f.name === `${P}nodejs_version_info`)?.values).toHaveLength(1);
  const rss = merged.find((f) => f.name === `${P}process_resident_memory_bytes`)?.values[0]?.value;
  expect(rss).toBeGreaterThan(process.memoryUsage.rss() * 1.5);
});
