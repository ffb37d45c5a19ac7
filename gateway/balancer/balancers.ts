import {
  type CatalogChange,
  type CatalogView,
  type EndpointSource,
  Counter,
  Gauge,
  type Locality,
  type LocalService,
  type Logger,
  type Registry,
  type ServicePort,
  type ServiceRef,
  monotonicNow,
  serviceKey,
} from '../../core/index.ts';
import { ActiveHealthChecks } from './active-health.ts';
import { TargetStats } from './target-stats.ts';
import { type ResolvedService, remoteTarget, resolveService, usableOffer } from './targets.ts';
import type { BalancerConfig } from './config.ts';
import { p2c } from './p2c.ts';
import { levelPlan, localityLevel } from './priority.ts';
import { explainRoute, type RouteExplanation } from './route-explanation.ts';

export type { RouteExplanation } from './route-explanation.ts';
export type { ResolvedService } from './targets.ts';

export interface BalancerTarget {
  id: string;
  local: boolean;
  cluster: string;
  locality: Locality;
  /** host:port: a local endpoint's port for the chosen service port, or a remote gateway's east-west address */
  address: string;
  weight: number;
  gatewayName?: string;
  /** the service port this target serves */
  port: ServicePort;
}

/**
 * How a try failed. 'cancelled' (the caller went away), 'overflow' (a circuit breaker of this gateway
 * refused before anything was sent) and 'declined' (a healthy target turned this call away for now: a
 * gRPC CANCELLED or RESOURCE_EXHAUSTED answer) count against nobody.
 */
export type Failure =
  | 'connect'
  | 'timeout'
  | '5xx'
  | 'reset'
  | 'refused'
  | 'cancelled'
  | 'overflow'
  | 'declined';

export interface PickResult {
  target: BalancerTarget;
  level: 0 | 1 | 2;
  release(outcome: { ok: boolean; latencyMs: number; failure?: Failure }): void;
}

export interface PickOptions {
  /** 'local': only this cluster's endpoints (at the destination gateway; never re-forward) */
  scope?: 'any' | 'local';
  exclude?: ReadonlySet<string>;
  portName?: string;
  port?: number;
  /** only this cluster's targets (a split backend pinned to a cluster): locality priorities do not apply */
  cluster?: string;
}

/** a target's outlier and latency state is forgotten after this long without traffic (see pruneIdle) */
export const IDLE_STATE_MS = 10 * 60_000;

/** a picked target and its locality level */
type Chosen = { target: BalancerTarget; level: 0 | 1 | 2 } | undefined;

export interface BalancersOptions {
  cluster: string;
  locality: Locality;
  catalog: CatalogView;
  local: EndpointSource;
  config: BalancerConfig;
  registry: Registry;
  logger: Logger;
  probe?: (t: BalancerTarget) => Promise<boolean>;
  /** the monotonic clock durations run on (monotonicNow) */
  now?: () => number;
  /** the wall clock, to show when an ejection ends (Date.now) */
  wallNow?: () => number;
  random?: () => number;
}

/**
 * One load balancer per service, fed by this cluster's endpoints and the federated catalog:
 * locality priorities with spill-over, power-of-two-choices on outstanding × latency within a
 * level, outlier ejection with growing back-off and a cap, and an explanation of every decision.
 */
export class Balancers {
  private readonly o: BalancersOptions;
  /** per service (`namespace/name`), per target id */
  private readonly stats = new Map<string, Map<string, TargetStats>>();
  /** probes of remote gateways, and the ones that said they drain */
  private readonly active: ActiveHealthChecks;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly ejectionsTotal: Counter;
  private outlierOverride: ((s: ServiceRef) => Partial<BalancerConfig['outlier']> | undefined) | undefined;
  private localIndex = new Map<string, LocalService>();
  private readonly unsubscribe: () => void;
  /**
   * resolve() results by service key, then scope/port: pick() runs per request and must not rebuild them. A
   * catalog change drops those of the services it names (all of them for a cluster's change), an endpoint
   * change all of them: with a large catalog under a steady change stream, dropping every service's at each
   * change made every request rebuild its targets.
   */
  private readonly resolved = new Map<string, Map<string, { svc: ResolvedService | undefined }>>();
  private lastPrune = 0;
  /**
   * one target per remote gateway address, for the probes; dropped when a catalog change may change the set
   * (rebuilding it walks the whole catalog, so not for a weight change to gateways it already holds)
   */
  private probeSet: Map<string, BalancerTarget> | undefined;

