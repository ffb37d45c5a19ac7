import { waitFor } from '../../../core/index.ts';
import { type H1Pool, type PooledConnection, SharedDialFailure } from '../../../gateway/h1/pool.ts';
import { plainPool, tcpServer } from './west-gateway.ts';

// What the chaos baseline showed (issue 16): at 1,000 req/s a stall of the source gateway let requests pile
// up, and each of them dialled a connection of its own (about 600 mTLS handshakes to the two remote
// gateways in 30 s), which stalled the event loop further. Requests now wait for the first connection
// that frees up or is dialled, with few dials under way at once.

/** `body` with a pool of `maxDials` dials per key and a server, both closed after it */
async function withPool(
  maxDials: number,
  body: (p: H1Pool, s: Awaited<ReturnType<typeof tcpServer>>) => Promise<void>,
): Promise<void> {
  const s = await tcpServer();
  const p = plainPool({ maxDialsPerKey: maxDials });
  try {
    await body(p, s);
  } finally {
    p.close();
    s.close();
  }
}

test('regression: a burst of requests with no idle connection takes the connections that free up instead of dialling one each', async () => {
  await withPool(2, async (p, s) => {
    // each request holds its connection for one turn of the event loop, as a short exchange does
    const served = await Promise.all(
      Array.from({ length: 20 }, () =>
        p.acquire(s.address).then((c) => {
          setImmediate(() => p.release(c));
          return c;
        }),
      ),
    );
    expect(served).toHaveLength(20);
    // two dials at once, one more each time a dial completes while requests still wait (8 here: a dial
    // takes about as long as an exchange); before, one dial per request
    const dialled = new Set(served).size;
    expect(dialled).toBeLessThanOrEqual(10);
    await waitFor(() => s.accepted() === dialled, { timeoutMs: 5_000, what: 'the server to see every dial' });
  });
}, 20_000);

test('a refused dial fails every waiting request that no other dial would serve (they fail over at once)', async () => {
  const s = await tcpServer();
  const address = s.address;
  s.close();
  const p = plainPool({ maxDialsPerKey: 1 });
  try {
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => p.acquire(address)));
    expect(results.map((r) => r.status)).toEqual(Array(5).fill('rejected'));
    const reasons = results.map((r) => (r as PromiseRejectedResult).reason);
    // the dial's error for the first (counted against the target), a shared failure for the others
    expect(reasons[0].code).toBe('MESHFED_GATEWAY_UPSTREAM');
    for (const r of reasons.slice(1)) {
      expect(r).toBeInstanceOf(SharedDialFailure);
      expect(r.dialError.code).toBe('MESHFED_GATEWAY_UPSTREAM');
    }
  } finally {
    p.close();
  }
}, 20_000);

test('a request whose try ends while it waits leaves the queue: the next released connection goes idle, not to it', async () => {
  await withPool(1, async (p, s) => {
    const first = p.acquire(s.address);
    let stop: (() => void) | undefined;
    const second = p.acquire(s.address, undefined, (fn) => {
      stop = fn;
    });
    stop!();
    await expect(second).rejects.toMatchObject({ code: 'MESHFED_GATEWAY_UPSTREAM' });
    const c: PooledConnection = await first;
    p.release(c);
    expect(p.takeIdle(s.address)).toBe(c);
    expect(s.accepted()).toBe(1);
  });
}, 20_000);

test('closing the pool fails the requests still waiting', async () => {
  await withPool(1, async (p, s) => {
    const first = p.acquire(s.address);
    const second = p.acquire(s.address);
    const c = await first;
    p.close();
    await expect(second).rejects.toMatchObject({ code: 'MESHFED_GATEWAY_UPSTREAM' });
    c.socket.destroy();
  });
}, 20_000);
