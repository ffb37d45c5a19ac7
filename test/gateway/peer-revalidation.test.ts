import { jest } from '@jest/globals';
import { EventEmitter, once } from 'node:events';
import http2 from 'node:http2';
import { X509Certificate } from 'node:crypto';
import { type IssuedLeaf, issueLeaf } from '../../ca/index.ts';
import { parseCertificates } from '../../ca/pem.ts';
import { silentLogger, waitFor } from '../../core/index.ts';
import { FAST_ALPN } from '../../gateway/index.ts';
import { PeerRevalidation } from '../../gateway/peer-revalidation.ts';
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
  tunnelGet,
  TRUST_DOMAIN,
  tunnelSession,
} from './harness.ts';

// Identity is re-checked on established connections: a peer certificate that expires while its connection
// is open gets the connection closed (GOAWAY), on the east-west listener, on egress mTLS and on our own
// tunnel sessions; a peer that is still valid keeps its connection.

/** short, so that a certificate valid for a few seconds is noticed soon after it expires */
const INTERVAL_MS = 100;
/** a peer certificate's lifetime: long enough for a handshake on a busy machine, short enough to wait for */
const SHORT_TTL_MS = 3_000;

let mesh: Mesh;
let alpha: TestGateway;
let web: Awaited<ReturnType<typeof echoServer>>;
const WEB = { namespace: 'shop', name: 'web' };

async function refused(listener: string, reason: string): Promise<number> {
  const m = await alpha.registry.getSingleMetric('meshfed_refused_total')?.get();
  return m?.values.find((v) => v.labels.listener === listener && v.labels.reason === reason)?.value ?? 0;
}

/** a GOAWAY the client got, and the session's close, or why not within the deadline */
async function closedWithGoaway(session: http2.ClientHttp2Session, goaway: Promise<unknown>): Promise<void> {
  await waitFor(() => session.closed || session.destroyed, {
    timeoutMs: SHORT_TTL_MS + 10_000,
    what: 'the connection of an expired peer to close',
  });
  expect(await goaway).toEqual([http2.constants.NGHTTP2_NO_ERROR, expect.any(Number), undefined]);
}

beforeAll(async () => {
  mesh = await createMesh();
  alpha = await mesh.gateway('alpha', {
    config: { peerRevalidationInterval: INTERVAL_MS, egress: { clientAuth: 'optional' } },
  });
  web = await echoServer('alpha-web');
  alpha.source.set([httpService('shop', 'web', [web.address])]);
}, 30_000);

afterAll(async () => {
  await alpha?.close();
  web?.server.close();
});

test('regression: a tunnel whose peer gateway certificate expires is closed with GOAWAY; a valid one stays', async () => {
  const beta = await mesh.intermediate('beta');
  const short: IssuedLeaf = await issueLeaf(beta, { kind: 'gateway', name: 'short', ttlMs: SHORT_TTL_MS });
  const long: IssuedLeaf = await issueLeaf(beta, { kind: 'gateway', name: 'long' });
  const expiring = tunnelSession(alpha.eastWest, short, mesh.root.certPem);
  const lasting = tunnelSession(alpha.eastWest, long, mesh.root.certPem);
  const goaway = once(expiring.session, 'goaway');
  expect(await tunnelGet(expiring.session, short, WEB)).toBe(200);
  expect(await tunnelGet(lasting.session, long, WEB)).toBe(200);
  await closedWithGoaway(expiring.session, goaway);
  expect(await refused('eastWest', 'peer-cert-expired')).toBe(1);
  // the connection of a peer that is still valid was left alone
  expect(lasting.session.closed || lasting.session.destroyed).toBe(false);
  expect(await tunnelGet(lasting.session, long, WEB)).toBe(200);
  lasting.session.close();
}, 30_000);

test('an egress mTLS connection whose workload certificate expires is closed', async () => {
  const workload = await issueLeaf(await mesh.intermediate('alpha'), {
    kind: 'workload',
    namespace: 'shop',
    serviceAccount: 'short',
    ttlMs: SHORT_TTL_MS,
  });
  const session = http2.connect(`https://${alpha.egress}`, {
    ca: mesh.root.certPem,
    cert: workload.chainPem,
    key: workload.keyPem,
    checkServerIdentity: () => undefined,
  });
  session.on('error', () => undefined);
  const goaway = once(session, 'goaway');
  const stream = session.request({ ':path': '/', ':authority': 'web.shop.svc.clusterset.local' });
  const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
  stream.resume();
  expect(headers[':status']).toBe(200);
  await closedWithGoaway(session, goaway);
  expect(await refused('egress', 'peer-cert-expired')).toBe(1);
}, 30_000);

