import { serviceKey } from '../../core/index.ts';
import { refuse } from '../answers.ts';
import { type RequestLayer, routeOf } from '../pipeline.ts';
import { admit, type PolicyIndex } from '../policy/index.ts';
import { type PolicyMetrics, serviceLabel } from './policy-facts.ts';

/**
 * RateLimit at the destination gateway, after authorization (a refused caller spends no token): token
 * buckets of this gateway process, so N gateways admit N× the rate (a local limit).
 * Over the limit: 429 (gRPC RESOURCE_EXHAUSTED) with `retry-after` in whole seconds.
 */
export function rateLimit(o: {
  index: PolicyIndex;
  metrics: PolicyMetrics;
  now?: () => number;
}): RequestLayer {
  const now = o.now ?? (() => performance.timeOrigin + performance.now());
  // not an async function: it waits for nothing, and what it refuses (throws) the answer layer answers
  return (next) => (r) => {
    const route = routeOf(r);
    const limiters = o.index.service(serviceKey(route))?.rateLimits;
    if (!limiters || limiters.length === 0) return next(r);
    const { waitMs, limiter } = admit(
      limiters,
      { caller: r.caller ?? '', sourceCluster: r.sourceCluster },
      now(),
    );
    if (waitMs > 0) {
      o.metrics.rateLimited.inc({ service: serviceLabel(route), limit: limiter?.id ?? '' });
      refuse(
        'rate-limited',
        `${serviceLabel(route)} is over its rate limit ${limiter?.id ?? ''} at this gateway`,
        {
          'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))),
          'x-meshfed-policy': limiter?.id ?? '',
        },
      );
    }
    return next(r);
  };
}
