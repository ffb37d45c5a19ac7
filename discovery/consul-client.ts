import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import Consul from 'consul';
import { MeshfedError } from '../core/index.ts';

export interface ConsulAccess {
  address: { host: string; port: number; secure: boolean };
  token?: string | undefined;
  tokenFile?: string | undefined;
  datacenter?: string | undefined;
  /** timeout of non-blocking calls (ms) */
  timeout?: number | undefined;
}

export interface BlockingResult<T> {
  body: T;
  /** X-Consul-Index as the server sent it (0 when absent) */
  index: number;
  /** the ACL system hid results from this token (X-Consul-Results-Filtered-By-ACLs) */
  filtered: boolean;
}

/**
 * The next index to send, following Consul's blocking-query rules: an index that went backwards
 * (snapshot restore, rebuilt cluster) resets to 0 so the next call answers at once with fresh
 * data; an index below 1 is raised to 1 so a buggy answer cannot turn the loop into a busy loop.
 */
export function nextBlockingIndex(previous: number, received: number): number {
  if (received < previous) return 0;
  if (received < 1) return 1;
  return received;
}

/**
 * A thin layer over the `consul` client: token from a file (re-read after a 403, so a rotated
 * token is picked up), blocking GETs that return X-Consul-Index, and errors mapped to meshfed codes
 * (network/5xx → retryable UNAVAILABLE, 403 → FORBIDDEN, malformed → INVALID).
 */
export class ConsulApi {
  readonly consul: Consul;
  private readonly access: ConsulAccess;
  private token: string | undefined;
  private readonly where: string;

  constructor(access: ConsulAccess) {
    this.access = access;
    this.where = `${access.address.secure ? 'https' : 'http'}://${access.address.host}:${access.address.port}`;
    this.token = this.readToken();
    this.consul = new Consul({
      host: access.address.host,
      port: access.address.port,
      secure: access.address.secure,
    });
  }

  /** GET with `index` and `wait`; the request gives up a little after wait + wait/16 jitter. */
  async blockingGet<T>(
    call: (consul: Consul, opts: Record<string, unknown>) => Promise<unknown>,
    what: string,
    index: number,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<BlockingResult<T>> {
    const ctx = new EventEmitter() as EventEmitter & { includeResponse?: boolean };
    ctx.includeResponse = true;
    const onAbort = () => ctx.emit('cancel');
    signal.addEventListener('abort', onAbort, { once: true });
    const opts: Record<string, unknown> = {
      ...this.common(),
      ctx,
      // the server may hold up to wait + wait/16; past that (plus slack) the agent is hung
      timeout: waitMs + Math.ceil(waitMs / 16) + Math.min(5_000, waitMs),
    };
    if (index > 0) {
      opts.index = String(index);
      opts.wait = `${Math.max(1, Math.round(waitMs / 1000))}s`;
    }
    try {
      const out = await call(this.consul, opts);
      if (!Array.isArray(out) || out.length !== 2) throw errorFromResult(out);
      const [res, body] = out as [{ headers: Record<string, string | undefined> }, T];
      const raw = res.headers['x-consul-index'];
      const parsed = raw === undefined ? 0 : Number(raw);
      return {
        body,
        index: Number.isSafeInteger(parsed) && parsed >= 0 ? parsed : 0,
        filtered: res.headers['x-consul-results-filtered-by-acls'] === 'true',
      };
    } catch (err) {
      throw this.mapError(err, what);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** A plain call (register, deregister, list agent services) with errors mapped. */
  async call<T>(
    fn: (consul: Consul, opts: Record<string, unknown>) => Promise<unknown>,
    what: string,
  ): Promise<T> {
    try {
      const out = await fn(this.consul, { ...this.common(), timeout: this.access.timeout ?? 10_000 });
      if (isErrorLike(out)) throw out;
      return out as T;
    } catch (err) {
      throw this.mapError(err, what);
    }
  }

  destroy(): void {
    this.consul.destroy();
  }

  private common(): Record<string, unknown> {
    const opts: Record<string, unknown> = {};
    if (this.token) opts.token = this.token;
    if (this.access.datacenter) opts.dc = this.access.datacenter;
    return opts;
  }

  private readToken(): string | undefined {
    if (this.access.tokenFile) {
      try {
        return readFileSync(this.access.tokenFile, 'utf8').trim() || undefined;
      } catch (err) {
        throw new MeshfedError(
          'MESHFED_CONFIG_UNREADABLE',
          `${this.access.tokenFile}: cannot read the Consul ACL token file`,
          { cause: err },
        );
      }
    }
    return this.access.token;
  }

  private mapError(err: unknown, what: string): MeshfedError {
    if (err instanceof MeshfedError) return err;
    const e = err as { statusCode?: number; isResponse?: boolean; message?: string; name?: string };
    const status = e.isResponse ? e.statusCode : undefined;
    const details = { consul: this.where, operation: what, status };
    if (status === 403) {
      // a rotated token file is picked up on the next attempt
      if (this.access.tokenFile) {
        try {
          this.token = this.readToken();
        } catch {
          // keep the old token; the error below says what to fix
        }
      }
      return new MeshfedError(
        'MESHFED_DISCOVERY_FORBIDDEN',
        `Consul at ${this.where} refused ${what} (403 ${e.message ?? ''}): give the ACL token the policy in deploy/consul/meshfed-policy.hcl`,
        { cause: err, details, retryable: false },
      );
    }
    if (status !== undefined && status < 500 && status !== 429) {
      return new MeshfedError(
        'MESHFED_DISCOVERY_INVALID',
        `Consul at ${this.where} rejected ${what} with ${status}: ${e.message ?? ''}`,
        { cause: err, details },
      );
    }
    if (err instanceof SyntaxError) {
      return new MeshfedError(
        'MESHFED_DISCOVERY_INVALID',
        `Consul at ${this.where} answered ${what} with malformed JSON`,
        {
          cause: err,
          details,
          retryable: true,
        },
      );
    }
    return new MeshfedError(
      'MESHFED_DISCOVERY_UNAVAILABLE',
      `Consul at ${this.where} is unreachable for ${what}: ${e.message ?? String(err)}; is the agent running?`,
      { cause: err, details, retryable: true },
    );
  }
}

/**
 * papi (under the consul client) tells errors from results with `instanceof Error`, which fails
 * for errors made in another realm (jest's VM sandbox, worker boundaries): such an error then
 * arrives as a resolved value. Treat anything error-shaped as the error it is.
 */
function isErrorLike(value: unknown): value is Error {
  return (
    value instanceof Error ||
    Object.prototype.toString.call(value) === '[object Error]' ||
    (value !== null && typeof value === 'object' && 'syscall' in value && 'code' in value)
  );
}

function errorFromResult(value: unknown): Error {
  if (isErrorLike(value)) return value;
  return new SyntaxError('unexpected result shape from the consul client');
}
