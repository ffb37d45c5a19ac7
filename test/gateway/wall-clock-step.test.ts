import { isMeshfedError } from '../../core/index.ts';
import { callContext, compose, deadline, perTryTimeout } from '../../gateway/resilience/index.ts';

// A host's wall clock is stepped when NTP or an operator sets it right (minutes, on a host that ran skewed).
// Durations must not move with it: every per-try timeout and call deadline of the data path runs
// on the monotonic clock. On Date.now, a try in flight when the clock stepped 5 min back waited 5 min more for
// its timeout (the request hung to the caller's own deadline), and one in flight when it stepped forward timed
// out at once.

const FIVE_MIN = 5 * 60_000;
const realNow = Date.now;

/** steps this process's wall clock by `ms` (Date.now only: the monotonic clock goes on) until restored */
function stepWallClock(ms: number): void {
  Date.now = () => realNow() + ms;
}

afterEach(() => {
  Date.now = realNow;
});

const ctx = () => callContext({ namespace: 'shop', name: 'orders', idempotent: true });

/** a try that never answers: it ends only when its signal aborts, with the reason */
const hangs = (c: ReturnType<typeof ctx>) =>
  new Promise<number>((_, reject) => c.signal!.addEventListener('abort', () => reject(c.signal!.reason)));

async function outcome(p: Promise<unknown>): Promise<{ code: string; ms: number }> {
  const t0 = performance.now();
  try {
    await p;
    return { code: 'answered', ms: performance.now() - t0 };
  } catch (err) {
    return { code: isMeshfedError(err) ? err.code : String(err), ms: performance.now() - t0 };
  }
}

test.each([
  ['back', -FIVE_MIN],
  ['forward', FIVE_MIN],
])(
  'a per-try timeout fires on time when the wall clock steps 5 min %s during the try (regression for back: it waited 5 min more)',
  async (_, step) => {
    const dispatch = perTryTimeout<number>({ ms: 150 })((c) => {
      // the step comes once the try's timer is armed
      setImmediate(() => stepWallClock(step));
      return hangs(c);
    });
    const r = await outcome(dispatch(ctx()));
    expect(r.code).toBe('MESHFED_GATEWAY_TIMEOUT');
    // on time: not at once (forward) and not minutes late (back); generous for a loaded host
    expect(r.ms).toBeGreaterThanOrEqual(140);
    expect(r.ms).toBeLessThan(3000);
  },
);

test('regression: a try that answers in time is not timed out when the wall clock steps 5 min forward', async () => {
  const dispatch = perTryTimeout<number>({ ms: 400 })(
    (c) =>
      new Promise<number>((resolve, reject) => {
        c.signal!.addEventListener('abort', () => reject(c.signal!.reason));
        stepWallClock(FIVE_MIN);
        setTimeout(() => resolve(200), 50);
      }),
  );
  expect(await outcome(dispatch(ctx()))).toMatchObject({ code: 'answered' });
});

test('regression: a call deadline set before a 5 min step back still ends the call on time', async () => {
  const dispatch = compose<number>(
    (c) => {
      setImmediate(() => stepWallClock(-FIVE_MIN));
      return hangs(c);
    },
    deadline<number>({ ms: 200 }),
    perTryTimeout<number>({ ms: 10_000 }),
  );
  const r = await outcome(dispatch(ctx()));
  expect(r.code).toBe('MESHFED_GATEWAY_TIMEOUT');
  expect(r.ms).toBeLessThan(3000);
});
