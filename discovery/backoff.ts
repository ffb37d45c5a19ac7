import type { Logger } from '../core/index.ts';

export interface BackoffOptions {
  /** first delay in ms */
  minMs?: number;
  /** the delay never grows past this */
  maxMs?: number;
  factor?: number;
  /** random source, replaceable in tests */
  random?: () => number;
}

/**
 * Exponential back-off with "equal jitter": each delay is half fixed, half random, so many
 * gateways retrying against one recovering Consul agent or API server do not arrive in step.
 */
export class Backoff {
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly random: () => number;
  private attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.minMs = options.minMs ?? 250;
    this.maxMs = options.maxMs ?? 30_000;
    this.factor = options.factor ?? 2;
    this.random = options.random ?? Math.random;
  }

  get attempts(): number {
    return this.attempt;
  }

  next(): number {
    const base = Math.min(this.maxMs, this.minMs * this.factor ** this.attempt);
    this.attempt++;
    return Math.round(base / 2 + (this.random() * base) / 2);
  }

  reset(): void {
    this.attempt = 0;
  }
}

/**
 * Logs a failing backend without flooding. Many loops (one per watched service or resource) share
 * one FailureLog and report under their own key: the first failure is logged, then at most one
 * line per `everyMs` carrying how many were suppressed, and one "recovered" line once every
 * failing loop has succeeded again. A loop that keeps failing while others work cannot make the
 * log alternate between "failed" and "recovered".
 */
export class FailureLog {
  private readonly log: Logger;
  private readonly what: string;
  private readonly everyMs: number;
  private readonly failingKeys = new Set<string>();
  private failures = 0;
  private suppressed = 0;
  private lastLogged = 0;

  constructor(log: Logger, what: string, everyMs = 60_000) {
    this.log = log;
    this.what = what;
    this.everyMs = everyMs;
  }

  get isFailing(): boolean {
    return this.failingKeys.size > 0;
  }

  failure(err: unknown, retryInMs: number, key = ''): void {
    this.failures++;
    const now = Date.now();
    if (this.failingKeys.size === 0 || now - this.lastLogged >= this.everyMs) {
      this.log.warn(
        {
          err,
          retryInMs,
          failures: this.failures,
          suppressed: this.suppressed,
          failingLoops: this.failingKeys.size + 1,
        },
        `${this.what} failed; keeping the last known state and retrying with back-off`,
      );
      this.lastLogged = now;
      this.suppressed = 0;
    } else {
      this.suppressed++;
    }
    this.failingKeys.add(key);
  }

  success(key = ''): void {
    if (!this.failingKeys.delete(key)) return;
    if (this.failingKeys.size === 0) {
      this.log.info({ failures: this.failures }, `${this.what} recovered`);
      this.failures = 0;
      this.suppressed = 0;
    }
  }
}

/** A sleep that `abort()` ends early; used by long-running loops so stop() is prompt. */
export function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
