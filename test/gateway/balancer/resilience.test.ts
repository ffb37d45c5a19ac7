import { once } from 'node:events';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { isMeshfedError, Registry } from '../../../core/index.ts';
import type { BalancerTarget } from '../../../gateway/balancer/index.ts';
import {
  backoffMs,
  balancedDispatch,
  budgetPerService,
  type CallContext,
  CircuitBreakers,
  callContext,
  compose,
  deadline,
  grpcTimeoutMs,
  perTryTimeout,
  RetryBudget,
  TIMEOUT_REASON,
  TryAbort,
  resilienceMetrics,
  retry,
  UpstreamFailure,
  type TrySignal,
} from '../../../gateway/resilience/index.ts';
import { FixedCatalog, FixedSource, makeBalancers } from './fixtures.ts';

const noSleep = async () => {};

function twoGateways() {
  const catalog = new FixedCatalog();
  catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 2, gateways: 2 });
  return makeBalancers(catalog, new FixedSource(), {});
}

function ctx(idempotent = true): CallContext {
  return callContext({ namespace: 'shop', name: 'orders', idempotent });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return isMeshfedError(err) ? err.code : `not a MeshfedError: ${String(err)}`;
  }
  return 'resolved';
}

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

describe('circuit breakers', () => {
  const target = (id: string, cluster = 'west'): BalancerTarget => ({
    id,
    local: false,
    cluster,
    locality: { region: 'us', zone: 'us-a' },
    address: '127.0.0.1:1',
    weight: 1,
    port: { name: 'http', port: 80, protocol: 'http' },
  });

  test.each([
    {
      limit: 'requests' as const,
      config: { maxRequests: 2 },
      acquire: (b: CircuitBreakers) => b.acquireRequest(target('a')),
    },
    {
      limit: 'pending' as const,
      config: { maxPending: 2 },
      acquire: (b: CircuitBreakers) => b.acquirePending(target('a')),
    },
    {
      limit: 'connections' as const,
      config: { maxConnections: 2 },
      acquire: (b: CircuitBreakers) => b.acquireConnection(target('a')),
    },
    {
      limit: 'cluster_requests' as const,
      config: { maxClusterRequests: 2 },
      acquire: (() => {
        let i = 0;
        return (b: CircuitBreakers) => b.acquireRequest(target(`t${i++}`));
      })(),
    },
    {
      limit: 'service_requests' as const,
      config: { maxServiceRequests: 2 },
      // a new target each time, far below the cluster limit: only the service's own limit binds
      acquire: (() => {
        let i = 0;
        return (b: CircuitBreakers) => b.acquireRequest(target(`s${i++}`), 'shop/orders');
      })(),
    },
  ])('refuses past the $limit limit and admits again after a release', async ({ limit, config, acquire }) => {
    const registry = new Registry();
    const b = new CircuitBreakers(
      {
        maxConnections: 100,
        maxPending: 100,
        maxRequests: 100,
        maxClusterRequests: 100,
        maxServiceRequests: 100,
        ...config,
      },
      { metrics: resilienceMetrics(registry), sourceCluster: 'home' },
    );
    const first = acquire(b);
    expect(first).toBeDefined();
    expect(acquire(b)).toBeDefined();
    expect(acquire(b)).toBeUndefined();
    first!();
    first!(); // releasing twice must not free two slots
    expect(acquire(b)).toBeDefined();
    expect(acquire(b)).toBeUndefined();
    const text = await registry.getSingleMetricAsString('meshfed_upstream_circuit_breaker_open_total');
    expect(text).toContain(`limit="${limit}"} 2`);
  });

  test('balanced dispatch refuses with MESHFED_GATEWAY_OVERLOADED when every target is full', async () => {
    const { balancers } = twoGateways();
    const breakers = new CircuitBreakers({
      maxConnections: 1,
      maxPending: 1,
      maxRequests: 1,
      maxClusterRequests: 10,
      maxServiceRequests: 10,
    });
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const dispatch = balancedDispatch({ balancers, breakers, send: () => gate.then(() => 200) });
    const a = dispatch(ctx());
    const b = dispatch(ctx());
    expect(await codeOf(dispatch(ctx()))).toBe('MESHFED_GATEWAY_OVERLOADED');
    open();
    await expect(Promise.all([a, b])).resolves.toEqual([200, 200]);
    balancers.close();
  });
});

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
