import fc from 'fast-check';
import {
  Counter,
  createRegistry,
  Gauge,
  Histogram,
  type MeshfedError,
  PROMETHEUS_CONTENT_TYPE,
  Registry,
  sharedCounter,
} from '../../core/index.ts';
import { parsePrometheusText } from '../helpers/prometheus.ts';

/** the characters the format escapes or that delimit labels, and a few beyond ASCII */
const LABEL_CHARACTERS = fc.constantFrom(
  'a',
  'Z',
  '0',
  ' ',
  '\\',
  '"',
  '\n',
  '{',
  '}',
  ',',
  '=',
  '\u00e9',
  '\u6771',
  '\u{1f600}',
);

/** What a call threw, to assert on its code and on the metric it names. */
function thrown(f: () => unknown): MeshfedError {
  try {
    f();
  } catch (err) {
    return err as MeshfedError;
  }
  throw new Error('expected a throw');
}

describe('the text exposition', () => {
  test('HELP and TYPE, escapes, labels in declared order, NaN and infinities, a blank line between families', async () => {
    const r = createRegistry();
    const c = new Counter({
      name: 'meshfed_t_total',
      help: 'a help with \\ and a\nline feed, and "quotes"',
      labelNames: ['listener', 'reason'],
      registers: [r],
    });
    c.inc({ reason: 'back\\slash "quoted"\nnext', listener: 'egress' }, 2);
    c.inc({ listener: 'egress', reason: 'back\\slash "quoted"\nnext' });
    const g = new Gauge({ name: 'meshfed_t_gauge', help: 'g', labelNames: ['k'], registers: [r] });
    g.set({ k: 'nan' }, Number.NaN);
    g.set({ k: 'up' }, Infinity);
    g.set({ k: 'down' }, -Infinity);
    g.set({ k: 'small' }, 1e-7);
    new Gauge({ name: 'meshfed_t_plain', help: 'p', registers: [r] });
    expect(await r.metrics()).toBe(
      [
        '# HELP meshfed_t_total a help with \\\\ and a\\nline feed, and "quotes"',
        '# TYPE meshfed_t_total counter',
        'meshfed_t_total{listener="egress",reason="back\\\\slash \\"quoted\\"\\nnext"} 3',
        '',
        '# HELP meshfed_t_gauge g',
        '# TYPE meshfed_t_gauge gauge',
        'meshfed_t_gauge{k="nan"} NaN',
        'meshfed_t_gauge{k="up"} +Inf',
        'meshfed_t_gauge{k="down"} -Inf',
        'meshfed_t_gauge{k="small"} 1e-7',
        '',
        '# HELP meshfed_t_plain p',
        '# TYPE meshfed_t_plain gauge',
        'meshfed_t_plain 0',
        '',
      ].join('\n'),
    );
    expect(r.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(PROMETHEUS_CONTENT_TYPE).toBe(r.contentType);
  });

  test('a histogram: cumulative buckets with le first, +Inf, _sum and _count, per series', async () => {
    const r = createRegistry();
    const h = new Histogram({
      name: 'meshfed_t_seconds',
      help: 'h',
      labelNames: ['kind'],
      buckets: [0.1, 1],
      registers: [r],
    });
    for (const v of [0.05, 0.1, 0.5, 3]) h.observe({ kind: 'a' }, v);
    h.observe({ kind: 'b' }, 2);
    expect(await r.metrics()).toBe(
      [
        '# HELP meshfed_t_seconds h',
        '# TYPE meshfed_t_seconds histogram',
        'meshfed_t_seconds_bucket{le="0.1",kind="a"} 2',
        'meshfed_t_seconds_bucket{le="1",kind="a"} 3',
        'meshfed_t_seconds_bucket{le="+Inf",kind="a"} 4',
        'meshfed_t_seconds_sum{kind="a"} 3.65',
        'meshfed_t_seconds_count{kind="a"} 4',
        'meshfed_t_seconds_bucket{le="0.1",kind="b"} 0',
        'meshfed_t_seconds_bucket{le="1",kind="b"} 0',
        'meshfed_t_seconds_bucket{le="+Inf",kind="b"} 1',
        'meshfed_t_seconds_sum{kind="b"} 2',
        'meshfed_t_seconds_count{kind="b"} 1',
        '',
      ].join('\n'),
    );
    h.reset();
    expect(await r.getSingleMetricAsString('meshfed_t_seconds')).toBe(
      '# HELP meshfed_t_seconds h\n# TYPE meshfed_t_seconds histogram\n',
    );
  });

  test('any label value reads back the same through a strict parser', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: LABEL_CHARACTERS, maxLength: 40 }), async (value) => {
        const r = createRegistry();
        new Gauge({ name: 'meshfed_t', help: 'h', labelNames: ['v'], registers: [r] }).set({ v: value }, 1);
        const family = parsePrometheusText(await r.metrics()).get('meshfed_t');
        expect(family?.samples).toEqual([{ name: 'meshfed_t', labels: { v: value }, value: 1 }]);
      }),
    );
  });

  test('every bucket counts the observations at or under its bound, +Inf and _count all of them', async () => {
    const bounds = [0.001, 0.01, 0.1, 1, 10];
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.double({ min: 0, max: 100, noNaN: true }), { maxLength: 50 }),
        async (observed) => {
          const r = createRegistry();
          const h = new Histogram({ name: 'meshfed_t', help: 'h', buckets: bounds, registers: [r] });
          for (const v of observed) h.observe(v);
          const { values } = await h.get();
          if (observed.length === 0) return expect(values).toEqual([]);
          const at = (le: string) => values.find((v) => v.labels.le === le)?.value;
          for (const b of bounds) expect(at(String(b))).toBe(observed.filter((v) => v <= b).length);
          expect(at('+Inf')).toBe(observed.length);
          expect(values.find((v) => v.metricName === 'meshfed_t_count')?.value).toBe(observed.length);
          const sum = values.find((v) => v.metricName === 'meshfed_t_sum')?.value;
          expect(sum).toBeCloseTo(
            observed.reduce((a, b) => a + b, 0),
            6,
          );
        },
      ),
    );
  });
});

