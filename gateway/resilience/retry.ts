import { monotonicNow, serviceKey } from '../../core/index.ts';
import type { CallContext, Layer } from './dispatch.ts';
import { isRetryable, UpstreamFailure } from './dispatch.ts';
import type { ResilienceMetrics } from './metrics.ts';
import type { Clock } from './timeouts.ts';

export interface RetryBudgetOptions {
  /** retries in the window may be at most this percent of the calls in it */
  budgetPercent: number;
  /** retries per second always allowed on top, so a quiet service can still retry */
  minRetriesPerSecond: number;
  /** how far back calls and retries are counted */
  windowMs: number;
}

const SLOTS = 10;

/**
 * A retry budget over a sliding window: every call counts in, every
 * retry counts out, and the retries of the last `windowMs` may be at most `budgetPercent` of its calls,
 * plus `minRetriesPerSecond` × the window's seconds. A fixed "retry 2 times" multiplies load by 3 exactly
 * when an upstream struggles; with the budget a storm adds at most budgetPercent (plus the small floor).
 *
 * A bound on retries *in flight* (say 20 % of requests in flight, at least 3) does not do it: at a thousand
 * requests per second answered in milliseconds only a handful are in flight, so that bound is ~3; when
 * a cluster turns slow, the requests it holds all reach their per-try timeout within a millisecond or
 * two and most of that burst was refused a retry (bench:lb lost 8 of 13,000 that way). A budget over
 * time lets the burst through and still caps the extra load.
 */
export class RetryBudget {
  private readonly o: RetryBudgetOptions;
  private readonly now: () => number;
  private readonly calls = new Array<number>(SLOTS).fill(0);
  private readonly retries = new Array<number>(SLOTS).fill(0);
  /** which slot number (time / slot length) each ring entry currently counts for */
  private readonly stamps = new Array<number>(SLOTS).fill(-1);

  constructor(o: RetryBudgetOptions, now: () => number = monotonicNow) {
    this.o = o;
    this.now = now;
  }

  private slot(): number {
    const n = Math.floor(this.now() / (this.o.windowMs / SLOTS));
    const i = n % SLOTS;
    if (this.stamps[i] !== n) {
      this.stamps[i] = n;
      this.calls[i] = 0;
      this.retries[i] = 0;
    }
    return i;
  }

  private sum(counts: readonly number[]): number {
    const n = Math.floor(this.now() / (this.o.windowMs / SLOTS));
    let total = 0;
    for (let i = 0; i < SLOTS; i++) if (this.stamps[i]! > n - SLOTS) total += counts[i]!;
    return total;
  }

  /** One call (not its retries) started. */
  recordCall(): void {
    this.calls[this.slot()]!++;
  }

  /** How many retries the current window allows in all. */
  allowed(): number {
    const floor = (this.o.minRetriesPerSecond * this.o.windowMs) / 1000;
    return Math.floor((this.sum(this.calls) * this.o.budgetPercent) / 100 + floor);
  }

  /** Spends one retry; false when the window's budget is used up. */
  tryAcquire(): boolean {
    const i = this.slot();
    if (this.sum(this.retries) >= this.allowed()) return false;
    this.retries[i]!++;
    return true;
  }
}

/** Full jitter: uniform in [0, min(max, base × 2^retry)), so retries of one burst spread out. */
export function backoffMs(retry: number, base: number, max: number, random: () => number): number {
  return random() * Math.min(max, base * 2 ** retry);
}

export interface RetryOptions<P = undefined> {
  /** extra tries after the first (for this call: a service may override the gateway's number) */
  attempts: number | ((ctx: CallContext<P>) => number);
  /** which failures this call retries; default isRetryable (connect failures always, others when idempotent) */
  retryable?: (ctx: CallContext<P>, err: UpstreamFailure) => boolean;
  /** one budget per upstream service: share one object per service */
  budgetFor: (ctx: CallContext<P>) => RetryBudget;
  backoffBase: number;
  backoffMax: number;
  metrics?: ResilienceMetrics;
  sourceCluster?: string;
  clock?: Clock;
  random?: () => number;
  /** waits between tries; injectable so tests need no real time */
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms);
  });

/**
 * Retries the failures `retryable` picks (by default connect failures always, others only for
 * idempotent calls: isRetryable), on a different target (the failed one goes into ctx.exclude), with jittered back-off, inside the
 * call's deadline and the service's retry budget. Everything else is rethrown at once.
 *
 * The first try is the call's own context and one `then`: the retry loop (an async function, a context per
 * try, the exclude set) is made only once a try has failed.
 */
export function retry<R, P = undefined>(o: RetryOptions<P>): Layer<R, P> {
  const now = o.clock?.now ?? monotonicNow;
  const random = o.random ?? Math.random;
  const sleep = o.sleep ?? realSleep;
  return (next) => {
    /** what follows a failed try `attempt`: the next try, or `err` rethrown */
    const again = async (
      ctx: CallContext<P>,
      budget: RetryBudget,
      attempts: number,
      failed: unknown,
    ): Promise<R> => {
      let err = failed;
      for (let attempt = 0; ; ) {
        if (!(err instanceof UpstreamFailure) || attempt >= attempts || ctx.signal?.aborted) throw err;
        if (!(o.retryable ? o.retryable(ctx, err) : isRetryable(err, ctx.idempotent))) throw err;
        const wait = backoffMs(attempt, o.backoffBase, o.backoffMax, random);
        if (ctx.deadline !== undefined && now() + wait >= ctx.deadline) throw err;
        const labels = { source_cluster: o.sourceCluster ?? '', destination_cluster: err.target.cluster };
        if (!budget.tryAcquire()) {
          o.metrics?.budgetExhausted.inc(labels);
          throw err;
        }
        o.metrics?.retries.inc({ ...labels, failure: err.failure });
        // the call's own set from its first retry on (callContext starts every call on a shared empty one)
        const exclude = new Set(ctx.exclude);
        exclude.add(err.target.id);
        ctx.exclude = exclude;
        if (wait > 0) await sleep(wait);
        attempt++;
        try {
          return await next({ ...ctx, attempt });
        } catch (e) {
          err = e;
        }
      }
    };
    return (ctx) => {
      let budget: RetryBudget;
      let attempts: number;
      try {
        budget = o.budgetFor(ctx);
        budget.recordCall();
        attempts = typeof o.attempts === 'number' ? o.attempts : o.attempts(ctx);
      } catch (err) {
        return Promise.reject(err);
      }
      let first: Promise<R>;
      try {
        first = next(ctx.attempt === 0 ? ctx : { ...ctx, attempt: 0 });
      } catch (err) {
        first = Promise.reject(err);
      }
      return first.catch((err: unknown) => again(ctx, budget, attempts, err));
    };
  };
}

/** A budget per service name, created on first use. */
export function budgetPerService(
  o: RetryBudgetOptions,
  now?: () => number,
): (ctx: Pick<CallContext, 'namespace' | 'name'>) => RetryBudget {
  const budgets = new Map<string, RetryBudget>();
  return (ctx) => {
    const key = serviceKey(ctx);
    let b = budgets.get(key);
    if (!b) {
      b = new RetryBudget(o, now);
      budgets.set(key, b);
    }
    return b;
  };
}