test('a pooled tunnel session to a remote gateway whose certificate expires leaves the pool and closes', async () => {
  const spy = await spyGateway(mesh, 'beta', { ttlMs: SHORT_TTL_MS });
  try {
    alpha.catalog.offer('beta', httpService('shop', 'api', ['127.0.0.1:1']), spy.address);
    expect((await request(alpha.egress, { host: 'api.shop.svc.clusterset.local' })).status).toBe(200);
    expect(spy.sessions).toHaveLength(1);
    await waitFor(() => spy.sessions[0]!.closed, {
      timeoutMs: SHORT_TTL_MS + 10_000,
      what: 'our tunnel session to the expired gateway to close',
    });
    expect(await refused('tunnel', 'peer-cert-expired')).toBe(1);
  } finally {
    spy.close();
  }
}, 30_000);

test('regression: a pooled fast-path connection to a remote gateway whose certificate expires leaves the pool and closes', async () => {
  const spy = await spyFastGateway(mesh, 'gamma', { ttlMs: SHORT_TTL_MS });
  try {
    const before = await refused('tunnel', 'peer-cert-expired');
    alpha.catalog.offer('gamma', httpService('shop', 'fast-api', ['127.0.0.1:1']), spy.address);
    const host = 'fast-api.shop.svc.clusterset.local';
    expect((await request(alpha.egress, { host })).status).toBe(200);
    expect((await request(alpha.egress, { host })).status).toBe(200);
    // both requests took the one pooled connection, which now sits idle in the pool
    expect(spy.connections).toHaveLength(1);
    expect(spy.connections[0]!.requests).toBe(2);
    await waitFor(() => spy.connections[0]!.closed, {
      timeoutMs: SHORT_TTL_MS + 10_000,
      what: 'our pooled fast-path connection to the expired gateway to close',
    });
    expect(await refused('tunnel', 'peer-cert-expired')).toBe(before + 1);
  } finally {
    spy.close();
  }
}, 30_000);

test('a fast-path (HTTP/1.1) connection whose peer gateway certificate expires is closed', async () => {
  const beta = await mesh.intermediate('beta');
  const short = await issueLeaf(beta, { kind: 'gateway', name: 'short-h1', ttlMs: SHORT_TTL_MS });
  const before = await refused('eastWest', 'peer-cert-expired');
  const { socket, received } = fastPathWebGet(alpha.eastWest, short, mesh.root.certPem);
  await once(socket, 'secureConnect');
  expect(socket.alpnProtocol).toBe(FAST_ALPN);
  await waitFor(() => received().startsWith('HTTP/1.1 200'), { timeoutMs: 10_000, what: 'the first answer' });
  await waitFor(() => socket.destroyed || socket.readableEnded, {
    timeoutMs: SHORT_TTL_MS + 10_000,
    what: 'the fast-path connection of an expired peer to close',
  });
  expect(await refused('eastWest', 'peer-cert-expired')).toBe(before + 1);
}, 30_000);

test('regression: a fast-path connection whose peer certificate stops verifying while a request is in flight answers that request before it closes', async () => {
  // web answers more slowly than the peer certificate lives: the request is in flight when it expires
  const slow = await echoServer('alpha-slow');
  const answerAfter = SHORT_TTL_MS + 1_500;
  slow.server.removeAllListeners('request');
  slow.server.on('request', (_req, res) => {
    setTimeout(() => res.end('slow answer'), answerAfter);
  });
  alpha.source.set([httpService('shop', 'web', [slow.address])]);
  try {
    const beta = await mesh.intermediate('beta');
    const short = await issueLeaf(beta, { kind: 'gateway', name: 'short-busy', ttlMs: SHORT_TTL_MS });
    const { socket, received } = fastPathWebGet(alpha.eastWest, short, mesh.root.certPem);
    await once(socket, 'secureConnect');
    expect(socket.alpnProtocol).toBe(FAST_ALPN);
    await waitFor(() => socket.destroyed || socket.readableEnded, {
      timeoutMs: answerAfter + 10_000,
      what: 'the connection of the expired peer to close',
    });
    // closed, but only once the answer under way was out
    expect(received()).toMatch(/^HTTP\/1\.1 200[\s\S]*slow answer/);
  } finally {
    alpha.source.set([httpService('shop', 'web', [web.address])]);
    slow.server.close();
  }
}, 30_000);

