/**
 * Locality priority levels and spill-over: a level's health is its
 * healthy weight share × the overprovisioning factor (capped at 100%). Level 0 takes as much load
 * as its health allows, level 1 the next part up to its own health, and so on. When the levels'
 * health sums to less than 100%, the loads are scaled up so they still sum to 100% (normalised).
 * When nothing at all is healthy the caller is in panic mode and uses every target.
 */
export interface LevelWeights {
  healthy: number;
  total: number;
  /** weight of the targets passing active health checks, outlier-ejected or not (absent: all of them) */
  answering?: number;
}

export function levelLoads(levels: readonly LevelWeights[], overprovisioning: number): number[] {
  const health = levels.map((l) =>
    l.total <= 0 ? 0 : Math.min(1, (l.healthy / l.total) * overprovisioning),
  );
  const sum = health.reduce((a, b) => a + b, 0);
  if (sum <= 0) return levels.map(() => 0);
  const scale = sum < 1 ? 1 / sum : 1;
  const loads: number[] = [];
  let left = 1;
  for (const h of health) {
    const take = Math.min(left, h * scale);
    loads.push(take);
    left -= take;
  }
  return loads;
}

export interface LevelPlan {
  /** share of new requests per level, summing to 1 (or all 0 when nothing can be picked) */
  readonly loads: readonly number[];
  /** per level: pick among all its targets, healthy or not (the level's panic mode) */
  readonly panic: readonly boolean[];
  /** nothing was healthy: the panic load goes to the targets still answering health checks, and only them */
  readonly answeringOnly?: boolean;
}

/** the plans of three levels where level i takes all the load, none in panic (shared: never changed) */
const ALL_LOAD_AT: readonly LevelPlan[] = [0, 1, 2].map((level) =>
  Object.freeze({
    loads: Object.freeze([0, 1, 2].map((i) => (i === level ? 1 : 0))),
    panic: Object.freeze([false, false, false]),
  }),
);

/**
 * Loads plus per-level panic: while the levels together have enough healthy capacity
 * (normalised total health 100 %) nothing is in panic, the spill-over already moved the load.
 * Below that, a level whose healthy share is under `panicThresholdPercent` is in panic: its load
 * goes to all its targets, because a few survivors would otherwise take a load meant for many.
 * When nothing at all is healthy, the nearest non-empty level takes everything, in panic (the nearest
 * with targets answering health checks, when some do not: only those). A
 * threshold of 0 turns panic off (then a level with no healthy target takes no load, and with
 * nothing healthy anywhere nothing can be picked).
 */
export function levelPlan(
  levels: readonly LevelWeights[],
  overprovisioning: number,
  panicThresholdPercent: number,
): LevelPlan {
  // the common case, computed per pick: the nearest level with any weight is wholly healthy, so it takes all
  // the load (its health is 1, overprovisioning being at least 1) and no level is in panic
  let whole = 0;
  while (whole < levels.length && levels[whole]!.total <= 0) whole++;
  if (whole < levels.length && levels[whole]!.healthy === levels[whole]!.total && overprovisioning >= 1) {
    return levels.length === 3
      ? ALL_LOAD_AT[whole]!
      : { loads: levels.map((_, i) => (i === whole ? 1 : 0)), panic: levels.map(() => false) };
  }
  const loads = levelLoads(levels, overprovisioning);
  const totalHealth = levels.reduce(
    (a, l) => a + (l.total <= 0 ? 0 : Math.min(1, (l.healthy / l.total) * overprovisioning)),
    0,
  );
  if (panicThresholdPercent <= 0) return { loads, panic: levels.map(() => false) };
  if (loads.every((l) => l === 0)) {
    // outlier ejection is what a reachable gateway on a loaded host earns too (its connects time out); a
    // gateway behind a cut link fails its health checks as well. When some targets fail them and others do
    // not, the panic load goes to those still answering, not to the nearest level whatever it holds
    // (network-partition: both clusters ejected sent everything to the one behind the cut)
    const answering = levels.map((l) => l.answering ?? l.total);
    if (answering.some((a, i) => a < levels[i]!.total) && answering.some((a) => a > 0)) {
      const onAnswering = levelLoads(
        answering.map((a) => ({ healthy: a, total: a })),
        overprovisioning,
      );
      return { loads: onAnswering, panic: onAnswering.map((l) => l > 0), answeringOnly: true };
    }
    const nearest = levels.findIndex((l) => l.total > 0);
    return {
      loads: levels.map((_, i) => (i === nearest ? 1 : 0)),
      panic: levels.map((_, i) => i === nearest),
    };
  }
  const panic = levels.map(
    (l) => totalHealth < 1 && l.total > 0 && (l.healthy / l.total) * 100 < panicThresholdPercent,
  );
  return { loads, panic };
}

/** 0: same zone, 1: same region, 2: anywhere else. */
export function localityLevel(
  self: { region: string; zone: string },
  target: { region: string; zone: string },
): 0 | 1 | 2 {
  if (target.region === self.region && target.zone === self.zone) return 0;
  if (target.region === self.region) return 1;
  return 2;
}
