import type { CallContext, Layer } from './dispatch.ts';
import { isRetryable } from './dispatch.ts';
import type { ResilienceMetrics } from './metrics.ts';
import type { Clock } from './timeouts.ts';

/**
 * Envoy's retry budget: retries in flight may be at most `budgetPercent` of the requests in flight
 * (first tries and retries), but `minRetryConcurrency` retries are always allowed. A fixed
 * "retry 2 times" multiplies load by 3 exactly when an upstream is struggling; a budget caps the
 * extra load at a share of the real load, so retries cannot become a storm.
 */
export class RetryBudget {
  private readonly percent: number;
  private readonly min: number;
  active = 0;
  retriesActive = 0;

  constructor(o: { budgetPercent: number; minRetryConcurrency: number }) {
    this.percent = o.budgetPercent;
    this.min = o.minRetryConcurrency;
  }

  /** How many retries may be in flight right now. */
  allowed(): number {
    return Math.max(this.min, Math.floor((this.active * this.percent) / 100));
  }

  /** Takes a retry slot; returns false when the budget is used up. */
  tryAcquire(): boolean {
    if (this.retriesActive >= this.allowed()) return false;
    this.retriesActive++;
    return true;
  }

  releaseRetry(): void {
    this.retriesActive--;
  }
}

/** Full jitter: uniform in [0, min(max, base × 2^retry)), as in the AWS architecture blog and Envoy. */
export function backoffMs(retry: number, base: number, max: number, random: () => number): number {
  return random() * Math.min(max, base * 2 ** retry);
}

export interface RetryOptions<P = undefined> {
  /** extra tries after the first */
  attempts: number;
  /** one budget per upstream service is what Envoy does; share one object per service */
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
 * Retries connect failures always and other upstream failures only for idempotent calls, on a
 * different target (the failed one goes into ctx.exclude), with jittered back-off, inside the
 * call's deadline and the service's retry budget. Everything else is rethrown at once.
 */
export function retry<R, P = undefined>(o: RetryOptions<P>): Layer<R, P> {
  const now = o.clock?.now ?? Date.now;
  const random = o.random ?? Math.random;
  const sleep = o.sleep ?? realSleep;
  return (next) => async (ctx) => {
    const budget = o.budgetFor(ctx);
    budget.active++;
    let holdsRetrySlot = false;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await next({ ...ctx, attempt });
        } catch (err) {
          if (holdsRetrySlot) {
            budget.releaseRetry();
            holdsRetrySlot = false;
          }
          if (!isRetryable(err, ctx.idempotent) || attempt >= o.attempts || ctx.signal?.aborted) throw err;
          const wait = backoffMs(attempt, o.backoffBase, o.backoffMax, random);
          if (ctx.deadline !== undefined && now() + wait >= ctx.deadline) throw err;
          const labels = { source_cluster: o.sourceCluster ?? '', destination_cluster: err.target.cluster };
          if (!budget.tryAcquire()) {
            o.metrics?.budgetExhausted.inc(labels);
            throw err;
          }
          holdsRetrySlot = true;
          o.metrics?.retries.inc({ ...labels, failure: err.failure });
          ctx.exclude.add(err.target.id);
          if (wait > 0) await sleep(wait);
        }
      }
    } finally {
      if (holdsRetrySlot) budget.releaseRetry();
      budget.active--;
    }
  };
}

/** A budget per service name, created on first use. */
export function budgetPerService(o: {
  budgetPercent: number;
  minRetryConcurrency: number;
}): (ctx: Pick<CallContext, 'namespace' | 'name'>) => RetryBudget {
  const budgets = new Map<string, RetryBudget>();
  return (ctx) => {
    const key = `${ctx.namespace}/${ctx.name}`;
    let b = budgets.get(key);
    if (!b) {
      b = new RetryBudget(o);
      budgets.set(key, b);
    }
    return b;
  };
}
