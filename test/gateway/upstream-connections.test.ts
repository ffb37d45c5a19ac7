import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createRoot, issueIntermediate, issueLeaf, TrustBundle } from '../../ca/index.ts';
import { createRegistry, type Registry, waitFor } from '../../core/index.ts';
import { H2Pool } from '../../gateway/h2-pool.ts';
import { UpstreamConnections } from '../../gateway/upstream-connections.ts';
import { plainPool, tcpServer, westAndPool } from './h1/west-gateway.ts';

// The connections a gateway dials, as an operator reads them: meshfed_upstream_connects_total (each dial, by how
// it ended) and meshfed_upstream_connections (open now), per destination cluster and protocol. The fast path
// against a gateway of the previous version (tunnel-only) is covered end to end in h1/fast-path.test.ts.

type Labels = Record<string, string | number>;

async function values(registry: Registry, name: string): Promise<{ labels: Labels; value: number }[]> {
  const family = await registry.getSingleMetric(name)?.get();
  return (family?.values ?? []) as { labels: Labels; value: number }[];
}

async function value(registry: Registry, name: string, labels: Labels): Promise<number | undefined> {
  const want = Object.entries(labels);
  return (await values(registry, name)).find((v) => want.every(([k, x]) => v.labels[k] === x))?.value;
}

/** a port nothing listens on (bound, then closed) */
async function closedPort(): Promise<string> {
  const srv = net.createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return `127.0.0.1:${port}`;
}

test('the fast path’s plain connections are counted as dialled, open while open, and gone once closed', async () => {
  const registry = createRegistry();
  const connections = new UpstreamConnections(registry, 'east');
  const pool = plainPool({ connections });
  const server = await tcpServer();
  try {
    const [a, b] = await Promise.all([pool.acquire(server.address), pool.acquire(server.address)]);
    const local = { source_cluster: 'east', destination_cluster: 'east', protocol: 'http1' };
    expect(await value(registry, 'meshfed_upstream_connects_total', { ...local, result: 'new' })).toBe(2);
    expect(await value(registry, 'meshfed_upstream_connections', local)).toBe(2);
    a!.socket.destroy();
    await waitFor(async () => (await value(registry, 'meshfed_upstream_connections', local)) === 1, {
      timeoutMs: 5_000,
    });
    // a connection closed twice (its close and a pool's sweep) leaves the gauge once
    b!.socket.destroy();
    await waitFor(async () => (await value(registry, 'meshfed_upstream_connections', local)) === 0, {
      timeoutMs: 5_000,
    });
    expect(await value(registry, 'meshfed_upstream_connects_total', { ...local, result: 'new' })).toBe(2);
  } finally {
    pool.close();
    server.close();
  }
});

test('a dial refused is counted once as failed, and opens nothing', async () => {
  const registry = createRegistry();
  const connections = new UpstreamConnections(registry, 'east');
  const pool = plainPool({ connections });
  const address = await closedPort();
  try {
    await expect(pool.acquire(address)).rejects.toThrow(/connect to/);
    const local = { source_cluster: 'east', destination_cluster: 'east', protocol: 'http1' };
    expect(await value(registry, 'meshfed_upstream_connects_total', { ...local, result: 'failed' })).toBe(1);
    expect(await value(registry, 'meshfed_upstream_connects_total', { ...local, result: 'new' })).toBe(
      undefined,
    );
    expect(await value(registry, 'meshfed_upstream_connections', local)).toBe(undefined);
  } finally {
    pool.close();
  }
});

test('h2c sessions to a local endpoint are counted like the fast path’s connections, by their own protocol', async () => {
  const registry = createRegistry();
  const connections = new UpstreamConnections(registry, 'east');
  const server = http2.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const pool = new H2Pool({ size: 1, connectTimeoutMs: 5_000, connections });
  try {
    const session = await pool.session(address);
    const h2c = { source_cluster: 'east', destination_cluster: 'east', protocol: 'h2c' };
    expect(await value(registry, 'meshfed_upstream_connects_total', { ...h2c, result: 'new' })).toBe(1);
    expect(await value(registry, 'meshfed_upstream_connections', h2c)).toBe(1);
    session.destroy();
    await waitFor(async () => (await value(registry, 'meshfed_upstream_connections', h2c)) === 0, {
      timeoutMs: 5_000,
    });
    await expect(pool.session(await closedPort())).rejects.toThrow(/connect to/);
    expect(await value(registry, 'meshfed_upstream_connects_total', { ...h2c, result: 'failed' })).toBe(1);
  } finally {
    pool.close();
    server.close();
  }
});

