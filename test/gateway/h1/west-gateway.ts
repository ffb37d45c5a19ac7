// Peers for tests of the fast path's pool (ticket rotation, waiting requests, idle timeouts): a remote gateway
// and a plain TCP endpoint.
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import {
  type CaMaterial,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
  type TrustBundle,
} from '../../../ca/index.ts';
import { H1Pool, type H1PoolOptions } from '../../../gateway/h1/pool.ts';
import { FAST_ALPN } from '../../../gateway/index.ts';
import type { UpstreamConnections } from '../../../gateway/upstream-connections.ts';

/**
 * A remote gateway of cluster west (a TLS server with the fast-path ALPN that records the client leaf of
 * every connection it accepts) and an H1Pool dialling it as east with whatever `leaf()` returns now.
 */
export async function westAndPool(
  leaf: () => IssuedLeaf,
  bundle: TrustBundle,
  root: CaMaterial,
  idle: { local: number; gateway: number } = { local: 60_000, gateway: 60_000 },
  /** what else the remote gateway does with each connection it accepts */
  serve?: (s: tls.TLSSocket) => void,
  /** where the pool counts its dials and open connections */
  connections?: UpstreamConnections,
) {
  const west = await issueLeaf(await issueIntermediate(root, { cluster: 'west' }), {
    kind: 'gateway',
    name: 'west-gw',
  });
  const seen: X509Certificate[] = [];
  const sockets: { destroy(): void }[] = [];
  const server = tls.createServer(
    {
      cert: west.chainPem,
      key: west.keyPem,
      ca: bundle.toPem(),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [FAST_ALPN],
      minVersion: 'TLSv1.3',
    },
    (s) => {
      sockets.push(s);
      s.on('error', () => undefined);
      seen.push(new X509Certificate(s.getPeerCertificate().raw));
      serve?.(s);
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const pool = new H1Pool({
    connectTimeoutMs: 5_000,
    idleTimeoutMs: idle.local,
    gatewayIdleTimeoutMs: idle.gateway,
    maxIdlePerKey: 4,
    maxDialsPerKey: 4,
    maxRequestsPerConnection: 0,
    exchangeIdleMs: 60_000,
    creds: { leaf, bundle: () => bundle, trustDomain: 'meshfed.test' },
    ...(connections ? { connections } : {}),
  });
  return {
    pool,
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** the client leaves the server accepted, in order */
    seen,
    /** a connection of the pool's, to be destroyed at the end */
    hold: (s: { destroy(): void }) => sockets.push(s),
    close() {
      for (const s of sockets) s.destroy();
      pool.close();
      server.close();
    },
  };
}

/**
 * A pool for plain TCP keys only (local endpoints): no credentials are asked for, and one that is throws. Long
 * timeouts unless `o` says otherwise.
 */
export function plainPool(o: Partial<H1PoolOptions> = {}): H1Pool {
  const noTls = () => {
    throw new Error('no TLS in this test');
  };
  return new H1Pool({
    connectTimeoutMs: 5_000,
    idleTimeoutMs: 60_000,
    gatewayIdleTimeoutMs: 60_000,
    exchangeIdleMs: 60_000,
    maxIdlePerKey: 64,
    maxDialsPerKey: 4,
    maxRequestsPerConnection: 0,
    creds: { leaf: noTls, bundle: noTls, trustDomain: 'meshfed.test' },
    ...o,
  });
}

/** a TCP server that counts the connections it accepts and keeps them open */
export async function tcpServer() {
  const sockets: net.Socket[] = [];
  const srv = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    address: `127.0.0.1:${(srv.address() as AddressInfo).port}`,
    accepted: () => sockets.length,
    close() {
      for (const s of sockets) s.destroy();
      srv.close();
    },
  };
}
