import { once } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import { waitFor } from '../../core/index.ts';
import { closeRelayedClient } from '../../gateway/endpoint-relay.ts';

// What the byte relays (SNI passthrough, TCP ports, their CONNECT streams) do with the client when the other side
// closes. The slow-client relay test found it intermittently under load: an endpoint that sent its last bytes
// and closed had the gateway destroy the client's socket while up to 32 KiB for it were still queued, so the
// client got a clean end 32 KiB short. Here the gateway's side of a client connection has bytes queued for a
// client that does not read, and the other side closes.

const QUEUED = 8 * 1024 * 1024;

/** a connected pair: `gateway` (the relay's socket to its client) and `client`, paused (it reads nothing yet) */
async function pair(): Promise<{ gateway: Socket; client: Socket; close(): void }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  client.pause();
  const [gateway] = (await accepted) as [Socket];
  await once(client, 'connect');
  return {
    gateway,
    client,
    close() {
      gateway.destroy();
      client.destroy();
      server.close();
    },
  };
}

/** queues `QUEUED` bytes for the client (more than the sockets on the way hold) and passes the end on after them */
function queueAndEnd(gateway: Socket): Buffer {
  const bytes = Buffer.alloc(QUEUED, 7);
  gateway.write(bytes);
  gateway.end();
  return bytes;
}

/** the bytes the client reads until `until`: its end (a whole stream), or its close (a cut one may error first) */
async function readAll(client: Socket, until: 'end' | 'close' = 'end'): Promise<number> {
  let n = 0;
  client.on('data', (d: Buffer) => {
    n += d.length;
  });
  client.on('error', () => undefined);
  client.resume();
  await once(client, until);
  return n;
}

test('regression: after a clean close of the other side, the client still gets every byte queued for it, then the end', async () => {
  const p = await pair();
  try {
    queueAndEnd(p.gateway);
    expect(p.gateway.writableLength).toBeGreaterThan(0);
    closeRelayedClient(p.gateway, true, 10_000);
    expect(p.gateway.destroyed).toBe(false);
    expect(await readAll(p.client)).toBe(QUEUED);
  } finally {
    p.close();
  }
});

test('a close that was not clean cuts the client at once: it does not get a cut stream as a whole one', async () => {
  const p = await pair();
  try {
    queueAndEnd(p.gateway);
    closeRelayedClient(p.gateway, false, 10_000);
    expect(p.gateway.destroyed).toBe(true);
    expect(await readAll(p.client, 'close')).toBeLessThan(QUEUED);
  } finally {
    p.close();
  }
});

test('a client that never takes the rest is cut after the grace', async () => {
  const p = await pair();
  try {
    queueAndEnd(p.gateway);
    closeRelayedClient(p.gateway, true, 200);
    expect(p.gateway.destroyed).toBe(false);
    await waitFor(() => p.gateway.destroyed, {
      timeoutMs: 5_000,
      what: 'the client to be cut after the grace',
    });
  } finally {
    p.close();
  }
});
