import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { waitFor } from '../../core/index.ts';
import { CLOSING_NOTICE, isDrainNotice } from '../../gateway/drain.ts';
import { echoServer, fastGatewayServer, httpService, meshOfFile, request } from './harness.ts';

// A gateway that drains (SIGTERM, a rolling restart) must lose nothing: its peers stop choosing it from its
// in-band notice (GOAWAY, a response header), and what crossed its close is sent elsewhere. Found by the chaos
// rolling-restart scenario (503s, 502s and cut connections while a gateway of west restarted).

const HOST = 'orders.shop.svc.clusterset.local';
const { mesh, closing } = meshOfFile();

/**
 * A stand-in remote gateway of cluster `spy` on the fast path that answers the first request of each
 * connection (keep-alive, so the caller pools it) and meets any later one the way a draining gateway's idle
 * close meets a request crossing it: CLOSING_NOTICE, then the close, the request unread.
 */
async function closingFastGateway(): Promise<{ address: string; answered: number; crossed: number }> {
  const state = { address: '', answered: 0, crossed: 0 };
  const server = await fastGatewayServer(mesh(), 'spy');
  server.on('secureConnection', (socket) => {
    let first = true;
    let pending = '';
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      const end = pending.indexOf('\r\n\r\n');
      if (end === -1) return;
      const length = Number(/content-length: *(\d+)/i.exec(pending.slice(0, end))?.[1] ?? 0);
      if (pending.length < end + 4 + length) return;
      pending = pending.slice(end + 4 + length);
      if (first) {
        first = false;
        state.answered++;
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nspy');
        return;
      }
      state.crossed++;
      socket.removeAllListeners('data');
      socket.end(CLOSING_NOTICE, 'latin1');
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  closing(() => server.close());
  state.address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

/** beta serving orders.shop from an echo backend labelled `label` */
async function servingGateway(cluster: string, label: string, config: Record<string, unknown> = {}) {
  const echo = await echoServer(label);
  closing(() => echo.server.close());
  const g = await mesh().gateway(cluster, { config });
  g.source.set([httpService('shop', 'orders', [echo.address])]);
  closing(() => g.close());
  return g;
}

test('regression: a POST on a pooled fast-path connection that a draining gateway closes as the request crosses is sent to another cluster whole', async () => {
  const spy = await closingFastGateway();
  const beta = await servingGateway('beta', 'beta-echo');
  const alpha = await mesh().gateway('alpha');
  closing(() => alpha.close());
  const svc = httpService('shop', 'orders', []);
  // the spy in alpha's own zone takes every request while it is healthy; beta, farther, takes the retries
  alpha.catalog.offer('spy', svc, spy.address, { region: 'alpha-region', zone: 'alpha-zone' });
  alpha.catalog.offer('beta', svc, beta.eastWest);
  const body = Buffer.alloc(3_000, 7);
  const first = await request(alpha.egress, { host: HOST, method: 'POST', body });
  expect([first.status, first.body]).toEqual([200, 'spy']);
  // the second goes on the pooled connection, which the spy closes as it crosses
  const second = await request(alpha.egress, { host: HOST, method: 'POST', body });
  expect(spy.crossed).toBe(1);
  expect(second.status).toBe(200);
  expect(JSON.parse(second.body)).toMatchObject({ label: 'beta-echo', method: 'POST', size: body.length });
  // the spy said it drains: no new request goes to it
  const answered = spy.answered;
  for (let i = 0; i < 10; i++) {
    const r = await request(alpha.egress, { host: HOST, method: 'POST', body });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).label).toBe('beta-echo');
  }
  expect(spy.answered).toBe(answered);
  expect(spy.crossed).toBe(1);
}, 60_000);

test.each([
  ['the fast path', true],
  ['the HTTP/2 tunnel', false],
])(
  'regression: a gateway drained under load through %s loses no request, and its peer stops choosing it',
  async (_name, fastPath) => {
    const beta = await servingGateway(`beta${fastPath ? 'f' : 't'}`, 'beta-echo', { fastPath });
    const gamma = await servingGateway(`gamma${fastPath ? 'f' : 't'}`, 'gamma-echo', { fastPath });
    const alpha = await mesh().gateway(`alpha${fastPath ? 'f' : 't'}`, { config: { fastPath } });
    closing(() => alpha.close());
    const svc = httpService('shop', 'orders', []);
    alpha.catalog.offer(beta.cluster, svc, beta.eastWest);
    alpha.catalog.offer(gamma.cluster, svc, gamma.eastWest);
    const failures: string[] = [];
    const served = { before: new Set<string>(), after: [] as string[] };
    let phase: 'before' | 'draining' | 'after' | 'done' = 'before';
    // a bounded load: 8 callers, each a POST after the other, until a moment after beta stopped (at most 30 s)
    const deadline = Date.now() + 30_000;
    const caller = async () => {
      while (phase !== 'done' && Date.now() < deadline) {
        const at = phase;
        const r = await request(alpha.egress, { host: HOST, method: 'POST', body: 'x'.repeat(100) }).catch(
          (err: Error) => ({ status: 0, body: err.message, headers: {} }),
        );
        if (r.status !== 200) failures.push(`${at}: ${r.status} ${r.body.slice(0, 200)}`);
        else if (at === 'after') served.after.push(JSON.parse(r.body).label);
        else if (at === 'before') served.before.add(JSON.parse(r.body).label);
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, caller));
    await waitFor(() => served.before.has('beta-echo'), { timeoutMs: 10_000, what: 'beta to serve' });
    // what the daemon does on SIGTERM: the drain, then the stop that cuts whatever is left
    phase = 'draining';
    await beta.gateway.drain(5_000, 2_000);
    phase = 'after';
    await beta.gateway.stop();
    await waitFor(() => served.after.length + failures.length >= 20, {
      timeoutMs: 10_000,
      what: 'load after the drain',
    });
    phase = 'done';
    await load;
    expect(failures).toEqual([]);
    // once beta's notice reached alpha, alpha sent it nothing more
    expect(served.after.every((l) => l === 'gamma-echo')).toBe(true);
  },
  60_000,
);

test('an HTTP/1.1 client of a draining gateway is told connection: close on its answer, and is never cut mid-request', async () => {
  const beta = await servingGateway('delta', 'delta-echo');
  const alpha = await mesh().gateway('epsilon');
  closing(() => alpha.close());
  alpha.catalog.offer(beta.cluster, httpService('shop', 'orders', []), beta.eastWest);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  closing(() => agent.destroy());
  const get = () =>
    new Promise<{ status: number; connection: string | undefined; socket: Socket }>((resolve, reject) => {
      const i = alpha.egress.lastIndexOf(':');
      const req = http.get(
        { host: '127.0.0.1', port: Number(alpha.egress.slice(i + 1)), headers: { host: HOST }, agent },
        (res) => {
          res.resume();
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, socket: req.socket! }),
          );
        },
      );
      req.on('error', reject);
    });
  const first = await get();
  expect(first.status).toBe(200);
  expect(first.connection).not.toBe('close');
  const closed = new Promise((r) => first.socket.once('close', r));
  const drain = alpha.gateway.drain(5_000, 3_000);
  // during the notice the same keep-alive connection is still served, and told to close
  const during = await get();
  expect(during.socket).toBe(first.socket);
  expect(during.status).toBe(200);
  expect(during.connection).toBe('close');
  await closed;
  await drain;
}, 30_000);

