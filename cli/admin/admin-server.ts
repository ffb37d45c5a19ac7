import { chmodSync, rmSync } from 'node:fs';
import type { DetailedPeerCertificate } from 'node:tls';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { derChainOf, type TrustBundle, verify } from '../../ca/index.ts';
import { type Logger, MeshfedError } from '../../core/index.ts';
import { LiveCredentials } from './live-credentials.ts';

export const ADMIN_PROTO = fileURLToPath(new URL('./admin.proto', import.meta.url));
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
}

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
}

function unary<T>(fn: (req: Json) => T) {
  return (call: grpc.ServerUnaryCall<Json, Json>, cb: grpc.sendUnaryData<Json>) => {
    try {
      cb(null, fn(call.request) as Json);
    } catch (err) {
      const e = err instanceof MeshfedError ? err : undefined;
      cb({
        code: e?.code === 'MESHFED_GATEWAY_NO_ROUTE' ? grpc.status.NOT_FOUND : grpc.status.INTERNAL,
        details: (err as Error).message,
      });
    }
  };
}

export class AdminServer {
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 });
  private readonly options: AdminServerOptions;
  tcpPort: number | undefined;
  private credentials: LiveCredentials | undefined;

  constructor(options: AdminServerOptions) {
    this.options = options;
    const b = options.backend;
    const admin =
      (check: (call: grpc.ServerUnaryCall<Json, Json>) => void, h: ReturnType<typeof unary>) =>
      (call: grpc.ServerUnaryCall<Json, Json>, cb: grpc.sendUnaryData<Json>) => {
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

  async start(): Promise<void> {
    const o = this.options;
    if (o.socketPath) {
      rmSync(o.socketPath, { force: true });
      await new Promise<void>((resolve, reject) =>
        this.server.bindAsync(`unix:${o.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      chmodSync(o.socketPath, 0o600);
    }
    if (o.tcp) {
      this.credentials = new LiveCredentials(o.tcp.leaf, o.tcp.bundle);
      const creds = grpc.experimental.createCertificateProviderServerCredentials(
        this.credentials,
        this.credentials,
        true,
      );
      this.tcpPort = await new Promise<number>((resolve, reject) =>
        this.server.bindAsync(`${o.tcp!.host}:${o.tcp!.port}`, creds, (err, port) =>
          err ? reject(err) : resolve(port),
        ),
      );
    }
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
    if (this.options.socketPath) rmSync(this.options.socketPath, { force: true });
  }
}
