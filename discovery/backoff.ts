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
 * Logs a failing backend without flooding: the first failure is logged, then at most one line
 * per `everyMs` carrying how many were suppressed, and one line when it recovers.
 */
export class FailureLog {
  private readonly log: Logger;
  private readonly what: string;
  private readonly everyMs: number;
  private failing = false;
  private failures = 0;
  private suppressed = 0;
  private lastLogged = 0;

  constructor(log: Logger, what: string, everyMs = 60_000) {
    this.log = log;
    this.what = what;
    this.everyMs = everyMs;
  }

  get isFailing(): boolean {
    return this.failing;
  }

  failure(err: unknown, retryInMs: number): void {
    this.failures++;
    const now = Date.now();
    if (!this.failing || now - this.lastLogged >= this.everyMs) {
      this.log.warn(
        { err, retryInMs, failures: this.failures, suppressed: this.suppressed },
        `${this.what} failed; keeping the last known state and retrying with back-off`,
      );
      this.lastLogged = now;
      this.suppressed = 0;
    } else {
      this.suppressed++;
    }
    this.failing = true;
  }

  success(): void {
    if (this.failing) {
      this.log.info({ failures: this.failures }, `${this.what} recovered`);
    }
    this.failing = false;
    this.failures = 0;
    this.suppressed = 0;
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