  constructor(o: BalancersOptions) {
    this.o = o;
    // ejections, latency ages and pruning are durations: on the monotonic clock, never stepped
    this.now = o.now ?? monotonicNow;
    this.random = o.random ?? Math.random;
    this.active = new ActiveHealthChecks({
      config: () => this.o.config.healthCheck,
      now: this.now,
      targets: () => this.probeTargets().values(),
    });
    const self = this;
    this.ejectionsTotal = new Counter({
      name: 'meshfed_outlier_ejections_total',
      help: 'targets ejected by outlier detection',
      labelNames: ['source_cluster', 'destination_cluster', 'service'],
      registers: [o.registry],
    });
    new Gauge({
      name: 'meshfed_upstream_healthy',
      help: '1 when a target is neither ejected (for this service) nor failing active health checks',
      labelNames: ['source_cluster', 'destination_cluster', 'service', 'target'],
      registers: [o.registry],
      collect() {
        this.reset();
        const now = self.now();
        for (const [key, targets] of self.stats) {
          const [ns, name] = key.split('/');
          for (const [id, s] of targets) {
            const parts = id.split('|');
            const active = self.active.probedHealthy(parts[parts.length - 1] ?? '');
            this.set(
              {
                source_cluster: o.cluster,
                destination_cluster: parts[1] ?? '',
                service: `${name}.${ns}`,
                target: id,
              },
              s.ejectedUntil <= now && active ? 1 : 0,
            );
          }
        }
      },
    });
    const reindex = (services: readonly LocalService[]) => {
      this.localIndex = new Map(services.map((s) => [serviceKey(s), s]));
      this.resolved.clear();
      this.pruneIdle();
    };
    reindex(o.local.current());
    const offLocal = o.local.onChange(reindex);
    const offCatalog = o.catalog.onChange((changes) => {
      // a view that cannot say what changed: everything may have
      if (changes.length === 0) {
        this.resolved.clear();
        this.probeSet = undefined;
      }
      for (const c of changes) {
        if (c.type === 'cluster') this.resolved.clear();
        else this.resolved.delete(serviceKey(c.type === 'upsert' ? c.instance : c));
        if (this.probeSet && this.changesProbeSet(this.probeSet, c)) this.probeSet = undefined;
      }
      this.pruneIdle();
    });
    this.unsubscribe = () => {
      offLocal();
      offCatalog();
    };
    this.healthChecks(o.probe);
  }

  /**
   * Forgets the state of targets with no traffic for IDLE_STATE_MS (nothing in flight, not ejected, not on
   * probation): targets that left the catalog or the endpoints would otherwise stay in memory for the life
   * of the process. Runs on catalog and endpoint changes, at most once a minute.
   */
  private pruneIdle(): void {
    const now = this.now();
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    for (const [key, targets] of this.stats) {
      for (const [id, s] of targets)
        if (
          s.outstanding === 0 &&
          !s.probation &&
          s.ejectedUntil <= now &&
          now - s.lastSample > IDLE_STATE_MS
        )
          targets.delete(id);
      if (targets.size === 0) this.stats.delete(key);
    }
  }

  private statsOf(svc: ResolvedService): Map<string, TargetStats> {
    let m = this.stats.get(svc.key);
    if (!m) {
      m = new Map();
      this.stats.set(svc.key, m);
    }
    return m;
  }

  private stat(svc: ResolvedService, t: BalancerTarget): TargetStats {
    const m = this.statsOf(svc);
    let s = m.get(t.id);
    if (!s) {
      s = new TargetStats();
      m.set(t.id, s);
    }
    return s;
  }

  /**
   * Whether a catalog change may add or remove a probed gateway address: a new or unusable offer, a removal,
   * a cluster's change. A weight change to an offer whose gateways are all probed already cannot.
   */
  private changesProbeSet(probed: Map<string, BalancerTarget>, c: CatalogChange): boolean {
    if (c.type !== 'upsert') return true;
    if (!usableOffer(c.instance, this.o.cluster)) return true;
    return c.instance.gateways.some((g) => !probed.has(g.address));
  }

  /** The targets of a service for one of its ports, local endpoints first. */
  resolve(namespace: string, name: string, o: PickOptions = {}): ResolvedService | undefined {
    const key = serviceKey({ namespace, name });
    const variant = `${o.scope ?? 'any'}|${o.portName ?? ''}|${o.port ?? ''}`;
    // the catalog view decides which offers are live (and keeps the last verified ones while its NATS is
    // down): it tells every change, which drops this service's cache
    let byVariant = this.resolved.get(key);
    const hit = byVariant?.get(variant);
    if (hit) return hit.svc;
    if (!byVariant) {
      if (this.resolved.size > 10_000) this.resolved.clear();
      byVariant = new Map();
      this.resolved.set(key, byVariant);
    }
    const svc = resolveService(namespace, name, o, this.o, this.localIndex);
    byVariant.set(variant, { svc });
    return svc;
  }

