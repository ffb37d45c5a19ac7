// CPU per call of the fast path's hottest JavaScript, each piece alone in one process, for A/B runs of two
// checkouts at the same load (a whole-path run cannot show a few per cent on a busy host):
//   node bench/fastpath-micro.ts [--dir CHECKOUT] [--only head,series,pick,resilience,liveness]
// CHECKOUT (default: this one) is where the code under test is imported from, e.g. a `git archive` of main
// with this checkout's node_modules linked in. Prints ns per call for each of 5 rounds; read the median.
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: new URL('..', import.meta.url).pathname },
    only: { type: 'string' },
  },
});
const dir = values.dir.replace(/\/$/, '');
const only = new Set((values.only ?? 'head,series,pick,resilience').split(','));
const name = dir.split('/').pop();

/** runs `fn(n)` once to warm up, then 5 times, printing the CPU time per call */
async function rounds(what: string, n: number, calls: number, fn: (n: number) => unknown): Promise<void> {
  await fn(n / 5);
  for (let k = 0; k < 5; k++) {
    const t0 = process.cpuUsage();
    await fn(n);
    const t = process.cpuUsage(t0);
    console.log(`${name} ${what}: ${(((t.user + t.system) / (n * calls)) * 1000).toFixed(0)} ns`);
  }
}

let sink = 0;

if (only.has('head')) {
  const H: typeof import('../gateway/h1/head.ts') = await import(`${dir}/gateway/h1/head.ts`);
  const limits = { maxHeadBytes: 16384, maxHeaders: 100 };
  const bytes = (s: string) => Buffer.from(s, 'latin1');
  // what wrk sends, what gw-A sends gw-B, a browser-like request; nginx's response and gw-B's
  const requests = [
    'GET / HTTP/1.1\r\nHost: echo.bench.svc.clusterset.local\r\n\r\n',
    'GET / HTTP/1.1\r\nhost: echo.bench.svc.clusterset.local\r\nx-meshfed-service: bench/echo/http\r\nx-meshfed-caller: spiffe://mesh.example/cluster/cluster-a/anonymous\r\n\r\n',
    'GET /api/v1/items?id=42 HTTP/1.1\r\nHost: echo.bench.svc.clusterset.local\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n',
  ].map(bytes);
  const responses = [
    'HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Sun, 06 Dec 2026 02:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nConnection: keep-alive\r\n\r\n',
    'HTTP/1.1 200 OK\r\nserver: nginx/1.24.0\r\ndate: Sun, 06 Dec 2026 02:00:00 GMT\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n\r\n',
  ].map(bytes);
  await rounds('head (headEnd + parse)', 200_000, 5, (n) => {
    for (let i = 0; i < n; i++) {
      for (const b of requests) sink += H.headEnd(b, 16384) + H.parseRequestHead(b, limits).size;
      for (const b of responses) sink += H.headEnd(b, 16384) + H.parseResponseHead(b, limits, 'GET').size;
    }
  });
  // and what the fast path does next with each head: the headers for the next hop, walked with for…in
  const X: typeof import('../gateway/headers.ts') = await import(`${dir}/gateway/headers.ts`);
  await rounds('head, then its headers for the next hop', 200_000, 5, (n) => {
    for (let i = 0; i < n; i++) {
      for (const b of requests)
        sink += Object.keys(X.requestHeadersForUpstream(H.parseRequestHead(b, limits).headers)).length;
      for (const b of responses)
        sink += Object.keys(X.responseHeadersForClient(H.parseResponseHead(b, limits, 'GET').headers)).length;
    }
  });
}

if (only.has('series')) {
  const { createRegistry } = await import(`${dir}/core/index.ts`);
  const { GoldenMetrics }: typeof import('../gateway/golden-metrics.ts') = await import(
    `${dir}/gateway/golden-metrics.ts`
  );
  const g = new GoldenMetrics({ registry: createRegistry() });
  const caller = 'spiffe://mesh.example/cluster/cluster-a/anonymous';
  const route = { name: 'echo', namespace: 'bench' };
  await rounds('golden series()', 1_000_000, 1, (n) => {
    for (let i = 0; i < n; i++) {
      const direction = i & 1 ? 'outbound' : 'inbound';
      sink += g.series(
        direction,
        'http',
        'cluster-a',
        caller,
        'cluster-b',
        `${route.name}.${route.namespace}`,
      ).requests;
    }
  });
}

