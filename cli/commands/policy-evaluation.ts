/**
 * The evaluation `meshfed policy explain` needs. The decision, the deciding rule, the split and the fault
 * come from the functions the gateways run (gateway/policy, `explainPolicy`): explain says what a gateway
 * does, not what a second implementation thinks. A reference walk over the rules adds, for each rule, the
 * reason it did not match (the gateway's hot path does not keep reasons); where the two disagree on a
 * rule, the gateway's verdict stands and the reason says so.
 */
import {
  type AuthorizationAction,
  type CallerMatch,
  type FaultRule,
  type HttpMatch,
  noServicePolicies,
  type PathMatch,
  type PolicySet,
  type RateLimit,
  type RequestMatch,
  type ResilienceOverride,
  type ServiceKey,
  type SplitBackend,
} from '../../core/index.ts';
import { explainPolicy } from '../../gateway/index.ts';

/** The caller as the destination gateway knows it: a workload identity, or only its source cluster. */
export interface ExplainCaller {
  cluster: string;
  spiffeId?: string;
  namespace?: string;
  serviceAccount?: string;
}

export interface ExplainRequest {
  caller: ExplainCaller;
  service: ServiceKey;
  /** the cluster whose gateway receives it (cluster-pinned AuthorizationPolicy/RateLimit); any when absent */
  destinationCluster?: string;
  method?: string;
  path?: string;
  port?: number;
  /** names lowercase */
  headers: Readonly<Record<string, string>>;
}

export interface RuleVerdict {
  policy: string;
  rule: string;
  action: AuthorizationAction;
  matched: boolean;
  why: string;
}

export interface Explanation {
  authorization: {
    decision: 'ALLOW' | 'DENY';
    /** `AuthorizationPolicy/<name>#<rule>`, or why nothing decided */
    decidedBy: string;
    rules: RuleVerdict[];
  };
  route?: { policy: string; route: string; backends: (SplitBackend & { percent: number })[]; why: string };
  fault?: { policy: string; rule: string; delay?: FaultRule['delay']; abort?: FaultRule['abort'] };
  rateLimits: RateLimit[];
  resilience?: ResilienceOverride;
}

export interface PolicyEvaluation {
  explain(set: PolicySet, req: ExplainRequest): Explanation;
}

