import { Registry } from '../../../core/index.ts';
import type { BalancerTarget } from '../../../gateway/balancer/index.ts';
import {
  backoffMs,
  balancedDispatch,
  budgetPerService,
  compose,
  RetryBudget,
  resilienceMetrics,
  retry,
  UpstreamFailure,
} from '../../../gateway/resilience/index.ts';
import { ctx, noSleep, twoGateways } from './resilience-fixtures.ts';

// Retries: which failures are retried and where, the retry budget that bounds them, and the back-off between them.

describe('retry', () => {
  test.each([
    {
      name: 'connect failure, POST: retried elsewhere',
      failure: 'connect' as const,
      idempotent: false,
      sends: 2,
      ok: true,
    },
    {
      name: 'reset, GET: retried elsewhere',
      failure: 'reset' as const,
      idempotent: true,
      sends: 2,
      ok: true,
    },
    {
      name: 'reset, POST: not retried (may have reached the app)',
      failure: 'reset' as const,
      idempotent: false,
      sends: 1,
      ok: false,
    },
    { name: '5xx, POST: not retried', failure: '5xx' as const, idempotent: false, sends: 1, ok: false },
  ])('$name', async ({ failure, idempotent, sends, ok }) => {
    const { balancers } = twoGateways();
    const tried: string[] = [];
    const send = async (t: BalancerTarget) => {
      tried.push(t.id);
      if (tried.length === 1) {
        if (failure === '5xx') return 503;
        throw new UpstreamFailure(failure, t);
      }
      return 200;
    };
    const dispatch = compose(
      balancedDispatch({ balancers, send, classify: (s: number) => (s >= 500 ? '5xx' : undefined) }),
      retry<number>({
        attempts: 2,
        budgetFor: budgetPerService({ budgetPercent: 20, minRetriesPerSecond: 1, windowMs: 10_000 }),
        backoffBase: 25,
        backoffMax: 250,
        sleep: noSleep,
      }),
    );
    const result = await dispatch(ctx(idempotent)).then(
      (v) => v,
      (e: unknown) => e,
    );
    expect(tried).toHaveLength(sends);
    if (sends === 2) expect(tried[1]).not.toBe(tried[0]);
    if (ok) expect(result).toBe(200);
    else expect(result).toBeInstanceOf(UpstreamFailure);
    balancers.close();
  });

  test.each([
    { name: 'with a 20 % budget retries stay bounded', percent: 20, min: 0, maxSends: 100 + 20 },
    { name: 'without a budget every call is tried three times', percent: 100, min: 1000, maxSends: 300 },
  ])('retry budget stops retry storms: $name', async ({ percent, min, maxSends }) => {
    const { balancers } = twoGateways();
    const registry = new Registry();
    const metrics = resilienceMetrics(registry);
    let sends = 0;
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const send = async (t: BalancerTarget): Promise<number> => {
      sends++;
      await gate;
      throw new UpstreamFailure('connect', t);
    };
    const dispatch = compose(
      balancedDispatch({ balancers, send }),
      retry<number>({
        attempts: 2,
        budgetFor: budgetPerService({ budgetPercent: percent, minRetriesPerSecond: min, windowMs: 10_000 }),
        backoffBase: 1,
        backoffMax: 1,
        sleep: noSleep,
        metrics,
        sourceCluster: 'home',
      }),
    );
    const calls = Array.from({ length: 100 }, () => dispatch(ctx()).catch(() => 'failed'));
    open();
    const results = await Promise.all(calls);
    expect(results.every((r) => r === 'failed')).toBe(true);
    expect(sends).toBeLessThanOrEqual(maxSends);
    if (percent === 20) {
      expect(sends).toBeGreaterThan(100);
      const text = await registry.getSingleMetricAsString('meshfed_upstream_retry_budget_exhausted_total');
      expect(text).toMatch(/destination_cluster="west"} [1-9]/);
    } else expect(sends).toBe(300);
    balancers.close();
  });

  test.each([
    { name: 'no calls, no floor: nothing', calls: 0, percent: 20, floor: 0, elapsed: 0, granted: 0 },
    { name: '100 calls at 20 %: 20 retries', calls: 100, percent: 20, floor: 0, elapsed: 0, granted: 20 },
    { name: 'the floor: 1/s over 10 s adds 10', calls: 100, percent: 20, floor: 1, elapsed: 0, granted: 30 },
    {
      name: 'a quiet service still gets the floor',
      calls: 0,
      percent: 20,
      floor: 1,
      elapsed: 0,
      granted: 10,
    },
    {
      name: 'calls older than the window count no more',
      calls: 100,
      percent: 20,
      floor: 0,
      elapsed: 10_000,
      granted: 0,
    },
  ])('RetryBudget over a window: $name', ({ calls, percent, floor, elapsed, granted }) => {
    const clock = { t: 1_000_000 };
    const b = new RetryBudget(
      { budgetPercent: percent, minRetriesPerSecond: floor, windowMs: 10_000 },
      () => clock.t,
    );
    for (let i = 0; i < calls; i++) b.recordCall();
    clock.t += elapsed;
    let n = 0;
    while (n < 1000 && b.tryAcquire()) n++;
    expect(n).toBe(granted);
  });

  test('RetryBudget: retries spent leave the window with it', () => {
    const clock = { t: 1_000_000 };
    const b = new RetryBudget({ budgetPercent: 50, minRetriesPerSecond: 0, windowMs: 10_000 }, () => clock.t);
    for (let i = 0; i < 10; i++) b.recordCall();
    clock.t += 5_000;
    for (let i = 0; i < 10; i++) b.recordCall();
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(() => b.tryAcquire()).filter(Boolean)).toHaveLength(10);
    // the first ten calls leave the window; so do none of the retries (spent at 5 s)
    clock.t += 5_000;
    expect(b.tryAcquire()).toBe(false);
    // once the retries are old too, the second ten calls' share is free again
    clock.t += 5_000;
    expect(b.allowed()).toBe(0);
  });

  test('a burst of timeouts gets its retries (regression: a budget on retries in flight refused most of it)', async () => {
    const { balancers } = twoGateways();
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const tried = new Map<number, number>();
    let n = 0;
    const send = async (t: BalancerTarget, c: { payload: undefined; attempt: number }) => {
      const call = n++;
      tried.set(call, c.attempt);
      if (c.attempt === 0) {
        await gate;
        throw new UpstreamFailure('timeout', t);
      }
      return 200;
    };
    const budgets = budgetPerService({ budgetPercent: 20, minRetriesPerSecond: 10, windowMs: 10_000 });
    const dispatch = compose(
      balancedDispatch({ balancers, send }),
      retry<number>({ attempts: 2, budgetFor: budgets, backoffBase: 1, backoffMax: 1, sleep: noSleep }),
    );
    // 40 calls held by a target that then times out all at once: 8 from the 20 % share + 100 from the floor
    const calls = Array.from({ length: 40 }, () => dispatch(ctx()));
    open();
    await expect(Promise.all(calls)).resolves.toEqual(new Array(40).fill(200));
    balancers.close();
  });

  test.each([0, 1, 2, 5])('back-off for retry %i is jittered below min(max, base × 2^n)', (n) => {
    expect(backoffMs(n, 25, 250, () => 0.999_999)).toBeLessThan(Math.min(250, 25 * 2 ** n));
    expect(backoffMs(n, 25, 250, () => 0)).toBe(0);
  });
});
