import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TrustBundle } from '../../ca/index.ts';
import type { Logger } from '../../core/index.ts';
import type { AdminGrpcServer } from './admin-grpc.ts';

/** gRPC metadata in which an admin client sends the intermediates of its certificate */
export const ADMIN_CHAIN_METADATA = 'x-meshfed-chain';
/** gRPC trailing metadata of a PERMISSION_DENIED answer: the MeshfedError code that says why */
export const ADMIN_REFUSAL_METADATA = 'x-meshfed-refused';

// biome-ignore lint/suspicious/noExplicitAny: proto-loader objects are untyped JSON
type Json = any;

/** What the admin API needs from the daemon; plain JSON-shaped values. */
export interface AdminBackend {
  status(): Json;
  clusters(): Json;
  services(): Json;
  routes(namespace: string, name: string): unknown;
  /** the golden metrics' window (a TrafficSnapshot) */
  stats(windowMs: number): Promise<unknown>;
}

export interface AdminServerOptions {
  backend: AdminBackend;
  /** Unix socket path (loopback-only, mode 0600) */
  socketPath?: string;
  /** TCP address with mTLS requiring an admin identity */
  tcp?: {
    host: string;
    port: number;
    /** the certificate this listener presents; read again on credentialsChanged() */
    leaf: () => { chainPem: string; keyPem: string };
    bundle: () => TrustBundle;
    trustDomain: string;
  };
  logger: Logger;
  /**
   * an admin connection was accepted on the Unix socket, or a call came on either listener (the daemon re-arms
   * its idle heap shrink: both allocate, the first one loads the gRPC server)
   */
  onActivity?: () => void;
}

export interface AdminConnectionInjector {
  injectConnection(connection: Duplex): void;
}

/**
 * The admin API: gRPC on a Unix socket and, when configured, on TCP with mutual TLS (admin-grpc.ts).
 * The Unix socket is a plain listener until its first connection: only then are grpc-js and the admin
 * proto loaded (several MB of resident memory that an idle gateway nobody asks about does not need),
 * and every connection from then on is handed to the gRPC server as it is. The TCP listener needs the
 * gRPC server from the start.
 */
export class AdminServer {
  private readonly options: AdminServerOptions;
  private unix: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private grpc: Promise<{ server: AdminGrpcServer; unix: AdminConnectionInjector }> | undefined;
  tcpPort: number | undefined;

  constructor(options: AdminServerOptions) {
    this.options = options;
  }

  private grpcServer(): Promise<{ server: AdminGrpcServer; unix: AdminConnectionInjector }> {
    this.grpc ??= import('./admin-grpc.ts').then(({ AdminGrpcServer }) => {
      const server = new AdminGrpcServer(this.options);
      return { server, unix: server.connectionInjector() };
    });
    return this.grpc;
  }

  private accept(socket: Socket): void {
    this.options.onActivity?.();
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    // bytes that arrive before gRPC is loaded wait in the socket, which is not read until it is injected
    socket.pause();
    this.grpcServer().then(
      ({ unix }) => unix.injectConnection(socket),
      (err: unknown) => {
        this.options.logger.error({ err }, 'admin API: the gRPC server could not be loaded');
        socket.destroy();
      },
    );
  }

  async start(): Promise<void> {
    const o = this.options;
    if (o.socketPath) {
      rmSync(o.socketPath, { force: true });
      const unix = createServer((socket) => this.accept(socket));
      await new Promise<void>((resolve, reject) => {
        unix.once('error', reject);
        unix.listen(o.socketPath, () => {
          unix.off('error', reject);
          resolve();
        });
      });
      this.unix = unix;
      chmodSync(o.socketPath, 0o600);
    }
    if (o.tcp) this.tcpPort = await (await this.grpcServer()).server.listenTcp(o.tcp);
  }

  /** The gateway's leaf rotated or the trust bundle changed: new TCP handshakes use the current ones. */
  credentialsChanged(): void {
    this.grpc?.then(
      ({ server }) => server.credentialsChanged(),
      () => {},
    );
  }

  async stop(): Promise<void> {
    const unix = this.unix;
    this.unix = undefined;
    const closed = unix ? new Promise<void>((resolve) => unix.close(() => resolve())) : undefined;
    if (this.grpc) await (await this.grpc).server.stop();
    // what gRPC has not closed (a connection still waiting for it to load) ends here
    for (const socket of this.sockets) socket.destroy();
    await closed;
    if (this.options.socketPath) rmSync(this.options.socketPath, { force: true });
  }
}
