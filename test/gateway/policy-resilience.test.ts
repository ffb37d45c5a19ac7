import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMesh, httpService, type Mesh, request, type TestGateway } from './harness.ts';
import { policyDoc, TestPolicyView } from './policy-view.ts';

// ResilienceOverride at the source gateway: a service's retry attempts, retry-on conditions and request
// timeout replace the gateway-wide settings (the harness gateway retries twice, 15 s per try).

let mesh: Mesh;
let alpha: TestGateway;
let view: TestPolicyView;
const servers: http.Server[] = [];

/** A backend whose every odd request (1st, 3rd, …) is answered 503 with a body, the others 200. */
async function flipFlop(): Promise<string> {
  let n = 0;
  return serve((_req, res) => {
    n++;
    res.writeHead(n % 2 === 1 ? 503 : 200, { 'content-type': 'text/plain' });
    res.end(n % 2 === 1 ? 'upstream says busy' : 'ok');
  });
}

async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const override = (service: string, spec: Record<string, unknown>) =>
  policyDoc('ResilienceOverride', `${service}-override`, { service: `shop/${service}`, ...spec });

beforeAll(async () => {
  mesh = await createMesh();
  view = new TestPolicyView([
    override('no-retry', { retry: { attempts: 0 } }),
    override('connect-only', { retry: { retryOn: ['connect-failure'] } }),
    override('slow', { timeouts: { request: 150 } }),
  ]);
  alpha = await mesh.gateway('alpha', { policy: view });
  // answers after 2 s: only a timeout can end a call to it sooner
  const slow = await serve((_req, res) => {
    const t = setTimeout(() => res.end('late'), 2_000);
    res.on('close', () => clearTimeout(t));
  });
  alpha.source.set([
    httpService('shop', 'default', [await flipFlop()]),
    httpService('shop', 'no-retry', [await flipFlop()]),
    httpService('shop', 'connect-only', [await flipFlop()]),
    httpService('shop', 'slow', [slow]),
  ]);
}, 30_000);

afterAll(async () => {
  await alpha?.close();
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

const call = (service: string) => request(alpha.egress, { host: `${service}.shop.svc.clusterset.local` });

test('without an override the gateway-wide retry turns a 503 into the next try’s 200', async () => {
  for (let i = 0; i < 3; i++) expect((await call('default')).status).toBe(200);
});

test('retry attempts 0: the 503 reaches the caller as the upstream sent it', async () => {
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await call('no-retry')).status);
  expect(statuses).toEqual([503, 200, 503, 200]);
});

test('retry-on connect-failure only: a 503 answer is not retried and passes through with its body', async () => {
  const r = await call('connect-only');
  expect(r.status).toBe(503);
  expect(r.body).toBe('upstream says busy');
  expect(r.headers['x-meshfed-error']).toBeUndefined();
});

test('a request timeout of 150 ms ends the call with 504 long before the 2 s backend answers', async () => {
  const t0 = performance.now();
  const r = await call('slow');
  const ms = performance.now() - t0;
  expect(r.status).toBe(504);
  expect(r.headers['x-meshfed-error']).toBe('upstream-timeout');
  expect(ms).toBeLessThan(1_500);
});

test('removing the override restores the gateway-wide settings', async () => {
  view.set([override('slow', { timeouts: { request: 150 } })]);
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push((await call('no-retry')).status);
  expect(statuses).toEqual([200, 200, 200]);
});
