import type http2 from 'node:http2';
import { type IssuedLeaf, issueLeaf } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import { ROTATION_SPREAD_MS } from '../../gateway/h1/pool.ts';
import {
  createMesh,
  echoServer,
  httpService,
  type Mesh,
  request,
  spyGateway,
  type TestGateway,
  tunnelGet,
  tunnelSession,
} from './harness.ts';

// Certificate hot-swap: the gateway's leaf rotates through its CertificateSource while it runs.

let mesh: Mesh;
let a: TestGateway;
let web: Awaited<ReturnType<typeof echoServer>>;
let betaLeaf: IssuedLeaf;
/** a stand-in remote gateway of cluster beta that answers with the serial of the client certificate */
let spy: Awaited<ReturnType<typeof spyGateway>>;

const sameSerial = (x: string, y: string) => BigInt(`0x${x}`) === BigInt(`0x${y}`);

beforeAll(async () => {
  mesh = await createMesh();
  a = await mesh.gateway('alpha');
  web = await echoServer('alpha-web');
  a.source.set([httpService('shop', 'web', [web.address])]);
  betaLeaf = await issueLeaf(await mesh.intermediate('beta'), { kind: 'gateway', name: 'beta-gw' });
  spy = await spyGateway(mesh, 'beta');
  a.catalog.offer('beta', httpService('shop', 'api', ['127.0.0.1:1']), spy.address);
}, 30_000);

afterAll(async () => {
  await a?.close();
  web?.server.close();
  spy?.close();
});

/** A tunnel session to alpha's east-west listener, as another gateway (beta) opens one. */
function tunnel(): { session: http2.ClientHttp2Session; serverSerial: Promise<string> } {
  const { session, connected } = tunnelSession(a.eastWest, betaLeaf, mesh.bundle.toPem());
  return { session, serverSerial: connected.then((socket) => socket.getPeerCertificate().serialNumber) };
}

const get = (session: http2.ClientHttp2Session) =>
  tunnelGet(session, betaLeaf, { namespace: 'shop', name: 'web' });

test('after a rotation, new handshakes present the new leaf and open connections keep working', async () => {
  const before = a.identity.current();
  const old = tunnel();
  expect(sameSerial(await old.serverSerial, before.serial)).toBe(true);
  expect(await get(old.session)).toBe(200);

  const rotated = await a.identity.renewNow();
  expect(rotated.serial).not.toBe(before.serial);

  const fresh = tunnel();
  expect(sameSerial(await fresh.serverSerial, rotated.serial)).toBe(true);
  expect(await get(fresh.session)).toBe(200);
  // the connection made before the rotation was not dropped: it still serves requests
  expect(old.session.closed || old.session.destroyed).toBe(false);
  expect(await get(old.session)).toBe(200);
  old.session.close();
  fresh.session.close();
});

test("pooled tunnel sessions move to the new leaf: the old one gets a graceful close, requests don't fail", async () => {
  const call = async () => {
    const r = await request(a.egress, { host: 'api.shop.svc.clusterset.local' });
    expect(r.status).toBe(200);
    return r.body;
  };
  const first = await call();
  expect(sameSerial(first, a.identity.current().serial)).toBe(true);
  const sessionsBefore = spy.sessions.length;
  const rotated = await a.identity.renewNow();
  const second = await call();
  expect(sameSerial(second, rotated.serial)).toBe(true);
  expect(spy.sessions.length).toBeGreaterThan(sessionsBefore);
  // every session presented with an older certificate is closed by the pool: once replaced, or when no
  // request asked for it, ROTATION_SPREAD_MS after the rotation
  await waitFor(
    () => spy.sessions.filter((s) => !sameSerial(s.serial, rotated.serial)).every((s) => s.closed),
    { timeoutMs: ROTATION_SPREAD_MS + 5_000 },
  );
  for (let i = 0; i < 10; i++) expect(sameSerial(await call(), rotated.serial)).toBe(true);
}, 30_000);

// root-rotation (bench/chaos) on a busy host: a rotation closed every pooled tunnel session at once, so every
// request (gRPC, TCP) after it waited for new sessions to be dialled, and the liveness PINGs of a remote
// gateway went unanswered meanwhile and ejected it. A session now serves until its replacement is ready.
test('regression: after a rotation the pooled tunnel sessions serve until their replacements are dialled, then close (make before break)', async () => {
  const spy2 = await spyGateway(mesh, 'gamma');
  try {
    a.catalog.offer('gamma', httpService('shop', 'mbb', ['127.0.0.1:1']), spy2.address);
    const call = async () => {
      const r = await request(a.egress, { host: 'mbb.shop.svc.clusterset.local' });
      expect(r.status).toBe(200);
      return r.body;
    };
    // one session in each slot of the pool
    const old = a.identity.current();
    for (let i = 0; i < 4; i++) expect(sameSerial(await call(), old.serial)).toBe(true);
    const pooled = spy2.sessions.length;
    const rotated = await a.identity.renewNow();
    // the requests right after the rotation are carried by the sessions already open: none waits for a dial
    for (let i = 0; i < 2; i++) expect(sameSerial(await call(), old.serial)).toBe(true);
    // which got their replacements meanwhile; the old ones close gracefully, and the next requests are
    // carried by the new ones
    await waitFor(
      () => spy2.sessions.filter((s) => !sameSerial(s.serial, rotated.serial)).every((s) => s.closed),
      { timeoutMs: ROTATION_SPREAD_MS + 5_000, what: 'the sessions of the old leaf to close' },
    );
    for (let i = 0; i < 4; i++) expect(sameSerial(await call(), rotated.serial)).toBe(true);
    expect(spy2.sessions.length).toBe(2 * pooled);
  } finally {
    spy2.close();
  }
}, 30_000);
