import type { Locality, RemoteServiceInstance } from '../../core/index.ts';
import type { BalancerTarget, ResolvedService } from './balancers.ts';
import type { BalancerConfig } from './config.ts';
import { levelPlan, localityLevel } from './priority.ts';

export interface RouteExplanation {
  service: string;
  from: string;
  known: boolean;
  port?: string;
  /** some level that receives traffic is in panic */
  panic?: boolean;
  levels: {
    level: number;
    locality: string;
    /** percent of new requests this level receives */
    load: number;
    /** the level balances over all its targets, healthy or not (healthy share below panicThreshold) */
    panic: boolean;
    healthyWeight: number;
    totalWeight: number;
    targets: {
      target: string;
      cluster: string;
      zone: string;
      weight: number;
      state: string;
      outstanding: number;
      ewmaMs: number;
      requests: number;
      failures: number;
      /** percent of the service's new requests this target receives */
      share: number;
      /** ISO time when an outlier ejection ends */
      ejectedUntil?: string;
    }[];
  }[];
}

/** What the balancer knows of one target for one service, as the explanation shows it. */
interface TargetFigures {
  outstanding: number;
  ewma: number;
  requests: number;
  failures: number;
  ejectedUntil: number;
}

/** What Balancers hands over to explain one service's routing (read-only views of its state). */
export interface RouteExplanationInput {
  /** `name.namespace` */
  service: string;
  /** this gateway's cluster */
  from: string;
  locality: Locality;
  config: Pick<BalancerConfig, 'overprovisioningFactor' | 'panicThreshold'>;
  now: number;
  /** the wall clock at `now`, to show an ejection's end as a time of day */
  wallNow: number;
  /** the service's resolved targets; absent: the service is unknown here */
  resolved?: ResolvedService;
  stats?: (t: BalancerTarget) => TargetFigures | undefined;
  healthy?: (t: BalancerTarget) => boolean;
  /** the target passes active health checks (outlier-ejected or not) */
  answering?: (t: BalancerTarget) => boolean;
  /** the service's instances in stale clusters: shown with no share */
  stale: readonly RemoteServiceInstance[];
}

const LEVEL_NAMES = ['same zone', 'same region', 'other regions'];

/**
 * Why traffic for a service goes where it goes: its targets by locality level, each with its state and
 * the share of new requests it receives (the priority plan of priority.ts applied to the healthy weights).
 */
export function explainRoute(i: RouteExplanationInput): RouteExplanation {
  const svc = i.resolved;
  if (!svc) return { service: i.service, from: i.from, known: false, levels: [] };
  const now = i.now;
  const levels: RouteExplanation['levels'] = LEVEL_NAMES.map((locality, level) => ({
    level,
    locality,
    load: 0,
    panic: false,
    healthyWeight: 0,
    totalWeight: 0,
    targets: [],
  }));
  /** per level, the weight of its targets answering health checks; per target shown, whether it does */
  const answeringWeight = [0, 0, 0];
  const answers = new Map<object, boolean>();
  for (const t of svc.targets) {
    const n = localityLevel(i.locality, t.locality);
    const lvl = levels[n]!;
    const s = i.stats?.(t);
    const healthy = i.healthy?.(t) ?? true;
    const answering = i.answering?.(t) ?? true;
    lvl.totalWeight += t.weight;
    if (healthy) lvl.healthyWeight += t.weight;
    if (answering) answeringWeight[n]! += t.weight;
    lvl.targets.push({
      target: t.local ? `${t.address} (local endpoint)` : `${t.cluster}/${t.gatewayName} ${t.address}`,
      cluster: t.cluster,
      zone: t.locality.zone,
      weight: Math.round(t.weight * 100) / 100,
      state: !healthy
        ? s && s.ejectedUntil > now
          ? `ejected ${Math.ceil((s.ejectedUntil - now) / 1000)}s`
          : 'failing health checks'
        : 'healthy',
      outstanding: s?.outstanding ?? 0,
      ewmaMs: s ? Math.round(s.ewma * 10) / 10 : 0,
      requests: s?.requests ?? 0,
      failures: s?.failures ?? 0,
      share: healthy ? t.weight : 0,
      ...(s && s.ejectedUntil > now
        ? { ejectedUntil: new Date(i.wallNow + s.ejectedUntil - now).toISOString() }
        : {}),
    });
    answers.set(lvl.targets.at(-1)!, answering);
  }
  for (const inst of i.stale) {
    for (const g of inst.gateways) {
      const locality = g.locality ?? inst.locality;
      levels[localityLevel(i.locality, locality)]!.targets.push({
        target: `${inst.cluster}/${g.name} ${g.address}`,
        cluster: inst.cluster,
        zone: locality.zone,
        weight: 0,
        state: 'stale (cluster heartbeats stopped)',
        outstanding: 0,
        ewmaMs: 0,
        requests: 0,
        failures: 0,
        share: 0,
      });
    }
  }
  const { loads, panic, answeringOnly } = levelPlan(
    levels.map((l, n) => ({
      healthy: l.healthyWeight,
      total: l.totalWeight,
      answering: answeringWeight[n]!,
    })),
    i.config.overprovisioningFactor,
    i.config.panicThreshold,
  );
  levels.forEach((l, n) => {
    l.load = Math.round(loads[n]! * 1000) / 10;
    l.panic = panic[n]!;
    // effective share of a target = its level's load × its part of the weight it is picked from
    // (the healthy weight, in panic the whole level's, or only the answering targets' when some do not)
    const base = answeringOnly ? answeringWeight[n]! : panic[n] ? l.totalWeight : l.healthyWeight;
    for (const t of l.targets) {
      const w = answeringOnly ? (answers.get(t) ? t.weight : 0) : panic[n] ? t.weight : t.share;
      t.share = base > 0 ? Math.round(((loads[n]! * w) / base) * 1000) / 10 : 0;
    }
  });
  return {
    service: i.service,
    from: i.from,
    known: true,
    port: `${svc.port.port}/${svc.port.protocol}`,
    panic: panic.some((p, n) => p && loads[n]! > 0),
    levels: levels.filter((l) => l.targets.length > 0),
  };
}
