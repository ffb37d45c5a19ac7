import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { waitFor } from '../../../core/index.ts';
import { FAST_PATH, httpService, meshOfFile, request, type TestGateway } from '../harness.ts';
import { type SilentRelay, silentRelay } from '../silent-relay.ts';

// A client that left after its whole request went out closed the pooled fast-path connection its request
// was on: each such client cost a TLS handshake later, on the event loop that serves every other request (a
// fixed-rate load client stopping with ten requests in flight left one of ten connections, and the next run
// began with nine handshakes). The rest of the response is now read and dropped, and the connection kept,
// when it ends within a bound of time and bytes; past the bound it closes as before.

const HOST = 'hello.shop.svc.clusterset.local';
const { mesh, closing } = meshOfFile();
let src: TestGateway;
let relay: SilentRelay;
let far: TestGateway;
let hello: ReturnType<typeof httpService>;
/** responses the backend holds until the test lets them go, by path */
const held = new Map<string, http.ServerResponse>();

beforeAll(async () => {
  const backend = http.createServer((req, res) => {
    if (req.url?.startsWith('/held')) held.set(req.url, res);
    else res.end('far');
  });
  backend.listen(0, '127.0.0.1');
  await new Promise((r) => backend.once('listening', r));
  closing(() => {
    backend.closeAllConnections();
    backend.close();
  });
  hello = httpService('shop', 'hello', [`127.0.0.1:${(backend.address() as AddressInfo).port}`]);
  far = await mesh().gateway('far');
  closing(() => far.close());
  far.source.set([hello]);
  // the relay between the two gateways counts the connections src makes to far
  relay = await silentRelay(far.eastWest);
  closing(() => relay.close());
  src = await mesh().gateway('src', { balancer: { timeouts: { idle: 60_000 } } });
  closing(() => src.close());
  src.catalog.offer('far', hello, relay.address);
}, 30_000);

function outstanding(via: TestGateway): number {
  return via.balancers
    .explain('shop', 'hello')
    .levels.flatMap((l) => l.targets)
    .reduce((n, t) => n + t.outstanding, 0);
}

/** sends `path` on a raw connection to `via`'s egress and closes it once the backend holds the request */
async function leaveAfterSending(path: string, via = src): Promise<http.ServerResponse> {
  const client = net.connect(Number(via.egress.split(':')[1]), '127.0.0.1');
  client.on('error', () => undefined);
  client.write(`GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  await waitFor(() => held.has(path), { timeoutMs: 10_000, what: `the backend holding ${path}` });
  client.destroy();
  // the try is over for src: the balancer counts nothing outstanding
  await waitFor(() => outstanding(via) === 0, { timeoutMs: 10_000, what: 'src to see the client gone' });
  return held.get(path)!;
}

(FAST_PATH ? test : test.skip)(
  'a client gone after its request was sent leaves the fast-path connection in the pool once the response ends',
  async () => {
    expect(await request(src.egress, { host: HOST })).toMatchObject({ status: 200, body: 'far' });
    expect(relay.connections()).toBe(1);
    const res = await leaveAfterSending('/held');
    const down = relay.bytesDown();
    res.end('late');
    // the late response reaches src, which reads it to its end with nobody to give it to
    await waitFor(() => relay.bytesDown() > down, { timeoutMs: 10_000, what: 'the late response relayed' });
    expect(relay.open()).toBe(1);
    expect(await request(src.egress, { host: HOST })).toMatchObject({ status: 200, body: 'far' });
    // served on the connection kept, not on a new one
    expect(relay.connections()).toBe(1);
  },
  30_000,
);

(FAST_PATH ? test : test.skip)(
  'a response longer than the bound is not read for nobody: its connection closes',
  async () => {
    expect(await request(src.egress, { host: HOST })).toMatchObject({ status: 200 });
    const before = relay.connections();
    const res = await leaveAfterSending('/held-big');
    res.end(Buffer.alloc(256 * 1024, 'x'));
    await waitFor(() => relay.open() === 0, { timeoutMs: 10_000, what: 'the connection to far closed' });
    expect(await request(src.egress, { host: HOST })).toMatchObject({ status: 200, body: 'far' });
    expect(relay.connections()).toBe(before + 1);
  },
  30_000,
);

(FAST_PATH ? test : test.skip)(
  'a gateway that stops reads no response for a client that left: the connection closes with it',
  async () => {
    const alone = await silentRelay(far.eastWest);
    closing(() => alone.close());
    const stopping = await mesh().gateway('stopping');
    closing(() => stopping.close());
    stopping.catalog.offer('far', hello, alone.address);
    const res = await leaveAfterSending('/held-stop', stopping);
    closing(() => res.end());
    expect(alone.open()).toBe(1);
    await stopping.close();
    await waitFor(() => alone.open() === 0, { timeoutMs: 10_000, what: 'the connection to far closed' });
  },
  30_000,
);
