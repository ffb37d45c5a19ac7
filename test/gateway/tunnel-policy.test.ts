import http2 from 'node:http2';
import { issueLeaf } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import {
  createMesh,
  httpService,
  type Mesh,
  request,
  spyGateway,
  type TestGateway,
  tunnelSession,
} from './harness.ts';

// Upstream connection policy (tunnelMaxRequestsPerConnection) and the tunnel server's session timeouts.

let mesh: Mesh;
let pooled: TestGateway;
let noreuse: TestGateway;
let strict: TestGateway;
let spyPooled: Awaited<ReturnType<typeof spyGateway>>;
let spyNoreuse: Awaited<ReturnType<typeof spyGateway>>;

beforeAll(async () => {
  mesh = await createMesh();
  pooled = await mesh.gateway('alpha');
  noreuse = await mesh.gateway('alpha', { config: { tunnelMaxRequestsPerConnection: 1 } });
  strict = await mesh.gateway('beta', {
    config: { limits: { headersTimeout: 300, sessionIdleTimeout: 600 } },
  });
  spyPooled = await spyGateway(mesh, 'beta');
  spyNoreuse = await spyGateway(mesh, 'beta');
  const api = httpService('shop', 'api', ['127.0.0.1:1']);
  pooled.catalog.offer('beta', api, spyPooled.address);
  noreuse.catalog.offer('beta', api, spyNoreuse.address);
}, 30_000);

afterAll(async () => {
  for (const g of [pooled, noreuse, strict]) await g?.close();
  spyPooled?.close();
  spyNoreuse?.close();
});

const call = (g: TestGateway) => request(g.egress, { host: 'api.shop.svc.clusterset.local' });

test('by default requests share the pooled tunnel sessions', async () => {
  for (let i = 0; i < 10; i++) expect((await call(pooled)).status).toBe(200);
  // tunnelConnectionsPerGateway (2) sessions at most
  expect(spyPooled.sessions.length).toBeLessThanOrEqual(2);
  expect(spyPooled.sessions.reduce((n, s) => n + s.streams, 0)).toBe(10);
});

test('tunnelMaxRequestsPerConnection: 1 opens a new connection per request, resumes TLS and closes each after its answer', async () => {
  for (let i = 0; i < 5; i++) expect((await call(noreuse)).status).toBe(200);
  const burst = await Promise.all(Array.from({ length: 8 }, () => call(noreuse)));
  expect(burst.every((r) => r.status === 200)).toBe(true);
  const s = spyNoreuse.sessions;
  expect(s).toHaveLength(13);
  expect(s.every((x) => x.streams === 1)).toBe(true);
  // after the first full handshake, the gateway offers the ticket it got from a verified connection
  expect(s.slice(1).some((x) => x.resumed)).toBe(true);
  await waitFor(() => s.every((x) => x.closed), { timeoutMs: 5_000 });
});

test('a tunnel session that never sends a request is closed after headersTimeout, and counted', async () => {
  const leaf = await issueLeaf(await mesh.intermediate('alpha'), { kind: 'gateway', name: 'idle' });
  const session = tunnelSession(strict.eastWest, leaf, mesh.bundle.toPem()).session;
  await new Promise((r) => session.once('connect', r));
  await new Promise((r) => session.once('close', r));
  const m = await strict.registry.getSingleMetric('meshfed_refused_total')?.get();
  expect(m?.values.find((v) => v.labels.reason === 'no-request')?.value).toBe(1);
});

test('a session idle for sessionIdleTimeout after its requests gets a graceful GOAWAY', async () => {
  strict.source.set([httpService('shop', 'web', ['127.0.0.1:1'])]);
  const leaf = await issueLeaf(await mesh.intermediate('alpha'), { kind: 'gateway', name: 'quiet' });
  const session = tunnelSession(strict.eastWest, leaf, mesh.bundle.toPem()).session;
  const goaway = new Promise<number>((r) => session.once('goaway', (code: number) => r(code)));
  // any answer will do (the endpoint is unreachable): the session carried a request
  const stream = session.request({ ':path': '/', ':authority': 'web.shop.svc.clusterset.local' });
  stream.resume();
  await new Promise((r) => stream.once('close', r));
  expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
  await new Promise((r) => session.once('close', r));
  const m = await strict.registry.getSingleMetric('meshfed_refused_total')?.get();
  expect(m?.values.find((v) => v.labels.reason === 'no-request')?.value).toBe(1);
});

test("a peer's tunnel session that only carries PINGs (its health checks) stays open past headersTimeout", async () => {
  const leaf = await issueLeaf(await mesh.intermediate('alpha'), { kind: 'gateway', name: 'prober' });
  const pinged = tunnelSession(strict.eastWest, leaf, mesh.bundle.toPem()).session;
  await new Promise((r) => pinged.once('connect', r));
  await new Promise((resolve, reject) => pinged.ping((err) => (err ? reject(err) : resolve(undefined))));
  // a silent session opened after it: once the guard has closed that one, it has had its chance at the first
  const silent = tunnelSession(strict.eastWest, leaf, mesh.bundle.toPem()).session;
  await new Promise((r) => silent.once('close', r));
  expect(pinged.closed || pinged.destroyed).toBe(false);
  const m = await strict.registry.getSingleMetric('meshfed_refused_total')?.get();
  expect(m?.values.find((v) => v.labels.reason === 'no-request')?.value).toBe(2);
  pinged.close();
});
