/**
 * Locality priority levels and spill-over, the way Envoy computes them: a level's health is its
 * healthy weight share × the overprovisioning factor (capped at 100%). Level 0 takes as much load
 * as its health allows, level 1 the next part up to its own health, and so on. When the levels'
 * health sums to less than 100%, the loads are scaled up so they still sum to 100% (normalised).
 * When nothing at all is healthy the caller is in panic mode and uses every target.
 */
export interface LevelWeights {
  healthy: number;
  total: number;
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

/** 0: same zone, 1: same region, 2: anywhere else. */
export function localityLevel(
  self: { region: string; zone: string },
  target: { region: string; zone: string },
): 0 | 1 | 2 {
  if (target.region === self.region && target.zone === self.zone) return 0;
  if (target.region === self.region) return 1;
  return 2;
}