/**
 * A PeerRevalidation with no interval sweep (only its expiry timer and trust changes sweep: nothing else would
 * notice an expiry) and a connection whose peer leaf expires SHORT_TTL_MS from now; `track()` starts watching
 * it (after a test's fake timers are in place), `closed.at` is when it was closed.
 */
async function expiringPeer(name: string) {
  const leaf = await issueLeaf(await mesh.intermediate('beta'), {
    kind: 'gateway',
    name,
    ttlMs: SHORT_TTL_MS,
  });
  const chain = parseCertificates(leaf.chainPem, 'the leaf chain').map((c) => c.raw);
  const closedFor: string[] = [];
  const revalidation = new PeerRevalidation({
    bundle: () => mesh.bundle,
    intervalMs: 0,
    onClosed: (listener, reason) => closedFor.push(`${listener}: ${reason}`),
    logger: silentLogger(),
  });
  const connection = new EventEmitter();
  const closed = { at: 0 };
  const track = () =>
    revalidation.track(connection, {
      listener: 'tunnel',
      chain,
      expect: { trustDomain: TRUST_DOMAIN, kinds: ['gateway'], usage: 'server' },
      peer: leaf.spiffeId,
      // as the verification that admits a peer reads it: the certificate's (whole seconds)
      notAfter: Date.parse(new X509Certificate(chain[0]!).validTo),
      close: () => {
        closed.at = Date.now();
        connection.emit('close');
      },
    });
  return { leaf, chain, revalidation, closedFor, closed, track };
}

test('with no interval sweep, a tracked connection closes when its peer leaf expires, at its notAfter', async () => {
  const { leaf, revalidation, closedFor, closed, track } = await expiringPeer('expiry-timer');
  track();
  expect(revalidation.sweep()).toBe(0);
  await waitFor(() => closed.at > 0, {
    timeoutMs: SHORT_TTL_MS + 10_000,
    what: 'the connection of the expiring peer to be closed by the expiry timer',
  });
  expect(closedFor).toEqual(['tunnel: peer-cert-expired']);
  expect(closed.at).toBeGreaterThanOrEqual(leaf.notAfter.getTime());
  expect(revalidation.size).toBe(0);
}, 30_000);

test('an expiry timer that fires just before the wall clock reaches notAfter arms itself again and closes on time', async () => {
  const { chain, closed, track } = await expiringPeer('early-timer');
  // notAfter as the certificate holds it (whole seconds), which is when the timer is armed for
  const at = Date.parse(new X509Certificate(chain[0]!).validTo);
  // the wall clock as the timer sees it: 1 ms short of notAfter at its first reading, past it from the next
  // (a millisecond that ticks over inside the callback); real time once the timer has re-armed
  const realNow = Date.now.bind(Date);
  const readings: number[] = [];
  jest.useFakeTimers({ doNotFake: ['Date', 'nextTick', 'queueMicrotask', 'setImmediate'] });
  try {
    // the timer's delay is notAfter less the clock it read inside track(), never later than this reading: advancing
    // the fake timers from here reaches it however long the lines between took on a busy host
    const trackedAt = realNow();
    track();
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => {
      const t = readings.length === 0 ? at - 1 : at;
      readings.push(t);
      return t;
    });
    jest.advanceTimersByTime(at - trackedAt + 1);
    expect(readings.length).toBeGreaterThan(0);
    // not swept at its first reading (not yet expired): it must have armed again for the millisecond left
    clock.mockImplementation(() => at + 1);
    jest.advanceTimersByTime(5);
    expect(closed.at).toBeGreaterThan(0);
    clock.mockRestore();
  } finally {
    jest.useRealTimers();
  }
});
