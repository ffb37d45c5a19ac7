import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { issueLeaf } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import type { BalancerTarget } from '../../gateway/balancer/index.ts';
import { ResetCounter } from '../../gateway/h2-session-guard.ts';
import type { GatewayRequest } from '../../gateway/pipeline.ts';
import { NEVER_ABORTED } from '../../gateway/resilience/index.ts';
import { sendTry, type UpstreamCodec } from '../../gateway/upstream/attempt.ts';
import { meshOfFile, httpService, request, type TestGateway, tunnelGet, tunnelSession } from './harness.ts';

// The defences the chaos flood scenario (bench/chaos/scenarios/flood.ts) needs, each alone and small:
// HTTP/2 rapid reset (CVE-2023-44487), TLS handshake admission, slowloris heads; each time a legitimate
// request is still served.

const { mesh, closing } = meshOfFile();

function splitAddr(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

async function refusedCount(g: TestGateway, reason: string): Promise<number> {
  const m = await g.registry.getSingleMetric('meshfed_refused_total')?.get();
  return m?.values.filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0) ?? 0;
}

/** a gateway serving shop/web from a backend that counts the requests it gets (`/slow`: answered in 300 ms) */
async function servedGateway(cluster: string, limits: Record<string, unknown>) {
  let hits = 0;
  const backend = http.createServer((req, res) => {
    hits++;
    const answer = () => res.end(`web ${req.url}`);
    if (req.url === '/slow') setTimeout(answer, 300);
    else answer();
  });
  backend.listen(0, '127.0.0.1');
  await new Promise((r) => backend.once('listening', r));
  closing(() => backend.close());
  const g = await mesh().gateway(cluster, { config: { limits } });
  closing(() => g.close());
  const web = httpService('shop', 'web', [`127.0.0.1:${(backend.address() as AddressInfo).port}`]);
  g.source.set([web]);
  return { g, web, hits: () => hits };
}

/** opens and at once cancels `n` streams on `session`, a few at a time; stops when the session goes */
async function rapidReset(session: http2.ClientHttp2Session, n: number, headers: http2.OutgoingHttpHeaders) {
  for (let i = 0; i < n && !session.closed && !session.destroyed; i++) {
    try {
      const s = session.request(headers);
      s.on('error', () => undefined);
      s.close(http2.constants.NGHTTP2_CANCEL);
    } catch {
      return;
    }
    if (i % 20 === 19) await new Promise((r) => setImmediate(r));
  }
}

/** an HTTP/2 frame: 9 octets of header (length, type, flags, stream id), then the payload */
function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

/** an HPACK literal header field without indexing, its name from the static table (RFC 7541 6.2.2) */
function literal(nameIndex: number, value: string): Buffer {
  return Buffer.concat([Buffer.from([nameIndex, value.length]), Buffer.from(value, 'latin1')]);
}

/**
 * The rapid reset of CVE-2023-44487 as it reaches a server: on one h2c connection, `n` streams whose HEADERS
 * and RST_STREAM (CANCEL) come in the same write, so that each stream is reset before the server could
 * have answered it. Resolves with the server's GOAWAY once the connection closes.
 */
async function rawResetBurst(address: string, n: number, authority: string) {
  const s = net.connect(splitAddr(address));
  s.on('error', () => undefined);
  closing(() => s.destroy());
  await new Promise((r) => s.once('connect', r));
  const cancel = Buffer.alloc(4);
  cancel.writeUInt32BE(http2.constants.NGHTTP2_CANCEL);
  // :method GET (static 2), :scheme http (static 6), :path /reset, :authority
  const block = Buffer.concat([Buffer.from([0x82, 0x86]), literal(4, '/reset'), literal(1, authority)]);
  const burst: Buffer[] = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0))];
  for (let i = 0; i < n; i++) {
    const id = 2 * i + 1;
    burst.push(frame(1, 0x5, id, block), frame(3, 0, id, cancel));
  }
  let got = Buffer.alloc(0);
  s.on('data', (d: Buffer) => {
    got = Buffer.concat([got, d]);
  });
  s.write(Buffer.concat(burst));
  await new Promise((r) => s.once('close', r));
  for (let p = 0; p + 9 <= got.length; p += 9 + got.readUIntBE(p, 3)) {
    if (got[p + 3] === 7)
      return { lastStreamId: got.readUInt32BE(p + 9) & 0x7fffffff, errorCode: got.readUInt32BE(p + 13) };
  }
  throw new Error('the connection closed without a GOAWAY');
}

