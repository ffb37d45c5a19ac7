import * as grpc from '@grpc/grpc-js';
import { Pool } from 'undici';
import { POLICY_HEADER } from '../../core/index.ts';
import { loadGreeter } from './demo-services.ts';

export interface CallResult {
  ok: boolean;
  cluster?: string;
  status?: number;
  error?: string;
  /** the policy rule a gateway named when it refused the call (the x-meshfed-policy header) */
  rule?: string;
  ms: number;
}

/** Calls `<service>.<ns>.svc.clusterset.local` through one cluster's egress listener (plain HTTP, as an app would). */
export class HttpCaller {
  private readonly pool: Pool;
  private readonly host: string;

  constructor(egress: string, host: string) {
    this.pool = new Pool(`http://${egress}`, { connections: 8, headersTimeout: 5000, bodyTimeout: 5000 });
    this.host = host;
  }

  async call(path = '/'): Promise<CallResult> {
    const t0 = performance.now();
    try {
      const res = await this.pool.request({ method: 'GET', path, headers: { host: this.host } });
      const text = await res.body.text();
      const ms = performance.now() - t0;
      if (res.statusCode !== 200) {
        const rule = res.headers[POLICY_HEADER];
        return {
          ok: false,
          status: res.statusCode,
          error: text.slice(0, 200),
          ms,
          ...(typeof rule === 'string' ? { rule } : {}),
        };
      }
      const body = JSON.parse(text) as { cluster?: string };
      return body.cluster === undefined
        ? { ok: true, status: 200, ms }
        : { ok: true, status: 200, cluster: body.cluster, ms };
    } catch (err) {
      return { ok: false, error: (err as Error).message, ms: performance.now() - t0 };
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** What a demo greeter answers: the greeting, the cluster that served it and the greeter's release. */
export interface GreeterReply {
  message: string;
  cluster: string;
  version: string;
}

/** A gRPC client of the demo greeter, through an egress listener (h2c, :authority = the service name). */
export function greeterClient(egress: string, authority = 'greeter.demo.svc.clusterset.local:50051') {
  const pkg = loadGreeter() as unknown as { meshfed: { demo: { Greeter: grpc.ServiceClientConstructor } } };
  return new pkg.meshfed.demo.Greeter(egress, grpc.credentials.createInsecure(), {
    'grpc.default_authority': authority,
  }) as unknown as grpc.Client & {
    SayHello: (
      req: { name: string },
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: GreeterReply) => void,
    ) => void;
    SayHelloStream: (
      req: { name: string; count: number },
      opts?: grpc.CallOptions,
    ) => grpc.ClientReadableStream<GreeterReply & { seq: number }>;
  };
}

export function sayHello(client: ReturnType<typeof greeterClient>, name: string): Promise<GreeterReply> {
  return new Promise((resolve, reject) =>
    client.SayHello({ name }, { deadline: Date.now() + 5000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

/**
 * Resolves after `ms` (never, without `ms`), or as soon as `signal` aborts. The abort listener goes when the
 * timer fires: loops that pause every 100 ms would otherwise pile listeners onto one long-lived signal.
 */
export function waitAbort(signal: AbortSignal, ms?: number): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer =
      ms === undefined
        ? undefined
        : setTimeout(() => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Counts recent results by serving cluster over a sliding window. */
export class Tally {
  private readonly windowMs: number;
  private readonly events: { at: number; key: string }[] = [];
  total = 0;
  failures = 0;

  constructor(windowMs = 5000) {
    this.windowMs = windowMs;
  }

  add(r: CallResult): void {
    this.total++;
    if (!r.ok) this.failures++;
    this.events.push({ at: Date.now(), key: r.ok ? (r.cluster ?? '?') : 'FAILED' });
    this.trim();
  }

  private trim(): void {
    const cut = Date.now() - this.windowMs;
    while (this.events.length > 0 && this.events[0]!.at < cut) this.events.shift();
  }

  shares(): Record<string, number> {
    this.trim();
    const out: Record<string, number> = {};
    for (const e of this.events) out[e.key] = (out[e.key] ?? 0) + 1;
    return out;
  }
}
