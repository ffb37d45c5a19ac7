import type { BalancerTarget } from './balancers.ts';
import type { TargetStats } from './target-stats.ts';

/**
 * Power of two choices: two random targets of `pool` (by weight); the one with less outstanding work ×
 * latency wins. `stats`: the service's target stats (none yet: every cost is 0).
 */
export function p2c(
  pool: readonly BalancerTarget[],
  random: () => number,
  stats: Map<string, TargetStats> | undefined,
  now: number,
): BalancerTarget | undefined {
  if (pool.length <= 1) return pool[0];
  const a = weighted(pool, random);
  let b = weighted(pool, random);
  if (a === b) b = pool[(pool.indexOf(a) + 1) % pool.length]!;
  const costA = stats?.get(a.id)?.cost(a.weight, now) ?? 0;
  return costA <= (stats?.get(b.id)?.cost(b.weight, now) ?? 0) ? a : b;
}

function weighted(pool: readonly BalancerTarget[], random: () => number): BalancerTarget {
  let total = 0;
  for (const t of pool) total += t.weight;
  let r = random() * total;
  for (const t of pool) {
    r -= t.weight;
    if (r < 0) return t;
  }
  return pool[pool.length - 1]!;
}