describe('ResetCounter', () => {
  const limits = { maxResetsPerSecond: 10, maxPrematureResets: 4 };
  test.each([
    {
      what: 'resets of streams older than 500 ms never count',
      streams: 20,
      resets: Array.from({ length: 20 }, () => ({ ageMs: 600, at: 0 })),
      closesAt: -1,
    },
    {
      what: 'more than maxResetsPerSecond premature resets in one second close a tunnel session',
      streams: 100,
      resets: Array.from({ length: 12 }, (_, i) => ({ ageMs: 1, at: i })),
      closesAt: 10,
      perSecondOnly: true,
    },
    {
      what: 'regression: a burst of resets on a session of mostly answered streams (a stall of the gateway) keeps it',
      streams: 100,
      resets: Array.from({ length: 40 }, (_, i) => ({ ageMs: 1, at: i })),
      closesAt: -1,
    },
    {
      what: 'the same burst once the resets are half of the streams closes it',
      streams: 30,
      resets: Array.from({ length: 40 }, (_, i) => ({ ageMs: 1, at: i })),
      closesAt: 14,
    },
    {
      what: 'maxPrematureResets over the session’s life close it once they are half of its streams',
      streams: 6,
      resets: Array.from({ length: 4 }, (_, i) => ({ ageMs: 1, at: i * 2000 })),
      closesAt: 3,
    },
    {
      what: 'a tunnel session (per second only) keeps premature resets that add up over its life',
      streams: 6,
      resets: Array.from({ length: 40 }, (_, i) => ({ ageMs: 1, at: i * 2000 })),
      closesAt: -1,
      perSecondOnly: true,
    },
    {
      what: 'a session that carries mostly answered streams keeps the odd premature reset',
      streams: 100,
      resets: Array.from({ length: 8 }, (_, i) => ({ ageMs: 1, at: i * 2000 })),
      closesAt: -1,
    },
  ])('$what', ({ streams, resets, closesAt, perSecondOnly }) => {
    const c = new ResetCounter(limits, { perSecondOnly });
    for (let i = 0; i < streams; i++) c.stream();
    expect(resets.findIndex((r) => c.reset(r.ageMs, 10_000 + r.at))).toBe(closesAt);
  });
});

