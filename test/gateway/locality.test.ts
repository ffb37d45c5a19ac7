import type { Server } from 'node:http';
import { waitFor } from '../../core/index.ts';
import { createMesh, echoServer, httpService, type Mesh, request, type TestGateway } from './harness.ts';

/**
 * Locality preference, failover and recovery measured as shares of real requests through real gateways:
 * `home` (zone home-zone of region home-region) has a local endpoint; cluster `near` offers the same
 * service from another zone of the same region, cluster `far` from another region.
 */

const HOST = 'web.shop.svc.clusterset.local';
let mesh: Mesh;
let home: TestGateway;
let near: TestGateway;
let far: TestGateway;
let local: { server: Server; address: string };
const servers: Server[] = [];

/** Sends n requests, `parallel` at a time, and counts which backend answered (by label). */
async function shares(n: number, parallel = 8): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const r = await request(home.egress, { host: HOST });
      const label = r.status === 200 ? (JSON.parse(r.body) as { label: string }).label : `status-${r.status}`;
      counts[label] = (counts[label] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return counts;
}

beforeAll(async () => {
  mesh = await createMesh();
  const outlier = { consecutiveFailures: 2, baseEjection: '1s', maxEjection: '2s', maxEjectionPercent: 100 };
  home = await mesh.gateway('home', { balancer: { outlier } });
  near = await mesh.gateway('near');
  far = await mesh.gateway('far');
  local = await echoServer('home');
  const nearBackend = await echoServer('near');
  const farBackend = await echoServer('far');
  servers.push(local.server, nearBackend.server, farBackend.server);
  home.source.set([httpService('shop', 'web', [local.address])]);
  const nearSvc = httpService('shop', 'web', [nearBackend.address]);
  const farSvc = httpService('shop', 'web', [farBackend.address]);
  near.source.set([nearSvc]);
  far.source.set([farSvc]);
  home.catalog.offer('near', nearSvc, near.eastWest, { region: 'home-region', zone: 'home-zone-b' });
  home.catalog.offer('far', farSvc, far.eastWest, { region: 'far-region', zone: 'far-zone' });
}, 30_000);

afterAll(async () => {
  for (const g of [home, near, far]) await g?.close();
  for (const s of servers) s.close();
});

test('healthy: at least 99 % of 1,000 requests stay in the local zone', async () => {
  const counts = await shares(1_000);
  expect(counts.home ?? 0).toBeGreaterThanOrEqual(990);
  expect(Object.keys(counts).filter((k) => k.startsWith('status-'))).toEqual([]);
}, 60_000);

test('local endpoint down: once it is ejected every request goes to the same region, none fails; back when it recovers', async () => {
  const port = Number(local.address.slice(local.address.lastIndexOf(':') + 1));
  await new Promise((r) => local.server.close(r));
  local.server.closeAllConnections();
  // connect failures are retried on another target, then the endpoint is ejected
  await waitFor(async () => (await shares(20, 1)).near === 20, {
    timeoutMs: 15_000,
    what: 'the dead local endpoint to be ejected',
  });
  const failover = await shares(1_000);
  expect(failover).toEqual({ near: 1_000 });
  // the local endpoint was ejected, not merely retried around
  const ejections = await home.registry.getSingleMetric('meshfed_outlier_ejections_total')?.get();
  expect(ejections?.values.reduce((a, v) => a + v.value, 0) ?? 0).toBeGreaterThanOrEqual(1);

  // the endpoint comes back on the same port: after its ejection it is tried on probation, then preferred
  const back = await echoServer('home', port);
  servers.push(back.server);
  await waitFor(async () => ((await shares(20, 1)).home ?? 0) >= 19, {
    timeoutMs: 15_000,
    what: 'traffic to return to the recovered local endpoint',
  });
  const recovered = await shares(1_000);
  expect(recovered.home ?? 0).toBeGreaterThanOrEqual(990);
  expect(Object.keys(recovered).filter((k) => k.startsWith('status-'))).toEqual([]);
}, 90_000);
