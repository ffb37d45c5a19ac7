import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { waitFor } from '../../core/index.ts';
import { FAST_PATH, httpService, meshOfFile, request, type TestGateway } from './harness.ts';
import { type SilentRelay, silentRelay } from './silent-relay.ts';

// What the network-partition chaos scenario found: with the link to a cluster cut, what was in flight to its
// gateway waited its whole per-try timeout, and idle fast-path connections to it kept being handed to new
// requests until outlier detection ejected it. Now the first per-try or connect timeout towards a gateway
// has it PINGed; with no answer within balancer.unresponsiveAfter it is ejected, its idle connections close
// and its in-flight tries that would be retried are retried elsewhere at once. A partition is stood in for
// by a relay in front of the near gateway that stops moving bytes (test/gateway/silent-relay.ts).

const HOST = 'hello.shop.svc.clusterset.local';
/** per-try timeout: long, so that a try that waited for it cannot be mistaken for one retried early */
const PER_TRY_MS = 8_000;

const { mesh, closing } = meshOfFile();

/**
 * near's backend: `/warm` requests are held until `warm` of them wait (so that each holds a fast-path
 * connection of its own), `/hang` is never answered, anything else is answered at once with 'near'.
 */
async function nearBackend(warm: number): Promise<string> {
  const held: http.ServerResponse[] = [];
  const seen: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req);
    if (req.url === '/hang') return;
    if (req.url !== '/warm') return void res.end('near');
    held.push(res);
    if (held.length >= warm) for (const r of held.splice(0)) r.end('near');
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  closing(() => {
    server.closeAllConnections();
    server.close();
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** src, with near (in src's zone, so preferred while it answers) behind `nearAddress` and far beside it */
async function federation(
  label: string,
  nearAddress: (eastWest: string) => Promise<string>,
  warm = 1,
  ejectionMs = 60_000,
): Promise<{ src: TestGateway; farSeen: string[] }> {
  const hello = (addresses: string[]) => httpService('shop', 'hello', addresses);
  const near = await mesh().gateway(`${label}-near`);
  closing(() => near.close());
  near.source.set([hello([await nearBackend(warm)])]);
  const farSeen: string[] = [];
  const farBackend = http.createServer((req, res) => {
    farSeen.push(req.method ?? '');
    req.resume();
    req.on('end', () => res.end('far'));
  });
  farBackend.listen(0, '127.0.0.1');
  await new Promise((r) => farBackend.once('listening', r));
  closing(() => farBackend.close());
  const far = await mesh().gateway(`${label}-far`);
  closing(() => far.close());
  far.source.set([hello([`127.0.0.1:${(farBackend.address() as AddressInfo).port}`])]);
  const src = await mesh().gateway(`${label}-src`, {
    balancer: {
      timeouts: { connect: 300, request: PER_TRY_MS, idle: 60_000 },
      unresponsiveAfter: 300,
      outlier: { consecutiveFailures: 100, baseEjection: ejectionMs },
    },
  });
  closing(() => src.close());
  const svc = hello(['127.0.0.1:1']);
  src.catalog.offer(near.cluster, svc, await nearAddress(near.eastWest), {
    region: `${label}-src-region`,
    zone: `${label}-src-zone`,
  });
  src.catalog.offer(far.cluster, svc, far.eastWest);
  return { src, farSeen };
}

async function relayTo(eastWest: string): Promise<SilentRelay> {
  const relay = await silentRelay(eastWest);
  closing(() => relay.close());
  return relay;
}

/** requests in flight from src to near's gateway, as its balancer counts them */
function outstandingToNear(src: TestGateway, near: string): number {
  return src.balancers
    .explain('shop', 'hello')
    .levels.flatMap((l) => l.targets)
    .filter((t) => t.cluster === near)
    .reduce((n, t) => n + t.outstanding, 0);
}

function nearHealthy(src: TestGateway, near: string): boolean {
  const targets = src.balancers.explain('shop', 'hello').levels.flatMap((l) => l.targets);
  return targets.some((t) => t.cluster === near && t.state === 'healthy');
}

/** the sum of a counter's samples (those whose labels include `labels`) */
async function count(src: TestGateway, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await src.registry.getSingleMetric(name)?.get();
  const match = (l: Record<string, unknown>) => Object.entries(labels).every(([k, v]) => l[k] === v);
  return m?.values.filter((v) => match(v.labels)).reduce((n, v) => n + v.value, 0) ?? 0;
}

const unresponsiveCount = (src: TestGateway) => count(src, 'meshfed_peer_unresponsive_total');

/** one GET over h2c to src's egress listener (it goes by the tunnel, never the fast path) */
async function h2cGet(egress: string): Promise<{ status: number; body: string }> {
  const session = http2.connect(`http://${egress}`);
  try {
    const stream = session.request({ ':path': '/', ':authority': HOST });
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    const [headers] = (await new Promise((resolve, reject) => {
      stream.once('response', (h) => resolve([h]));
      stream.once('error', reject);
    })) as [http2.IncomingHttpHeaders];
    await new Promise((r) => stream.once('end', r));
    return { status: Number(headers[':status']), body: Buffer.concat(chunks).toString() };
  } finally {
    session.close();
  }
}

const timed = async <T>(p: Promise<T>): Promise<T & { ms: number }> => {
  const t0 = performance.now();
  const r = await p;
  return { ...r, ms: performance.now() - t0 };
};

(FAST_PATH ? test : test.skip)(
  'regression: a GET in flight to a gateway that went silent is retried elsewhere at the first connect timeout towards it, well before its per-try timeout; a POST in flight is not retried',
  async () => {
    let relay: SilentRelay | undefined;
    const { src, farSeen } = await federation(
      'a',
      async (ew) => {
        relay = await relayTo(ew);
        return relay.address;
      },
      2,
    );
    // two fast-path connections to near, idle in src's pool
    const warm = await Promise.all([0, 1].map(() => request(src.egress, { host: HOST, path: '/warm' })));
    expect(warm.map((w) => w.body)).toEqual(['near', 'near']);
    relay!.freeze();

    // a POST and a GET take the two idle connections and get no answer
    const post = timed(request(src.egress, { host: HOST, method: 'POST', body: 'x' }));
    await waitFor(() => outstandingToNear(src, 'a-near') === 1, { timeoutMs: 5_000, what: 'the POST sent' });
    const get = timed(request(src.egress, { host: HOST }));
    await waitFor(() => outstandingToNear(src, 'a-near') === 2, { timeoutMs: 5_000, what: 'the GET sent' });
    // the next request dials near, whose handshake never completes: a connect timeout, retried on far, and
    // near is PINGed
    const third = await request(src.egress, { host: HOST });
    expect(third).toMatchObject({ status: 200, body: 'far' });

    const g = await get;
    expect(g).toMatchObject({ status: 200, body: 'far' });
    // retried once the PING went unanswered (connect + unresponsiveAfter), not at the per-try timeout
    expect(g.ms).toBeLessThan(PER_TRY_MS);
    expect(await unresponsiveCount(src)).toBe(1);
    // near gets nothing new while it is ejected
    const after = await request(src.egress, { host: HOST });
    expect(after).toMatchObject({ status: 200, body: 'far' });

    // the POST may have reached near's application: it waits for its per-try timeout and is not retried
    const p = await post;
    expect(p.status).toBe(504);
    expect(p.ms).toBeGreaterThanOrEqual(PER_TRY_MS - 100);
    expect(farSeen).not.toContain('POST');
  },
  30_000,
);

(FAST_PATH ? test : test.skip)(
  'regression: the idle fast-path connections to a gateway found silent are closed, not handed to the next request',
  async () => {
    let relay: SilentRelay | undefined;
    // near's ejection lasts 1 s here (outlier.baseEjection), after which it is tried again
    const { src } = await federation(
      'b',
      async (ew) => {
        relay = await relayTo(ew);
        return relay.address;
      },
      1,
      1_000,
    );
    // one fast-path connection to near, idle in src's pool
    expect(await request(src.egress, { host: HOST, path: '/warm' })).toMatchObject({ body: 'near' });
    relay!.freeze();
    // an HTTP/2 request goes by the tunnel, whose dial to near times out: near is PINGed, and ejected
    const h2 = await h2cGet(src.egress);
    expect(h2).toMatchObject({ status: 200, body: 'far' });
    await waitFor(async () => (await unresponsiveCount(src)) === 1, {
      timeoutMs: 5_000,
      what: 'the ejection',
    });
    // once the ejection ends, the next request to near finds no idle connection and dials a new one, which
    // times out and fails over at once (the idle one kept would have held it until its per-try timeout)
    await waitFor(() => nearHealthy(src, 'b-near'), { timeoutMs: 5_000, what: 'near back in rotation' });
    const dials = relay!.connections();
    const next = await timed(request(src.egress, { host: HOST }));
    expect(next).toMatchObject({ status: 200, body: 'far' });
    expect(relay!.connections()).toBeGreaterThan(dials);
    expect(next.ms).toBeLessThan(PER_TRY_MS);
  },
  30_000,
);

test('a slow backend behind a gateway that answers PINGs does not get the gateway marked unresponsive', async () => {
  const { src, farSeen } = await federation('c', async (ew) => ew);
  expect(await request(src.egress, { host: HOST })).toMatchObject({ body: 'near' });
  // near's backend never answers /hang: the try to near times out (a per-try timeout of 500 ms for this
  // call, as a gRPC caller's deadline sets it), near is PINGed, and answers
  const hung = await request(src.egress, { host: HOST, path: '/hang', headers: { 'grpc-timeout': '500m' } });
  expect(hung.status).toBe(504);
  // the PING's answer is awaited: the count stays 0 and near keeps its traffic
  await waitFor(
    async () => (await count(src, 'meshfed_peer_liveness_pings_total', { result: 'answered' })) === 1,
    {
      timeoutMs: 5_000,
      what: 'the PING answered',
    },
  );
  expect(await unresponsiveCount(src)).toBe(0);
  expect(await request(src.egress, { host: HOST })).toMatchObject({ status: 200, body: 'near' });
  expect(farSeen).toEqual([]);
}, 30_000);
