import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { waitFor } from '../../core/index.ts';
import { seeded } from './balancer/fixtures.ts';
import { createMesh, echoServer, httpService, type Mesh, request, type TestGateway } from './harness.ts';
import { policyDoc, TestPolicyView } from './policy-view.ts';
import { splitAddress } from './tunnel-client.ts';

// TrafficSplit and FaultInjection at the source gateway (alpha's egress), with a seeded random source so
// the statistical assertions hold run after run. alpha runs orders and orders-v2; beta runs orders-v2 too.

let mesh: Mesh;
let alpha: TestGateway;
let beta: TestGateway;
let counted: { address: string; requests: () => number };
const closers: (() => void)[] = [];
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

beforeAll(async () => {
  mesh = await createMesh();
  const view = new TestPolicyView([
    policyDoc('TrafficSplit', 'orders-split', {
      service: 'shop/orders',
      routes: [
        {
          name: 'beta-users',
          match: { headers: [{ name: 'x-user-group', exact: 'beta' }] },
          backends: [{ service: 'shop/orders-v2', cluster: 'beta', weight: 100 }],
        },
        {
          name: 'canary',
          backends: [
            { service: 'shop/orders', weight: 90 },
            { service: 'shop/orders-v2', weight: 10 },
          ],
        },
      ],
    }),
    policyDoc('FaultInjection', 'faulty-faults', {
      service: 'shop/faulty',
      rules: [
        {
          name: 'grpc-unavailable',
          match: { headers: [{ name: 'x-fault', exact: 'grpc' }] },
          abort: { grpcStatus: 14, percentage: 100 },
        },
        {
          name: 'slow',
          match: { headers: [{ name: 'x-fault', exact: 'delay' }] },
          delay: { fixed: 100, percentage: 50 },
        },
        {
          name: 'broken',
          match: { headers: [{ name: 'x-fault', exact: 'abort' }] },
          abort: { httpStatus: 503, percentage: 20 },
        },
      ],
    }),
    policyDoc('FaultInjection', 'counted-faults', {
      service: 'shop/counted',
      rules: [{ name: 'long', delay: { fixed: 30_000, percentage: 100 } }],
    }),
  ]);
  alpha = await mesh.gateway('alpha', { policy: view, random: seeded(7) });
  beta = await mesh.gateway('beta');
  const echo = async (label: string) => {
    const e = await echoServer(label);
    closers.push(() => e.server.close());
    return e.address;
  };
  counted = await countingServer();
  const betaV2 = httpService('shop', 'orders-v2', [await echo('beta-orders-v2')]);
  beta.source.set([betaV2]);
  alpha.source.set([
    httpService('shop', 'orders', [await echo('alpha-orders')]),
    httpService('shop', 'orders-v2', [await echo('alpha-orders-v2')]),
    httpService('shop', 'faulty', [await echo('alpha-faulty')]),
    httpService('shop', 'counted', [counted.address]),
  ]);
  alpha.catalog.offer('beta', betaV2, beta.eastWest);
}, 30_000);

afterAll(async () => {
  agent.destroy();
  for (const g of [alpha, beta]) await g?.close();
  for (const c of closers) c();
});

async function countingServer(): Promise<{ address: string; requests: () => number }> {
  let n = 0;
  const server = http.createServer((_req, res) => {
    n++;
    res.end();
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  closers.push(() => server.close());
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => n };
}

async function metricValue(name: string, labels: Record<string, string>): Promise<number> {
  const m = await alpha.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

interface Sample {
  status: number;
  backend: string;
  error: string | undefined;
  ms: number;
}

function get(host: string, headers: Record<string, string> = {}): Promise<Sample> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { ...splitAddress(alpha.egress), path: '/', headers: { host, ...headers }, agent },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            backend: String(res.headers['x-backend'] ?? ''),
            error: res.headers['x-meshfed-error'] as string | undefined,
            ms: performance.now() - t0,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** `n` requests, `concurrency` at a time. */
async function many(n: number, concurrency: number, one: () => Promise<Sample>): Promise<Sample[]> {
  const out: Sample[] = [];
  for (let i = 0; i < n; i += concurrency) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(concurrency, n - i) }, one))));
  }
  return out;
}

const share = (samples: Sample[], f: (s: Sample) => boolean) => samples.filter(f).length / samples.length;

describe('TrafficSplit', () => {
  test('a 90/10 split holds within ±3 points over 2,000 requests; unpinned backends stay local (locality)', async () => {
    const samples = await many(2_000, 16, () => get('orders.shop.svc.clusterset.local'));
    expect(samples.every((s) => s.status === 200)).toBe(true);
    const v2 = share(samples, (s) => s.backend === 'alpha-orders-v2');
    expect(v2).toBeGreaterThanOrEqual(0.07);
    expect(v2).toBeLessThanOrEqual(0.13);
    expect(share(samples, (s) => s.backend === 'alpha-orders') + v2).toBe(1);
    const m = await alpha.registry.getSingleMetric('meshfed_policy_routes_total')?.get();
    const counted = m?.values.find((v) => v.labels.backend === 'orders-v2.shop')?.value;
    expect(counted).toBe(samples.filter((s) => s.backend === 'alpha-orders-v2').length);
  }, 60_000);

  test('a header-matched route sends only its callers to the backend pinned to cluster beta', async () => {
    const beta = await many(50, 10, () =>
      get('orders.shop.svc.clusterset.local', { 'x-user-group': 'beta' }),
    );
    expect(beta.map((s) => s.backend)).toEqual(Array(50).fill('beta-orders-v2'));
    const others = await many(50, 10, () =>
      get('orders.shop.svc.clusterset.local', { 'x-user-group': 'gamma' }),
    );
    expect(others.some((s) => s.backend === 'beta-orders-v2')).toBe(false);
  });
});