if (only.has('pick')) {
  const F: typeof import('../test/gateway/balancer/fixtures.ts') = await import(
    `${dir}/test/gateway/balancer/fixtures.ts`
  );
  const catalog = new F.FixedCatalog();
  catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 4, gateways: 2 });
  const { balancers } = F.makeBalancers(catalog, new F.FixedSource(), {});
  const ok = { ok: true, latencyMs: 2 };
  await rounds('balancer pick() + release()', 500_000, 1, (n) => {
    for (let i = 0; i < n; i++) {
      const p = balancers.pick('shop', 'orders');
      if (!p) throw new Error('no pick');
      sink += p.level;
      p.release(ok);
    }
  });
  balancers.close();
}

/**
 * forward.ts's resilience stack around a send that answers at once; with `liveness`, the peer liveness check
 * of the checkout watches each try as forward.ts composes it (an observer of the balanced dispatch where the
 * checkout has one, else its send wrapped in `watch`)
 */
async function resilienceStack(liveness: boolean): Promise<(n: number) => Promise<void>> {
  const R: typeof import('../gateway/resilience/index.ts') = await import(
    `${dir}/gateway/resilience/index.ts`
  );
  const target = {
    id: 'cluster-b|127.0.0.1:1',
    cluster: 'cluster-b',
    address: '127.0.0.1:1',
    local: false,
    weight: 1,
    locality: { region: 'r', zone: 'z' },
  } as unknown as import('../gateway/balancer/index.ts').BalancerTarget;
  const release = () => undefined;
  const unlimited = 1e9;
  const breakers = new R.CircuitBreakers({
    maxConnections: unlimited,
    maxPending: unlimited,
    maxRequests: unlimited,
    maxClusterRequests: unlimited,
    maxServiceRequests: unlimited,
  });
  const budget = new R.RetryBudget({ budgetPercent: 20, minRetriesPerSecond: 10, windowMs: 10_000 });
  const sent = { status: 200 };
  const answer = () => Promise.resolve(sent);
  let send: (t: unknown, ctx: unknown) => Promise<typeof sent> = answer;
  let observer: unknown;
  if (liveness) {
    const live = await peerLiveness();
    const retryable = () => true;
    observer = live.observer?.(retryable);
    if (!observer) send = (t, ctx) => live.watch!(t, ctx, answer, retryable) as Promise<typeof sent>;
  }
  const dispatch = R.compose(
    R.balancedDispatch({
      balancers: { pick: () => ({ target, level: 0, release }) },
      breakers,
      send,
      // as forward.ts says of sendTry (a checkout without the option races the abort, as it did there)
      sendHonoursSignal: true,
      ...(observer ? { observer: observer as never } : {}),
    }),
    R.deadline({ ms: () => undefined }),
    R.retry({ attempts: 2, budgetFor: () => budget, backoffBase: 25, backoffMax: 250 }),
    R.perTryTimeout({ ms: () => 15_000 }),
  );
  const call = {
    namespace: 'bench',
    name: 'echo',
    idempotent: true,
    scope: 'any' as const,
    portName: 'http',
  };
  return async (n: number) => {
    for (let i = 0; i < n; i++) sink += (await dispatch(R.callContext(call))).status;
  };
}

/** the checkout's PeerLiveness, with doubles for its balancers and pools (no PING is ever sent here) */
async function peerLiveness() {
  const L = (await import(`${dir}/gateway/peer-liveness.ts`)) as {
    PeerLiveness: new (
      ...a: unknown[]
    ) => {
      observer?: (retryable: () => boolean) => unknown;
      watch?: (
        t: unknown,
        ctx: unknown,
        send: () => Promise<unknown>,
        retryable: () => boolean,
      ) => Promise<unknown>;
    };
  };
  const C: typeof import('../core/index.ts') = await import(`${dir}/core/index.ts`);
  const B: typeof import('../gateway/balancer/index.ts') = await import(`${dir}/gateway/balancer/index.ts`);
  return new L.PeerLiveness(
    {
      balancers: { peerUnresponsive: () => 'ejected' },
      balancerConfig: B.balancerConfigSchema.parse({}),
      cluster: 'cluster-a',
      registry: C.createRegistry(),
      logger: C.silentLogger,
    },
    { session: () => new Promise(() => undefined), forget: () => undefined, rttOf: () => 0 },
    { dropIdle: () => undefined },
  );
}

for (const [part, label] of [
  ['resilience', 'resilience stack'],
  ['liveness', 'resilience stack + liveness'],
] as const) {
  if (!only.has(part)) continue;
  const chain = await resilienceStack(part === 'liveness');
  // 16 calls in flight, as wrk -c16 keeps
  await rounds(`${label}, 16 in flight`, 320_000, 1, (n) =>
    Promise.all(Array.from({ length: 16 }, () => chain(n / 16))),
  );
  // one at a time, as a fixed-rate load that never overlaps calls: the per-try deadline list empties each time
  await rounds(`${label}, 1 in flight`, 160_000, 1, (n) => chain(n));
}

if (sink === -1) console.log(sink);
