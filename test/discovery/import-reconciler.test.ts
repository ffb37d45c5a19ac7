import {
  createRegistry,
  type ImportedService,
  type ImportSink,
  MeshfedError,
  waitFor,
  silentLogger,
} from '../../core/index.ts';
import { computeImports, ImportReconciler } from '../../discovery/index.ts';
import { MemoryCatalog } from '../doubles/memory-catalog.ts';

class RecordingSink implements ImportSink {
  readonly name = 'recording';
  applied: (readonly ImportedService[])[] = [];
  failures: Error[] = [];
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  async apply(services: readonly ImportedService[]): Promise<void> {
    const next = this.failures.shift();
    if (next) throw next;
    this.applied.push(services);
  }
  get last(): readonly ImportedService[] | undefined {
    return this.applied.at(-1);
  }
}

const orders = { namespace: 'shop', name: 'orders' };
const billing = { namespace: 'shop', name: 'billing' };

describe('computeImports (table)', () => {
  const now = 1_000_000;
  const cases: {
    name: string;
    put: [string, typeof orders, { stale?: boolean; expiresAt?: number }?][];
    want: { name: string; clusters: string[] }[];
  }[] = [
    {
      name: 'remote offer is imported',
      put: [['west', orders]],
      want: [{ name: 'orders', clusters: ['west'] }],
    },
    { name: 'own cluster is never imported', put: [['east', orders]], want: [] },
    {
      name: 'several clusters are listed sorted',
      put: [
        ['west', orders],
        ['central', orders],
        ['east', orders],
      ],
      want: [{ name: 'orders', clusters: ['central', 'west'] }],
    },
    { name: 'stale cluster is not imported', put: [['west', orders, { stale: true }]], want: [] },
    { name: 'expired entry is not imported', put: [['west', orders, { expiresAt: now - 1 }]], want: [] },
    {
      name: 'one stale, one live',
      put: [
        ['west', billing, { stale: true }],
        ['central', billing],
      ],
      want: [{ name: 'billing', clusters: ['central'] }],
    },
  ];
  test.each(cases)('$name', ({ put, want }) => {
    const view = new MemoryCatalog();
    for (const [cluster, ref, opts] of put) view.put(cluster, ref, { expiresAt: now + 1000, ...opts });
    expect(computeImports(view, 'east', now).map((s) => ({ name: s.name, clusters: s.clusters }))).toEqual(
      want,
    );
  });
});

describe('ImportReconciler', () => {
  test('applies the imported set, debounces bursts and withdraws removed services', async () => {
    const view = new MemoryCatalog();
    const sink = new RecordingSink();
    const rec = new ImportReconciler({
      logger: silentLogger(),
      registry: createRegistry(),
      catalog: view,
      sinks: [sink],
      cluster: 'east',
      debounceMs: 30,
      resyncMs: 0,
    });
    await rec.start();
    try {
      await rec.idle();
      expect(sink.last).toEqual([]);
      for (let i = 0; i < 20; i++) view.put('west', { namespace: 'shop', name: `svc-${i}` });
      await waitFor(() => sink.last?.length === 20);
      // twenty changes inside one quiet period make one apply, not twenty
      expect(sink.applied.length).toBe(2);
      view.remove('west', { namespace: 'shop', name: 'svc-3' });
      await waitFor(() => sink.last?.length === 19);
      expect(sink.last!.some((s) => s.name === 'svc-3')).toBe(false);
    } finally {
      await rec.stop();
    }
  });

  test('retries retryable errors with back-off, drops terminal ones until the next change', async () => {
    const view = new MemoryCatalog();
    const sink = new RecordingSink();
    sink.failures.push(
      new MeshfedError('MESHFED_DISCOVERY_UNAVAILABLE', 'down', { retryable: true }),
      new MeshfedError('MESHFED_DISCOVERY_UNAVAILABLE', 'down', { retryable: true }),
    );
    const registry = createRegistry();
    const rec = new ImportReconciler({
      logger: silentLogger(),
      catalog: view,
      sinks: [sink],
      cluster: 'east',
      debounceMs: 5,
      resyncMs: 0,
      backoff: { minMs: 10, maxMs: 40 },
      registry,
    });
    view.put('west', orders);
    await rec.start();
    try {
      await waitFor(() => sink.last?.length === 1, { what: 'the apply to succeed after two retries' });
      expect(rec.eventCounts.ApplyRetry).toBe(2);
      sink.failures.push(new MeshfedError('MESHFED_DISCOVERY_INVALID', 'bad'));
      view.put('west', billing);
      await waitFor(() => sink.failures.length === 0);
      await rec.idle();
      expect(rec.eventCounts.ApplyRetry).toBe(2); // terminal: not retried
      expect(sink.last).toHaveLength(1);
      view.put('central', billing);
      await waitFor(() => sink.last?.length === 2);
      const metrics = await registry.getMetricsAsJSON();
      const applies = metrics.find((m) => m.name === 'meshfed_discovery_applies_total')!.values;
      expect(applies.find((v) => v.labels.result === 'retryable')?.value).toBe(2);
      expect(applies.find((v) => v.labels.result === 'terminal')?.value).toBe(1);
      expect(metrics.find((m) => m.name === 'meshfed_discovery_imports')!.values[0]!.value).toBe(2);
    } finally {
      await rec.stop();
    }
  });

  test('stop() during a pending debounce returns at once and applies nothing more', async () => {
    const view = new MemoryCatalog();
    const sink = new RecordingSink();
    const rec = new ImportReconciler({
      logger: silentLogger(),
      registry: createRegistry(),
      catalog: view,
      sinks: [sink],
      cluster: 'east',
      debounceMs: 60_000,
      resyncMs: 0,
    });
    await rec.start();
    await rec.idle();
    const applied = sink.applied.length;
    view.put('west', orders); // arms a one-minute debounce
    await rec.stop();
    expect(sink.applied.length).toBe(applied);
  });

  test('an entry that expires without any catalog event is withdrawn on time', async () => {
    const view = new MemoryCatalog();
    const sink = new RecordingSink();
    const rec = new ImportReconciler({
      logger: silentLogger(),
      registry: createRegistry(),
      catalog: view,
      sinks: [sink],
      cluster: 'east',
      debounceMs: 5,
      resyncMs: 0,
    });
    view.put('west', orders, { expiresAt: Date.now() + 150 });
    await rec.start();
    try {
      await waitFor(() => sink.last?.length === 1);
      await waitFor(() => sink.last?.length === 0, { what: 'the expired import to be withdrawn' });
      expect(rec.eventCounts.EntryExpired).toBeGreaterThanOrEqual(1);
    } finally {
      await rec.stop();
    }
  });
});
