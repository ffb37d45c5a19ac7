import net from 'node:net';

/** `host:port` → what net.connect and tls.connect take. */
export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/** A plain TCP backend that counts the bytes it receives and never answers. */
export async function byteCounter(): Promise<{ address: string; received: () => number; close(): void }> {
  let bytes = 0;
  const server = net.createServer((s) => {
    s.on('data', (d) => {
      bytes += d.length;
    });
    s.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    received: () => bytes,
    close: () => server.close(),
  };
}
