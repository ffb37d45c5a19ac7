import { Counter, Gauge, type Registry } from '../../core/index.ts';
import { isGrpc } from '../http-request.ts';
import type { LocalServices } from '../local-services.ts';
import type { GatewayRequest, RouteTarget } from '../pipeline.ts';
import {
  type AuthorizationCall,
  type PolicyIndex,
  type PolicyRequest,
  policyPath,
  requestCall,
} from '../policy/index.ts';

/** What the policy layers count; labels are bounded by the policy in force (services, rules, limits). */
export interface PolicyMetrics {
  authorization: Counter;
  rateLimited: Counter;
  routes: Counter;
  faults: Counter;
}

export function policyMetrics(registry: Registry, index: PolicyIndex): PolicyMetrics {
  new Gauge({
    name: 'meshfed_policy_generation',
    help: 'the generation of the policy set this gateway enforces (0: none ever received)',
    registers: [registry],
    collect() {
      this.set(index.revision);
    },
  });
  return {
    authorization: new Counter({
      name: 'meshfed_policy_authorization_total',
      help: 'authorization decisions on services with an AuthorizationPolicy, by the deciding rule',
      labelNames: ['service', 'decision', 'rule'],
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'meshfed_policy_rate_limited_total',
      help: 'requests and streams refused with 429 by a RateLimit of this gateway process',
      labelNames: ['service', 'limit'],
      registers: [registry],
    }),
    routes: new Counter({
      name: 'meshfed_policy_routes_total',
      help: 'requests a TrafficSplit sent to a backend, by route and backend',
      labelNames: ['service', 'route', 'backend'],
      registers: [registry],
    }),
    faults: new Counter({
      name: 'meshfed_policy_faults_total',
      help: 'faults injected at the source gateway, by rule and fault (delay, abort)',
      labelNames: ['service', 'rule', 'fault'],
      registers: [registry],
    }),
  };
}

/** `name.namespace`, the service label of every gateway metric. */
export function serviceLabel(route: Pick<RouteTarget, 'namespace' | 'name'>): string {
  return `${route.name}.${route.namespace}`;
}

/** The request as route and fault rules see it. */
export function policyRequestOf(r: GatewayRequest): PolicyRequest {
  return { method: r.method, path: policyPath(r.target), headers: r.headers };
}

/** The number of the local service port a routed request or stream reaches (its named port, else the first). */
export function localPort(local: LocalServices, route: RouteTarget): number | undefined {
  const svc = local.get(route);
  if (!svc) return undefined;
  return (route.portName ? svc.ports.find((p) => p.name === route.portName) : svc.ports[0])?.port;
}

/** The verified caller and the request, as authorization rules see them. */
export function authorizationCallOf(r: GatewayRequest, port: number | undefined): AuthorizationCall {
  return requestCall({
    caller: r.caller ?? '',
    sourceCluster: r.sourceCluster,
    method: r.method,
    path: policyPath(r.target),
    ...(port !== undefined ? { port } : {}),
    grpc: isGrpc(r.headers),
  });
}
