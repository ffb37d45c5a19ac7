import type { BalancerTarget } from '../../../gateway/balancer/index.ts';
import {
  balancedDispatch,
  budgetPerService,
  type CallContext,
  compose,
  type Done,
  deadline,
  fromPromise,
  perTryTimeout,
  promised,
  retry,
  UpstreamFailure,
} from '../../../gateway/resilience/index.ts';
import { ctx, noSleep, twoGateways } from './resilience-fixtures.ts';

// The stack is driven by callbacks: what the layers promise each other about when and how often `done` runs.

const budgets = () => budgetPerService({ budgetPercent: 100, minRetriesPerSecond: 100, windowMs: 10_000 });

describe('resilience callbacks', () => {
  test('an answer is reported in the same call as the send reports it, through every layer', () => {
    const { balancers } = twoGateways();
    let report: Done<number> | undefined;
    const dispatch = compose<number>(
      balancedDispatch<number>({
        balancers,
        send: (_t, _c, done) => {
          report = done;
        },
        sendHonoursSignal: true,
      }),
      deadline<number>({ ms: 60_000 }),
      retry<number>({ attempts: 2, budgetFor: budgets(), backoffBase: 1, backoffMax: 1, sleep: noSleep }),
      perTryTimeout<number>({ ms: 60_000 }),
    );
    const heard: unknown[] = [];
    dispatch(ctx(), (err, v) => heard.push(err ?? v));
    expect(heard).toEqual([]);
    report!(undefined, 200);
    // synchronously: no promise and no turn of the microtask queue between the codec and the caller
    expect(heard).toEqual([200]);
    const targets = balancers.explain('shop', 'orders').levels[0]!.targets;
    expect(targets.reduce((a, t) => a + t.outstanding, 0)).toBe(0);
    balancers.close();
  });

  test('a failed try is retried from the microtask queue, never inside the failed report', async () => {
    const { balancers } = twoGateways();
    const events: string[] = [];
    let tries = 0;
    const dispatch = compose<number>(
      balancedDispatch<number>({
        balancers,
        send: (t, _c, done) => {
          tries++;
          events.push(`send ${tries}`);
          if (tries === 1) {
            // a codec reporting a reset in the middle of its read
            done(new UpstreamFailure('connect', t));
            events.push('report returned');
          } else done(undefined, 200);
        },
      }),
      retry<number>({ attempts: 2, budgetFor: budgets(), backoffBase: 1, backoffMax: 1, sleep: noSleep }),
      perTryTimeout<number>({ ms: 60_000 }),
    );
    const result = await new Promise<unknown>((resolve) =>
      dispatch(ctx(false), (err, v) => resolve(err ?? v)),
    );
    expect(result).toBe(200);
    expect(events).toEqual(['send 1', 'report returned', 'send 2']);
    balancers.close();
  });

  test('a failure is passed up from the microtask queue too, and exactly once', async () => {
    const { balancers } = twoGateways();
    const dispatch = compose<number>(
      balancedDispatch<number>({
        balancers,
        send: (t, _c, done) => {
          done(new UpstreamFailure('reset', t));
          // a send that reports twice (a codec's error after its reset): the second report is ignored
          done(undefined, 200);
        },
      }),
      retry<number>({ attempts: 0, budgetFor: budgets(), backoffBase: 1, backoffMax: 1, sleep: noSleep }),
    );
    const heard: unknown[] = [];
    dispatch(ctx(false), (err, v) => heard.push(err ?? v));
    expect(heard).toEqual([]);
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    expect(heard).toHaveLength(1);
    expect(heard[0]).toMatchObject({ failure: 'reset' });
    const targets = balancers.explain('shop', 'orders').levels[0]!.targets;
    expect(targets.reduce((a, t) => a + t.failures, 0)).toBe(1);
    balancers.close();
  });

  test('a send that throws fails its try as a reset against its target, and nothing else breaks', async () => {
    const { balancers } = twoGateways();
    const dispatch = promised(
      balancedDispatch<number>({
        balancers,
        send: () => {
          throw new Error('a codec bug');
        },
      }),
    );
    await expect(dispatch(ctx())).rejects.toMatchObject({ failure: 'reset' });
    const targets = balancers.explain('shop', 'orders').levels[0]!.targets;
    expect(targets.reduce((a, t) => a + t.outstanding, 0)).toBe(0);
    balancers.close();
  });

  test('fromPromise: a rejection without a reason is an error, not an answer; a throw is a failure', async () => {
    const noReason = promised(fromPromise<number>(() => Promise.reject(undefined)));
    await expect(noReason(ctx())).rejects.toThrow('rejected without a reason');
    const throws = promised(
      fromPromise<number>(() => {
        throw new Error('thrown before any promise');
      }),
    );
    await expect(throws(ctx())).rejects.toThrow('thrown before any promise');
    const answers = promised(fromPromise<number, undefined>(async (c: CallContext) => c.attempt + 7));
    await expect(answers(ctx())).resolves.toBe(7);
  });

  test('a layer option that throws (a bad override) is reported, not thrown at the caller', async () => {
    const { balancers } = twoGateways();
    const send = (_t: BalancerTarget, _c: unknown, done: Done<number>) => done(undefined, 200);
    const bad = () => {
      throw new Error('bad override');
    };
    for (const layer of [
      deadline<number>({ ms: bad }),
      perTryTimeout<number>({ ms: bad }),
      retry<number>({ attempts: bad, budgetFor: budgets(), backoffBase: 1, backoffMax: 1, sleep: noSleep }),
    ]) {
      const dispatch = compose<number>(balancedDispatch<number>({ balancers, send }), layer);
      let thrown: unknown;
      let reported: unknown;
      try {
        await new Promise<void>((resolve) =>
          dispatch(ctx(), (err) => {
            reported = err;
            resolve();
          }),
        );
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeUndefined();
      expect(reported).toMatchObject({ message: 'bad override' });
    }
    balancers.close();
  });
});
