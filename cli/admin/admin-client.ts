import * as grpc from '@grpc/grpc-js';
import { MeshfedError } from '../../core/index.ts';
import { parseCertificates } from '../../ca/index.ts';
import type { TrafficSnapshot } from '../../gateway/index.ts';
import { loadAdminService } from './admin-grpc.ts';
import { ADMIN_CHAIN_METADATA, ADMIN_REFUSAL_METADATA } from './admin-server.ts';

// biome-ignore lint/suspicious/noExplicitAny: proto-loader objects are untyped JSON
type Json = any;

export interface AdminTarget {
  /** `unix:/path/admin.sock` or `host:port` (then mTLS with an admin certificate) */
  address: string;
  tls?: { caPem: string; certPem: string; keyPem: string; serverName?: string };
}

/** The CLI's side of the admin API, with deadlines and errors that say what to do. */
export class AdminClient {
  private readonly client: grpc.Client & Record<string, Json>;
  /** sent with every call */
  private readonly metadata = new grpc.Metadata();
  readonly address: string;

  constructor(target: AdminTarget) {
    const Admin = loadAdminService();
    this.address = target.address;
    const creds = target.tls
      ? grpc.credentials.createSsl(
          Buffer.from(target.tls.caPem),
          Buffer.from(target.tls.keyPem),
          Buffer.from(target.tls.certPem),
          { checkServerIdentity: () => undefined },
        )
      : grpc.credentials.createInsecure();
    const options: grpc.ChannelOptions = target.tls?.serverName
      ? { 'grpc.ssl_target_name_override': target.tls.serverName }
      : {};
    this.client = new Admin(target.address, creds, options) as unknown as grpc.Client & Record<string, Json>;
    if (target.tls) {
      // the server sees only our leaf: the intermediates that complete its chain travel beside it
      const chain = parseCertificates(target.tls.certPem, 'the admin certificate')
        .slice(1)
        .map((c) => c.raw.toString('base64'))
        .join(',');
      if (chain) this.metadata.set(ADMIN_CHAIN_METADATA, chain);
    }
  }

  private call<T>(method: string, request: Json, timeoutMs = 5000): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client[method](
        request,
        this.metadata,
        { deadline: Date.now() + timeoutMs },
        (err: grpc.ServiceError | null, res: T) => {
          if (!err) return resolve(res);
          if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
            reject(
              new MeshfedError(
                'MESHFED_ADMIN_UNREACHABLE',
                `cannot reach the gateway admin API at ${this.address} (${err.details || grpc.status[err.code]}); is the gateway running? check --config/--admin`,
                { cause: err, retryable: true },
              ),
            );
            return;
          }
          if (err.code === grpc.status.PERMISSION_DENIED) {
            // why the gateway refused our certificate, as its MeshfedError code (e.g. MESHFED_CA_WRONG_ISSUER)
            const reason = err.metadata?.get(ADMIN_REFUSAL_METADATA)[0];
            reject(
              new MeshfedError(
                'MESHFED_GATEWAY_IDENTITY_REFUSED',
                `admin API at ${this.address} refused us: ${err.details}`,
                reason === undefined ? {} : { details: { reason: String(reason) } },
              ),
            );
            return;
          }
          if (err.code === grpc.status.NOT_FOUND) {
            reject(new MeshfedError('MESHFED_GATEWAY_NO_ROUTE', err.details));
            return;
          }
          reject(
            new MeshfedError('MESHFED_INTERNAL', `admin API ${method} failed: ${err.details}`, {
              cause: err,
            }),
          );
        },
      );
    });
  }

  status(): Promise<Json> {
    return this.call('Status', {});
  }

  async clusters(): Promise<Json[]> {
    return (await this.call<{ clusters: Json[] }>('Clusters', {})).clusters ?? [];
  }

  async services(): Promise<Json[]> {
    return (await this.call<{ services: Json[] }>('Services', {})).services ?? [];
  }

  async routes(namespace: string, name: string): Promise<Json> {
    const r = await this.call<{ explanation_json: string }>('Routes', { namespace, name });
    return JSON.parse(r.explanation_json);
  }

  /** The gateway's golden metrics over the last `windowSeconds` (a TrafficSnapshot). */
  async stats(windowSeconds: number): Promise<TrafficSnapshot> {
    const r = await this.call<{ snapshot_json: string }>('Stats', { window_seconds: windowSeconds });
    return JSON.parse(r.snapshot_json) as TrafficSnapshot;
  }

  close(): void {
    this.client.close();
  }
}
