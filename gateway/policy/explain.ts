import type { IncomingHttpHeaders } from 'node:http';
import type {
  FaultAbort,
  FaultDelay,
  PolicySet,
  RateLimitBucket,
  ResilienceOverrideSpec,
  ServiceKey,
} from '../../core/index.ts';
import { type AuthorizationExplanation, explainAuthorization, requestCall } from './authorization.ts';
import { matchFault, matchTcpFault } from './faults.ts';
import { policyPath } from './matchers.ts';
import { compilePolicy } from './policy-index.ts';
import { matchRoute, matchTcpRoute } from './routes.ts';

/** One call as `meshfed policy explain` describes it with its flags. */
export interface ExplainInput {
  /** `namespace/name` as the caller addresses it */
  service: ServiceKey;
  /** the cluster whose gateway receives the call (cluster-pinned AuthorizationPolicy and RateLimit) */
  destinationCluster: string;
  /** a SPIFFE ID (workload, anonymous or gateway); absent with sourceCluster absent too: an SNI passthrough */
  caller?: string;
  sourceCluster?: string;
  /** absent: facts the rules cannot test (they are listed as undecided); 'CONNECT': a TCP connection */
  method?: string;
  /** the request target, query and all (normalised as the gateway does) */
  target?: string;
  port?: number;
  grpc?: boolean;
  headers?: IncomingHttpHeaders;
}

export interface PolicyExplanation {
  /** the local generation of the set explained */
  generation: number;
  /** at the source gateway: the TrafficSplit route that matches, and its backends with their share */
  route?: {
    route: string;
    backends: { service: ServiceKey; cluster?: string; weight: number; percent: number }[];
  };
  /** at the source gateway: the fault rule that matches (each part drawn with its percentage) */
  fault?: { rule: string; delay?: FaultDelay; abort?: FaultAbort };
  /** at the destination gateway, for `service` */
  authorization: AuthorizationExplanation;
  rateLimits: {
    limit: string;
    requests: number;
    interval: number;
    burst: number;
    bucketPer: RateLimitBucket;
  }[];
  resilience?: ResilienceOverrideSpec;
}

/**
 * What the gateways would do with one call, with the functions they run: which authorization rules match
 * and which decides (and why), the split route and fault rule that apply, the rate limits and resilience
 * override in force. Compiles `set` for the destination cluster; for many calls, compile once instead.
 */
export function explainPolicy(set: PolicySet, input: ExplainInput): PolicyExplanation {
  const compiled = compilePolicy(set, input.destinationCluster).services.get(input.service);
  const path = input.target !== undefined ? policyPath(input.target) : undefined;
  const req = { method: input.method ?? '', path: path ?? '', headers: input.headers ?? {} };
  const call =
    input.method !== undefined && path !== undefined
      ? requestCall({
          ...(input.caller !== undefined ? { caller: input.caller } : {}),
          ...(input.sourceCluster !== undefined ? { sourceCluster: input.sourceCluster } : {}),
          method: input.method,
          path,
          ...(input.port !== undefined ? { port: input.port } : {}),
          grpc: input.grpc === true,
        })
      : {
          ...(input.caller !== undefined ? { caller: input.caller } : {}),
          ...(input.sourceCluster !== undefined ? { sourceCluster: input.sourceCluster } : {}),
          ...(input.method !== undefined ? { method: input.method } : {}),
          ...(path !== undefined ? { path } : {}),
          ...(input.port !== undefined ? { port: input.port } : {}),
        };
  // a TCP connection (CONNECT) has no headers, path or method to match: only routes and fault rules without
  // an HTTP match apply to it, as at the source gateway's TCP ports
  const tcp = input.method === 'CONNECT';
  const route = tcp ? matchTcpRoute(compiled?.split) : matchRoute(compiled?.split, req);
  const fault = tcp ? matchTcpFault(compiled?.faults) : matchFault(compiled?.faults, req);
  return {
    generation: set.revision,
    ...(route
      ? {
          route: {
            route: route.id,
            backends: route.backends.map((b) => ({
              service: `${b.namespace}/${b.name}`,
              ...(b.cluster ? { cluster: b.cluster } : {}),
              weight: b.weight,
              percent: Math.round((b.weight / route.total) * 10_000) / 100,
            })),
          },
        }
      : {}),
    ...(fault
      ? {
          fault: {
            rule: fault.id,
            ...(fault.delay ? { delay: fault.delay } : {}),
            ...(fault.abort ? { abort: fault.abort } : {}),
          },
        }
      : {}),
    authorization: explainAuthorization(compiled?.authorization, call),
    rateLimits: (compiled?.rateLimits ?? []).map((l) => ({ limit: l.id, ...l.settings })),
    ...(compiled?.resilience ? { resilience: compiled.resilience } : {}),
  };
}
