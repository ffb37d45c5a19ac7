import type { PolicySet } from '../../core/index.ts';
import type { CompiledPolicy } from './policy-index.ts';

/**
 * What a gateway enforces, for /debug/policy: the signed revision per scope, and per service the number of
 * authorization rules, the rate limits, the split routes with each backend's share, the fault rules and
 * whether a resilience override is in force.
 */
export function policySummary(set: PolicySet, compiled: CompiledPolicy): unknown {
  return {
    generation: compiled.revision,
    scopes: set.scopes,
    services: [...compiled.services].map(([service, p]) => ({
      service,
      authorizationRules: p.authorization
        ? p.authorization.deny.all.length + p.authorization.allow.all.length
        : 0,
      rateLimits: p.rateLimits.map((l) => ({ limit: l.id, ...l.settings })),
      routes: (p.split?.routes ?? []).map((r) => ({
        route: r.id,
        backends: r.backends.map((b) => ({
          service: `${b.namespace}/${b.name}`,
          ...(b.cluster ? { cluster: b.cluster } : {}),
          percent: Math.round((b.weight / r.total) * 10_000) / 100,
        })),
      })),
      faults: (p.faults?.rules ?? []).map((f) => f.id),
      resilienceOverride: p.resilience !== undefined,
    })),
  };
}
