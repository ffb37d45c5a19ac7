import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import tls from 'node:tls';
import { issueLeaf } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import { httpService, meshOfFile, type TestGateway } from './harness.ts';

// SNI passthrough, a per-service TCP port to a local endpoint, and the terminal of a TCP port's CONNECT at the
// remote gateway relay the endpoint's bytes to the client from the gateway's shared read buffer
// (gateway/socket-reads.ts), not through a stream pipe. What the client gets must still be every byte in order,
// through a client that reads slowly (the endpoint is paused, not buffered without bound), and each side's end
// must reach the other.

const { mesh, closing } = meshOfFile();

/** more than every socket buffer between the endpoint and the client can hold (loopback's grow to a few MB) */
const PAYLOAD = randomBytes(64 * 1024 * 1024);

interface Backend {
  /** whether the client's end reached the backend */
  seen: { ended: boolean };
  /** bytes the endpoint's socket holds unsent (its last connection's) */
  queued: () => number;
}

/** What an endpoint does with a connection: sends `PAYLOAD` on 'send', ends on 'end'. */
function serve(s: Socket, seen: { ended: boolean }): void {
  s.on('error', () => undefined);
  s.on('data', (d: Buffer) => {
    if (d.toString().includes('send')) s.write(PAYLOAD);
    if (d.toString().includes('end')) s.end();
  });
  s.on('end', () => {
    seen.ended = true;
  });
}

/** A relay under test: how its endpoint is served, and how a client reaches it through the gateway. */
interface Relay {
  name: string;
  /** its gateways' cluster names start with it */
  prefix: string;
  /** the gateway's config for it */
  config: Record<string, unknown>;
  /** an endpoint for `vault.data` of `g`'s cluster, registered with the gateway */
  backend(g: TestGateway): Promise<Backend>;
  connect(g: TestGateway): Promise<Socket>;
}

/** An endpoint for `vault.data` on the server `make` creates, registered with `g` under `protocol`. */
async function endpoint(
  g: TestGateway,
  protocol: 'tcp' | 'tls',
  make: (onConnection: (s: Socket) => void) => net.Server,
): Promise<Backend> {
  const seen = { ended: false };
  let last: Socket | undefined;
  const server = make((s) => {
    last = s;
    serve(s, seen);
  });
  g.source.set([httpService('data', 'vault', [await listening(server)], true, protocol)]);
  return { seen, queued: () => last?.writableLength ?? 0 };
}

/** A plain TCP endpoint for `vault.data`, registered with `g`. */
function tcpBackend(g: TestGateway): Promise<Backend> {
  return endpoint(g, 'tcp', (on) => net.createServer(on));
}

/** A client of `g`'s TCP port for `vault.data`. */
function tcpClient(g: TestGateway): Promise<Socket> {
  const client = net.connect(hostPort(g.gateway.addresses()['tcp:vault.data']!));
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

async function listening(server: net.Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closing(() => server.close());
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function hostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

const passthrough: Relay = {
  name: 'SNI passthrough',
  prefix: 'pt',
  config: {},
  async backend(g) {
    const leaf = await issueLeaf(await mesh().intermediate(g.cluster), {
      kind: 'workload',
      namespace: 'data',
      serviceAccount: 'vault',
      dnsNames: ['vault.data.svc.clusterset.local'],
    });
    return endpoint(g, 'tls', (on) => tls.createServer({ cert: leaf.chainPem, key: leaf.keyPem }, on));
  },
  connect(g) {
    const client = tls.connect({
      ...hostPort(g.eastWest),
      servername: 'vault.data.svc.clusterset.local',
      ca: mesh().bundle.toPem(),
    });
    return new Promise((resolve, reject) => {
      client.once('secureConnect', () => resolve(client));
      client.once('error', reject);
    });
  },
};

const TCP_PORT = { tcpPorts: [{ listen: '127.0.0.1:0', service: 'vault.data' }] };

const tcpPort: Relay = {
  name: 'a TCP port to a local endpoint',
  prefix: 'tp',
  config: TCP_PORT,
  backend: tcpBackend,
  connect: tcpClient,
};

let remotes = 0;
const tcpTunnel: Relay = {
  name: "a TCP port to a remote gateway's endpoint (the CONNECT terminal)",
  prefix: 'tt',
  config: TCP_PORT,
  // the endpoint is the remote gateway's, offered to `g` through its catalog
  async backend(g) {
    const remote = await mesh().gateway(`${g.cluster}-r${++remotes}`);
    closing(() => remote.close());
    const b = await tcpBackend(remote);
    g.catalog.offer(remote.cluster, remote.source.current()[0]!, remote.eastWest);
    return b;
  },
  connect: tcpClient,
};

describe.each([passthrough, tcpPort, tcpTunnel])('$name', (relay) => {
  let n = 0;
  /** a gateway of its own for the test, and the relay's endpoint behind it */
  async function relayed(): Promise<{ g: TestGateway; b: Backend }> {
    const g = await mesh().gateway(`${relay.prefix}${++n}`, { config: relay.config });
    closing(() => g.close());
    return { g, b: await relay.backend(g) };
  }

  test('a slow client gets every byte in order, and the endpoint is held back meanwhile', async () => {
    const { g, b } = await relayed();
    const client = await relay.connect(g);
    client.pause();
    client.write('send');
    // the client reads nothing: once the socket buffers on the way are full, the gateway stops reading the
    // endpoint, and the rest waits at the endpoint rather than in the gateway's memory. Settled: the
    // endpoint's queue has not moved for five looks 50 ms apart.
    let previous = -1;
    let still = 0;
    await waitFor(
      () => {
        const q = b.queued();
        still = q > 0 && q === previous ? still + 1 : 0;
        previous = q;
        return still >= 5;
      },
      { timeoutMs: 20_000, intervalMs: 50, what: 'the flow to the paused client to settle' },
    );
    expect(b.queued()).toBeGreaterThan(PAYLOAD.length / 2);
    const got: Buffer[] = [];
    let total = 0;
    client.on('data', (d: Buffer) => {
      got.push(d);
      total += d.length;
      // read slowly: a pause after each piece
      client.pause();
      setImmediate(() => client.resume());
    });
    client.resume();
    await waitFor(() => total >= PAYLOAD.length, { timeoutMs: 60_000, what: 'the whole payload' });
    expect(Buffer.concat(got).equals(PAYLOAD)).toBe(true);
    client.destroy();
  }, 90_000);

  test("the endpoint's end reaches the client, and the client's end reaches the endpoint", async () => {
    const { g, b } = await relayed();
    // the endpoint ends: the client sees the end of its stream
    const first = await relay.connect(g);
    first.resume();
    first.write('end');
    await once(first, 'end');
    first.destroy();
    // the client ends: the endpoint sees the end
    const second = await relay.connect(g);
    second.resume();
    second.end('bye');
    await waitFor(() => b.seen.ended, { timeoutMs: 5_000, what: "the client's end at the endpoint" });
    second.destroy();
  }, 30_000);
});
