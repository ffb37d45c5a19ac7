import { Counter, Gauge, type Registry } from '../../core/index.ts';

export interface ResilienceMetrics {
  retries: Counter<'source_cluster' | 'destination_cluster' | 'failure'>;
  budgetExhausted: Counter<'source_cluster' | 'destination_cluster'>;
  breakerOpen: Counter<'source_cluster' | 'destination_cluster' | 'limit'>;
  /** circuit breakers report their requests in flight per destination cluster here */
  activeRequests: Set<{ source: string; requestsByCluster(): ReadonlyMap<string, number> }>;
}

const byRegistry = new WeakMap<Registry, ResilienceMetrics>();

/** One set of counters per registry, however many layers are built on it. */
export function resilienceMetrics(registry: Registry): ResilienceMetrics {
  let m = byRegistry.get(registry);
  if (m) return m;
  m = {
    retries: new Counter({
      name: 'meshfed_upstream_retries_total',
      help: 'retries started, by the failure of the try before',
      labelNames: ['source_cluster', 'destination_cluster', 'failure'],
      registers: [registry],
    }),
    budgetExhausted: new Counter({
      name: 'meshfed_upstream_retry_budget_exhausted_total',
      help: 'retries not started because the retry budget was used up',
      labelNames: ['source_cluster', 'destination_cluster'],
      registers: [registry],
    }),
    breakerOpen: new Counter({
      name: 'meshfed_upstream_circuit_breaker_open_total',
      help: 'requests or connections refused by a circuit breaker, by the limit that refused',
      labelNames: ['source_cluster', 'destination_cluster', 'limit'],
      registers: [registry],
    }),
    activeRequests: new Set(),
  };
  const sources = m.activeRequests;
  new Gauge({
    name: 'meshfed_upstream_requests_active',
    help: 'requests in flight per destination cluster, what circuitBreaker.maxClusterRequests limits',
    labelNames: ['source_cluster', 'destination_cluster'],
    registers: [registry],
    collect() {
      this.reset();
      for (const b of sources)
        for (const [cluster, n] of b.requestsByCluster())
          this.set({ source_cluster: b.source, destination_cluster: cluster }, n);
    },
  });
  byRegistry.set(registry, m);
  return m;
}