describe('counters and gauges', () => {
  test('a family without labels reads 0 before anything is counted, and after reset()', async () => {
    const c = new Counter({ name: 'meshfed_t_total', help: 'h', registers: [] });
    expect((await c.get()).values).toEqual([{ labels: {}, value: 0 }]);
    c.inc(4);
    c.inc();
    expect((await c.get()).values).toEqual([{ labels: {}, value: 5 }]);
    c.reset();
    expect((await c.get()).values).toEqual([{ labels: {}, value: 0 }]);
  });

  test('collect runs before each read, sync or async, and may rebuild the series', async () => {
    let n = 0;
    const r = createRegistry();
    new Gauge({
      name: 'meshfed_t_sync',
      help: 'h',
      labelNames: ['i'],
      registers: [r],
      collect() {
        this.reset();
        this.set({ i: String(++n) }, n);
      },
    });
    new Gauge({
      name: 'meshfed_t_async',
      help: 'h',
      registers: [r],
      async collect() {
        await new Promise<void>((resolve) => setImmediate(resolve));
        this.set(42);
      },
    });
    await r.metrics();
    const json = await r.getMetricsAsJSON();
    expect(json.map((f) => [f.name, f.type, f.aggregator, f.values])).toEqual([
      ['meshfed_t_sync', 'gauge', 'sum', [{ labels: { i: '2' }, value: 2 }]],
      ['meshfed_t_async', 'gauge', 'sum', [{ labels: {}, value: 42 }]],
    ]);
  });

  test('a gauge goes up and down; a counter refuses to go down or by a non-number', async () => {
    const g = new Gauge({ name: 'meshfed_t', help: 'h', registers: [] });
    g.inc();
    g.inc(-3);
    expect((await g.get()).values).toEqual([{ labels: {}, value: -2 }]);
    const c = new Counter({ name: 'meshfed_t_total', help: 'h', registers: [] });
    for (const bad of [-1, Number.NaN, Infinity]) {
      const err = thrown(() => c.inc(bad));
      expect(err.code).toBe('MESHFED_INTERNAL');
      expect(err.message).toContain('meshfed_t_total');
    }
    expect(thrown(() => g.set({}, undefined as unknown as number)).code).toBe('MESHFED_INTERNAL');
  });

  test('a label the family does not declare is refused, naming the metric and the label', () => {
    const c = new Counter({ name: 'meshfed_t_total', help: 'h', labelNames: ['a'], registers: [] });
    const err = thrown(() => c.inc({ a: 'x', b: 'y' } as never));
    expect(err.code).toBe('MESHFED_INTERNAL');
    expect(err.message).toMatch(/meshfed_t_total.*"b"/);
  });

  test('label sets whose values would join alike stay apart', async () => {
    const c = new Counter({ name: 'meshfed_t_total', help: 'h', labelNames: ['a', 'b'], registers: [] });
    c.inc({ a: 'x:1', b: 'y' });
    c.inc({ a: 'x', b: '1:y' });
    c.inc({ a: 'x' });
    expect((await c.get()).values.map((v) => v.labels)).toEqual([
      { a: 'x:1', b: 'y' },
      { a: 'x', b: '1:y' },
      { a: 'x' },
    ]);
  });
});

