import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type Registry, createRegistry, waitFor } from '../../core/index.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { FederationNode } from '../../federation/index.ts';
import { ListSource, makePki, offers, service, startNode } from './helpers.ts';

// A restarted gateway announced itself on NATS seconds before its listeners bound (its federation starts
// first), and its peers' requests met refused connections (chaos rolling-restart: 503 connect-failed, gRPC
// UNAVAILABLE). With `advertise: false` a node publishes nothing of its cluster until advertise().

let nats: NatsServerProcess;
let spy: NatsConnection;
const nodes: FederationNode[] = [];

beforeAll(async () => {
  nats = await startNatsServer({ name: 'advertise' });
  spy = await connect({ servers: nats.url });
}, 30_000);

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await spy?.close();
  await nats?.stop();
});

test('regression: a node that holds its advertisement publishes nothing of its cluster until advertise(), then all of it', async () => {
  const pki = await makePki(['east', 'west']);
  const seen: Record<string, number> = { east: 0, west: 0 };
  // what each cluster publishes of itself: entries, bulk snapshots and announcements
  const sub = spy.subscribe('meshfed.>', {
    callback: (_err, m) => {
      const [, kind, cluster] = m.subject.split('.');
      if (['catalog', 'bulk', 'announce'].includes(kind!) && cluster! in seen) seen[cluster!]!++;
    },
  });
  await spy.flush();
  const registry: Registry = createRegistry();
  const east = await startNode({ pki, cluster: 'east', servers: [nats.url], source: new ListSource([]) });
  nodes.push(east);
  const west = await startNode({
    pki,
    cluster: 'west',
    servers: [nats.url],
    source: new ListSource([service('shop', 'orders', 2)]),
    registry,
    advertise: false,
  });
  nodes.push(west);
  await waitFor(() => west.natsStatus().connected, { timeoutMs: 10_000, what: 'west to connect' });
  // east's heartbeats (every 200 ms, as west's would be) measure the time west had to publish something
  const eastBefore = seen.east!;
  await waitFor(() => seen.east! >= eastBefore + 5, { timeoutMs: 10_000, what: 'five heartbeats of east' });
  expect(seen.west).toBe(0);
  expect(offers(east, 'shop', 'orders')).toEqual({});
  west.advertise();
  await waitFor(() => offers(east, 'shop', 'orders').west === 2, {
    timeoutMs: 10_000,
    what: 'east to see west',
  });
  expect(seen.west).toBeGreaterThan(0);
  sub.unsubscribe();
}, 60_000);
