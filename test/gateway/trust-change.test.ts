import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import {
  type CaMaterial,
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
} from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import {
  createMesh,
  echoServer,
  fastPathWebGet,
  httpService,
  type Mesh,
  request,
  spyFastGateway,
  spyGateway,
  type TestGateway,
  TRUST_DOMAIN,
  tunnelGet,
  tunnelSession,
} from './harness.ts';

// Live trust changes: a root added to the running gateway's bundle is honoured by every TLS listener and by
// the tunnel pool once Gateway.trustChanged() runs, without dropping the connections already open; a root
// removed closes the connections whose peer chained only to it.

let mesh: Mesh;
let alpha: TestGateway;
let web: Awaited<ReturnType<typeof echoServer>>;
let nextRoot: CaMaterial;
/** a gateway of cluster beta under the root that alpha does not trust yet */
let betaNext: IssuedLeaf;
/** a gateway of cluster beta under the root alpha trusts from the start */
let betaOld: IssuedLeaf;
/** a remote gateway of cluster beta under the added root, which our pool dials */
let spy: Awaited<ReturnType<typeof spyGateway>> | undefined;
/** a remote fast-path gateway of cluster gamma under the added root, which our fast-path pool dials */
let fastSpy: Awaited<ReturnType<typeof spyFastGateway>> | undefined;

const WEB = { namespace: 'shop', name: 'web' };

/** One request over a new tunnel session as `leaf` (0: no answer); the session is closed afterwards. */
async function freshTunnelGet(leaf: IssuedLeaf): Promise<number> {
  const t = tunnelSession(alpha.eastWest, leaf, mesh.root.certPem);
  try {
    await t.connected;
    return await tunnelGet(t.session, leaf, WEB);
  } finally {
    t.session.destroy();
  }
}

/** One request over a new fast-path (ALPN meshfed-h1/1) connection as `leaf`; 0 when the connection is refused. */
async function freshFastGet(leaf: IssuedLeaf): Promise<number> {
  const { socket, received } = fastPathWebGet(alpha.eastWest, leaf, mesh.root.certPem);
  try {
    // with TLS 1.3 the client's handshake completes before the server has checked its certificate: a refusal
    // shows as a connection closed without an answer
    await waitFor(() => /^HTTP\/1\.1 \d{3} /.test(received()) || socket.destroyed || socket.readableEnded, {
      what: 'an answer or a close on the fast-path connection',
    });
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(received());
    return m ? Number(m[1]) : 0;
  } finally {
    socket.destroy();
  }
}

async function refused(listener: string, reason: string): Promise<number> {
  const m = await alpha.registry.getSingleMetric('meshfed_refused_total')?.get();
  return m?.values.find((v) => v.labels.listener === listener && v.labels.reason === reason)?.value ?? 0;
}

/** handshakes and requests the east-west listener refused, whatever the reason */
async function refusedEastWest(): Promise<number> {
  const m = await alpha.registry.getSingleMetric('meshfed_refused_total')?.get();
  return (m?.values ?? []).filter((v) => v.labels.listener === 'eastWest').reduce((n, v) => n + v.value, 0);
}

beforeAll(async () => {
  mesh = await createMesh();
  alpha = await mesh.gateway('alpha');
  web = await echoServer('alpha-web');
  alpha.source.set([httpService('shop', 'web', [web.address])]);
  nextRoot = await createRoot({ trustDomain: TRUST_DOMAIN });
  betaNext = await issueLeaf(await issueIntermediate(nextRoot, { cluster: 'beta' }), {
    kind: 'gateway',
    name: 'beta-gw',
  });
  betaOld = await issueLeaf(await mesh.intermediate('beta'), { kind: 'gateway', name: 'beta-gw' });
}, 30_000);

afterAll(async () => {
  spy?.close();
  fastSpy?.close();
  await alpha?.close();
  web?.server.close();
});

