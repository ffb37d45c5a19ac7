import { type ServiceRef, serviceKey } from '../core/index.ts';
import type { PolicyMetrics } from './layers/policy-facts.ts';
import { serviceLabel } from './layers/policy-facts.ts';
import { chooseTcpRoute, type PolicyIndex, tcpFaultsFor } from './policy/index.ts';

export interface TcpSourcePolicy {
  index: PolicyIndex;
  metrics: PolicyMetrics;
  random: () => number;
}

/** What the source gateway does with one connection to a per-service TCP port. */
export interface TcpDecision {
  /** the service (and cluster, when pinned) to connect to: a TrafficSplit backend, else the service as addressed */
  backend: ServiceRef & { cluster?: string };
  /** wait this long before connecting onward */
  delayMs?: number;
  /** refuse the connection (after the delay): the fault rule that says so */
  abort?: string;
}

/**
 * TrafficSplit and FaultInjection for a TCP connection, drawn once per connection: the first route (fault
 * rule) without an HTTP match applies, since a connection has no headers, path or method; routes and rules
 * with one apply to HTTP and gRPC only. Both are keyed on the service as addressed, like the egress layers.
 */
export function tcpSourceDecision(p: TcpSourcePolicy, addressed: ServiceRef): TcpDecision {
  const compiled = p.index.service(serviceKey(addressed));
  if (!compiled) return { backend: addressed };
  const service = serviceLabel(addressed);
  const choice = chooseTcpRoute(compiled.split, p.random);
  let backend: TcpDecision['backend'] = addressed;
  if (choice) {
    const b = choice.backend;
    backend = { namespace: b.namespace, name: b.name, ...(b.cluster ? { cluster: b.cluster } : {}) };
    p.metrics.routes.inc({
      service,
      route: choice.route,
      backend: `${b.name}.${b.namespace}${b.cluster ? `@${b.cluster}` : ''}`,
    });
  }
  const f = tcpFaultsFor(compiled.faults, p.random);
  if (f?.delayMs !== undefined) p.metrics.faults.inc({ service, rule: f.rule, fault: 'delay' });
  if (f?.abort) p.metrics.faults.inc({ service, rule: f.rule, fault: 'abort' });
  return {
    backend,
    ...(f?.delayMs !== undefined ? { delayMs: f.delayMs } : {}),
    ...(f?.abort ? { abort: f.rule } : {}),
  };
}