describe('HTTP/2 rapid reset', () => {
  test('regression: a try for a caller whose stream was already reset (its close event long gone) is never sent upstream', async () => {
    let sends = 0;
    const codec: UpstreamCodec = {
      send: () => {
        sends++;
      },
    };
    const listeners: string[] = [];
    const r = {
      responseOver: () => true,
      io: { res: { once: (e: string) => listeners.push(e), off: () => undefined } },
    } as unknown as GatewayRequest;
    const target = { id: 'remote|west|gw|127.0.0.1:1', cluster: 'west' } as BalancerTarget;
    const tried = sendTry(
      target,
      {
        namespace: 'shop',
        name: 'web',
        idempotent: true,
        attempt: 0,
        exclude: new Set(),
        payload: r,
        signal: NEVER_ABORTED,
      },
      { codec, holdBack: () => false },
    );
    await expect(tried).rejects.toMatchObject({ failure: 'cancelled' });
    // before the fix the try waited for a 'close' that had already fired, and the codec sent the request
    expect(sends).toBe(0);
    expect(listeners).toEqual([]);
  }, 5_000);

  test('an HTTP/2 caller whose RST_STREAM is read in the same turn of the event loop as its HEADERS is not sent upstream', async () => {
    let sends = 0;
    const codec: UpstreamCodec = {
      send: () => {
        sends++;
      },
    };
    let over = false;
    const r = {
      responseOver: () => over,
      connection: { goaway: () => undefined },
      io: { res: { once: () => undefined, off: () => undefined } },
    } as unknown as GatewayRequest;
    const target = { id: 'remote|west|gw|127.0.0.1:1', cluster: 'west' } as BalancerTarget;
    const call = { namespace: 'shop', name: 'web', idempotent: true, exclude: new Set<string>(), payload: r };
    const tried = sendTry(
      target,
      { ...call, attempt: 0, signal: NEVER_ABORTED },
      { codec, holdBack: () => false },
    );
    // the reset, read in the same turn (before the 'close' event it will cause)
    over = true;
    await expect(tried).rejects.toMatchObject({ failure: 'cancelled' });
    expect(sends).toBe(0);
    // a retry (attempt 1) leaves at once: time has passed since the caller's HEADERS
    over = false;
    void sendTry(target, { ...call, attempt: 1, signal: NEVER_ABORTED }, { codec, holdBack: () => false });
    expect(sends).toBe(1);
  }, 5_000);

  test('regression: a rapid-reset burst on one egress session gets GOAWAY (ENHANCE_YOUR_CALM) and loses the session; no cancelled stream reaches the remote backend; others are still served', async () => {
    const limits = { maxResetsPerSecond: 100_000, maxPrematureResets: 50 };
    const { g: west, web, hits } = await servedGateway('rr-west', limits);
    const g = await mesh().gateway('rr-east', { config: { limits } });
    closing(() => g.close());
    g.catalog.offer('rr-west', web, west.eastWest);
    const goaway = await rawResetBurst(g.egress, 200, 'web.shop.svc.clusterset.local');
    expect(goaway.errorCode).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    // the GOAWAY came before the burst's end: the session was cut at the limit, the rest never read
    expect(goaway.lastStreamId).toBeLessThan(2 * 200 - 1);
    expect(await refusedCount(g, 'rapid-reset')).toBe(1);
    // HEADERS and RST_STREAM of a stream arrive together: the gateway sees the caller gone before it sends
    // anything to the remote gateway (before the fix each was sent on, and answered there in full)
    expect(hits()).toBeLessThanOrEqual(5);
    expect(await refusedCount(west, 'rapid-reset')).toBe(0);
    const ok = await request(g.egress, { host: 'web.shop.svc.clusterset.local', path: '/after' });
    expect(ok.status).toBe(200);
  });

  test('a rapid-reset burst on a tunnel session: a graceful GOAWAY names the last stream taken, a stream in flight on it still finishes, and the session closes', async () => {
    // a tunnel session is held to the per-second limit only (it relays its callers' cancels for hours)
    const { g, web } = await servedGateway('rr-tunnel', {
      maxResetsPerSecond: 50,
      maxPrematureResets: 100_000,
    });
    const leaf = await issueLeaf(await mesh().intermediate('rr-peer'), {
      kind: 'gateway',
      name: 'rr-peer-gw',
    });
    const { session, connected } = tunnelSession(g.eastWest, leaf, mesh().bundle.toPem());
    await connected;
    const goaway = new Promise<number>((r) => session.once('goaway', (code: number) => r(code)));
    const closed = new Promise((r) => session.once('close', r));
    // in flight while the burst comes: answered after 300 ms
    const slow = tunnelGet(session, leaf, web, '/slow');
    await rapidReset(session, 2_000, {
      ':path': '/reset',
      ':authority': 'web.shop.svc.clusterset.local',
      'x-meshfed-service': 'shop/web/http',
    });
    // NO_ERROR: a node client fails every open stream on a GOAWAY with any other code
    expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(await slow).toBe(200);
    await closed;
    expect(await refusedCount(g, 'rapid-reset')).toBe(1);
    // a new session of the same peer is served
    const again = tunnelSession(g.eastWest, leaf, mesh().bundle.toPem());
    closing(() => again.session.destroy());
    await again.connected;
    expect(await tunnelGet(again.session, leaf, web)).toBe(200);
  });
});

/**
 * Whether a tunnel session of `leaf` to `g` completes its handshake and, with `web`, is answered a GET:
 * the status, or 0 when the handshake was refused.
 */
async function tunnelServes(
  g: TestGateway,
  leaf: { chainPem: string; keyPem: string },
  web?: { namespace: string; name: string },
): Promise<number> {
  const t = tunnelSession(g.eastWest, leaf, mesh().bundle.toPem());
  try {
    await t.connected;
    return web ? await tunnelGet(t.session, leaf, web) : 200;
  } catch {
    return 0;
  } finally {
    t.session.destroy();
  }
}