test('regression: a gateway under a root added to the bundle is accepted after trustChanged(), open connections stay', async () => {
  const old = tunnelSession(alpha.eastWest, betaOld, mesh.root.certPem);
  await old.connected;
  expect(await tunnelGet(old.session, betaOld, WEB)).toBe(200);
  // the east-west handshake refuses a client certificate of a root the bundle does not hold
  expect(await freshTunnelGet(betaNext)).toBe(0);
  expect(await refusedEastWest()).toBe(1);

  mesh.bundle.add(nextRoot.certPem);
  alpha.gateway.trustChanged();

  expect(await freshTunnelGet(betaNext)).toBe(200);
  expect(await freshTunnelGet(betaOld)).toBe(200);
  expect(await refusedEastWest()).toBe(1);
  // the fast-path TLS server of the east-west listener follows the bundle too
  expect(await freshFastGet(betaNext)).toBe(200);
  // the session opened before the change was not dropped
  expect(old.session.closed || old.session.destroyed).toBe(false);
  expect(await tunnelGet(old.session, betaOld, WEB)).toBe(200);
  old.session.close();
});

test('the tunnel pool dials a remote gateway under the added root', async () => {
  const nextMesh: Mesh = { ...mesh, intermediate: (cluster) => issueIntermediate(nextRoot, { cluster }) };
  // open until the end: the next test removes its root while our session to it is established
  spy = await spyGateway(nextMesh, 'beta');
  alpha.catalog.offer('beta', httpService('shop', 'api', ['127.0.0.1:1']), spy.address);
  const r = await request(alpha.egress, { host: 'api.shop.svc.clusterset.local' });
  expect(r.status).toBe(200);
  expect(spy.sessions).toHaveLength(1);
  // and the fast-path pool a fast-path gateway under it (kept open for the next test as well)
  fastSpy = await spyFastGateway(nextMesh, 'gamma');
  alpha.catalog.offer('gamma', httpService('shop', 'fast-api', ['127.0.0.1:1']), fastSpy.address);
  expect((await request(alpha.egress, { host: 'fast-api.shop.svc.clusterset.local' })).status).toBe(200);
  expect(fastSpy.connections).toHaveLength(1);
});

test('a root removed from the bundle: established connections of its gateways close with GOAWAY, the others stay', async () => {
  const next = tunnelSession(alpha.eastWest, betaNext, mesh.root.certPem);
  const old = tunnelSession(alpha.eastWest, betaOld, mesh.root.certPem);
  expect(await tunnelGet(next.session, betaNext, WEB)).toBe(200);
  expect(await tunnelGet(old.session, betaOld, WEB)).toBe(200);
  const goaway = once(next.session, 'goaway');

  expect(mesh.bundle.remove(new X509Certificate(nextRoot.certPem).fingerprint256)).toBe(true);
  alpha.gateway.trustChanged();

  expect(await goaway).toEqual([http2.constants.NGHTTP2_NO_ERROR, expect.any(Number), undefined]);
  await waitFor(() => next.session.closed || next.session.destroyed, { what: 'the session to close' });
  expect(await refused('eastWest', 'peer-cert-untrusted')).toBe(1);
  // our own pooled session to the gateway under that root (previous test) went the same way
  await waitFor(() => spy!.sessions[0]!.closed, { what: 'our tunnel session to close' });
  // and so did our pooled fast-path connection to the fast-path gateway under it
  await waitFor(() => fastSpy!.connections[0]!.closed, { what: 'our fast-path connection to close' });
  expect(await refused('tunnel', 'peer-cert-untrusted')).toBe(2);
  expect(old.session.closed || old.session.destroyed).toBe(false);
  expect(await tunnelGet(old.session, betaOld, WEB)).toBe(200);
  expect(await freshTunnelGet(betaNext)).toBe(0);
  expect(await freshFastGet(betaNext)).toBe(0);
  old.session.close();
});
