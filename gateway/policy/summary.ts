import type { PolicyScopeRevision } from '../../core/index.ts';
import type { CompiledPolicy } from './policy-index.ts';

/** What /debug/policy shows of one process: JSON, so it crosses from a worker to its supervisor as it is. */
export interface PolicySummary {
  /** this process's local generation of the set (0: none ever received) */
  generation: number;
  /** the signed revision per scope it enforces: what to compare across processes and gateways */
  scopes: readonly PolicyScopeRevision[];
  services: {
    service: string;
    authorizationRules: number;
    rateLimits: { limit: string; requests: number; interval: number; burst: number; bucketPer: string }[];
    routes: { route: string; backends: { service: string; cluster?: string; percent: number }[] }[];
    faults: string[];
    resilienceOverride: boolean;
  }[];
}

/**
 * What a gateway enforces, for /debug/policy: the signed revision per scope, and per service the number of
 * authorization rules, the rate limits, the split routes with each backend's share, the fault rules and
 * whether a resilience override is in force.
 */
export function policySummary(compiled: CompiledPolicy): PolicySummary {
  return {
    generation: compiled.revision,
    scopes: compiled.scopes,
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
