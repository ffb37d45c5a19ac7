import { jest } from '@jest/globals';
import type { ClientHttp2Session } from 'node:http2';
import { createLogger, createRegistry } from '../../core/index.ts';
import type { BalancerTarget } from '../../gateway/balancer/index.ts';
import { balancerConfigSchema } from '../../gateway/balancer/index.ts';
import { PeerLiveness } from '../../gateway/peer-liveness.ts';
import {
  type CallContext,
  callContext,
  isTimeoutReason,
  TIMEOUT_REASON,
  TryAbort,
} from '../../gateway/resilience/index.ts';

// The peer-unresponsive signal on its own, with a tunnel session that is a double and the clock in jest's
// hands: how long a PING may go unanswered, what counts as an answer, and what an unanswered one does.

const PEER: BalancerTarget = {
  id: 'remote|west|west-gw|10.0.0.1:15443',
  local: false,
  cluster: 'west',
  locality: { region: 'us', zone: 'us-a' },
  address: '10.0.0.1:15443',
  weight: 1,
  gatewayName: 'west-gw',
  port: { name: 'http', port: 8080, protocol: 'http' },
};

/** a tunnel session double: PINGs are answered only when the test says so; bytesRead grows on `hear` */
function fakeSession() {
  const pings: ((err: Error | null, ms: number) => void)[] = [];
  const socket = { bytesRead: 100 };
  const session = {
    destroyed: false,
    socket,
    ping: (cb: (err: Error | null, ms: number) => void) => pings.push(cb) > 0,
  };
  return { session: session as unknown as ClientHttp2Session, pings, hear: () => (socket.bytesRead += 9) };
}

function liveness(o: { rttMs?: number; marked?: 'ejected' | 'already' | 'last' } = {}) {
  const s = fakeSession();
  const calls = { eject: 0, forget: 0, dropIdle: 0 };
  const live = new PeerLiveness(
    {
      balancers: {
        peerUnresponsive: () => {
          calls.eject++;
          return o.marked ?? 'ejected';
        },
      } as never,
      balancerConfig: balancerConfigSchema.parse({ unresponsiveAfter: '500ms' }),
      cluster: 'east',
      registry: createRegistry(),
      logger: createLogger({ level: 'silent' }),
    },
    {
      session: () => Promise.resolve(s.session),
      forget: () => void calls.forget++,
      rttOf: () => o.rttMs ?? 0,
    },
    { dropIdle: () => void calls.dropIdle++ },
  );
  return { live, calls, ...s };
}

/** lets the session promise settle, then moves the clock (stallSafeTimeout: a timer, then an immediate) */
async function advance(ms: number): Promise<void> {
  await jest.advanceTimersByTimeAsync(ms);
  await jest.advanceTimersByTimeAsync(1);
}

beforeEach(() => {
  jest.useFakeTimers();
});
afterEach(() => {
  jest.useRealTimers();
});

test('no answer and nothing heard within unresponsiveAfter: ejected, its idle connections dropped', async () => {
  const { live, calls, pings } = liveness();
  live.suspect(PEER);
  await advance(400);
  expect(pings).toHaveLength(1);
  expect(calls.eject).toBe(0);
  await advance(200);
  expect(calls).toEqual({ eject: 1, forget: 1, dropIdle: 1 });
});

test('an answered PING changes nothing', async () => {
  const { live, calls, pings } = liveness();
  live.suspect(PEER);
  await advance(100);
  pings[0]!(null, 3);
  await advance(1000);
  expect(calls.eject).toBe(0);
});

test('anything arriving on the session counts as an answer (a busy gateway is not a silent one)', async () => {
  const { live, calls, hear } = liveness();
  live.suspect(PEER);
  await advance(100);
  hear();
  await advance(1000);
  expect(calls.eject).toBe(0);
});

test('the bound grows to 4 × the health checks’ PING round trip when that is longer', async () => {
  const { live, calls } = liveness({ rttMs: 400 });
  live.suspect(PEER);
  await advance(1500);
  expect(calls.eject).toBe(0);
  await advance(200);
  expect(calls.eject).toBe(1);
});

test('one PING at a time per gateway', async () => {
  const { live, pings } = liveness();
  live.suspect(PEER);
  live.suspect(PEER);
  await advance(100);
  expect(pings).toHaveLength(1);
});

test('the last healthy gateway keeps its connections', async () => {
  const { live, calls } = liveness({ marked: 'last' });
  live.suspect(PEER);
  await advance(600);
  expect(calls).toEqual({ eject: 1, forget: 0, dropIdle: 0 });
});

