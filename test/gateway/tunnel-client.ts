import { X509Certificate } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { TUNNEL_ALPN } from '../../gateway/index.ts';

/** `host:port` → what net.connect and tls.connect take. */
export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/** The `x-meshfed-chain` header a gateway sends: the intermediates of its chain, base64 DER. */
export function chainHeader(chainPem: string): string {
  const blocks = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks
    .slice(1)
    .map((b) => new X509Certificate(b).raw.toString('base64'))
    .join(',');
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

/** An HTTP/2 tunnel session to the east-west listener at `target`, as a gateway presenting `leaf` opens it. */
export function tunnelSession(
  target: string,
  leaf: { chainPem: string; keyPem: string },
  bundlePem: string,
): http2.ClientHttp2Session {
  const s = http2.connect(`https://${target}`, {
    createConnection: () =>
      tls.connect({
        ...splitAddress(target),
        ca: bundlePem,
        cert: leaf.chainPem,
        key: leaf.keyPem,
        ALPNProtocols: [TUNNEL_ALPN, 'h2'],
        checkServerIdentity: () => undefined,
      }),
  });
  s.on('error', () => undefined);
  return s;
}
