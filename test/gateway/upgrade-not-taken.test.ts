import net from 'node:net';
import { createMesh, httpService, type Mesh, type TestGateway } from './harness.ts';
import { recordingBackend } from './h1/raw-client.ts';

// An Upgrade the gateway does not take (it forwards the request as a plain one, hop-by-hop fields removed) is
// answered on node's HTTP/1.1 server, which reads nothing more on that connection afterwards: the gateway closes
// it after the answer, so a keep-alive client is not left waiting for its timeouts on a connection nobody reads.

const HOST = 'echo.shop.svc.clusterset.local';
let mesh: Mesh;
let fast: TestGateway;
let node: TestGateway;
let backend: Awaited<ReturnType<typeof recordingBackend>>;

beforeAll(async () => {
  mesh = await createMesh();
  backend = await recordingBackend();
  // the fast path hands an Upgrade to node's server; without it, node's server takes every request
  fast = await mesh.gateway('alpha', { config: { fastPath: true } });
  node = await mesh.gateway('alpha', { config: { fastPath: false } });
  for (const g of [fast, node]) g.source.set([httpService('shop', 'echo', [backend.address])]);
});

afterAll(async () => {
  await Promise.all([fast?.close(), node?.close()]);
  backend?.close();
});

/** sends `bytes`, and resolves with what came back once the gateway ends the connection (or after 5 s) */
function exchange(address: string, bytes: string): Promise<{ received: string; ended: boolean }> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = net.connect(Number(address.slice(i + 1)), address.slice(0, i));
    let received = '';
    const done = (ended: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ received, ended });
    };
    const timer = setTimeout(() => done(false), 5_000);
    s.on('data', (d: Buffer) => {
      received += d.toString('latin1');
    });
    s.on('end', () => done(true));
    s.on('error', () => done(true));
    s.write(bytes, 'latin1');
  });
}

test.each([
  ['the fast path (handed to node)', () => fast],
  ['node’s server', () => node],
])('an Upgrade not taken on %s: answered, then the connection is closed', async (_, gw) => {
  const r = await exchange(
    gw().egress,
    `GET / HTTP/1.1\r\nHost: ${HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`,
  );
  expect(r.received).toMatch(/^HTTP\/1\.1 \d{3} /);
  expect(r.received.toLowerCase()).toContain('connection: close');
  expect(r.ended).toBe(true);
});
