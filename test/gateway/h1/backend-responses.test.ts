import net, { type AddressInfo } from 'node:net';
import { createMesh, httpService, type Mesh, request, type TestGateway } from '../harness.ts';

// What a backend (a workload of the serving cluster: untrusted) answers, through both fast-path gateways:
// a response whose framing node's parser refuses is a 502 at the caller, never passed on, and the gateways
// go on serving. The codec's side of each case is in differential-response.test.ts; these are the two it
// found, through real gateways.

const HOST = 'raw.shop.svc.clusterset.local';
/** the backend's answer per request path; a path not listed gets a plain 200 */
const ANSWERS: Record<string, string> = {
  // an interim response that ends the connection (HTTP/1.0), then what reads as a final one: node refuses
  // the rest (HPE_CLOSED_CONNECTION); the gateway took it for the response
  '/interim-1.0': 'HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged',
  '/interim-close':
    'HTTP/1.1 103 Early Hints\r\nconnection: close\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged',
  // a response without a body by rule (to HEAD) still carries a Content-Length that is forwarded: an
  // invalid one was passed on (RFC 9110 8.6)
  '/head-bad-length': 'HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\n',
  '/head-length-and-chunked': 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n',
  // connection options (RFC 9110 7.6.1): the fields a Connection header names are for that hop only
  '/connection-listed':
    'HTTP/1.1 200 OK\r\nconnection: x-hop-secret\r\nx-hop-secret: s3cret\r\nx-kept: 1\r\ncontent-length: 5\r\n\r\nhello',
  '/connection-listed-length':
    'HTTP/1.1 200 OK\r\nconnection: content-length, x-hop-secret\r\nx-hop-secret: s3cret\r\nx-kept: 1\r\ncontent-length: 5\r\n\r\nhello',
};
const PLAIN = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';

let mesh: Mesh;
let alpha: TestGateway;
let beta: TestGateway;
let backend: net.Server;
let served = 0;

beforeAll(async () => {
  // one answer per connection, then the backend closes it: no answer is read as another request's
  backend = net.createServer((s) => {
    s.on('error', () => undefined);
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      served++;
      const path = head.split(' ', 2)[1] ?? '/';
      s.end(ANSWERS[path] ?? PLAIN);
    });
  });
  backend.listen(0, '127.0.0.1');
  await new Promise((r) => backend.once('listening', r));
  const address = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
  mesh = await createMesh();
  alpha = await mesh.gateway('alpha', { config: { fastPath: true } });
  beta = await mesh.gateway('beta', { config: { fastPath: true } });
  const raw = httpService('shop', 'raw', [address]);
  beta.source.set([raw]);
  alpha.catalog.offer('beta', raw, beta.eastWest);
});

afterAll(async () => {
  await Promise.all([alpha?.close(), beta?.close()]);
  backend?.close();
});

test.each([
  ['GET', '/interim-1.0'],
  ['GET', '/interim-close'],
  ['HEAD', '/head-bad-length'],
  ['HEAD', '/head-length-and-chunked'],
])(
  'a backend answering %s %s with framing node refuses: 502 at the caller, nothing of it passed on',
  async (method, path) => {
    const before = served;
    const res = await request(alpha.egress, { host: HOST, method, path });
    expect(served).toBeGreaterThan(before);
    expect(res.status).toBe(502);
    expect(res.body).not.toContain('forged');
    expect(res.headers['content-length']).not.toBe('abc');
    // and both gateways still serve
    const next = await request(alpha.egress, { host: HOST, path: '/' });
    expect([next.status, next.body]).toEqual([200, 'ok']);
  },
);

test.each([
  ['/connection-listed', 'a header the backend named in Connection'],
  ['/connection-listed-length', 'a Content-Length the backend named in Connection'],
])('%s: %s stays on the backend’s hop; the body arrives whole', async (path) => {
  const res = await request(alpha.egress, { host: HOST, path });
  expect([res.status, res.body]).toEqual([200, 'hello']);
  expect(res.headers['x-hop-secret']).toBeUndefined();
  expect(res.headers['x-kept']).toBe('1');
  // the length the body is forwarded in, stated by the gateway (not re-framed chunked)
  expect(res.headers['content-length']).toBe('5');
});
