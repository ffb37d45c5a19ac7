import { X509Certificate } from 'node:crypto';
import { chmodSync, rmSync } from 'node:fs';
import type { DetailedPeerCertificate } from 'node:tls';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { derChainOf, parseSpiffeId, type TrustBundle, verify } from '../../ca/index.ts';
import { type Logger, MeshfedError } from '../../core/index.ts';
import { windowMsOf } from '../../gateway/index.ts';

export const ADMIN_PROTO = fileURLToPath(new URL('./admin.proto', import.meta.url));

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
    certPem: string;
    keyPem: string;
    bundle: () => TrustBundle;
    trustDomain: string;
  };
  logger: Logger;
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

export class AdminServer {
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 });
  private readonly options: AdminServerOptions;
  tcpPort: number | undefined;

  constructor(options: AdminServerOptions) {
    this.options = options;
    const b = options.backend;
    const admin =
      (check: (call: grpc.ServerUnaryCall<Json, Json>) => void, h: ReturnType<typeof unary>) =>
      (call: grpc.ServerUnaryCall<Json, Json>, cb: grpc.sendUnaryData<Json>) => {
        try {
          check(call);
        } catch (err) {
          cb({ code: grpc.status.PERMISSION_DENIED, details: (err as Error).message });
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
   * Unix-socket callers are trusted by file permission (0600: the gateway's own user). TCP callers
   * must present an admin certificate of this trust domain; grpc-js has checked the chain against
   * the bundle, and ca/'s verify checks the SPIFFE ID kind.
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
    const chain = derChainOf(cert);
    if (chain.length > 1) {
      verify(chain.slice(0, 4), this.options.tcp.bundle(), {
        trustDomain: this.options.tcp.trustDomain,
        kinds: ['admin'],
        usage: 'client',
      });
      return;
    }
    // grpc-js exposes only the leaf; OpenSSL has already chained it to the bundle's roots
    // (checkClientCertificate), so what is left to check is the SPIFFE identity itself.
    const leaf = new X509Certificate(chain[0]!);
    const uri = /URI:(spiffe:\/\/[^,\s]+)/.exec(leaf.subjectAltName ?? '')?.[1];
    if (!uri)
      throw new MeshfedError(
        'MESHFED_CA_BAD_SPIFFE_ID',
        'admin API: the client certificate has no SPIFFE ID',
      );
    const id = parseSpiffeId(uri);
    if (id.trustDomain !== this.options.tcp.trustDomain || id.kind !== 'admin') {
      throw new MeshfedError(
        'MESHFED_GATEWAY_IDENTITY_REFUSED',
        `admin API: ${uri} is not an admin identity of ${this.options.tcp.trustDomain}; issue one with meshfed ca issue --kind admin`,
      );
    }
    if (Date.parse(leaf.validTo) < Date.now())
      throw new MeshfedError('MESHFED_CA_EXPIRED', `admin API: ${uri} has expired`);
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
      const roots = Buffer.from(o.tcp.bundle().toPem());
      const creds = grpc.ServerCredentials.createSsl(
        roots,
        [{ cert_chain: Buffer.from(o.tcp.certPem), private_key: Buffer.from(o.tcp.keyPem) }],
        true,
      );
      this.tcpPort = await new Promise<number>((resolve, reject) =>
        this.server.bindAsync(`${o.tcp!.host}:${o.tcp!.port}`, creds, (err, port) =>
          err ? reject(err) : resolve(port),
        ),
      );
    }
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