  private activeHealthy(t: BalancerTarget): boolean {
    return this.active.healthy(t.address);
  }

  /**
   * The remote gateway at `address` said it drains (a GOAWAY or a response of its drain, gateway/drain.ts):
   * it gets no new request for any service until a health probe finds a gateway serving there again, or
   * PEER_DRAINING_MS pass. What it is still serving finishes.
   */
  peerDraining(address: string): void {
    this.active.peerDraining(address);
  }

  // `address` left a PING unanswered (gateway/peer-liveness.ts): no new request for outlier.baseEjection
  // or until a probe answers there; never the last healthy remote gateway (ActiveHealthChecks)
  peerUnresponsive(address: string): 'ejected' | 'already' | 'last' {
    return this.active.peerUnresponsive(address, this.o.config.outlier.baseEjection);
  }

  private healthy(svc: ResolvedService, t: BalancerTarget, now: number): boolean {
    if (!this.activeHealthy(t)) return false;
    const s = this.stats.get(svc.key)?.get(t.id);
    if (!s) return true;
    if (s.ejectedUntil > now) return false;
    // a target whose ejection just ended gets one request, not the whole burst that queued meanwhile
    return !s.probation || s.outstanding === 0;
  }

  pick(namespace: string, name: string, o: PickOptions = {}): PickResult | undefined {
    const svc = this.resolve(namespace, name, o);
    if (!svc) return undefined;
    const now = this.now();
    const pinned = o.cluster;
    const candidates =
      (o.exclude && o.exclude.size > 0) || pinned !== undefined
        ? svc.targets.filter((t) => !o.exclude?.has(t.id) && (pinned === undefined || t.cluster === pinned))
        : svc.targets;
    if (candidates.length === 0) return undefined;
    const target = this.pickUniform(svc, candidates, now) ?? this.pickByLevel(svc, candidates, now);
    if (!target) return undefined;
    const s = this.stat(svc, target.target);
    s.outstanding++;
    s.startSum += now;
    s.requests++;
    let released = false;
    return {
      target: target.target,
      level: target.level,
      release: (outcome) => {
        if (released) return;
        released = true;
        s.outstanding--;
        s.startSum -= now;
        this.observe(svc, target.target, s, outcome);
      },
    };
  }

  /** Every candidate healthy and of one level: what pickByLevel decides (one draw for the level), no lists. */
  private pickUniform(svc: ResolvedService, candidates: readonly BalancerTarget[], now: number): Chosen {
    if (this.o.config.overprovisioningFactor < 1) return undefined;
    const level = localityLevel(this.o.locality, candidates[0]!.locality);
    let total = 0;
    for (const t of candidates) {
      if (localityLevel(this.o.locality, t.locality) !== level || !this.healthy(svc, t, now))
        return undefined;
      total += t.weight;
    }
    if (total <= 0) return undefined;
    this.random();
    const target = p2c(candidates, this.random, this.stats.get(svc.key), now);
    return target ? { target, level } : undefined;
  }

  private pickByLevel(svc: ResolvedService, candidates: readonly BalancerTarget[], now: number): Chosen {
    // one pass: each target's level, its weight, and whether it is healthy (asked once per target)
    const levels: BalancerTarget[][] = [[], [], []];
    const healthyTargets: BalancerTarget[][] = [[], [], []];
    const weights = [
      { total: 0, healthy: 0, answering: 0 },
      { total: 0, healthy: 0, answering: 0 },
      { total: 0, healthy: 0, answering: 0 },
    ];
    for (const t of candidates) {
      const i = localityLevel(this.o.locality, t.locality);
      levels[i]!.push(t);
      weights[i]!.total += t.weight;
      if (this.activeHealthy(t)) weights[i]!.answering += t.weight;
      if (this.healthy(svc, t, now)) {
        healthyTargets[i]!.push(t);
        weights[i]!.healthy += t.weight;
      }
    }
    const c = this.o.config;
    const { loads, panic, answeringOnly } = levelPlan(weights, c.overprovisioningFactor, c.panicThreshold);
    if (loads.every((l) => l === 0)) return undefined;
    let r = this.random();
    let level: 0 | 1 | 2 = 2;
    for (let i = 0; i < 3; i++) {
      if (r < loads[i]! || i === 2) {
        level = i as 0 | 1 | 2;
        break;
      }
      r -= loads[i]!;
    }
    if (loads[level] === 0) level = loads.findIndex((l) => l > 0) as 0 | 1 | 2;
    // in panic a level balances over all its targets, healthy or not (those answering health checks, when
    // some do not: levelPlan)
    const pool = answeringOnly
      ? levels[level]!.filter((t) => this.activeHealthy(t))
      : panic[level]
        ? levels[level]!
        : healthyTargets[level]!;
    const target = p2c(pool, this.random, this.stats.get(svc.key), now);
    return target ? { target, level } : undefined;
  }

