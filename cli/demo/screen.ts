/** A horizontal bar of `width` cells, `n / total` of them filled: the live screens' one chart. */
export function bar(n: number, total: number, width = 30): string {
  const w = total === 0 ? 0 : Math.round((n / total) * width);
  return `${'█'.repeat(w)}${'·'.repeat(width - w)}`;
}

/** `n / total` as a whole percentage (0 when there is nothing to divide). */
export function percent(n: number, total: number): number {
  return total === 0 ? 0 : Math.round((n / total) * 100);
}
