import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { createMesh, httpService, type Mesh, type TestGateway } from './harness.ts';
import { type SilentRelay, silentRelay } from './silent-relay.ts';
import { splitAddress } from './tunnel-client.ts';

// What the network-partition chaos scenario found (bench/chaos/scenarios/network-partition.ts): a TCP
// connection relayed over a tunnel session whose network had gone silent waited for the CONNECT answer
// forever, so the client hung until it gave up itself. A partition is stood in for by a relay in front of
// the remote gateway that stops moving bytes while it holds every connection open, which is what a peer
// behind a cut link looks like: no answer, no error.

let mesh: Mesh;
const closers: (() => unknown)[] = [];

async function gw(cluster: string, o: Parameters<Mesh['gateway']>[1] = {}): Promise<TestGateway> {
  const g = await mesh.gateway(cluster, o);
  closers.push(() => g.close());
  return g;
}

async function tcpEcho(): Promise<string> {
  const srv = net.createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  closers.push(() => srv.close());
  return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

async function freezableRelay(target: string): Promise<SilentRelay> {
  const relay = await silentRelay(target);
  closers.push(() => relay.close());
  return relay;
}

/** one connection: `payload` out and the same bytes back, or a rejection naming how long it hung */
function roundTrip(address: string, payload: Buffer, deadlineMs: number): Promise<Buffer> {
  const sock = net.connect(splitAddress(address));
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no echo within ${deadlineMs} ms (${got} of ${payload.length} bytes back)`));
    }, deadlineMs);
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= payload.length) {
        clearTimeout(timer);
        sock.destroy();
        resolve(Buffer.concat(chunks));
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    sock.write(payload);
  });
}

beforeAll(async () => {
  mesh = await createMesh();
}, 30_000);

afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

test('regression: a TCP connection whose tunnel went silent (a partition) moves to another cluster after the per-try timeout instead of hanging', async () => {
  const db = (address: string) => httpService('data', 'db', [address], true, 'tcp');
  const near = await gw('near');
  const far = await gw('far');
  const nearDb = db(await tcpEcho());
  const farDb = db(await tcpEcho());
  near.source.set([nearDb]);
  far.source.set([farDb]);
  const relay = await freezableRelay(near.eastWest);
  const src = await gw('src', {
    config: { tcpPorts: [{ listen: '127.0.0.1:0', service: 'db.data' }] },
    balancer: { timeouts: { connect: 300, request: 600, idle: 60_000 } },
  });
  // near shares src's zone: while it answers, every connection goes to it first
  src.catalog.offer('near', nearDb, relay.address, { region: 'src-region', zone: 'src-zone' });
  src.catalog.offer('far', farDb, far.eastWest);
  const port = src.gateway.addresses()['tcp:db.data']!;
  const payload = Buffer.alloc(1_000, 7);

  expect((await roundTrip(port, payload, 5_000)).equals(payload)).toBe(true);
  expect(relay.connections()).toBe(1);
  relay.freeze();

  // the first one is dialled over near's silent session, gets no CONNECT answer and goes to far
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    expect((await roundTrip(port, payload, 5_000)).equals(payload)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(3_000);
  }
  // nothing is left counted against either target
  const targets = src.balancers.explain('data', 'db').levels.flatMap((l) => l.targets);
  expect(targets.reduce((n, t) => n + t.outstanding, 0)).toBe(0);
}, 30_000);

test('regression: a TCP connection relayed over a tunnel session whose network then goes silent is closed once a keepalive PING goes unanswered, not held open', async () => {
  const db = httpService('data', 'db', [await tcpEcho()], true, 'tcp');
  const west = await gw('kw');
  west.source.set([db]);
  const relay = await freezableRelay(west.eastWest);
  const src = await gw('ks', {
    config: {
      tcpPorts: [{ listen: '127.0.0.1:0', service: 'db.data' }],
      tunnelKeepalive: { interval: '200ms', timeout: '300ms' },
    },
  });
  src.catalog.offer('kw', db, relay.address);
  const client = net.connect(splitAddress(src.gateway.addresses()['tcp:db.data']!));
  client.on('error', () => undefined);
  const closed = once(client, 'close');
  client.write('before\n');
  const [first] = (await once(client, 'data')) as [Buffer];
  expect(first.toString()).toBe('before\n');

  relay.freeze();
  const t0 = performance.now();
  client.write('during\n');
  // the session's PINGs go unanswered: it is closed within interval + timeout, and the relayed connection with it
  const closedIn = await Promise.race([
    closed.then(() => performance.now() - t0),
    // unref'd: once the race is won it must not keep jest's worker alive for the rest of the 5 s
    new Promise<number>((r) => setTimeout(() => r(Number.POSITIVE_INFINITY), 5_000).unref()),
  ]);
  expect(closedIn).toBeLessThan(3_000);
  expect(client.destroyed).toBe(true);
}, 30_000);
