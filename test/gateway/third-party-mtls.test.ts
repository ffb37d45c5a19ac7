import { issueIntermediate, issueLeaf, spiffeIdFor } from '../../ca/index.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import { type GatewayProcess, startGatewayProcess } from './daemon-process.ts';
import { parsePrometheusText } from '../helpers/prometheus.ts';
import { echoServer, request } from './harness.ts';

// identity.intermediates: a third-party mTLS client (it sends no x-meshfed-chain; node's TLS server
// sees only its leaf) is verified when the daemon's bundle knows its cluster's intermediate.

let nats: NatsServerProcess;
let gw: GatewayProcess;
let backend: Awaited<ReturnType<typeof echoServer>>;

beforeAll(async () => {
  nats = await startNatsServer({ name: 'third-party' });
  backend = await echoServer('east-web');
  gw = await startGatewayProcess({
    natsUrl: nats.url,
    services: { web: backend.address },
    otherClusters: ['west'],
  });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  backend?.server.close();
  await nats?.stop();
});

/** An HTTPS request to the east-west listener for the exported service, as a plain mTLS client. */
async function call(leaf: { chainPem: string; keyPem: string }) {
  const r = await request(gw.eastWest, {
    host: 'web.shop.svc.clusterset.local',
    tls: {
      servername: 'web.shop.svc.clusterset.local',
      ca: gw.root.certPem,
      cert: leaf.chainPem,
      key: leaf.keyPem,
      checkServerIdentity: () => undefined,
    },
  });
  return { status: r.status, error: r.headers['x-meshfed-error'], body: r.body };
}

test('a gateway of a cluster whose intermediate is configured is verified from its leaf alone', async () => {
  const leaf = await issueLeaf(gw.cas.west!, { kind: 'gateway', name: 'west-gw' });
  const r = await call(leaf);
  expect(r.status).toBe(200);
  expect(JSON.parse(r.body).headers['x-meshfed-peer-identity']).toBe(
    spiffeIdFor('mesh.example', 'gateway', { cluster: 'west', name: 'west-gw' }),
  );
});

test('a cluster of the same root whose intermediate is not configured is refused with 403 peer-identity', async () => {
  const north = await issueIntermediate(gw.root, { cluster: 'north' });
  const r = await call(await issueLeaf(north, { kind: 'gateway', name: 'north-gw' }));
  expect(r.status).toBe(403);
  expect(r.error).toBe('peer-identity');
});

test("back-to-back scrapes of a daemon's /metrics both parse (an undefined sample is written NaN, not Nan)", async () => {
  for (let i = 0; i < 3; i++) {
    const [x, y] = await Promise.all([
      request(gw.admin, { host: gw.admin, path: '/metrics' }),
      request(gw.admin, { host: gw.admin, path: '/metrics' }),
    ]);
    expect(parsePrometheusText(x.body).size).toBeGreaterThan(0);
    expect(parsePrometheusText(y.body).size).toBeGreaterThan(0);
  }
});
