import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { H1Pool } from '../../gateway/h1/pool.ts';
import type { TunnelCredentials } from '../../gateway/h2-pool.ts';

// What the network-partition chaos scenario found on a loaded host: the cluster traffic had failed over to
// was ejected for connect failures of dials that had in fact connected. When the event loop stalls past a
// connect timeout, node runs the expired timer before it reads the I/O that completed meanwhile, so the
// timeout won; it now waits for the poll phase (as the per-try timeout does).

/** the event loop does nothing else for `ms` (a GC pause, a starved CPU) */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy: no timer, no I/O runs
  }
}

/** plain TCP: these tests dial local endpoints, which need no credentials */
const NO_CREDS = {} as TunnelCredentials;

async function listening(server: net.Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('regression: a fast-path dial that connected while the loop stalled past timeouts.connect is not failed as a connect timeout', async () => {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => sockets.push(s));
  const address = await listening(server);
  const pool = new H1Pool({
    connectTimeoutMs: 50,
    idleTimeoutMs: 1_000,
    gatewayIdleTimeoutMs: 1_000,
    exchangeIdleMs: 1_000,
    maxIdlePerKey: 4,
    maxDialsPerKey: 4,
    maxRequestsPerConnection: 0,
    creds: NO_CREDS,
  });
  try {
    const dial = pool.acquire(address);
    stall(300);
    const c = await dial;
    expect(c.socket.remotePort).toBe(Number(address.split(':')[1]));
  } finally {
    pool.close();
    for (const s of sockets) s.destroy();
    server.close();
  }
});
