import net, { type AddressInfo } from 'node:net';
import { waitFor } from '../../core/index.ts';
import { seeded } from './balancer/fixtures.ts';
import { createMesh, httpService, type Mesh, type TestGateway } from './harness.ts';
import { policyDoc, TestPolicyView } from './policy-view.ts';

// TrafficSplit and FaultInjection on the source gateway's per-service TCP ports (alpha), one draw per
// connection. The backends run in cluster beta, so every connection crosses as a CONNECT stream. Routes and
// fault rules with an HTTP match never apply to a connection.

let mesh: Mesh;
let alpha: TestGateway;
let beta: TestGateway;
const closers: (() => void)[] = [];
const accepted = new Map<string, number>();

/** A TCP backend that writes its label to each connection it accepts, then closes it. */
async function labelServer(label: string): Promise<string> {
  const server = net.createServer((s) => {
    accepted.set(label, (accepted.get(label) ?? 0) + 1);
    s.on('error', () => undefined);
    s.end(label);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  closers.push(() => server.close());
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const tcpService = (name: string, address: string) => httpService('data', name, [address], true, 'tcp');

beforeAll(async () => {
  mesh = await createMesh();
  const view = new TestPolicyView([
    policyDoc('TrafficSplit', 'db-canary', {
      service: 'data/db',
      routes: [
        {
          name: 'http-only',
          match: { headers: [{ name: 'x-canary', exact: 'v3' }] },
          backends: [{ service: 'data/db-v3', weight: 1 }],
        },
        {
          name: 'canary',
          backends: [
            { service: 'data/db', weight: 90 },
            { service: 'data/db-v2', weight: 10 },
          ],
        },
      ],
    }),
    policyDoc('FaultInjection', 'slowdb-faults', {
      service: 'data/slowdb',
      rules: [
        {
          name: 'http-only',
          match: { headers: [{ name: 'x-fault', present: true }] },
          abort: { httpStatus: 503, percentage: 100 },
        },
        { name: 'slow', delay: { fixed: 150, percentage: 100 } },
      ],
    }),
    policyDoc('FaultInjection', 'flakydb-faults', {
      service: 'data/flakydb',
      rules: [{ name: 'refuse-half', abort: { httpStatus: 503, percentage: 50 } }],
    }),
  ]);
  const services = ['db', 'db-v2', 'db-v3', 'slowdb', 'flakydb'];
  alpha = await mesh.gateway('alpha', {
    policy: view,
    random: seeded(11),
    config: {
      tcpPorts: ['db', 'slowdb', 'flakydb'].map((s) => ({ listen: '127.0.0.1:0', service: `${s}.data` })),
    },
  });
  beta = await mesh.gateway('beta');
  const remote = await Promise.all(services.map(async (s) => tcpService(s, await labelServer(s))));
  beta.source.set(remote);
  for (const svc of remote) alpha.catalog.offer('beta', svc, beta.eastWest);
}, 30_000);

afterAll(async () => {
  for (const g of [alpha, beta]) await g?.close();
  for (const c of closers) c();
});

interface Connection {
  /** what the backend wrote ('' when the connection was refused) */
  label: string;
  /** ms from connect until the first byte (or the end) */
  ms: number;
  reset: boolean;
}

/** One connection to alpha's TCP port for `service`, read to its end. */
function connect(service: string): Promise<Connection> {
  const [host, port] = alpha.gateway.addresses()[`tcp:${service}.data`]!.split(':') as [string, string];
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = net.connect({ host, port: Number(port) });
    let label = '';
    let first = -1;
    let reset = false;
    s.on('data', (d: Buffer) => {
      if (first < 0) first = performance.now() - t0;
      label += d.toString();
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      reset = err.code === 'ECONNRESET';
    });
    s.on('close', () => resolve({ label, ms: first >= 0 ? first : performance.now() - t0, reset }));
  });
}

/** `n` connections, `concurrency` at a time. */
async function many(service: string, n: number, concurrency: number): Promise<Connection[]> {
  const out: Connection[] = [];
  for (let i = 0; i < n; i += concurrency) {
    out.push(
      ...(await Promise.all(Array.from({ length: Math.min(concurrency, n - i) }, () => connect(service)))),
    );
  }
  return out;
}

async function metricValue(name: string, labels: Record<string, string>): Promise<number> {
  const m = await alpha.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

test('a 90/10 TrafficSplit of a TCP service holds within ±3 points over 1,000 connections; a route with an HTTP match never applies', async () => {
  const n = 1_000;
  const conns = await many('db', n, 16);
  const labels = new Set(conns.map((c) => c.label));
  expect([...labels].sort()).toEqual(['db', 'db-v2']);
  const v2 = conns.filter((c) => c.label === 'db-v2').length;
  // binomial, p = 0.1, n = 1,000: σ ≈ 0.95 points, so ±3 points is more than 3σ
  expect(v2 / n).toBeGreaterThanOrEqual(0.07);
  expect(v2 / n).toBeLessThanOrEqual(0.13);
  expect(accepted.get('db-v3')).toBeUndefined();
  expect(
    await metricValue('meshfed_policy_routes_total', { route: 'db-canary/canary', backend: 'db-v2.data' }),
  ).toBe(v2);
}, 60_000);

test('a FaultInjection delay holds each connection before it is connected onward; a rule with an HTTP match never applies', async () => {
  const before = accepted.get('slowdb') ?? 0;
  const conns = await many('slowdb', 10, 5);
  expect(conns.map((c) => c.label)).toEqual(Array(10).fill('slowdb'));
  for (const c of conns) expect(c.ms).toBeGreaterThanOrEqual(150);
  expect(accepted.get('slowdb')! - before).toBe(10);
  expect(
    await metricValue('meshfed_policy_faults_total', { rule: 'slowdb-faults/slow', fault: 'delay' }),
  ).toBe(10);
  expect(await metricValue('meshfed_policy_faults_total', { rule: 'slowdb-faults/http-only' })).toBe(0);
});

test('a FaultInjection abort refuses about its share of connections with a reset, and nothing reaches the backend for them', async () => {
  const n = 400;
  const conns = await many('flakydb', n, 16);
  const refused = conns.filter((c) => c.label === '');
  expect(conns.every((c) => c.label === '' || c.label === 'flakydb')).toBe(true);
  expect(refused.every((c) => c.reset)).toBe(true);
  // binomial, p = 0.5, n = 400: σ = 2.5 points, so ±8 points is more than 3σ
  expect(refused.length / n).toBeGreaterThanOrEqual(0.42);
  expect(refused.length / n).toBeLessThanOrEqual(0.58);
  await waitFor(() => accepted.get('flakydb') === n - refused.length, {
    timeoutMs: 5_000,
    what: 'the backend to have seen every connection that was not refused',
  });
  const counted = await metricValue('meshfed_refused_total', {
    listener: 'tcp:flakydb.data',
    reason: 'fault-injected',
  });
  expect(counted).toBe(refused.length);
}, 60_000);

test('a client that leaves during a delay gets nothing opened on its behalf', async () => {
  const before = accepted.get('slowdb') ?? 0;
  const faults = () =>
    metricValue('meshfed_policy_faults_total', { rule: 'slowdb-faults/slow', fault: 'delay' });
  const delayed = await faults();
  const [host, port] = alpha.gateway.addresses()['tcp:slowdb.data']!.split(':') as [string, string];
  const s = net.connect({ host, port: Number(port) });
  s.on('error', () => undefined);
  await waitFor(async () => (await faults()) === delayed + 1, {
    timeoutMs: 5_000,
    what: 'the delay to start',
  });
  s.destroy();
  // a connection opened after the one that left is delayed and relayed as usual: when it is through, the
  // one that left would have been relayed too, had it been
  const next = await connect('slowdb');
  expect(next.label).toBe('slowdb');
  expect(accepted.get('slowdb')! - before).toBe(1);
});