describe('TLS handshake admission', () => {
  /** a ClientHello as node's TLS client sends it, captured off a plain socket */
  async function clientHello(): Promise<Buffer> {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1');
    await new Promise((r) => srv.once('listening', r));
    const got = new Promise<Buffer>((r) => srv.once('connection', (s) => s.once('data', r)));
    const c = tls.connect({
      ...splitAddr(`127.0.0.1:${(srv.address() as AddressInfo).port}`),
      ALPNProtocols: ['meshfed-tunnel/1', 'h2'],
      servername: 'gateway.meshfed.internal',
      rejectUnauthorized: false,
    });
    c.on('error', () => undefined);
    const hello = await got;
    c.destroy();
    srv.close();
    return hello;
  }

  /**
   * Sends `hello` on a new connection to the east-west listener: 'answered' once the gateway answers with
   * its ServerHello (the handshake started; the socket is kept open, stalled), 'closed' when it closes the
   * connection without a byte.
   */
  async function offerHello(
    g: TestGateway,
    hello: Buffer,
  ): Promise<{ outcome: 'answered' | 'closed'; s: net.Socket }> {
    const s = net.connect(splitAddr(g.eastWest));
    s.on('error', () => undefined);
    closing(() => s.destroy());
    s.write(hello);
    const outcome = await new Promise<'answered' | 'closed'>((resolve) => {
      s.once('data', () => resolve('answered'));
      s.once('close', () => resolve('closed'));
    });
    return { outcome, s };
  }

  test('past limits.maxHandshakes a connection is closed after its ClientHello, before any handshake byte; a freed slot serves again', async () => {
    const { g } = await servedGateway('hs-limit', { maxHandshakes: 5, helloTimeout: 10_000 });
    const hello = await clientHello();
    // five handshakes that never finish: a ClientHello, then silence
    const stalled = await Promise.all(Array.from({ length: 5 }, () => offerHello(g, hello)));
    expect(stalled.map((x) => x.outcome)).toEqual(Array(5).fill('answered'));
    expect((await offerHello(g, hello)).outcome).toBe('closed');
    expect(await refusedCount(g, 'handshake-limit')).toBe(1);
    for (const x of stalled) x.s.destroy();
    const leaf = await issueLeaf(await mesh().intermediate('hs-peer'), {
      kind: 'gateway',
      name: 'hs-peer-gw',
    });
    await waitFor(async () => (await tunnelServes(g, leaf)) === 200, {
      timeoutMs: 5_000,
      what: 'a handshake to be admitted once the stalled ones closed',
    });
  });

  test('200 ClientHellos at once beyond handshakesPerSecond 50: the excess is closed before its handshake, the rest are answered, and a peer is served once the bucket refills', async () => {
    // every ClientHello comes from 127.0.0.1: the per-source share is set out of the way
    const { g, web } = await servedGateway('hs-rate', {
      handshakesPerSecond: 50,
      maxHandshakes: 1_000,
      maxHandshakesPerSource: 1_000,
      handshakesPerSecondPerSource: 1_000,
      helloTimeout: 10_000,
    });
    const hello = await clientHello();
    const offers = await Promise.all(Array.from({ length: 200 }, () => offerHello(g, hello)));
    const answered = offers.filter((x) => x.outcome === 'answered').length;
    for (const x of offers) x.s.destroy();
    // a burst of 50, and 50 more a second while the 200 arrive
    expect(answered).toBeGreaterThanOrEqual(50);
    expect(answered).toBeLessThan(200);
    expect(await refusedCount(g, 'handshake-rate')).toBe(200 - answered);
    const peer = await issueLeaf(await mesh().intermediate('hs-peer2'), {
      kind: 'gateway',
      name: 'hs-peer2-gw',
    });
    await waitFor(async () => (await tunnelServes(g, peer, web)) === 200, {
      timeoutMs: 5_000,
      what: 'a tunnel handshake to be admitted again, and its GET answered',
    });
  });
});

