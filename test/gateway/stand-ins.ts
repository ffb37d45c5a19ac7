import http2 from 'node:http2';
import type { AddressInfo, Server } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { type IssuedLeaf, issueLeaf, parseCertificates } from '../../ca/index.ts';
import { FAST_ALPN, TUNNEL_ALPN } from '../../gateway/index.ts';
import type { Mesh } from './harness.ts';

// Stand-ins for a remote gateway (real gateway leaves, recording what they accept) and the peer side of
// the east-west listener (a tunnel session, a fast-path connection, as another gateway opens them).

export interface SpySession {
  /** the client certificate's serial (hex, as node prints it) */
  serial: string;
  /** the client resumed an earlier TLS session */
  resumed: boolean;
  streams: number;
  closed: boolean;
}

/** A real gateway leaf of `cluster` for a stand-in remote gateway, valid for `ttlMs` when given. */
async function spyLeaf(mesh: Mesh, cluster: string, name: string, ttlMs: number | undefined) {
  return issueLeaf(await mesh.intermediate(cluster), {
    kind: 'gateway',
    name: `${cluster}-${name}`,
    ...(ttlMs ? { ttlMs } : {}),
  });
}

/** `server` listening on a free loopback port: its address, and how to close it. */
async function listenSpy(server: Server) {
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.close();
    },
  };
}

/**
 * A stand-in remote gateway of `cluster` (a real gateway leaf of that cluster, valid for `ttlMs`) that records every
 * tunnel session it accepts and answers each request with the client certificate's serial.
 */
export async function spyGateway(
  mesh: Mesh,
  cluster: string,
  o: { ttlMs?: number } = {},
): Promise<{ address: string; sessions: SpySession[]; close(): void }> {
  const leaf = await spyLeaf(mesh, cluster, 'spy', o.ttlMs);
  const sessions: SpySession[] = [];
  const server = http2.createSecureServer({
    cert: leaf.chainPem,
    key: leaf.keyPem,
    ca: mesh.bundle.toPem(),
    requestCert: true,
    ALPNProtocols: ['h2'],
  });
  const bySession = new WeakMap<object, SpySession>();
  server.on('session', (s) => {
    const socket = s.socket as TLSSocket;
    const entry = {
      serial: socket.getPeerCertificate().serialNumber,
      resumed: socket.isSessionReused(),
      streams: 0,
      closed: false,
    };
    sessions.push(entry);
    bySession.set(s, entry);
    s.once('close', () => {
      entry.closed = true;
    });
  });
  server.on('stream', (stream) => {
    const entry = stream.session ? bySession.get(stream.session) : undefined;
    if (entry) entry.streams++;
    stream.respond({ ':status': 200 });
    stream.end(entry?.serial ?? '');
  });
  return { ...(await listenSpy(server)), sessions };
}

/** One connection a fast-path spy gateway accepted. */
export interface SpyConnection {
  requests: number;
  closed: boolean;
}

/**
 * A TLS server that speaks as a remote gateway of `cluster` with the fast path only (ALPN meshfed-h1/1, the
 * tunnel's rules, a real gateway leaf of that cluster valid for `ttlMs`); its connections are the caller's.
 */
export async function fastGatewayServer(mesh: Mesh, cluster: string, ttlMs?: number): Promise<tls.Server> {
  const leaf = await spyLeaf(mesh, cluster, 'fast-spy', ttlMs);
  return tls.createServer({
    cert: leaf.chainPem,
    key: leaf.keyPem,
    ca: mesh.bundle.toPem(),
    requestCert: true,
    minVersion: 'TLSv1.3',
    ALPNProtocols: [FAST_ALPN],
  });
}

/**
 * A stand-in remote gateway of `cluster` that speaks only the fast path (ALPN meshfed-h1/1), with a real gateway
 * leaf of that cluster valid for `ttlMs`: it records every connection it accepts and answers each bodyless
 * request with a keep-alive 200, so the caller's pool keeps the connection.
 */
