import { Counter, Histogram, LATENCY_BUCKETS, type Registry } from '../../core/index.ts';
import { type RequestLayer, routeOf } from '../pipeline.ts';

/** Requests in flight through the pipelines (the meshfed_active_requests gauge, and what drain waits for). */
export class InFlight {
  count = 0;
}

export interface RequestMetrics {
  requests: Counter;
  duration: Histogram;
}

export function requestMetrics(registry: Registry): RequestMetrics {
  return {
    requests: new Counter({
      name: 'meshfed_requests_total',
      help: 'proxied requests',
      labelNames: ['listener', 'source_cluster', 'destination_cluster', 'service', 'code'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'meshfed_request_duration_seconds',
      help: 'proxied request latency, first byte in to response headers out',
      labelNames: ['listener', 'source_cluster', 'destination_cluster', 'service'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
  };
}

/** Counts each routed request and its latency by source and destination cluster, service and status. */
export function metricsLayer(options: { metrics: RequestMetrics; inFlight: InFlight }): RequestLayer {
  return (next) => async (r) => {
    const route = routeOf(r);
    const t0 = performance.now();
    options.inFlight.count++;
    try {
      await next(r);
    } finally {
      options.inFlight.count--;
      const labels = {
        listener: r.listener,
        source_cluster: r.sourceCluster,
        destination_cluster: r.destination,
        service: `${route.name}.${route.namespace}`,
      };
      options.metrics.requests.inc({ ...labels, code: String(r.status) });
      options.metrics.duration.observe(labels, (performance.now() - t0) / 1000);
    }
  };
}
