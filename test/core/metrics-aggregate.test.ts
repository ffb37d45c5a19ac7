import fc from 'fast-check';
import {
  type Aggregator,
  aggregate,
  Counter,
  createRegistry,
  exposition,
  Gauge,
  Histogram,
  type MetricFamily,
  type Registry,
} from '../../core/index.ts';
import { parsePrometheusText } from '../helpers/prometheus.ts';

// The supervisor of a multi-process gateway serves its own families and every worker's as one /metrics.

function gauge(aggregator: Aggregator, ...values: number[]): MetricFamily[][] {
  return values.map((value) => [
    { name: 'meshfed_g', help: 'h', type: 'gauge', aggregator, values: [{ labels: { k: 'x' }, value }] },
  ]);
}

test.each([
  ['sum', 6],
  ['max', 3],
  ['min', 1],
  ['average', 2],
  ['first', 2],
] as const)('a gauge aggregated by %s', (aggregator, expected) => {
  expect(aggregate(gauge(aggregator, 2, 1, 3))).toEqual([
    {
      name: 'meshfed_g',
      help: 'h',
      type: 'gauge',
      aggregator,
      values: [{ labels: { k: 'x' }, value: expected }],
    },
  ]);
});

test('a family marked omit is left out; a NaN sample is left out of its series', () => {
  expect(aggregate(gauge('omit', 1, 2))).toEqual([]);
  expect(aggregate(gauge('average', Number.NaN, 4, 2))[0]?.values).toEqual([
    { labels: { k: 'x' }, value: 3 },
  ]);
  expect(aggregate(gauge('sum', Number.NaN))[0]?.values).toEqual([]);
});

test('series match by name and labels whatever order the labels come in; families keep the order first seen', () => {
  const supervisor: MetricFamily[] = [
    { name: 'meshfed_own', help: 'o', type: 'gauge', aggregator: 'sum', values: [{ labels: {}, value: 1 }] },
    {
      name: 'meshfed_c_total',
      help: 'c',
      type: 'counter',
      aggregator: 'sum',
      values: [{ labels: { a: '1', b: '2' }, value: 1 }],
    },
  ];
  const worker: MetricFamily[] = [
    {
      name: 'meshfed_c_total',
      help: 'c',
      type: 'counter',
      aggregator: 'sum',
      values: [
        { labels: { b: '2', a: '1' }, value: 10 },
        { labels: { a: '1', b: '3' }, value: 5 },
      ],
    },
    { name: 'meshfed_w', help: 'w', type: 'gauge', aggregator: 'sum', values: [{ labels: {}, value: 7 }] },
  ];
  const out = aggregate([supervisor, worker]);
  expect(out.map((f) => f.name)).toEqual(['meshfed_own', 'meshfed_c_total', 'meshfed_w']);
  expect(out[1]?.values).toEqual([
    { labels: { a: '1', b: '2' }, value: 11 },
    { labels: { a: '1', b: '3' }, value: 5 },
  ]);
});

/** A registry as one process of a gateway fills it: a counter and a histogram over the same labels. */
function processRegistry(calls: readonly { service: string; seconds: number }[]): Registry {
  const r = createRegistry();
  const requests = new Counter({
    name: 'meshfed_requests_total',
    help: 'calls',
    labelNames: ['service'],
    registers: [r],
  });
  const latency = new Histogram({
    name: 'meshfed_request_duration_seconds',
    help: 'latency',
    labelNames: ['service'],
    buckets: [0.01, 0.1, 1],
    registers: [r],
  });
  new Gauge({ name: 'meshfed_listener_accept_queue', help: 'q', registers: [r], aggregator: 'max' }).set(
    calls.length,
  );
  for (const c of calls) {
    requests.inc({ service: c.service });
    latency.observe({ service: c.service }, c.seconds);
  }
  return r;
}

test('counters and histograms of several processes add up per series; the merged text parses and its buckets stay cumulative', async () => {
  const call = fc.record({
    service: fc.constantFrom('a.shop', 'b.shop', 'c.shop'),
    seconds: fc.double({ min: 0, max: 5, noNaN: true }),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(call, { maxLength: 20 }), { minLength: 1, maxLength: 4 }),
      async (procs) => {
        const json = await Promise.all(procs.map((calls) => processRegistry(calls).getMetricsAsJSON()));
        const families = parsePrometheusText(exposition(aggregate(json)));
        const all = procs.flat();
        for (const service of new Set(all.map((c) => c.service))) {
          const mine = all.filter((c) => c.service === service);
          const requests = families
            .get('meshfed_requests_total')!
            .samples.find((s) => s.labels.service === service);
          expect(requests?.value).toBe(mine.length);
          const buckets = families
            .get('meshfed_request_duration_seconds')!
            .samples.filter((s) => s.name.endsWith('_bucket') && s.labels.service === service);
          expect(buckets.map((b) => b.labels.le)).toEqual(['0.01', '0.1', '1', '+Inf']);
          expect(buckets.map((b) => b.value)).toEqual(
            [0.01, 0.1, 1, Infinity].map((le) => mine.filter((c) => c.seconds <= le).length),
          );
        }
        expect(families.get('meshfed_listener_accept_queue')!.samples[0]?.value).toBe(
          Math.max(...procs.map((p) => p.length)),
        );
      },
    ),
    { numRuns: 50 },
  );
});
