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
  closers.push(() => echo.server.close());
  beta = await mesh.gateway('beta');
  // a service per case: what the balancer learns of the stand-in in one case does not steer the next
  const both = ['orders', 'invoices'].map((name) => httpService('shop', name, [echo.address]));
  beta.source.set(both);
  alpha = await mesh.gateway('alpha');
  const spy = `127.0.0.1:${(refuser.address() as AddressInfo).port}`;
  for (const svc of both) {
    alpha.catalog.offer('spy', svc, spy);
    alpha.catalog.offer('beta', svc, beta.eastWest);
  }
  // offered by the stand-in alone: every try goes there
  alpha.catalog.offer('spy', httpService('shop', 'ledger', [echo.address]), spy);
}, 30_000);

async function refusedAtSpy(): Promise<number> {
  const m = await alpha.registry.getSingleMetric('meshfed_upstream_retries_total')?.get();
  return (m?.values ?? [])
    .filter((v) => v.labels.destination_cluster === 'spy' && v.labels.failure === 'refused')
    .reduce((n, v) => n + v.value, 0);
}

afterAll(async () => {
  await alpha?.close();
  await beta?.close();
  for (const c of closers) c();
});

test.each([
  ['REFUSED_STREAM', h2c.NGHTTP2_REFUSED_STREAM, 'orders'],
  // node's HTTP/2 server refuses a stream it cannot take at its creation (its concurrent streams at the
  // limit, which after a stalled loop still counts streams already cancelled) this way
  ['ENHANCE_YOUR_CALM on the stream alone, before any answer', h2c.NGHTTP2_ENHANCE_YOUR_CALM, 'invoices'],
])(
  'a POST whose stream the remote gateway refused (%s) reaches the other cluster with its whole body',
  async (_, code, service) => {
    refuseWith = code;
    refusedStreams = 0;
    const retriedBefore = await refusedAtSpy();
    const body = Buffer.alloc(5_000, 9);
    // the balancer's first pick is random: send until one met the refusing gateway first (bounded)
    for (let i = 0; i < 20 && refusedStreams === 0; i++) {
      const r = await request(alpha.egress, {
        host: `${service}.shop.svc.clusterset.local`,
        method: 'POST',
        body,
      });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ label: 'beta-echo', method: 'POST', size: 5_000 });
    }
    expect(refusedStreams).toBeGreaterThan(0);
    // counted as refused (sent again), not as a reset
    expect(await refusedAtSpy()).toBeGreaterThan(retriedBefore);
  },
);

test('a POST on a session the remote gateway ended with GOAWAY ENHANCE_YOUR_CALM after reading it is not sent again', async () => {
  refuseWith = 'goaway';
  refusedStreams = 0;
  const retriedBefore = await refusedAtSpy();
  const r = await request(alpha.egress, {
    host: 'ledger.shop.svc.clusterset.local',
    method: 'POST',
    body: Buffer.alloc(100, 1),
  });
  // read, then cut: a reset, which a POST never retries (the stand-in is the only target: a retry would
  // have reached it again)
  expect(r.status).toBeGreaterThanOrEqual(500);
  expect(refusedStreams).toBe(1);
  expect(await refusedAtSpy()).toBe(retriedBefore);
});