describe('TLS handshake admission and resumption', () => {
  test('regression: a peer that dials per request (tunnelMaxRequestsPerConnection: 1) resumes its sessions and is not held to handshakesPerSecond', async () => {
    const { g, web } = await servedGateway('hs-resume', { handshakesPerSecond: 10, maxHandshakes: 1_000 });
    const dialer = await mesh().gateway('hs-dialer', { config: { tunnelMaxRequestsPerConnection: 1 } });
    closing(() => dialer.close());
    dialer.catalog.offer('hs-resume', web, g.eastWest);
    const statuses: number[] = [];
    // 60 requests, each on a connection of its own: 6 times the bucket's burst, in about a second
    for (let i = 0; i < 12; i++) {
      const batch = await Promise.all(
        Array.from({ length: 5 }, () => request(dialer.egress, { host: 'web.shop.svc.clusterset.local' })),
      );
      statuses.push(...batch.map((r) => r.status));
    }
    // (before: 39 of the 60 failed)
    expect(statuses.filter((x) => x !== 200)).toEqual([]);
    // a dial begun before a ticket is in hand is a full handshake: on a loaded host a few of them may meet
    // the bucket and be refused (and dialled again); never most of them
    expect(await refusedCount(g, 'handshake-rate')).toBeLessThanOrEqual(10);
  });

  test('twelve workloads resuming their egress mTLS sessions at once are all admitted with handshakesPerSecond 10 (a ticket of ours costs a twentieth when admitted)', async () => {
    const g = await mesh().gateway('hs-egress', {
      config: { egress: { clientAuth: 'required' }, limits: { handshakesPerSecond: 10 } },
    });
    closing(() => g.close());
    const app = await issueLeaf(await mesh().intermediate('hs-egress'), {
      kind: 'workload',
      namespace: 'shop',
      serviceAccount: 'app',
    });
    const { host, port } = splitAddr(g.egress);
    const dial = (session?: Buffer) =>
      new Promise<{ ticket: Buffer | undefined; resumed: boolean }>((resolve) => {
        let ticket: Buffer | undefined;
        const s = tls.connect({
          host,
          port,
          ca: mesh().bundle.toPem(),
          cert: app.chainPem,
          key: app.keyPem,
          checkServerIdentity: () => undefined,
          ...(session ? { session } : {}),
        });
        s.on('session', (t: Buffer) => {
          ticket = t;
        });
        s.on('error', () => undefined);
        s.once('secureConnect', () => {
          const resumed = s.isSessionReused();
          // TLS 1.3 sends the ticket after the handshake: wait for it on the first dial
          if (session || ticket) {
            s.destroy();
            resolve({ ticket, resumed });
          } else
            s.once('session', (t: Buffer) => {
              s.destroy();
              resolve({ ticket: t, resumed });
            });
        });
        s.once('close', () => resolve({ ticket, resumed: false }));
      });
    const first = await dial();
    expect(first.ticket).toBeDefined();
    // one full handshake spent: nine tokens left, and twelve dials under way at once
    const resumed = await Promise.all(Array.from({ length: 12 }, () => dial(first.ticket)));
    expect(resumed.map((r) => r.resumed)).toEqual(Array(12).fill(true));
    expect(await refusedCount(g, 'handshake-rate')).toBe(0);
  });
});

describe('slowloris', () => {
  test('50 clients sending a header byte at a time are all cut at headersTimeout while a legitimate request is served', async () => {
    const { g } = await servedGateway('slow-heads', { headersTimeout: 1_000 });
    const t0 = Date.now();
    let connected = 0;
    const cut = Promise.all(
      Array.from({ length: 50 }, async () => {
        const s = net.connect(splitAddr(g.egress));
        s.on('error', () => undefined);
        closing(() => s.destroy());
        await new Promise((r) => s.once('connect', r));
        connected++;
        const head = 'GET / HTTP/1.1\r\nHost: web.shop.svc.clusterset.local\r\nX-Slow: ';
        let i = 0;
        const drip = setInterval(() => s.write(head[i++] ?? 'a'), 100);
        await new Promise((r) => s.once('close', r));
        clearInterval(drip);
        return Date.now() - t0;
      }),
    );
    await waitFor(async () => connected === 50, { timeoutMs: 5_000, what: 'the 50 slow clients to connect' });
    const ok = await request(g.egress, { host: 'web.shop.svc.clusterset.local' });
    expect(ok.status).toBe(200);
    const cutAfter = await cut;
    // cut at the head timeout (checked once a second at most), never held on
    expect(Math.max(...cutAfter)).toBeLessThan(4_000);
    expect(await refusedCount(g, 'head-timeout')).toBeGreaterThanOrEqual(50);
  });
});
