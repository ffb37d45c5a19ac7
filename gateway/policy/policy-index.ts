import type { PolicySet, PolicyView, ResilienceOverrideSpec, ServiceKey } from '../../core/index.ts';
import { type CompiledAuthorization, compileAuthorization } from './authorization.ts';
import { type CompiledFaults, compileFaults } from './faults.ts';
import { RateLimiter, rateLimitShape } from './rate-limit.ts';
import { type CompiledSplit, compileSplit } from './routes.ts';
import { type PolicySummary, policySummary } from './summary.ts';

/** Everything in force for one service at this gateway, compiled for the request path. */
export interface CompiledService {
  /** undefined: no AuthorizationPolicy for this service here (allowed, today's behaviour) */
  readonly authorization?: CompiledAuthorization;
  readonly rateLimits: readonly RateLimiter[];
  readonly split?: CompiledSplit;
  readonly faults?: CompiledFaults;
  readonly resilience?: ResilienceOverrideSpec;
}

export interface CompiledPolicy {
  /** the PolicySet's local generation */
  readonly revision: number;
  /** the signed revision per scope of the set compiled: what this process enforces */
  readonly scopes: PolicySet['scopes'];
  readonly services: ReadonlyMap<ServiceKey, CompiledService>;
}

/**
 * Compiles a policy set for the gateways of `cluster`: documents pinned to another cluster
 * (`target.cluster`) are left out. Rate limiters of `previous` whose shape is unchanged are kept, so a
 * policy change elsewhere (a canary step) does not refill every bucket.
 */
export function compilePolicy(
  set: PolicySet,
  cluster: string,
  o: { now?: number; previous?: CompiledPolicy } = {},
): CompiledPolicy {
  const now = o.now ?? Date.now();
  const kept = new Map<string, RateLimiter>();
  for (const svc of o.previous?.services.values() ?? []) for (const l of svc.rateLimits) kept.set(l.shape, l);
  const services = new Map<ServiceKey, CompiledService>();
  for (const [key, p] of set.byService) {
    const authorization = p.authorization.filter(
      (d) => !d.spec.target.cluster || d.spec.target.cluster === cluster,
    );
    const rateLimits = p.rateLimits
      .filter((d) => !d.spec.target.cluster || d.spec.target.cluster === cluster)
      .map((d) => kept.get(rateLimitShape(d)) ?? new RateLimiter(d, now));
    const compiled: CompiledService = {
      ...(authorization.length > 0 ? { authorization: compileAuthorization(authorization) } : {}),
      rateLimits,
      ...(p.trafficSplit ? { split: compileSplit(p.trafficSplit) } : {}),
      ...(p.faultInjection ? { faults: compileFaults(p.faultInjection) } : {}),
      ...(p.resilience ? { resilience: p.resilience.spec } : {}),
    };
    services.set(key, compiled);
  }
  return { revision: set.revision, scopes: set.scopes, services };
}

/**
 * The compiled policy of a PolicyView, rebuilt once per change (never per request). A set that fails to
 * compile leaves the last compiled one in force.
 */
export class PolicyIndex {
  #compiled: CompiledPolicy;
  readonly #cluster: string;
  readonly #unsubscribe: () => void;
  readonly #onError: (err: unknown) => void;

  constructor(view: PolicyView, o: { cluster: string; onError: (err: unknown) => void }) {
    this.#cluster = o.cluster;
    this.#onError = o.onError;
    this.#compiled = compilePolicy(view.current(), o.cluster);
    this.#unsubscribe = view.onChange((set) => this.#update(set));
  }

  #update(set: PolicySet): void {
    try {
      this.#compiled = compilePolicy(set, this.#cluster, { previous: this.#compiled });
    } catch (err) {
      this.#onError(err);
    }
  }

  get revision(): number {
    return this.#compiled.revision;
  }

  /**
   * What this process enforces, as /debug/policy shows it: the compiled set (a set that failed to compile
   * is not in force, so it is not shown either).
   */
  summary(): PolicySummary {
    return policySummary(this.#compiled);
  }

  /** The compiled policies of `namespace/name`, or undefined when none names it. */
  service(key: ServiceKey): CompiledService | undefined {
    return this.#compiled.services.get(key);
  }

  stop(): void {
    this.#unsubscribe();
  }
}