  private observe(
    svc: ResolvedService,
    t: BalancerTarget,
    s: TargetStats,
    o: { ok: boolean; latencyMs: number; failure?: Failure },
  ): void {
    if (o.failure === 'cancelled' || o.failure === 'overflow' || o.failure === 'declined') return;
    const now = this.now();
    s.sample(o.latencyMs, now);
    if (o.ok) {
      s.consecutiveFailures = 0;
      s.probation = false;
      return;
    }
    s.failures++;
    s.consecutiveFailures++;
    const override = this.outlierOverride?.(svc);
    const c = override ? { ...this.o.config.outlier, ...override } : this.o.config.outlier;
    if (s.ejectedUntil > now) return;
    // a failed trial after an ejection re-ejects at once (with the longer back-off)
    if (s.consecutiveFailures < c.consecutiveFailures && !s.probation) return;
    // cap: never eject more than maxEjectionPercent of the targets this service could use
    const peers = svc.targets;
    const ejected = peers.filter((p) => (this.stats.get(svc.key)?.get(p.id)?.ejectedUntil ?? 0) > now).length;
    if (((ejected + 1) / Math.max(peers.length, 1)) * 100 > c.maxEjectionPercent) return;
    s.ejections++;
    s.ejectedUntil = now + Math.min(c.baseEjection * s.ejections, c.maxEjection);
    s.consecutiveFailures = 0;
    s.probation = true;
    this.ejectionsTotal.inc({
      source_cluster: this.o.cluster,
      destination_cluster: t.cluster,
      service: `${svc.name}.${svc.namespace}`,
    });
    this.o.logger.warn(
      {
        target: t.id,
        cluster: t.cluster,
        service: `${svc.name}.${svc.namespace}`,
        failure: o.failure,
        ejectedForMs: s.ejectedUntil - now,
      },
      'target ejected by outlier detection',
    );
  }

  /**
   * One target per remote gateway address, for the probes: their result holds for every service behind
   * that gateway (targets never picked included, so a dead gateway is known before traffic goes to it).
   * Rebuilt only after the catalog changed: with a large catalog, resolving every service at every
   * interval would stall the event loop.
   */
  private probeTargets(): Map<string, BalancerTarget> {
    if (!this.probeSet) {
      const seen = new Map<string, BalancerTarget>();
      for (const ref of this.o.catalog.services()) {
        for (const inst of this.o.catalog.instances(ref.namespace, ref.name)) {
          if (!usableOffer(inst, this.o.cluster)) continue;
          for (const g of inst.gateways)
            if (!seen.has(g.address)) seen.set(g.address, remoteTarget(inst, g, inst.ports[0]!));
        }
      }
      this.probeSet = seen;
    }
    return this.probeSet;
  }

  /** Why traffic for a service goes where it goes (for `meshfed routes` and /debug/routes). */
  explain(namespace: string, name: string, o: PickOptions = {}): RouteExplanation {
    const svc = this.resolve(namespace, name, o);
    const now = this.now();
    return explainRoute({
      service: `${name}.${namespace}`,
      from: this.o.cluster,
      locality: this.o.locality,
      config: this.o.config,
      now,
      wallNow: (this.o.wallNow ?? Date.now)(),
      ...(svc
        ? {
            resolved: svc,
            stats: (t: BalancerTarget) => this.stats.get(svc.key)?.get(t.id),
            healthy: (t: BalancerTarget) => this.healthy(svc, t, now),
            answering: (t: BalancerTarget) => this.activeHealthy(t),
          }
        : {}),
      // stale clusters are kept in view (no new traffic) so an operator sees why they get nothing
      stale:
        o.scope === 'local'
          ? []
          : this.o.catalog
              .instances(namespace, name)
              .filter((inst) => inst.stale && inst.cluster !== this.o.cluster),
    });
  }

  /**
   * Per-service outlier thresholds replacing the configured ones (a ResilienceOverride of the policy in
   * force), read on each failure so a policy change applies at once; undefined restores the configured.
   */
  outlierOverrides(f: ((s: ServiceRef) => Partial<BalancerConfig['outlier']> | undefined) | undefined): void {
    this.outlierOverride = f;
  }

  /**
   * Starts active health checks of remote gateways with `probe` every healthCheck.interval (the data
   * plane supplies it once it can dial them), or stops them (undefined).
   */
  healthChecks(probe: ((t: BalancerTarget) => Promise<boolean>) | undefined): void {
    this.active.start(probe);
  }

  close(): void {
    this.unsubscribe();
    this.healthChecks(undefined);
  }
}
