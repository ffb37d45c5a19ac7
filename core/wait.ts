import { MeshfedError } from './errors.ts';

/**
 * Polls `check` until it returns a truthy value or the deadline passes. Used instead of fixed
 * sleeps: the wait ends as soon as the condition holds.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new MeshfedError(
        'MESHFED_INTERNAL',
        `timed out after ${timeoutMs} ms waiting for ${options.what ?? 'a condition'}`,
        { cause: lastError },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
