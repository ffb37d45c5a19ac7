import type { BalancerTarget } from '../balancer/index.ts';
import type { ResilienceMetrics } from './metrics.ts';

export type BreakerLimit = 'connections' | 'pending' | 'requests' | 'cluster_requests' | 'service_requests';

export interface BreakerConfig {
  maxConnections: number;
  maxPending: number;
  maxRequests: number;
  maxClusterRequests: number;
  maxServiceRequests: number;
}

interface Counts {
  connections: number;
  pending: number;
  requests: number;
}

/**
 * Circuit breakers: plain concurrency limits per target, per destination cluster and per
 * service (all targets of one service together),
 * which refuse at once (no queueing) when full. They protect a struggling upstream from a pile-up
 * and this gateway from holding unbounded state for it. `acquire*` returns a release function, or
 * undefined when the limit is reached (counted in meshfed_upstream_circuit_breaker_open_total).
 */
export class CircuitBreakers {
  private readonly c: BreakerConfig;
  private readonly targets = new Map<string, Counts>();
  private readonly clusters = new Map<string, number>();
  private readonly services = new Map<string, number>();
  private readonly metrics: ResilienceMetrics | undefined;
  private readonly source: string;

  constructor(c: BreakerConfig, o: { metrics?: ResilienceMetrics; sourceCluster?: string } = {}) {
    this.c = c;
    this.metrics = o.metrics;
    this.source = o.sourceCluster ?? '';
    o.metrics?.activeRequests.add({ source: this.source, requestsByCluster: () => this.clusters });
  }

  private counts(id: string): Counts {
    let x = this.targets.get(id);
    if (!x) {
      x = { connections: 0, pending: 0, requests: 0 };
      this.targets.set(id, x);
    }
    return x;
  }

  private refuse(t: BalancerTarget, limit: BreakerLimit): undefined {
    this.metrics?.breakerOpen.inc({ source_cluster: this.source, destination_cluster: t.cluster, limit });
    return undefined;
  }

  private once(fn: () => void): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      fn();
    };
  }

  /** One request in flight to `t` for `service` (`namespace/name`; also counted against t's cluster). */
  acquireRequest(t: BalancerTarget, service = ''): (() => void) | undefined {
    const x = this.counts(t.id);
    const cluster = this.clusters.get(t.cluster) ?? 0;
    const forService = this.services.get(service) ?? 0;
    if (x.requests >= this.c.maxRequests) return this.refuse(t, 'requests');
    if (cluster >= this.c.maxClusterRequests) return this.refuse(t, 'cluster_requests');
    if (forService >= this.c.maxServiceRequests) return this.refuse(t, 'service_requests');
    x.requests++;
    this.clusters.set(t.cluster, cluster + 1);
    this.services.set(service, forService + 1);
    return this.once(() => {
      x.requests--;
      this.clusters.set(t.cluster, (this.clusters.get(t.cluster) ?? 1) - 1);
      const left = (this.services.get(service) ?? 1) - 1;
      if (left > 0) this.services.set(service, left);
      else this.services.delete(service);
      this.gc(t.id, x);
    });
  }

  /** One request waiting for a connection or stream to `t` (the data plane's pool calls this). */
  acquirePending(t: BalancerTarget): (() => void) | undefined {
    const x = this.counts(t.id);
    if (x.pending >= this.c.maxPending) return this.refuse(t, 'pending');
    x.pending++;
    return this.once(() => {
      x.pending--;
      this.gc(t.id, x);
    });
  }

  /** One open connection (or TCP CONNECT stream) to `t`. */
  acquireConnection(t: BalancerTarget): (() => void) | undefined {
    const x = this.counts(t.id);
    if (x.connections >= this.c.maxConnections) return this.refuse(t, 'connections');
    x.connections++;
    return this.once(() => {
      x.connections--;
      this.gc(t.id, x);
    });
  }

  /** Current counts for a target, for explain output and tests. */
  state(id: string): Readonly<Counts> {
    return { ...(this.targets.get(id) ?? { connections: 0, pending: 0, requests: 0 }) };
  }

  private gc(id: string, x: Counts): void {
    if (x.connections === 0 && x.pending === 0 && x.requests === 0) this.targets.delete(id);
  }
}
