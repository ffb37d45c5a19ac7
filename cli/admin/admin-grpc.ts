import type { DetailedPeerCertificate } from 'node:tls';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { derChainOf, verify } from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { windowMsOf } from '../../gateway/index.ts';
import {
  ADMIN_CHAIN_METADATA,
  ADMIN_REFUSAL_METADATA,
  type AdminServerOptions,
  type AdminConnectionInjector,
} from './admin-server.ts';
import { LiveCredentials } from './live-credentials.ts';

export const ADMIN_PROTO = fileURLToPath(new URL('./admin.proto', import.meta.url));

// biome-ignore lint/suspicious/noExplicitAny: proto-loader objects are untyped JSON
type Json = any;

export function loadAdminService(): grpc.ServiceClientConstructor {
  const def = protoLoader.loadSync(ADMIN_PROTO, {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    meshfed: { admin: { v1: { Admin: grpc.ServiceClientConstructor } } };
  };
  return pkg.meshfed.admin.v1.Admin;
}

function unary<T>(fn: (req: Json) => T | Promise<T>) {
  return (call: grpc.ServerUnaryCall<Json, Json>, cb: grpc.sendUnaryData<Json>) => {
    const fail = (err: unknown) => {
      const e = err instanceof MeshfedError ? err : undefined;
      cb({
        code: e?.code === 'MESHFED_GATEWAY_NO_ROUTE' ? grpc.status.NOT_FOUND : grpc.status.INTERNAL,
        details: (err as Error).message,
      });
    };
    try {
      Promise.resolve(fn(call.request)).then((v) => cb(null, v as Json), fail);
    } catch (err) {
      fail(err);
    }
  };
}

/**
 * The admin API's gRPC service (cli/admin/admin.proto). AdminServer loads this module when it is first
 * needed: on the first connection to the Unix socket, or at start when the TCP listener is configured.
 */
export class AdminGrpcServer {
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 });
  private readonly options: AdminServerOptions;
  private credentials: LiveCredentials | undefined;

  constructor(options: AdminServerOptions) {
    this.options = options;
    const b = options.backend;
    const admin =
      (check: (call: grpc.ServerUnaryCall<Json, Json>) => void, h: ReturnType<typeof unary>) =>
      (call: grpc.ServerUnaryCall<Json, Json>, cb: grpc.sendUnaryData<Json>) => {
        // a TCP caller's connection is accepted inside grpc-js: its calls are what this server sees of it
        options.onActivity?.();
        try {
          check(call);
        } catch (err) {
          const metadata = new grpc.Metadata();
          if (err instanceof MeshfedError) metadata.set(ADMIN_REFUSAL_METADATA, err.code);
          cb({ code: grpc.status.PERMISSION_DENIED, details: (err as Error).message, metadata });
          return;
        }
        h(call, cb);
      };
    const check = (call: grpc.ServerUnaryCall<Json, Json>) => this.authorize(call);
    this.server.addService(loadAdminService().service, {
      Status: admin(
        check,
        unary(() => b.status()),
      ),
      Clusters: admin(
        check,
        unary(() => ({ clusters: b.clusters() })),
      ),
      Services: admin(
        check,
        unary(() => ({ services: b.services() })),
      ),
      Routes: admin(
        check,
        unary((req: { namespace: string; name: string }) => ({
          explanation_json: JSON.stringify(b.routes(req.namespace, req.name)),
        })),
      ),
      Stats: admin(
        check,
        unary(async (req: { window_seconds: number }) => ({
          snapshot_json: JSON.stringify(await b.stats(windowMsOf(req.window_seconds))),
        })),
      ),
    });
  }

  /**
   * Unix-socket callers are trusted by file permission (0600: the gateway's own user). TCP callers must present
   * an admin certificate of this trust domain, checked with ca/'s verify like every other peer: the whole chain,
   * so that only the admin intermediate's admins pass (grpc-js has chained the leaf to some bundle root, which
   * a cluster intermediate's certificate does too). grpc-js exposes only the client's leaf: the client sends its
   * intermediates as `x-meshfed-chain` metadata (base64 DER, comma-separated), and the bundle's remembered
   * intermediates complete the path for clients that do not.
   */
  private authorize(call: grpc.ServerUnaryCall<Json, Json>): void {
    const peer = call.getPeer();
    if (!this.options.tcp || peer.startsWith('unix:') || !peer.includes(':')) return;
    const cert = call.getAuthContext()?.sslPeerCertificate as DetailedPeerCertificate | undefined;
    if (!cert?.raw)
      throw new MeshfedError(
        'MESHFED_GATEWAY_IDENTITY_REFUSED',
        'admin API: a client certificate is required',
      );
    const presented = derChainOf(cert).slice(0, 4);
    const sent = String(call.metadata.get(ADMIN_CHAIN_METADATA)[0] ?? '')
      .split(',')
      .filter(Boolean)
      .slice(0, 3)
      .map((b) => Buffer.from(b, 'base64'));
    verify(presented.length > 1 ? presented : [...presented, ...sent], this.options.tcp.bundle(), {
      trustDomain: this.options.tcp.trustDomain,
      kinds: ['admin'],
      usage: 'client',
    });
  }

  /** Serves connections accepted elsewhere (the Unix socket's listener), as they are. */
  connectionInjector(): AdminConnectionInjector {
    return this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  }

  /** Listens on the TCP address with mutual TLS; resolves to the bound port. */
  async listenTcp(tcp: NonNullable<AdminServerOptions['tcp']>): Promise<number> {
    this.credentials = new LiveCredentials(tcp.leaf, tcp.bundle);
    const creds = grpc.experimental.createCertificateProviderServerCredentials(
      this.credentials,
      this.credentials,
      true,
    );
    return new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${tcp.host}:${tcp.port}`, creds, (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
  }

  /** The gateway's leaf rotated or the trust bundle changed: new TCP handshakes use the current ones. */
  credentialsChanged(): void {
    this.credentials?.changed();
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      t.unref();
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
