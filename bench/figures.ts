// Small helpers every benchmark uses for its figures.

/** `sleep(ms)`; a negative wait (a schedule already behind) is no wait */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** two decimals, for printed and recorded figures */
export const round = (x: number): number => Math.round(x * 100) / 100;

/** The p-th percentile (0-100) of an ascending list, nearest rank; NaN for an empty one. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The median of a list in any order; NaN for an empty one. */
export const median = (xs: readonly number[]): number =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
