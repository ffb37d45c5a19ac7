import { once } from 'node:events';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import type { BalancerTarget } from '../../../gateway/balancer/index.ts';
import {
  balancedDispatch,
  budgetPerService,
  compose,
  deadline,
  grpcTimeoutMs,
  perTryTimeout,
  retry,
  UpstreamFailure,
  type TrySignal,
} from '../../../gateway/resilience/index.ts';
import { codeOf, ctx, noSleep, twoGateways } from './resilience-fixtures.ts';

// Time limits on a call: the per-try timeout, and the per-call deadline (grpc-timeout) that stops retries.

describe('per-try timeout', () => {
  test('a hung target times out, counts as a timeout against it, and the retry goes elsewhere', async () => {
    const { balancers } = twoGateways();
    const tried: string[] = [];
    let hung = '';
    const send = (t: BalancerTarget, c: { signal: TrySignal }) => {
      tried.push(t.id);
      if (tried.length === 1) {
        hung = t.id;
        return new Promise<number>((_, reject) =>
          c.signal.addEventListener('abort', () => reject(c.signal.reason)),
        );
      }
      return Promise.resolve(200);
    };
    const dispatch = compose(
      balancedDispatch({ balancers, send }),
      retry<number>({
        attempts: 1,
        budgetFor: budgetPerService({ budgetPercent: 20, minRetriesPerSecond: 1, windowMs: 10_000 }),
        backoffBase: 1,
        backoffMax: 1,
        sleep: noSleep,
      }),
      perTryTimeout<number>({ ms: 20 }),
    );
    await expect(dispatch(ctx())).resolves.toBe(200);
    expect(tried[1]).not.toBe(hung);
    const t = balancers
      .explain('shop', 'orders')
      .levels[0]!.targets.find((x) => hung.endsWith(x.target.split(' ')[1]!));
    expect(t?.failures).toBe(1);
    balancers.close();
  });

  test('an answer that arrived during an event-loop stall wins over the timer that expired in it (regression: it was thrown away as a timeout)', async () => {
    // the peer runs on its own thread, so it answers while this thread is stalled
    const peer = new Worker(
      `const net = require('node:net');
       const { parentPort } = require('node:worker_threads');
       const s = net.createServer((c) => c.on('data', () => c.write('pong')));
       s.listen(0, '127.0.0.1', () => parentPort.postMessage(s.address().port));`,
      { eval: true },
    );
    try {
      const [port] = (await once(peer, 'message')) as [number];
      const socket = net.connect(port, '127.0.0.1');
      await once(socket, 'connect');
      const dispatch = perTryTimeout<string>({ ms: 50 })(
        (c) =>
          new Promise<string>((resolve, reject) => {
            socket.once('data', (d) => resolve(d.toString()));
            c.signal!.addEventListener('abort', () => reject(c.signal!.reason));
            socket.write('ping');
            // a stall longer than the per-try timeout: the answer lands in the socket meanwhile
            const until = Date.now() + 300;
            while (Date.now() < until);
          }),
      );
      await expect(dispatch(ctx() as never)).resolves.toBe('pong');
      socket.destroy();
    } finally {
      await peer.terminate();
    }
  });

  test('the tries of one layer share one deadline list: a shorter timeout added later fires first, a finished try never', async () => {
    const order: string[] = [];
    const dispatch = perTryTimeout<string>({ ms: (c) => (c.name === 'slow' ? 400 : 30) })(
      (c) =>
        new Promise<string>((resolve, reject) => {
          if (c.name === 'quick') resolve('answered');
          else c.signal!.addEventListener('abort', () => reject(c.signal!.reason));
        }),
    );
    const settle = (name: string) =>
      dispatch({ ...ctx(), name } as never).then(
        (v) => order.push(`${name}:${v}`),
        (err: unknown) => order.push(`${name}:${(err as { code?: string }).code}`),
      );
    await Promise.all([settle('slow'), settle('short'), settle('quick')]);
    expect(order).toEqual([
      'quick:answered',
      'short:MESHFED_GATEWAY_TIMEOUT',
      'slow:MESHFED_GATEWAY_TIMEOUT',
    ]);
  });

  test('no time left before a try: MESHFED_GATEWAY_TIMEOUT without sending', async () => {
    let sends = 0;
    const dispatch = perTryTimeout<number>({ ms: 1000, clock: { now: () => 10 } })(async () => ++sends);
    expect(await codeOf(dispatch({ ...ctx(), deadline: 10 }))).toBe('MESHFED_GATEWAY_TIMEOUT');
    expect(sends).toBe(0);
  });
});

describe('deadline', () => {
  test.each([
    ['100m', 100],
    ['2S', 2_000],
    ['1M', 60_000],
    ['1H', 3_600_000],
    ['5000u', 5],
    ['12345678n', 12.345678],
    ['123456789m', undefined],
    ['10', undefined],
    ['1x', undefined],
    [undefined, undefined],
  ])('grpc-timeout %s is %s ms', (value, ms) => {
    expect(grpcTimeoutMs(value)).toBe(ms);
  });

  test('a per-call deadline stops retries once it has passed', async () => {
    const { balancers } = twoGateways();
    const clock = { t: 0 };
    let sends = 0;
    const send = async (t: BalancerTarget): Promise<number> => {
      sends++;
      clock.t += 60; // each try takes 60 ms of the call's time
      throw new UpstreamFailure('reset', t);
    };
    const dispatch = compose(
      balancedDispatch({ balancers, send }),
      deadline<number>({ ms: (c) => (c.name === 'orders' ? 100 : undefined), clock: { now: () => clock.t } }),
      retry<number>({
        attempts: 5,
        budgetFor: budgetPerService({ budgetPercent: 100, minRetriesPerSecond: 100, windowMs: 10_000 }),
        backoffBase: 1,
        backoffMax: 1,
        sleep: noSleep,
        clock: { now: () => clock.t },
        random: () => 0,
      }),
    );
    expect(await codeOf(dispatch(ctx()))).toBe('MESHFED_GATEWAY_UPSTREAM');
    // tries at 0 and 60 ms; at 120 ms the 100 ms deadline has passed
    expect(sends).toBe(2);
    balancers.close();
  });
});
