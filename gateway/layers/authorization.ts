import { type LocalService, POLICY_HEADER, serviceKey } from '../../core/index.ts';
import { refuse } from '../answers.ts';
import type { LocalServices } from '../local-services.ts';
import { type RequestLayer, routeOf } from '../pipeline.ts';
import { type AuthorizationDecision, evaluateAuthorization, type PolicyIndex } from '../policy/index.ts';
import { authorizationCallOf, localPort, type PolicyMetrics, serviceLabel } from './policy-facts.ts';

/**
 * AuthorizationPolicy at the destination gateway, on the verified caller (east-west requests and CONNECT
 * streams): any matching DENY refuses, an ALLOW must match once the service has one; a service no policy
 * names passes untouched. A refusal is a 403 (gRPC PERMISSION_DENIED) naming the deciding rule.
 */
export function authorizationPolicy(o: {
  index: PolicyIndex;
  local: LocalServices;
  metrics: PolicyMetrics;
}): RequestLayer {
  // not an async function: it waits for nothing, and what it refuses (throws) the answer layer answers
  return (next) => (r) => {
    const route = routeOf(r);
    const compiled = o.index.service(serviceKey(route))?.authorization;
    if (!compiled) return next(r);
    const d = evaluateAuthorization(compiled, authorizationCallOf(r, localPort(o.local, route)));
    const rule = d.rule ?? '';
    o.metrics.authorization.inc({
      service: serviceLabel(route),
      decision: d.allowed ? 'allow' : 'deny',
      rule,
    });
    r.policy = { ...r.policy, authorization: d.allowed ? 'allow' : 'deny', rule };
    r.span?.setAttributes({
      'meshfed.policy.decision': d.allowed ? 'allow' : 'deny',
      'meshfed.policy.rule': rule,
    });
    if (!d.allowed) {
      refuse(
        'policy-denied',
        `${r.caller || r.sourceCluster} may not call ${serviceLabel(route)}: ${describe(d)}`,
        { [POLICY_HEADER]: rule },
      );
    }
    return next(r);
  };
}

function describe(d: AuthorizationDecision): string {
  return d.reason === 'deny-rule'
    ? `DENY rule ${d.rule} matches`
    : 'the service has ALLOW rules and none matches (meshfed policy explain says why)';
}

/**
 * SNI passthrough is not terminated here, so neither the caller nor its cluster can be known: only ALLOW
 * rules that name no caller and no HTTP condition can admit it, and any DENY rule that might apply
 * refuses it (see evaluateAuthorization). Returns the refusing decision, or undefined to relay.
 */
export function passthroughDecision(
  index: PolicyIndex,
  svc: LocalService,
  portName: string,
  metrics: PolicyMetrics,
): AuthorizationDecision | undefined {
  const compiled = index.service(serviceKey(svc))?.authorization;
  if (!compiled) return undefined;
  const port = svc.ports.find((p) => p.name === portName)?.port;
  const d = evaluateAuthorization(compiled, port !== undefined ? { port } : {});
  metrics.authorization.inc({
    service: serviceLabel(svc),
    decision: d.allowed ? 'allow' : 'deny',
    rule: d.rule ?? '',
  });
  return d.allowed ? undefined : d;
}
