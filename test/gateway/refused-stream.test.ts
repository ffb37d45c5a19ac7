import http2, { constants as h2c } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { issueLeaf } from '../../ca/index.ts';
import { createMesh, echoServer, httpService, type Mesh, request, type TestGateway } from './harness.ts';

// A stream the remote gateway refuses (REFUSED_STREAM: it never reached an application) is retried on
// another target for every method: a POST with a body goes to the other cluster whole, sent again from
// what the first try recorded (found while checking the chaos gateway-kill scenario's non-idempotent
// failures: a refused stream counted as a reset, which a POST never retries).

let mesh: Mesh;
let alpha: TestGateway;
let beta: TestGateway;
let refuser: http2.Http2SecureServer;
let refusedStreams = 0;
/** how the stand-in refuses: RST_STREAM with this code, or (`goaway`) a GOAWAY ENHANCE_YOUR_CALM after reading it */
let refuseWith: number | 'goaway' = h2c.NGHTTP2_REFUSED_STREAM;
/** requests the beta backend answered */
let echoed = 0;
const closers: (() => void)[] = [];

beforeAll(async () => {
  mesh = await createMesh();
  // a stand-in gateway of cluster "spy" (a real gateway certificate of that cluster) that refuses every
  // stream; it offers only h2, so alpha takes the HTTP/2 tunnel to it
  const leaf = await issueLeaf(await mesh.intermediate('spy'), { kind: 'gateway', name: 'spy-gw' });
  refuser = http2.createSecureServer({
    cert: leaf.chainPem,
    key: leaf.keyPem,
    ca: mesh.bundle.toPem(),
    requestCert: true,
    ALPNProtocols: ['h2'],
  });
  refuser.on('stream', (stream) => {
    refusedStreams++;
    stream.on('error', () => undefined);
    if (refuseWith !== 'goaway') {
      stream.close(refuseWith);
      return;
    }
    // the stream was read (a peer's rapid-reset guard ends the session this way): it must not be sent again
    stream.session?.goaway(h2c.NGHTTP2_ENHANCE_YOUR_CALM, stream.id);
    stream.session?.destroy();
  });
  await new Promise<void>((r) => refuser.listen(0, '127.0.0.1', r));
  closers.push(() => refuser.close());
  const echo = await echoServer('beta-echo');
  echo.server.on('request', () => {
    echoed++;
  });
  closers.push(() => echo.server.close());
  beta = await mesh.gateway('beta');
  const svc = httpService('shop', 'orders', [echo.address]);
  beta.source.set([svc]);
  alpha = await mesh.gateway('alpha');
  alpha.catalog.offer('spy', svc, `127.0.0.1:${(refuser.address() as AddressInfo).port}`);
  alpha.catalog.offer('beta', svc, beta.eastWest);
}, 30_000);

afterAll(async () => {
  await alpha?.close();
  await beta?.close();
  for (const c of closers) c();
});

test.each([
  ['REFUSED_STREAM', h2c.NGHTTP2_REFUSED_STREAM],
  // node's HTTP/2 server refuses a stream it cannot take at its creation (its concurrent streams at the
  // limit, which after a stalled loop still counts streams already cancelled) this way
  ['ENHANCE_YOUR_CALM on the stream alone, before any answer', h2c.NGHTTP2_ENHANCE_YOUR_CALM],
])(
  'a POST whose stream the remote gateway refused (%s) reaches the other cluster with its whole body',
  async (_, code) => {
    refuseWith = code;
    refusedStreams = 0;
    const body = Buffer.alloc(5_000, 9);
    // the balancer's first pick is random: send until one met the refusing gateway first (bounded)
    for (let i = 0; i < 20 && refusedStreams === 0; i++) {
      const r = await request(alpha.egress, {
        host: 'orders.shop.svc.clusterset.local',
        method: 'POST',
        body,
      });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ label: 'beta-echo', method: 'POST', size: 5_000 });
    }
    expect(refusedStreams).toBeGreaterThan(0);
    const m = await alpha.registry.getSingleMetric('meshfed_upstream_retries_total')?.get();
    expect(
      m?.values.find((v) => v.labels.destination_cluster === 'spy' && v.labels.failure === 'refused')?.value,
    ).toBeGreaterThan(0);
  },
);

test('a POST on a session the remote gateway ended with GOAWAY ENHANCE_YOUR_CALM after reading it is not sent again', async () => {
  refuseWith = 'goaway';
  refusedStreams = 0;
  // the balancer's first pick is random: send until one met the stand-in first (bounded)
  for (let i = 0; i < 20 && refusedStreams === 0; i++) {
    const before = echoed;
    const r = await request(alpha.egress, {
      host: 'orders.shop.svc.clusterset.local',
      method: 'POST',
      body: Buffer.alloc(100, 1),
    });
    if (refusedStreams === 0) {
      expect(r.status).toBe(200);
      continue;
    }
    // read, then cut: a reset that a POST never retries
    expect(r.status).toBeGreaterThanOrEqual(500);
    expect(echoed).toBe(before);
  }
  expect(refusedStreams).toBeGreaterThan(0);
});
