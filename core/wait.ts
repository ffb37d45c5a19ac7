import { setTimeout as sleep } from 'node:timers/promises';
import { MeshfedError } from './errors.ts';

/** errors that end a wait when its check throws them (endsWait) */
const FINAL = new WeakSet<Error>();

/**
 * Marks `err` as one that ends a waitFor when its check throws it: a condition that can no longer come true
 * (the process being waited on exited) is reported at once, not as a timeout at the deadline. Returns `err`.
 */
export function endsWait<E extends Error>(err: E): E {
  FINAL.add(err);
  return err;
}

/**
 * Polls `check` until it returns a truthy value or the deadline passes. Used instead of fixed
 * sleeps: the wait ends as soon as the condition holds. A check that throws is tried again (the thing
 * may not be up yet; the last error is the timeout's cause) unless what it throws was marked with
 * endsWait, which ends the wait with that error. `signal` ends it early, rejecting with the
 * signal's reason: a wait raced against something else (a child that exits during start) stops polling
 * when it loses, rather than keeping its timer, and the process, alive until its own deadline.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; what?: string; signal?: AbortSignal } = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  const signal = options.signal;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      if (err instanceof Error && FINAL.has(err)) throw err;
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new MeshfedError(
        'MESHFED_INTERNAL',
        `timed out after ${timeoutMs} ms waiting for ${options.what ?? 'a condition'}`,
        { cause: lastError },
      );
    }
    await (signal
      ? sleep(intervalMs, undefined, { signal }).catch(() => signal.throwIfAborted())
      : sleep(intervalMs));
  }
}

/** A timer from stallSafeTimeout: `cancel` stops it, before or after it fell due. */
export interface StallSafeTimer {
  cancel(): void;
}

/**
 * setTimeout for a timeout that races I/O: `fn` runs one turn of the event loop after `ms` (setImmediate,
 * after the I/O poll phase). After a stall of the loop (GC, a busy moment, a starved CPU) the timer phase runs
 * before the poll phase, so I/O that completed in time but was not read yet — a TLS handshake's last flight,
 * a PING's answer — would otherwise lose to its own timeout, and a healthy peer would count as failed.
 */
export function stallSafeTimeout(fn: () => void, ms: number, o: { unref?: boolean } = {}): StallSafeTimer {
  let immediate: NodeJS.Immediate | undefined;
  let cancelled = false;
  const timer = setTimeout(() => {
    immediate = setImmediate(() => {
      if (!cancelled) fn();
    });
    if (o.unref) immediate.unref();
  }, ms);
  if (o.unref) timer.unref();
  return {
    cancel() {
      cancelled = true;
      clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
    },
  };
}
