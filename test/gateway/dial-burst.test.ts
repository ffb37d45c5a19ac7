import net, { type AddressInfo } from 'node:net';
import { waitFor } from '../../core/index.ts';
import { MAX_DIALS_PER_GATEWAY } from '../../gateway/h1/upstream.ts';
import { createMesh, echoServer, FAST_PATH, httpService, request } from './harness.ts';

// A failover moves a whole share of the load to another gateway at once: the fast path dialled a connection
// (a TLS handshake) per request in flight, which on a loaded host timed out past timeouts.connect (chaos
// rolling-restart, 503 connect-failed after a gateway's exit). Past MAX_DIALS_PER_GATEWAY dials under way,
// a request takes the multiplexed tunnel session instead.

const closers: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

(FAST_PATH ? test : test.skip)(
  'regression: a burst of requests to a cold remote gateway opens a few connections, not one per request, and every request is served',
  async () => {
    const mesh = await createMesh();
    const echo = await echoServer('beta-echo');
    closers.push(() => echo.server.close());
    const beta = await mesh.gateway('beta');
    closers.push(() => beta.close());
    beta.source.set([httpService('shop', 'orders', [echo.address])]);
    const alpha = await mesh.gateway('alpha', { balancer: { timeouts: { connect: '10s' } } });
    closers.push(() => alpha.close());
    // every connection alpha opens to beta goes through this counter, which holds them until all the
    // burst's requests wait in alpha (as a loaded host delays handshakes): each meets the dials under way
    const burst = 40;
    let connections = 0;
    let waiting: (() => void)[] | undefined = [];
    const port = Number(beta.eastWest.slice(beta.eastWest.lastIndexOf(':') + 1));
    const proxy = net.createServer((client) => {
      connections++;
      const pipe = () => {
        const upstream = net.connect({ host: '127.0.0.1', port });
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
        client.pipe(upstream).pipe(client);
      };
      if (waiting) waiting.push(pipe);
      else pipe();
    });
    proxy.listen(0, '127.0.0.1');
    await new Promise((r) => proxy.once('listening', r));
    closers.push(() => proxy.close());
    alpha.catalog.offer(
      'beta',
      httpService('shop', 'orders', []),
      `127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    );
    const inAlpha = alpha.registry.getSingleMetric('meshfed_active_requests')!;
    const release = async () => {
      await waitFor(async () => (await inAlpha.get()).values[0]!.value >= burst, {
        timeoutMs: 10_000,
        what: 'every request of the burst to wait in alpha',
      });
      for (const p of waiting!.splice(0)) p();
      waiting = undefined;
    };
    const [answers] = await Promise.all([
      Promise.all(
        Array.from({ length: burst }, () =>
          request(alpha.egress, { host: 'orders.shop.svc.clusterset.local' }),
        ),
      ),
      release(),
    ]);
    expect(answers.map((a) => a.status)).toEqual(Array(burst).fill(200));
    // MAX_DIALS_PER_GATEWAY fast-path dials and the tunnel's sessions while they were held, then the
    // pool grows a few at a time: never one connection per request
    expect(connections).toBeLessThanOrEqual(MAX_DIALS_PER_GATEWAY + 2);
  },
  30_000,
);