test('an HTTP/2 (h2c) client of a draining gateway gets a GOAWAY that says why', async () => {
  const beta = await servingGateway('zeta', 'zeta-echo');
  const alpha = await mesh().gateway('eta');
  closing(() => alpha.close());
  alpha.catalog.offer(beta.cluster, httpService('shop', 'orders', []), beta.eastWest);
  const session = http2.connect(`http://${alpha.egress}`);
  closing(() => session.destroy());
  const goaway = new Promise<Buffer | undefined>((r) =>
    session.once('goaway', (_code: number, _last: number, data?: Buffer) => r(data)),
  );
  const get = () =>
    new Promise<number>((resolve, reject) => {
      const s = session.request({ ':path': '/', ':authority': HOST });
      s.on('response', (h) => resolve(Number(h[':status'])));
      s.on('error', reject);
      s.resume();
    });
  expect(await get()).toBe(200);
  const drain = alpha.gateway.drain(5_000, 3_000);
  expect(isDrainNotice(await goaway)).toBe(true);
  await drain;
});

test('a peer holding only an idle connection to a draining gateway learns of the drain from its close', async () => {
  const beta = await servingGateway('theta', 'theta-echo');
  const alpha = await mesh().gateway('iota');
  closing(() => alpha.close());
  alpha.catalog.offer(beta.cluster, httpService('shop', 'orders', []), beta.eastWest);
  // one request leaves a pooled fast-path connection to beta; nothing is in flight during the drain
  expect((await request(alpha.egress, { host: HOST })).status).toBe(200);
  const state = () =>
    alpha.balancers.explain('shop', 'orders').levels.flatMap((l) => l.targets.map((t) => t.state));
  expect(state()).toEqual(['healthy']);
  await beta.gateway.drain(5_000, 2_000);
  await waitFor(() => state()[0] !== 'healthy', { timeoutMs: 5_000, what: 'alpha to stop choosing beta' });
});
