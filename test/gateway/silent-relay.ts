import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { splitAddress } from './tunnel-client.ts';

/**
 * A TCP relay in front of `target` that can go silent, standing in for a cut network link without network
 * namespaces: once frozen, no byte moves either way and nothing is closed or refused — what a peer behind a
 * partition looks like (no RST, no FIN; packets vanish). A connection made while frozen is accepted and
 * never answered, as a SYN lost on the wire would leave a dial hanging until its own timeout.
 */
export interface SilentRelay {
  address: string;
  /** connections accepted so far (while live or frozen) */
  connections(): number;
  /** connections accepted and not yet closed by either side */
  open(): number;
  /** bytes relayed from the target back to the connections' clients */
  bytesDown(): number;
  /** the most connections held in their connect delay at once (handshakes under way together) */
  maxHeld(): number;
  freeze(): void;
  close(): void;
}

/** `connectDelayMs`: each new connection is held that long before bytes move (a peer slow to handshake) */
export async function silentRelay(target: string, o: { connectDelayMs?: number } = {}): Promise<SilentRelay> {
  const sockets = new Set<net.Socket>();
  let frozen = false;
  let accepted = 0;
  let held = 0;
  let maxHeld = 0;
  let open = 0;
  let down = 0;
  const pairs: [net.Socket, net.Socket][] = [];
  const server = net.createServer((client) => {
    accepted++;
    open++;
    client.once('close', () => open--);
    client.on('error', () => undefined);
    sockets.add(client);
    if (frozen) {
      client.pause();
      return;
    }
    const upstream = net.connect(splitAddress(target));
    upstream.on('error', () => client.destroy());
    upstream.on('data', (d: Buffer) => (down += d.length));
    sockets.add(upstream);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    pairs.push([client, upstream]);
    const relay = () => {
      if (frozen) return;
      client.pipe(upstream);
      upstream.pipe(client);
    };
    if (o.connectDelayMs) {
      maxHeld = Math.max(maxHeld, ++held);
      setTimeout(() => {
        held--;
        relay();
      }, o.connectDelayMs);
    } else relay();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => accepted,
    open: () => open,
    bytesDown: () => down,
    maxHeld: () => maxHeld,
    freeze() {
      frozen = true;
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
