import http2 from 'node:http2';
import { createMesh, echoServer, httpService, type Mesh, request, type TestGateway } from './harness.ts';
import { type SilentRelay, silentRelay } from './silent-relay.ts';

// What the root-rotation chaos scenario found (bench/chaos/scenarios/root-rotation.ts): each step of a root
// rotation has a gateway dial its connections to its peers again, and on a busy host some requests waited
// for a connection past the per-try timeout. A POST that timed out there was answered 504 and never retried,
// as if it might have reached the application, though nothing of it had left the gateway. A try whose time
// runs out while it still waits for a connection now fails as a connect failure, retried for every method.

const HOST = 'hello.shop.svc.clusterset.local';
const PER_TRY_MS = 1_500;
let mesh: Mesh;
let ok: TestGateway;
/** a remote gateway whose handshakes never complete: every dial to it waits until its connect timeout */
let hole: SilentRelay;
let backend: Awaited<ReturnType<typeof echoServer>>;
const sources: TestGateway[] = [];

beforeAll(async () => {
  mesh = await createMesh();
  backend = await echoServer('ok-hello');
  ok = await mesh.gateway('ok');
  ok.source.set([httpService('shop', 'hello', [backend.address])]);
  hole = await silentRelay(ok.eastWest);
  hole.freeze();
}, 30_000);

afterAll(async () => {
  for (const s of sources) await s.close();
  await ok?.close();
  hole?.close();
  backend?.server.close();
});

/**
 * A source gateway whose calls to hello try the silent gateway first (it is in the source's own zone) and
 * then ok: a per-try timeout far shorter than the connect timeout, so the try times out while it dials. The
 * retry has the same per-try timeout for its own dial, handshake and answer: 1.5 s leaves a loaded host room
 * (at 300 ms a busy run once answered the retry 504).
 */
async function source(): Promise<TestGateway> {
  const src = await mesh.gateway('src', {
    balancer: { timeouts: { connect: 10_000, request: PER_TRY_MS, idle: 60_000 }, unresponsiveAfter: 0 },
  });
  sources.push(src);
  const hello = httpService('shop', 'hello', [backend.address]);
  src.catalog.offer('near', hello, hole.address, { region: 'src-region', zone: 'src-zone' });
  src.catalog.offer('ok', hello, ok.eastWest);
  return src;
}

async function connectRetries(src: TestGateway): Promise<number> {
  const m = await src.registry.getSingleMetric('meshfed_upstream_retries_total')?.get();
  return (m?.values ?? []).filter((v) => v.labels.failure === 'connect').reduce((n, v) => n + v.value, 0);
}

test('regression: a POST whose try timed out waiting for a connection is sent to the next gateway (HTTP/1.1), not answered 504', async () => {
  const src = await source();
  const before = hole.connections();
  const r = await request(src.egress, { host: HOST, method: 'POST', path: '/order', body: 'one order' });
  expect(r.status).toBe(200);
  expect(JSON.parse(r.body)).toMatchObject({ label: 'ok-hello', method: 'POST', size: 9 });
  // the first try went to the silent gateway and was retried as a connect failure
  expect(hole.connections()).toBeGreaterThan(before);
  expect(await connectRetries(src)).toBe(1);
}, 20_000);

test('regression: a POST whose try timed out waiting for a tunnel session is sent to the next gateway (HTTP/2), not answered 504', async () => {
  const src = await source();
  const before = hole.connections();
  const session = http2.connect(`http://${src.egress}`);
  try {
    const stream = session.request({ ':method': 'POST', ':path': '/order', ':authority': HOST });
    stream.end('one order');
    const chunks: Buffer[] = [];
    const status = await new Promise<number>((resolve, reject) => {
      let s = 0;
      stream.on('response', (h) => {
        s = Number(h[':status']);
      });
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => resolve(s));
      stream.on('error', reject);
    });
    expect(status).toBe(200);
    expect(JSON.parse(Buffer.concat(chunks).toString())).toMatchObject({ label: 'ok-hello', size: 9 });
  } finally {
    session.close();
  }
  expect(hole.connections()).toBeGreaterThan(before);
  expect(await connectRetries(src)).toBe(1);
}, 20_000);

test('a POST whose request left before its try timed out is still not sent again (it may have reached the application)', async () => {
  const src = await source();
  // the silent gateway is out of the way: ok alone, whose backend answers later than the per-try timeout
  const slow = await echoServer('slow');
  slow.server.removeAllListeners('request');
  slow.server.on('request', (_req, res) => {
    setTimeout(() => res.end('late'), 2 * PER_TRY_MS).unref();
  });
  try {
    ok.source.set([httpService('shop', 'late', [slow.address])]);
    src.catalog.offer('ok', httpService('shop', 'late', [slow.address]), ok.eastWest);
    const r = await request(src.egress, {
      host: 'late.shop.svc.clusterset.local',
      method: 'POST',
      body: 'one order',
    });
    expect(r.status).toBe(504);
    expect(await connectRetries(src)).toBe(0);
  } finally {
    ok.source.set([httpService('shop', 'hello', [backend.address])]);
    slow.server.close();
  }
}, 20_000);
