import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BodyReplay, canResend, REPLAY_LIMIT_BYTES } from '../../gateway/upstream/body-replay.ts';
import { createMesh, echoServer, FAST_PATH, httpService, request, type TestGateway } from './harness.ts';

// A retry after a try that consumed the request body sends the body the first try recorded: a PUT whose
// first endpoint hangs reaches the second with its whole body. A body that cannot be recorded whole
// (too large, framed in chunks on the fast path, or streamed by undici to a local HTTP/1.1 endpoint without
// the fast path) is never sent again.

describe('BodyReplay', () => {
  test('a whole body within the bound is replayable; one past it, or still arriving, is not', () => {
    const small = new BodyReplay();
    small.record(Buffer.from('abc'));
    expect(small.replayable).toBe(false);
    small.end();
    expect(small.replayable).toBe(true);
    expect(Buffer.concat(small.chunks).toString()).toBe('abc');
    const large = new BodyReplay();
    large.record(Buffer.alloc(REPLAY_LIMIT_BYTES + 1));
    large.end();
    expect(large.replayable).toBe(false);
    expect(large.chunks).toHaveLength(0);
    expect(canResend({ hasBody: true })).toBe(true);
    expect(canResend({ hasBody: true, replay: large })).toBe(false);
    expect(canResend({ hasBody: true, replay: BodyReplay.unrecorded() })).toBe(false);
    expect(canResend({ hasBody: false, replay: large })).toBe(true);
  });
});

// the fast path records the body it streams; undici (the HTTP/1.1 codec without it) does not
const fastPathOnly = FAST_PATH ? describe : describe.skip;

fastPathOnly('a retry resends the recorded body', () => {
  let g: TestGateway;
  let echo: Awaited<ReturnType<typeof echoServer>>;
  const hung = new Set<http.ServerResponse>();
  let hang: http.Server;

  beforeAll(async () => {
    const mesh = await createMesh();
    g = await mesh.gateway('alpha', {
      balancer: { timeouts: { request: '1s' }, outlier: { consecutiveFailures: 1000 } },
    });
    hang = http.createServer((req, res) => {
      req.resume();
      hung.add(res);
    });
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    echo = await echoServer('echo');
    const hangAddress = `127.0.0.1:${(hang.address() as AddressInfo).port}`;
    // one service per test: each starts with no outlier or latency history
    g.source.set(
      ['upload', 'upload-large'].map((name) => httpService('shop', name, [hangAddress, echo.address])),
    );
  }, 30_000);

  afterAll(async () => {
    for (const res of hung) res.destroy();
    await g?.close();
    hang?.close();
    echo?.server.close();
  });

  /** PUTs until a call meets the hung endpoint first (the balancer's first pick is random); bounded */
  async function putMeetingTheHungEndpoint(service: string, body: Buffer) {
    for (let i = 0; i < 40; i++) {
      const before = hung.size;
      const r = await request(g.egress, {
        host: `${service}.shop.svc.clusterset.local`,
        method: 'PUT',
        body,
      });
      if (hung.size > before) return r;
    }
    throw new Error('no PUT met the hung endpoint in 40 calls');
  }

  test('a PUT whose first try times out reaches the other endpoint with its whole body', async () => {
    const r = await putMeetingTheHungEndpoint('upload', Buffer.alloc(10_000, 7));
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ label: 'echo', method: 'PUT', size: 10_000 });
  });

  test('a body past the replay bound is not sent again: the timeout reaches the caller', async () => {
    const r = await putMeetingTheHungEndpoint('upload-large', Buffer.alloc(REPLAY_LIMIT_BYTES + 1));
    expect(r.status).toBe(504);
  });
});