describe('FaultInjection', () => {
  test('a 100 ms delay on 50% delays about half the requests by at least 100 ms and leaves the rest fast', async () => {
    const n = 200;
    const samples = await many(n, 10, () => get('faulty.shop.svc.clusterset.local', { 'x-fault': 'delay' }));
    expect(samples.every((s) => s.status === 200)).toBe(true);
    const m = await alpha.registry.getSingleMetric('meshfed_policy_faults_total')?.get();
    const delayed = m?.values.find((v) => v.labels.rule === 'faulty-faults/slow')?.value ?? 0;
    expect(delayed / n).toBeGreaterThanOrEqual(0.4);
    expect(delayed / n).toBeLessThanOrEqual(0.6);
    // the distribution splits in two: the `delayed` slowest all waited the 100 ms, the others did not
    const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
    expect(ms[n - delayed]!).toBeGreaterThanOrEqual(100);
    const fast = ms.slice(0, n - delayed);
    expect(fast[Math.floor(fast.length / 2)]!).toBeLessThan(100);
  }, 60_000);

  test('an abort on 20% aborts within ±3 points of 2,000 requests, with 503 and the rule named', async () => {
    const samples = await many(2_000, 16, () =>
      get('faulty.shop.svc.clusterset.local', { 'x-fault': 'abort' }),
    );
    const aborted = samples.filter((s) => s.status === 503);
    expect(aborted.every((s) => s.error === 'fault-injected')).toBe(true);
    expect(samples.every((s) => s.status === 503 || s.status === 200)).toBe(true);
    expect(aborted.length / samples.length).toBeGreaterThanOrEqual(0.17);
    expect(aborted.length / samples.length).toBeLessThanOrEqual(0.23);
  }, 60_000);

  test('a gRPC abort answers gRPC callers with its grpc-status and HTTP callers with the matching status', async () => {
    const session = http2.connect(`http://${alpha.egress}`);
    session.on('error', () => undefined);
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/meshfed.test.Echo/Unary',
        ':authority': 'faulty.shop.svc.clusterset.local',
        'content-type': 'application/grpc',
        'x-fault': 'grpc',
      });
      stream.end();
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) =>
        stream.once('response', resolve),
      );
      stream.resume();
      expect(headers[':status']).toBe(200);
      expect(headers['grpc-status']).toBe('14');
      expect(headers['x-meshfed-policy']).toBe('faulty-faults/grpc-unavailable');
    } finally {
      session.destroy();
    }
    const plain = await get('faulty.shop.svc.clusterset.local', { 'x-fault': 'grpc' });
    expect(plain).toMatchObject({ status: 503, error: 'fault-injected' });
  });

  test('requests no fault rule matches pass untouched', async () => {
    const s = await get('faulty.shop.svc.clusterset.local');
    expect(s).toMatchObject({ status: 200, backend: 'alpha-faulty' });
  });

  test('a caller that leaves during a delay sends nothing upstream', async () => {
    const req = http.request({
      ...splitAddress(alpha.egress),
      path: '/',
      headers: { host: 'counted.shop.svc.clusterset.local' },
      agent: false,
    });
    req.on('error', () => undefined);
    req.end();
    await waitFor(
      async () => (await metricValue('meshfed_policy_faults_total', { rule: 'counted-faults/long' })) === 1,
      { timeoutMs: 5_000 },
    );
    req.destroy();
    await waitFor(
      async () =>
        (await metricValue('meshfed_responses_total', {
          destination_service: 'counted.shop',
          status_class: '4xx',
        })) === 1,
      { timeoutMs: 5_000 },
    );
    expect(counted.requests()).toBe(0);
  });
});

test('/debug/policy shows the generation in force and each route’s shares', async () => {
  const r = await request(alpha.admin, { host: alpha.admin, path: '/debug/policy' });
  expect(r.status).toBe(200);
  const body = JSON.parse(r.body) as {
    generation: number;
    services: { service: string; routes: unknown[] }[];
  };
  expect(body.generation).toBe(1);
  expect(body.services.find((s) => s.service === 'shop/orders')?.routes).toEqual([
    {
      route: 'orders-split/beta-users',
      backends: [{ service: 'shop/orders-v2', cluster: 'beta', percent: 100 }],
    },
    {
      route: 'orders-split/canary',
      backends: [
        { service: 'shop/orders', percent: 90 },
        { service: 'shop/orders-v2', percent: 10 },
      ],
    },
  ]);
});
