import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { waitFor } from '../../core/index.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import { type GatewayProcess, startGatewayProcess } from './daemon-process.ts';
import { request } from './harness.ts';

// Graceful drain of a real `meshfed gateway` process on SIGTERM.

let nats: NatsServerProcess;
/** a backend whose /slow answers only when the test releases it */
let backend: http.Server;
let address: string;
const held: http.ServerResponse[] = [];

beforeAll(async () => {
  nats = await startNatsServer({ name: 'drain' });
  backend = http.createServer((req, res) => {
    if (req.url === '/slow') held.push(res);
    else res.end('fast');
  });
  backend.listen(0, '127.0.0.1');
  await new Promise((r) => backend.once('listening', r));
  address = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
}, 30_000);

afterAll(async () => {
  for (const r of held) r.destroy();
  backend?.closeAllConnections();
  backend?.close();
  await nats?.stop();
});

function refused(addr: string): Promise<boolean> {
  const i = addr.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = net.connect({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)) });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

async function slowCallInFlight(gw: GatewayProcess) {
  const before = held.length;
  const call = request(gw.egress, { host: 'web.shop.svc.clusterset.local', path: '/slow' }).catch(
    (err: Error) => ({ status: 0, body: err.message, headers: {} }),
  );
  await waitFor(() => held.length === before + 1, { timeoutMs: 10_000 });
  // wrapped: an async function returning the promise itself would wait for the answer
  return { call };
}

/**
 * `p`, or a failure that says which step did not end and what the gateway process wrote, well before the
 * test's own bound (a bare jest timeout says neither)
 */
function within<T>(p: Promise<T>, ms: number, step: string, gw: GatewayProcess): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${step}: not within ${ms} ms; the gateway process wrote:\n${gw.output()}`)),
      ms,
    );
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

test.each([1, 2])(
  'workers: %i: SIGTERM refuses new connections, lets the request in flight finish, then exits 0',
  async (workers) => {
    const gw = await startGatewayProcess({
      natsUrl: nats.url,
      services: { web: address },
      // the request in flight is released only after the checks below: a loaded host must not reach the bound first
      config: { workers, drainTimeout: '60s', observability: { logLevel: 'info' } },
    });
    expect((await request(gw.egress, { host: 'web.shop.svc.clusterset.local' })).body).toBe('fast');
    const { call } = await slowCallInFlight(gw);
    const exited = new Promise<number | null>((r) => gw.child.once('exit', (code) => r(code)));
    gw.child.kill('SIGTERM');
    // each listener (each worker's, with workers) stops on its own: wait for both, not one then the other at once
    await waitFor(async () => (await refused(gw.egress)) && (await refused(gw.eastWest)), {
      timeoutMs: 10_000,
    });
    const ready = await request(gw.admin, { host: gw.admin, path: '/readyz' });
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body).status).toBe('draining');
    // still draining: the process waits for the request
    expect(gw.child.exitCode).toBeNull();
    held.shift()!.end('slow done');
    const r = await within(call, 20_000, 'the answer to the request in flight', gw);
    expect(r.status).toBe(200);
    expect(r.body).toBe('slow done');
    expect(await within(exited, 25_000, 'the exit after the drain', gw)).toBe(0);
  },
  60_000,
);

test('a request that outlasts drainTimeout is cut and the process still exits 0 within the bound', async () => {
  const gw = await startGatewayProcess({
    natsUrl: nats.url,
    services: { web: address },
    config: { drainTimeout: '1s' },
  });
  const { call } = await slowCallInFlight(gw);
  const exited = new Promise<number | null>((r) => gw.child.once('exit', (code) => r(code)));
  const t0 = Date.now();
  gw.child.kill('SIGTERM');
  expect(await exited).toBe(0);
  const elapsed = Date.now() - t0;
  // it waited for the request (the bound), and not much longer than the bound plus the shutdown
  expect(elapsed).toBeGreaterThanOrEqual(900);
  expect(elapsed).toBeLessThan(1_000 + 10_000);
  const r = await call;
  expect(r.status).not.toBe(200);
  held.shift()?.destroy();
}, 60_000);