describe('the registry refuses', () => {
  test('a second metric of a name, naming it; the same metric again is accepted', () => {
    const r = new Registry();
    const first = new Counter({ name: 'meshfed_dup_total', help: 'h', registers: [r] });
    r.register(first);
    const err = thrown(() => new Gauge({ name: 'meshfed_dup_total', help: 'h', registers: [r] }));
    expect(err.code).toBe('MESHFED_INTERNAL');
    expect(err.message).toContain('meshfed_dup_total');
    expect(r.getSingleMetric('meshfed_dup_total')).toBe(first);
  });

  test.each([
    ['a metric name with a dash', { name: 'meshfed-x', help: 'h' }],
    ['a metric name that starts with a digit', { name: '1meshfed', help: 'h' }],
    ['an empty metric name', { name: '', help: 'h' }],
    ['no help', { name: 'meshfed_x', help: '' }],
    ['a label name with a colon', { name: 'meshfed_x', help: 'h', labelNames: ['a:b'] }],
    ['a reserved label name', { name: 'meshfed_x', help: 'h', labelNames: ['__name'] }],
    ['a label named twice', { name: 'meshfed_x', help: 'h', labelNames: ['a', 'a'] }],
  ])('%s', (_, config) => {
    const err = thrown(() => new Counter({ ...config, registers: [] }));
    expect(err.code).toBe('MESHFED_INTERNAL');
    expect(err.message).toContain(config.name === '' ? '""' : config.name);
  });

  test.each([
    ['le as a label', { labelNames: ['le'], buckets: [1] }],
    ['no buckets', { buckets: [] }],
    ['buckets out of order', { buckets: [1, 0.5] }],
    ['a bucket twice', { buckets: [1, 1] }],
    ['an infinite bucket', { buckets: [1, Infinity] }],
  ])('a histogram with %s', (_, config) => {
    const err = thrown(() => new Histogram({ name: 'meshfed_h', help: 'h', registers: [], ...config }));
    expect(err.code).toBe('MESHFED_INTERNAL');
    expect(err.message).toContain('meshfed_h');
  });

  test('sharedCounter: the counter already registered under the name, or a clear refusal for a gauge', () => {
    const r = createRegistry();
    const a = sharedCounter(r, 'meshfed_shared_total', 'h', ['x']);
    expect(sharedCounter(r, 'meshfed_shared_total', 'h', ['x'])).toBe(a);
    new Gauge({ name: 'meshfed_g', help: 'h', registers: [r] });
    const err = thrown(() => sharedCounter(r, 'meshfed_g', 'h', []));
    expect(err.code).toBe('MESHFED_INTERNAL');
    expect(err.message).toContain('meshfed_g');
  });
});

test('a histogram may read its series at scrape time in place of observe()', async () => {
  const held = [{ labels: { t: 'x' }, buckets: [1, 0, 2], sum: 9.5, count: 4 }];
  const h = new Histogram({
    name: 'meshfed_t',
    help: 'h',
    labelNames: ['t'],
    buckets: [1, 2, 3],
    registers: [],
    series: () => held,
  });
  expect((await h.get()).values).toEqual([
    { labels: { le: '1', t: 'x' }, value: 1, metricName: 'meshfed_t_bucket' },
    { labels: { le: '2', t: 'x' }, value: 1, metricName: 'meshfed_t_bucket' },
    { labels: { le: '3', t: 'x' }, value: 3, metricName: 'meshfed_t_bucket' },
    { labels: { le: '+Inf', t: 'x' }, value: 4, metricName: 'meshfed_t_bucket' },
    { labels: { t: 'x' }, value: 9.5, metricName: 'meshfed_t_sum' },
    { labels: { t: 'x' }, value: 4, metricName: 'meshfed_t_count' },
  ]);
});
