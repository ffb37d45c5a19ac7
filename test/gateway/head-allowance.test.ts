import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMesh, httpService, type Mesh, request, type TestGateway } from './harness.ts';

// A request head the caller's gateway accepts (limits.maxHeaderBytes, 100 fields on the HTTP/1.1 codec) is
// not refused by the remote gateway for what the first one added to it: the identity headers (the chain on a
// connection's first request), the service, the trace context, and HTTP/2's 32 bytes of overhead a field on
// the tunnel. Both gateways run the same limits, as a federation usually does.

const LIMIT = 32 * 1024;
let mesh: Mesh;
let alpha: TestGateway;
let fast: TestGateway;
let tunnel: TestGateway;
let backend: http.Server;
let seen = 0;

beforeAll(async () => {
  // a backend with room for what the gateways forward
  backend = http.createServer({ maxHeaderSize: 4 * LIMIT }, (req, res) => {
    seen = Object.keys(req.headers).filter((h) => h.startsWith('x-h-')).length;
    // /big-response: a response head just inside the limits (93 fields and node's date, connection, keep-alive
    // and transfer-encoding: 97 of 100)
    if (req.url === '/big-response') res.writeHead(200, filling(93, LIMIT - 600)).write('ok');
    else if (req.url === '/full-close-delimited') {
      // 100 fields, the codec's limit, and a body that ends with the connection: the remote gateway sends it
      // on chunked, one field more
      const lines = Object.entries(filling(100, LIMIT - 600)).map(([k, v]) => `${k}: ${v}\r\n`);
      res.socket?.end(`HTTP/1.1 200 OK\r\n${lines.join('')}\r\nok`);
      return;
    }
    res.end(req.url === '/big-response' ? '' : 'ok');
  });
  backend.listen(0, '127.0.0.1');
  await new Promise((r) => backend.once('listening', r));
  const address = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
  mesh = await createMesh();
  const limits = { maxHeaderBytes: LIMIT };
  alpha = await mesh.gateway('alpha', { config: { fastPath: true, limits } });
  fast = await mesh.gateway('fast', { config: { fastPath: true, limits } });
  tunnel = await mesh.gateway('tunnel', { config: { fastPath: false, limits } });
  const viaFast = httpService('shop', 'big', [address]);
  const viaTunnel = httpService('shop', 'big-tunnel', [address]);
  fast.source.set([viaFast]);
  tunnel.source.set([viaTunnel]);
  alpha.catalog.offer('fast', viaFast, fast.eastWest);
  alpha.catalog.offer('tunnel', viaTunnel, tunnel.eastWest);
});

afterAll(async () => {
  await Promise.all([alpha?.close(), fast?.close(), tunnel?.close()]);
  backend?.close();
});

/** `fields` header fields that fill a request head to about `bytes` in all */
function filling(fields: number, bytes: number): Record<string, string> {
  const each = Math.floor(bytes / fields) - 'x-h-00: \r\n'.length;
  const out: Record<string, string> = {};
  for (let i = 0; i < fields; i++) out[`x-h-${String(i).padStart(2, '0')}`] = 'v'.repeat(each);
  return out;
}

test.each([
  ['the fast path', 'big.shop.svc.clusterset.local'],
  ['the HTTP/2 tunnel', 'big-tunnel.shop.svc.clusterset.local'],
])('a head just inside the caller gateway’s limits reaches the backend through %s', async (_path, host) => {
  // 97 fields (with host and node's connection, 99 of the codec's 100) in 300 bytes less than the limit
  const headers = filling(97, LIMIT - 300);
  const res = await request(alpha.egress, { host, headers });
  expect([res.status, res.body]).toEqual([200, 'ok']);
  expect(seen).toBe(97);
});

test.each([
  ['the fast path', 'big.shop.svc.clusterset.local', '/big-response', 93],
  ['the HTTP/2 tunnel', 'big-tunnel.shop.svc.clusterset.local', '/big-response', 93],
  [
    'the fast path, re-framed by the remote gateway',
    'big.shop.svc.clusterset.local',
    '/full-close-delimited',
    100,
  ],
])(
  'a response head just inside the limits reaches the caller through %s',
  async (_path, host, path, fields) => {
    // a client with room for it (node's default is 16 KiB)
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const [h, p] = alpha.egress.split(':');
      http
        .get({ host: h, port: Number(p), path, headers: { host }, maxHeaderSize: 4 * LIMIT }, resolve)
        .on('error', reject);
    });
    let body = '';
    for await (const chunk of res) body += chunk;
    expect([res.statusCode, body]).toEqual([200, 'ok']);
    expect(Object.keys(res.headers).filter((h) => h.startsWith('x-h-'))).toHaveLength(fields);
  },
);