/** a try's context as the balanced dispatch hands it to the observer: the per-try timeout's TryAbort */
function tryCtx(attempt = 0): CallContext<undefined> & { signal: TryAbort } {
  return {
    ...callContext({ namespace: 'shop', name: 'hello', idempotent: true }),
    attempt,
    signal: new TryAbort(),
  };
}

test('a try to the gateway answered on another connection while it is PINGed counts as an answer', async () => {
  const { live, calls } = liveness();
  const watch = live.observer(() => true);
  live.suspect(PEER);
  await advance(100);
  // a fast-path exchange, say: its response headers arrive while the tunnel session stays quiet
  const c = tryCtx();
  watch.started(PEER, c);
  watch.answered(PEER, c);
  await advance(1000);
  expect(calls.eject).toBe(0);
});

test('an unanswered PING aborts the per-try signal of each try in flight that would be retried, with a timeout reason', async () => {
  const { live, calls } = liveness();
  // the first try of a call would be retried, its last one (attempt 1 here) would not
  const watch = live.observer((c) => c.attempt < 1);
  const first = tryCtx(0);
  const last = tryCtx(1);
  const settled = tryCtx(0);
  for (const c of [first, last, settled]) watch.started(PEER, c);
  watch.answered(PEER, settled);
  const hung = tryCtx(0);
  watch.started(PEER, hung);
  // hung's per-try timeout fires: the gateway is PINGed, and leaves it unanswered
  hung.signal.abort(Object.assign(new Error('time is up'), { [TIMEOUT_REASON]: true }));
  watch.failed(PEER, hung, 'timeout');
  await advance(600);
  expect(calls.eject).toBe(1);
  expect(first.signal.aborted).toBe(true);
  expect(isTimeoutReason(first.signal.reason)).toBe(true);
  expect((first.signal.reason as { code?: string }).code).toBe('MESHFED_GATEWAY_TIMEOUT');
  expect(last.signal.aborted).toBe(false);
  expect(settled.signal.aborted).toBe(false);
});

test('a try stopped by an unanswered PING calls for no PING of its own', async () => {
  const { live, calls, pings } = liveness({ marked: 'already' });
  const watch = live.observer(() => true);
  const inFlight = tryCtx();
  watch.started(PEER, inFlight);
  live.suspect(PEER);
  await advance(600);
  expect(inFlight.signal.aborted).toBe(true);
  watch.failed(PEER, inFlight, 'timeout');
  await advance(100);
  expect(pings).toHaveLength(1);
  expect(calls.eject).toBe(1);
});

test.each([
  ['a per-try timeout', 'timeout', true, 1],
  ['a connect failure', 'connect', false, 1],
  ['a reset', 'reset', false, 0],
  ['a caller that left', 'cancelled', true, 0],
] as const)('%s (%s, signal aborted: %s): %i PING(s)', async (_what, failure, abort, expected) => {
  const { live, pings } = liveness();
  const watch = live.observer(() => true);
  const c = tryCtx();
  watch.started(PEER, c);
  if (abort) c.signal.abort(failure === 'timeout' ? { [TIMEOUT_REASON]: true } : new Error('gone'));
  watch.failed(PEER, c, failure);
  await advance(100);
  expect(pings).toHaveLength(expected);
});

test('tries to local endpoints are neither watched nor a reason to PING', async () => {
  const { live, pings } = liveness();
  const watch = live.observer(() => true);
  const local = { ...PEER, local: true };
  const c = tryCtx();
  watch.started(local, c);
  c.signal.abort({ [TIMEOUT_REASON]: true });
  watch.failed(local, c, 'timeout');
  await advance(100);
  expect(pings).toHaveLength(0);
});

test('regression: a session destroyed before its PING leaves the gateway to the bound, with no unhandled rejection', async () => {
  const { live, calls, session } = liveness();
  // what node's Http2Session.ping does once the session is destroyed
  Object.assign(session, {
    destroyed: true,
    ping: () => {
      throw Object.assign(new Error('The session has been destroyed'), { code: 'ERR_HTTP2_INVALID_SESSION' });
    },
  });
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    live.suspect(PEER);
    await advance(600);
    // nothing was heard from a destroyed session: the gateway is taken for silent, as without a session
    expect(calls.eject).toBe(1);
    jest.useRealTimers();
    await new Promise((resolve) => setImmediate(resolve));
    expect(unhandled).toEqual([]);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
