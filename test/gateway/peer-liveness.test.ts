import { jest } from '@jest/globals';
import type { ClientHttp2Session } from 'node:http2';
import { createLogger, createRegistry } from '../../core/index.ts';
import type { BalancerTarget } from '../../gateway/balancer/index.ts';
import { balancerConfigSchema } from '../../gateway/balancer/index.ts';
import { PeerLiveness } from '../../gateway/peer-liveness.ts';

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

test('a try to the gateway answered on another connection while it is PINGed counts as an answer', async () => {
  const { live, calls } = liveness();
  live.suspect(PEER);
  await advance(100);
  const ctx = { namespace: 'shop', name: 'hello', idempotent: true, attempt: 0 } as never;
  // a fast-path exchange, say: its response headers arrive while the tunnel session stays quiet
  await live.watch(
    PEER,
    { ...(ctx as object), signal: new AbortController().signal } as never,
    async () => 'ok',
    () => true,
  );
  await advance(1000);
  expect(calls.eject).toBe(0);
});
