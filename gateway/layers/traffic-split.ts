import { serviceKey } from '../../core/index.ts';
import { type RequestLayer, routeOf } from '../pipeline.ts';
import { chooseRoute, type PolicyIndex } from '../policy/index.ts';
import { type PolicyMetrics, policyRequestOf, serviceLabel } from './policy-facts.ts';

/**
 * TrafficSplit at the source gateway, after the route layer: the first route whose match holds draws a
 * backend by weight, and the request goes to that service instead (only its pinned cluster's instances
 * when the backend names one; locality balancing otherwise). No route matching: the service as addressed.
 */
export function trafficSplit(o: {
  index: PolicyIndex;
  metrics: PolicyMetrics;
  random: () => number;
}): RequestLayer {
  // not an async function: it waits for nothing, and what it refuses (throws) the answer layer answers
  return (next) => (r) => {
    const route = routeOf(r);
    const split = o.index.service(serviceKey(route))?.split;
    if (!split) return next(r);
    const choice = chooseRoute(split, policyRequestOf(r), o.random);
    if (!choice) return next(r);
    const b = choice.backend;
    const backend = `${b.name}.${b.namespace}${b.cluster ? `@${b.cluster}` : ''}`;
    o.metrics.routes.inc({ service: serviceLabel(route), route: choice.route, backend });
    r.policy = { ...r.policy, route: choice.route, backend };
    r.span?.setAttributes({ 'meshfed.policy.route': choice.route, 'meshfed.policy.backend': backend });
    r.addressed = route;
    const { cluster: _pinned, ...unpinned } = route;
    r.route = {
      ...unpinned,
      namespace: b.namespace,
      name: b.name,
      ...(b.cluster ? { cluster: b.cluster } : {}),
    };
    return next(r);
  };
}
