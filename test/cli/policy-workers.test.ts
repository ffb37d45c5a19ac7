import { rmSync } from 'node:fs';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { runCli } from '../../cli/main.ts';
import type { WorkersPolicyState } from '../../cli/worker-pool.ts';
import { waitFor } from '../../core/index.ts';
import { alive, type GatewayProcess } from '../gateway/daemon-process.ts';
import { request } from '../gateway/harness.ts';
import { io } from '../helpers/cli-io.ts';
import { applyArgs, startPolicyGateway } from './policy-apply-fixture.ts';

// A real multi-process gateway (`--workers 2`): /debug/policy on the supervisor's admin listener reports what
// each worker enforces, compared with what the supervisor holds, and a replacement worker enforces the policy
// in force from its first moment.

let nats: NatsServerProcess;
let gw: GatewayProcess;

const POLICY = `apiVersion: meshfed.io/v1alpha1
kind: TrafficSplit
metadata: { name: orders-routes }
spec:
  service: shop/orders
  routes: [{ name: all, backends: [{ service: shop/orders, weight: 1 }] }]
`;

beforeAll(async () => {
  ({ nats, gw } = await startPolicyGateway('policy-workers', POLICY, ['--workers', '2']));
}, 90_000);

afterAll(async () => {
  await gw?.stop();
  await nats?.stop();
  if (gw) rmSync(gw.dir, { recursive: true, force: true });
});

async function debugPolicy(): Promise<WorkersPolicyState> {
  const r = await request(gw.admin, { host: gw.admin, path: '/debug/policy' });
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as WorkersPolicyState;
}

test('/debug/policy reports each worker’s revision in force, and a replacement worker’s too', async () => {
  const empty = await debugPolicy();
  expect(empty).toMatchObject({ scopes: [], inStep: true, unanswered: [], services: [] });
  expect(empty.workers).toHaveLength(2);

  const s = io();
  const code = await runCli([...applyArgs(gw), '--json'], s);
  expect({ code, err: s.err() }).toEqual({ code: 0, err: '' });
  const revision = (JSON.parse(s.out()) as { revision: number }).revision;
  const inForce = (v: WorkersPolicyState) =>
    v.inStep &&
    v.workers.length === 2 &&
    v.workers.every((w) => w.scopes.some((x) => x.scope === 'admin' && x.revision === revision));
  const applied = await waitFor(async () => ((v) => (inForce(v) ? v : undefined))(await debugPolicy()), {
    timeoutMs: 10_000,
    what: 'both workers to enforce the revision applied',
  });
  expect(applied.scopes).toEqual([expect.objectContaining({ scope: 'admin', revision })]);
  for (const w of applied.workers) expect(w).toMatchObject({ inStep: true, services: 1 });
  expect(applied.services).toEqual([
    expect.objectContaining({
      service: 'shop/orders',
      routes: [{ route: 'orders-routes/all', backends: [{ service: 'shop/orders', percent: 100 }] }],
    }),
  ]);

  // a worker killed is replaced; the replacement takes the policy in force with its init
  const victim = applied.workers[0]!.pid;
  process.kill(victim, 'SIGKILL');
  const replaced = await waitFor(
    async () => {
      const v = await debugPolicy();
      return !alive(victim) && inForce(v) && !v.workers.some((w) => w.pid === victim) ? v : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100, what: 'a replacement worker that enforces the revision' },
  );
  expect(replaced.workers.map((w) => w.pid)).toContain(applied.workers[1]!.pid);
}, 90_000);