function patternMatches(pattern: string | undefined, value: string | undefined): boolean {
  if (pattern === undefined) return true;
  if (value === undefined) return false;
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

/** Why a caller match fails, or undefined when it matches. */
function callerMismatch(m: CallerMatch, c: ExplainCaller): string | undefined {
  const parts: [keyof CallerMatch, string | undefined][] = [
    ['cluster', c.cluster],
    ['spiffeId', c.spiffeId],
    ['namespace', c.namespace],
    ['serviceAccount', c.serviceAccount],
  ];
  for (const [field, value] of parts) {
    if (patternMatches(m[field], value)) continue;
    return value === undefined
      ? `the rule needs the caller's ${field}, and only its cluster is known (no workload identity)`
      : `caller ${field} ${value} does not match ${m[field]}`;
  }
  return undefined;
}

function pathMatches(p: PathMatch, path: string | undefined): boolean {
  if (path === undefined) return false;
  return p.exact !== undefined ? path === p.exact : path.startsWith(p.prefix ?? '');
}

function requestMismatch(m: RequestMatch, r: ExplainRequest): string | undefined {
  if (m.methods && !(r.method && m.methods.includes(r.method)))
    return `method ${r.method ?? '(none given)'} not in ${m.methods.join(',')}`;
  if (m.paths && !m.paths.some((p) => pathMatches(p, r.path)))
    return `path ${r.path ?? '(none given)'} does not match`;
  if (m.ports && !(r.port && m.ports.includes(r.port)))
    return `port ${r.port ?? '(none given)'} not in ${m.ports.join(',')}`;
  if (m.grpc) {
    const g = /^\/([^/]+)\/([^/]+)$/.exec(r.path ?? '');
    if (!g || (m.grpc.service && m.grpc.service !== g[1]) || (m.grpc.method && m.grpc.method !== g[2]))
      return `gRPC ${g ? `${g[1]}/${g[2]}` : '(no /pkg.Service/Method path)'} does not match`;
  }
  return undefined;
}

function firstMismatch<T>(
  list: readonly T[] | undefined,
  test: (item: T) => string | undefined,
): string | undefined {
  if (list === undefined) return undefined;
  const reasons = list.map(test);
  return reasons.some((x) => x === undefined) ? undefined : reasons.join('; ');
}

function httpMismatch(m: HttpMatch | undefined, r: ExplainRequest): string | undefined {
  if (!m) return undefined;
  if (m.methods && !(r.method && m.methods.includes(r.method)))
    return `method ${r.method ?? '(none)'} not in ${m.methods.join(',')}`;
  if (m.path && !pathMatches(m.path, r.path)) return `path ${r.path ?? '(none)'} does not match`;
  for (const h of m.headers ?? []) {
    const v = r.headers[h.name];
    const ok =
      h.present !== undefined
        ? (v !== undefined) === h.present
        : h.exact !== undefined
          ? v === h.exact
          : v?.startsWith(h.prefix ?? '') === true;
    if (!ok) return `header ${h.name} ${v === undefined ? 'absent' : `is "${v}"`}`;
  }
  return undefined;
}

function applies(target: { cluster?: string }, r: ExplainRequest): boolean {
  return (
    target.cluster === undefined ||
    r.destinationCluster === undefined ||
    target.cluster === r.destinationCluster
  );
}

export const referenceEvaluation: PolicyEvaluation = {
  explain(set, r) {
    const sp = set.byService.get(r.service) ?? noServicePolicies();
    const rules: RuleVerdict[] = [];
    for (const doc of sp.authorization.filter((d) => applies(d.spec.target, r))) {
      for (const rule of doc.spec.rules) {
        const why =
          firstMismatch(rule.from, (m) => callerMismatch(m, r.caller)) ??
          firstMismatch(rule.to, (m) => requestMismatch(m, r));
        rules.push({
          policy: `AuthorizationPolicy/${doc.metadata.name}`,
          rule: rule.name,
          action: rule.action,
          matched: why === undefined,
          why: why ?? 'matches',
        });
      }
    }
    const deny = rules.find((v) => v.matched && v.action === 'DENY');
    const allow = rules.find((v) => v.matched && v.action === 'ALLOW');
    const hasAllow = rules.some((v) => v.action === 'ALLOW');
    const authorization = deny
      ? { decision: 'DENY' as const, decidedBy: `${deny.policy}#${deny.rule} (a matching DENY wins)` }
      : allow
        ? { decision: 'ALLOW' as const, decidedBy: `${allow.policy}#${allow.rule}` }
        : hasAllow
          ? {
              decision: 'DENY' as const,
              decidedBy: 'no ALLOW rule matches (default deny once a service has ALLOW rules)',
            }
          : {
              decision: 'ALLOW' as const,
              decidedBy: 'no authorization policy applies (exported = reachable)',
            };

    // a TCP connection (CONNECT) has no headers, path or method: only routes and fault rules without an
    // HTTP match apply to it
    const tcp = r.method === 'CONNECT';
    const holds = (match: HttpMatch | undefined) =>
      tcp ? match === undefined : httpMismatch(match, r) === undefined;
    let route: Explanation['route'];
    const split = sp.trafficSplit;
    if (split) {
      for (const rt of split.spec.routes) {
        if (!holds(rt.match)) continue;
        const total = rt.backends.reduce((s, b) => s + b.weight, 0);
        route = {
          policy: `TrafficSplit/${split.metadata.name}`,
          route: rt.name,
          backends: rt.backends.map((b) => ({ ...b, percent: Math.round((b.weight / total) * 1000) / 10 })),
          why: rt.match
            ? 'the first route whose match holds'
            : tcp
              ? 'the first route without an HTTP match (routes with one do not apply to TCP)'
              : 'the catch-all route (no earlier route matched)',
        };
        break;
      }
    }
    let fault: Explanation['fault'];
    const fi = sp.faultInjection;
    const hit = fi?.spec.rules.find((f) => holds(f.match));
    if (fi && hit)
      fault = {
        policy: `FaultInjection/${fi.metadata.name}`,
        rule: hit.name,
        delay: hit.delay,
        abort: hit.abort,
      };
    return {
      authorization: { ...authorization, rules },
      ...(route ? { route } : {}),
      ...(fault ? { fault } : {}),
      rateLimits: sp.rateLimits.filter((d) => applies(d.spec.target, r)),
      ...(sp.resilience ? { resilience: sp.resilience } : {}),
    };
  },
};

/** `meshfed policy explain` on the gateway's own evaluation, with the reference's reasons per rule. */
export const gatewayEvaluation: PolicyEvaluation = {
  explain(set, r) {
    const ref = referenceEvaluation.explain(set, r);
    const g = explainPolicy(set, {
      service: r.service,
      destinationCluster: r.destinationCluster ?? '',
      ...(r.caller.spiffeId ? { caller: r.caller.spiffeId } : {}),
      sourceCluster: r.caller.cluster,
      ...(r.method ? { method: r.method } : {}),
      ...(r.path ? { target: r.path } : r.method ? { target: '/' } : {}),
      ...(r.port ? { port: r.port } : {}),
      headers: r.headers,
    });
    const matched = new Set(g.authorization.matched.map((m) => m.rule));
    const a = g.authorization;
    return {
      ...ref,
      authorization: {
        decision: a.allowed ? 'ALLOW' : 'DENY',
        decidedBy:
          a.rule && a.rule !== 'default-deny'
            ? `AuthorizationPolicy/${a.rule.replace('/', '#')}`
            : ref.authorization.decidedBy,
        rules: ref.authorization.rules.map((v) => {
          // the gateway names a rule `<policy name>/<rule>`, the reference `AuthorizationPolicy/<policy name>`
          const gm = matched.has(`${v.policy.slice(v.policy.indexOf('/') + 1)}/${v.rule}`);
          if (gm === v.matched) return v;
          return {
            ...v,
            matched: gm,
            why: gm
              ? 'matches (as the gateway evaluates it)'
              : `does not match as the gateway evaluates it (${v.why})`,
          };
        }),
      },
      ...(g.route
        ? {
            route: {
              policy: ref.route?.policy ?? '',
              route: g.route.route,
              backends: g.route.backends.map((b) => ({
                service: b.service,
                weight: b.weight,
                percent: b.percent,
                ...(b.cluster ? { cluster: b.cluster } : {}),
              })),
              why: ref.route?.why ?? 'the first route whose match holds',
            },
          }
        : {}),
    };
  },
};
