// The resilience layers as the Gateway runs them: retries on another target, 5xx pass-through,
// per-try timeouts, circuit breakers and cancelled calls, against real local HTTP endpoints.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitFor } from '../../core/index.ts';
import { createMesh, httpService, type Mesh, request, type TestGateway } from './harness.ts';

let mesh: Mesh;
let g: TestGateway;
const servers: http.Server[] = [];
/** responses held by the 'hang' endpoint, answered (or dropped) when the suite ends */
const hung = new Set<http.ServerResponse>();
/** requests that reached the endpoints of the 'broken' service */
const tries = { broken: 0 };

/** A local endpoint that answers every request the same way. */
async function endpoint(kind: 'ok' | '503' | 'hang', label: string): Promise<string> {
  const s = http.createServer((req, res) => {
    req.resume();
    if (label.startsWith('down')) tries.broken++;
    if (kind === 'hang') {
      hung.add(res);
      res.once('close', () => hung.delete(res));
      return;
    }
    res.writeHead(kind === 'ok' ? 200 : 503, { 'x-backend': label });
    res.end(kind === 'ok' ? `ok from ${label}` : `down: ${label}`);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return `127.0.0.1:${(s.address() as AddressInfo).port}`;
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = await g.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

const host = (name: string) => `${name}.shop.svc.clusterset.local`;

beforeAll(async () => {
  mesh = await createMesh();
  g = await mesh.gateway('alpha', {
    balancer: {
      // a per-try timeout a loaded host's healthy answers never reach (300 ms was met at load 27)
      timeouts: { request: '1s' },
      circuitBreaker: { maxRequests: 2 },
      // outlier detection stays out of the way: each test checks one try's fate
      outlier: { consecutiveFailures: 1000 },
    },
  });
  const [ok, flaky, down, down2, hang, hang2] = await Promise.all([
    endpoint('ok', 'ok'),
    endpoint('503', 'flaky'),
    endpoint('503', 'down'),
    endpoint('503', 'down2'),
    endpoint('hang', 'hang'),
    endpoint('hang', 'hang2'),
  ]);
  g.source.set([
    httpService('shop', 'flaky', [flaky, ok]),
    httpService('shop', 'broken', [down, down2]),
    httpService('shop', 'slow', [hang, ok]),
    httpService('shop', 'stuck', [hang]),
    httpService('shop', 'full', [hang2]),
  ]);
}, 30_000);

afterAll(async () => {
  for (const res of hung) res.destroy();
  await g?.close();
  for (const s of servers) s.close();
});

describe('retries through the gateway', () => {
  test('a GET answered 503 is retried on the other endpoint and succeeds', async () => {
    const before = await metric('meshfed_upstream_retries_total', { failure: '5xx' });
    for (let i = 0; i < 6; i++) {
      const r = await request(g.egress, { host: host('flaky') });
      expect(r.status).toBe(200);
      expect(r.body).toBe('ok from ok');
    }
    expect(await metric('meshfed_upstream_retries_total', { failure: '5xx' })).toBeGreaterThan(before);
  });

  test('a POST answered 503 is not retried: the upstream answer is passed through as it is', async () => {
    const before = tries.broken;
    const r = await request(g.egress, { host: host('broken'), method: 'POST', body: 'x' });
    expect(r.status).toBe(503);
    expect(r.body).toMatch(/^down: down2?$/);
    expect(tries.broken - before).toBe(1);
  });

  test('when every try of a GET gets a 5xx, the last upstream answer is passed through', async () => {
    const before = tries.broken;
    const r = await request(g.egress, { host: host('broken') });
    expect(tries.broken - before).toBe(3);
    expect(r.status).toBe(503);
    expect(r.body).toMatch(/^down: down2?$/);
    expect(r.headers['x-meshfed-error']).toBeUndefined();
  });
});

describe('per-try timeout', () => {
  test('a hung endpoint costs one timeout; the retry on the other endpoint answers', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await request(g.egress, { host: host('slow') });
      expect(r.status).toBe(200);
    }
  });

  test('with no other endpoint the caller gets 504 upstream-timeout, counted against the endpoint', async () => {
    const r = await request(g.egress, { host: host('stuck') });
    expect(r.status).toBe(504);
    expect(r.headers['x-meshfed-error']).toBe('upstream-timeout');
    const target = g.balancers.explain('shop', 'stuck').levels[0]!.targets[0]!;
    expect(target.failures).toBeGreaterThanOrEqual(1);
  });
});

describe('circuit breakers in the gateway', () => {
  test('past circuitBreaker.maxRequests a request is refused at once with 503 overloaded and counted', async () => {
    const held = [0, 1].map(() => request(g.egress, { host: host('full') }));
    await waitFor(() => hung.size >= 2, { timeoutMs: 5_000 });
    expect(
      await metric('meshfed_upstream_requests_active', {
        source_cluster: 'alpha',
        destination_cluster: 'alpha',
      }),
    ).toBe(2);
    const r = await request(g.egress, { host: host('full') });
    expect(r.status).toBe(503);
    expect(r.headers['x-meshfed-error']).toBe('overloaded');
    expect(
      await metric('meshfed_upstream_circuit_breaker_open_total', {
        source_cluster: 'alpha',
        limit: 'requests',
      }),
    ).toBeGreaterThanOrEqual(1);
    // the held requests end by their per-try timeout; the slots are free again afterwards
    expect((await Promise.all(held)).map((x) => x.status)).toEqual([504, 504]);
  });
});

describe('a caller that goes away', () => {
  test('is not counted against the target and not retried (regression: cancelled tries were failures)', async () => {
    const explainFull = () => g.balancers.explain('shop', 'full').levels[0]!.targets[0]!;
    await waitFor(() => hung.size === 0 && explainFull().outstanding === 0, { timeoutMs: 5_000 });
    const failuresBefore = explainFull().failures;
    const requestsBefore = explainFull().requests;
    const [h, p] = g.egress.split(':') as [string, string];
    const req = http.request({
      host: h,
      port: Number(p),
      path: '/',
      headers: { host: host('full') },
      agent: false,
    });
    req.on('error', () => undefined);
    req.end();
    await waitFor(() => hung.size >= 1, { timeoutMs: 5_000 });
    req.destroy();
    await waitFor(() => hung.size === 0 && explainFull().outstanding === 0, { timeoutMs: 5_000 });
    expect(explainFull().failures).toBe(failuresBefore);
    expect(explainFull().requests).toBe(requestsBefore + 1);
  });
});

describe('tunnel sessions and per-try timeouts', () => {
  test('a peer gateway cancelling streams at its per-try timeout keeps its session (regression: the rapid-reset guard cut it, failing every stream on it)', async () => {
    const beta = await mesh.gateway('beta', { config: { limits: { maxResetsPerSecond: 2 } } });
    const alpha = await mesh.gateway('alpha2', {
      // 1 s past the guard's 500 ms premature-reset bound, so a loaded host's event-loop lag cannot close the gap
      balancer: { timeouts: { request: '1500ms' }, outlier: { consecutiveFailures: 1000 } },
    });
    try {
      const svc = httpService('shop', 'hung', [await endpoint('hang', 'beta-hang')]);
      beta.source.set([svc]);
      alpha.catalog.offer('beta', svc, beta.eastWest);
      // five GETs, each tried three times: fifteen streams cancelled by alpha, far above beta's limit of 2/s
      const answers = await Promise.all(
        Array.from({ length: 5 }, () => request(alpha.egress, { host: host('hung') })),
      );
      expect(answers.map((r) => r.status)).toEqual([504, 504, 504, 504, 504]);
      const refused = await beta.registry.getSingleMetric('meshfed_refused_total')?.get();
      expect(refused?.values.filter((v) => v.labels.reason === 'rapid-reset')).toEqual([]);
    } finally {
      await alpha.close();
      await beta.close();
    }
  });
});

describe('active health checks of remote gateways', () => {
  test('a remote gateway that goes away is marked unhealthy by probes alone, with no traffic to it', async () => {
    const beta = await mesh.gateway('beta2');
    const alpha = await mesh.gateway('alpha3', {
      balancer: {
        healthCheck: { interval: '50ms', timeout: '500ms', unhealthyThreshold: 2, healthyThreshold: 1 },
      },
    });
    try {
      const svc = httpService('shop', 'probed', [await endpoint('ok', 'beta-probed')]);
      beta.source.set([svc]);
      alpha.catalog.offer('beta2', svc, beta.eastWest);
      const stateOf = () => alpha.balancers.explain('shop', 'probed').levels[0]!.targets[0]!.state;
      // healthy probes (tunnel dialled, identity checked, PING answered) keep it in rotation
      await waitFor(async () => (await request(alpha.egress, { host: host('probed') })).status === 200, {
        timeoutMs: 5_000,
      });
      expect(stateOf()).toBe('healthy');
      await beta.close();
      await waitFor(() => stateOf() === 'failing health checks', {
        timeoutMs: 5_000,
        what: 'beta2 unhealthy',
      });
      const m = await alpha.registry.getSingleMetric('meshfed_upstream_healthy')?.get();
      expect(m?.values.find((v) => v.labels.service === 'probed.shop')?.value).toBe(0);
    } finally {
      await alpha.close();
      await beta.close();
    }
  });
});