export async function spyFastGateway(
  mesh: Mesh,
  cluster: string,
  o: { ttlMs?: number } = {},
): Promise<{ address: string; connections: SpyConnection[]; close(): void }> {
  const connections: SpyConnection[] = [];
  const server = await fastGatewayServer(mesh, cluster, o.ttlMs);
  server.on('secureConnection', (socket) => {
    const c: SpyConnection = { requests: 0, closed: false };
    connections.push(c);
    let pending = '';
    socket.on('error', () => undefined);
    socket.on('close', () => {
      c.closed = true;
    });
    socket.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        pending = pending.slice(end + 4);
        c.requests++;
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  return { ...(await listenSpy(server)), connections };
}

/**
 * A fast-path connection (ALPN meshfed-h1/1, offered beside the tunnel's as a gateway offers it) to the east-west
 * listener at `address`, as a remote gateway holding `leaf`, carrying one GET for shop/web with the leaf's chain
 * (`request`, to send again); `received()` is what came back so far (latin1). The request is written before the handshake completes.
 */
export function fastPathWebGet(
  address: string,
  leaf: IssuedLeaf,
  caPem: string,
): { socket: TLSSocket; received(): string; request: string } {
  const i = address.lastIndexOf(':');
  const socket = tls.connect({
    host: address.slice(0, i),
    port: Number(address.slice(i + 1)),
    ca: caPem,
    cert: leaf.chainPem,
    key: leaf.keyPem,
    ALPNProtocols: [FAST_ALPN, TUNNEL_ALPN, 'h2'],
    checkServerIdentity: () => undefined,
  });
  socket.on('error', () => undefined);
  let received = '';
  socket.on('data', (d: Buffer) => {
    received += d.toString('latin1');
  });
  const request = `GET / HTTP/1.1\r\nhost: web.shop.svc.clusterset.local\r\nx-meshfed-service: shop/web/http\r\nx-meshfed-chain: ${chainHeader(leaf.chainPem)}\r\n\r\n`;
  socket.write(request);
  return { socket, received: () => received, request };
}

/** The `x-meshfed-chain` value a gateway sends for `chainPem`: its intermediates, base64 DER, comma separated. */
export function chainHeader(chainPem: string): string {
  return parseCertificates(chainPem, 'the tunnel client chain')
    .slice(1)
    .map((c) => c.raw.toString('base64'))
    .join(',');
}

/**
 * A tunnel session to a gateway's east-west listener at `address`, as a remote gateway holding `leaf` opens
 * one; `socket` resolves once the TLS handshake is done (and rejects when it fails).
 */
export function tunnelSession(
  address: string,
  leaf: { chainPem: string; keyPem: string },
  caPem: string,
): { session: http2.ClientHttp2Session; connected: Promise<TLSSocket> } {
  const i = address.lastIndexOf(':');
  let socket: TLSSocket | undefined;
  const session = http2.connect(`https://${address}`, {
    createConnection: () => {
      socket = tls.connect({
        host: address.slice(0, i),
        port: Number(address.slice(i + 1)),
        ca: caPem,
        cert: leaf.chainPem,
        key: leaf.keyPem,
        ALPNProtocols: [TUNNEL_ALPN, 'h2'],
        checkServerIdentity: () => undefined,
      });
      return socket;
    },
  });
  const connected = new Promise<TLSSocket>((resolve, reject) => {
    session.once('connect', () => resolve(socket!));
    session.once('error', reject);
    session.once('close', () => reject(new Error('the tunnel session closed before it connected')));
  });
  connected.catch(() => undefined);
  session.on('error', () => undefined);
  return { session, connected };
}

/**
 * One GET over a tunnel session to the exported HTTP service `namespace/name` (port "http"), carrying the
 * intermediates of `leaf` as gateways send them; resolves with the status (0: the stream closed without an
 * answer), or rejects when the stream fails.
 */
export function tunnelGet(
  session: http2.ClientHttp2Session,
  leaf: { chainPem: string },
  service: { namespace: string; name: string },
  path = '/',
): Promise<number> {
  const chain = chainHeader(leaf.chainPem);
  const stream = session.request({
    ':path': path,
    ':authority': `${service.name}.${service.namespace}.svc.clusterset.local`,
    'x-meshfed-service': `${service.namespace}/${service.name}/http`,
    'x-meshfed-chain': chain,
  });
  return new Promise((resolve, reject) => {
    let status = 0;
    stream.on('response', (h) => {
      status = Number(h[':status']);
    });
    stream.resume();
    stream.on('end', () => resolve(status));
    stream.on('error', reject);
  });
}
