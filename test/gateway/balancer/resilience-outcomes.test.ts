import type { BalancerTarget } from '../../../gateway/balancer/index.ts';
import {
  balancedDispatch,
  compose,
  perTryTimeout,
  TIMEOUT_REASON,
  TryAbort,
  UpstreamFailure,
  type TrySignal,
} from '../../../gateway/resilience/index.ts';
import { ctx, twoGateways } from './resilience-fixtures.ts';

// What balanced dispatch reports of each try: to the balancer (outstanding, failures) and to an observer.

describe('outcome reporting', () => {
  test('a send that throws UpstreamFailure itself is still reported to the balancer (regression: outstanding leaked)', async () => {
    const { balancers } = twoGateways();
    const dispatch = balancedDispatch<number>({
      balancers,
      send: async (t) => {
        throw new UpstreamFailure('refused', t);
      },
    });
    for (let i = 0; i < 4; i++) await dispatch(ctx()).catch(() => {});
    const targets = balancers.explain('shop', 'orders').levels[0]!.targets;
    expect(targets.reduce((a, t) => a + t.outstanding, 0)).toBe(0);
    expect(targets.reduce((a, t) => a + t.failures, 0)).toBe(4);
    balancers.close();
  });

  test('an observer hears each try start and end with the try’s own context; a stop with a timeout reason is a timeout', async () => {
    const { balancers } = twoGateways();
    const heard: string[] = [];
    const signals = new Set<TrySignal>();
    let outcome: 'ok' | 'refused' | 'stopped' = 'ok';
    const send = (t: BalancerTarget, c: { signal: TrySignal }) => {
      if (outcome === 'ok') return Promise.resolve(200);
      if (outcome === 'refused') return Promise.reject(new UpstreamFailure('refused', t));
      return new Promise<number>((_, reject) =>
        c.signal.addEventListener('abort', () => reject(c.signal.reason)),
      );
    };
    const dispatch = compose(
      balancedDispatch<number>({
        balancers,
        send,
        sendHonoursSignal: true,
        observer: {
          started: (_t, c) => {
            signals.add(c.signal);
            heard.push(`started ${c.signal instanceof TryAbort}`);
            // what the peer liveness check does to a try it stops: the try's own signal, a timeout reason
            if (outcome === 'stopped')
              queueMicrotask(() => (c.signal as TryAbort).abort({ [TIMEOUT_REASON]: true }));
          },
          answered: (_t, c) => heard.push(`answered ${signals.has(c.signal)}`),
          failed: (_t, c, failure) => heard.push(`failed ${failure} ${signals.has(c.signal)}`),
        },
      }),
      perTryTimeout<number>({ ms: 60_000 }),
    );
    await expect(dispatch(ctx())).resolves.toBe(200);
    outcome = 'refused';
    await expect(dispatch(ctx())).rejects.toMatchObject({ failure: 'refused' });
    outcome = 'stopped';
    await expect(dispatch(ctx())).rejects.toMatchObject({ failure: 'timeout' });
    expect(heard).toEqual([
      'started true',
      'answered true',
      'started true',
      'failed refused true',
      'started true',
      'failed timeout true',
    ]);
    expect(signals.size).toBe(3);
    const targets = balancers.explain('shop', 'orders').levels[0]!.targets;
    expect(targets.reduce((a, t) => a + t.outstanding, 0)).toBe(0);
    balancers.close();
  });
});