test('two gateways on one registry keep series of their own; a stopped one leaves the gauge', async () => {
  const registry = createRegistry();
  const east = new UpstreamConnections(registry, 'east');
  const west = new UpstreamConnections(registry, 'west');
  const closeEast = east.opened('west', 'fast-path', true);
  west.opened('east', 'tunnel');
  west.failed('eu', 'fast-path', 'tunnel-only');
  expect(
    await value(registry, 'meshfed_upstream_connects_total', {
      source_cluster: 'east',
      destination_cluster: 'west',
      protocol: 'fast-path',
      result: 'resumed',
    }),
  ).toBe(1);
  expect(
    await value(registry, 'meshfed_upstream_connects_total', {
      source_cluster: 'west',
      destination_cluster: 'eu',
      protocol: 'fast-path',
      result: 'tunnel-only',
    }),
  ).toBe(1);
  closeEast();
  closeEast();
  expect(
    await value(registry, 'meshfed_upstream_connections', {
      source_cluster: 'east',
      destination_cluster: 'west',
    }),
  ).toBe(0);
  west.close();
  expect(
    await value(registry, 'meshfed_upstream_connections', {
      source_cluster: 'west',
      destination_cluster: 'east',
    }),
  ).toBe(undefined);
});

test('mTLS dials to a gateway are counted as new, then as resumed once a ticket from a verified connection is offered', async () => {
  const root = await createRoot({ trustDomain: 'meshfed.test' });
  const bundle = TrustBundle.fromPem(root.certPem);
  const leaf = await issueLeaf(await issueIntermediate(root, { cluster: 'east' }), {
    kind: 'gateway',
    name: 'east-gw',
  });
  const registry = createRegistry();
  const connections = new UpstreamConnections(registry, 'east');
  const w = await westAndPool(() => leaf, bundle, root, undefined, undefined, connections);
  const toWest = { source_cluster: 'east', destination_cluster: 'west', protocol: 'fast-path' };
  try {
    const first = await w.pool.acquire(w.address, 'west');
    w.hold(first.socket);
    // TLS 1.3 sends its ticket after the handshake
    await once(first.socket, 'session');
    expect(await value(registry, 'meshfed_upstream_connects_total', { ...toWest, result: 'new' })).toBe(1);
    first.socket.destroy();
    const second = await w.pool.acquire(w.address, 'west');
    w.hold(second.socket);
    expect(await value(registry, 'meshfed_upstream_connects_total', { ...toWest, result: 'resumed' })).toBe(
      1,
    );
    await waitFor(async () => (await value(registry, 'meshfed_upstream_connections', toWest)) === 1, {
      timeoutMs: 5_000,
    });
  } finally {
    w.close();
  }
}, 30_000);

test('requests waiting for a fast-path connection and the connections idle are read from the pool at each scrape', async () => {
  const registry = createRegistry();
  const connections = new UpstreamConnections(registry, 'east');
  const pool = plainPool({ connections, maxDialsPerKey: 1 });
  connections.watchPool(() => pool.usage());
  const server = await tcpServer();
  const local = { source_cluster: 'east', destination_cluster: 'east' };
  try {
    const waiting = [1, 2, 3].map(() => pool.acquire(server.address));
    // none idle, one dial at a time: all three wait for it
    expect(await value(registry, 'meshfed_upstream_requests_pending', local)).toBe(3);
    const held = await Promise.all(waiting);
    expect(await value(registry, 'meshfed_upstream_requests_pending', local)).toBe(0);
    expect(await value(registry, 'meshfed_upstream_connections_idle', local)).toBe(0);
    for (const c of held) pool.release(c);
    expect(await value(registry, 'meshfed_upstream_connections_idle', local)).toBe(3);
    expect(await value(registry, 'meshfed_upstream_connections', { ...local, protocol: 'http1' })).toBe(3);
  } finally {
    pool.close();
    server.close();
  }
});
