import type { ServerResponse } from 'node:http';
import http2, { type ClientHttp2Stream, constants as h2c, type IncomingHttpHeaders } from 'node:http2';
import { MeshfedError } from '../../core/index.ts';
import type { BalancerTarget } from '../balancer/index.ts';
import type { H2Pool } from '../h2-pool.ts';
import { responseHeadersForClient } from '../headers.ts';
import type { Identities } from '../identity.ts';
import type { GatewayRequest } from '../pipeline.ts';
import { type CircuitBreakers, UpstreamFailure } from '../resilience/index.ts';
import type { UpstreamAttempt, UpstreamCodec } from './attempt.ts';
import { upstreamHeaders } from './request-headers.ts';

export interface H2UpstreamOptions {
  pool: H2Pool;
  breakers: CircuitBreakers;
  identities: Identities;
  /** a stream with no data for this long is cancelled (timeouts.idle) */
  idleTimeoutMs: number;
}

/** A request the peer cannot be sent (an invalid header, say): the request's fault, never the target's. */
export function badRequest(err: unknown): MeshfedError {
  return new MeshfedError(
    'MESHFED_GATEWAY_BAD_REQUEST',
    `the request cannot be forwarded: ${(err as Error).message}`,
    {
      cause: err,
    },
  );
}

/** HTTP/2 upstream: remote gateways over the pooled mTLS tunnel, and local h2/gRPC endpoints. */
export class H2Upstream implements UpstreamCodec {
  readonly #options: H2UpstreamOptions;
  constructor(options: H2UpstreamOptions) {
    this.#options = options;
  }

  send(r: GatewayRequest, t: BalancerTarget, a: UpstreamAttempt): void {
    void this.#send(r, t, a).catch((err: unknown) => a.fail('reset', err));
  }

  async #send(r: GatewayRequest, t: BalancerTarget, a: UpstreamAttempt): Promise<void> {
    const { req, res } = r.io;
    let session: http2.ClientHttp2Session;
    const release = this.#options.breakers.acquirePending(t);
    if (!release) return a.fail('overflow', undefined);
    try {
      session = await this.#options.pool.session(t.address, t.local ? undefined : t.cluster);
    } catch (err) {
      if (err instanceof UpstreamFailure) return a.fail(err.failure, err.cause);
      const identity = err instanceof MeshfedError && err.code.startsWith('MESHFED_CA_');
      return a.fail(identity ? 'refused' : 'connect', err);
    } finally {
      release();
    }
    // the per-try timeout or the caller may have ended the try while the session was dialled
    if (!a.open) return;
    const headers = upstreamHeaders(r, t, this.#options.identities);
    // node sends pseudo-headers first wherever they stand in the object
    headers[':method'] = r.method;
    headers[':path'] = r.target;
    headers[':authority'] = r.authority || t.address;
    headers[':scheme'] = 'http';
    const body = r.hasBody;
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers as http2.OutgoingHttpHeaders, { endStream: !body });
    } catch (err) {
      // node refuses headers it cannot send before any I/O: the request is at fault, not the target
      return a.fail('cancelled', badRequest(err));
    }
    a.onCancel(() => stream.close(h2c.NGHTTP2_CANCEL));
    stream.setTimeout(this.#options.idleTimeoutMs, () => stream.close(h2c.NGHTTP2_CANCEL));
    stream.on('response', (h: IncomingHttpHeaders, flags: number) => {
      const status = Number(h[':status'] ?? 502);
      const out = responseHeadersForClient(h);
      let trailers: Record<string, string | string[]> | undefined;
      if (out['grpc-status'] !== undefined && (flags & h2c.NGHTTP2_FLAG_END_STREAM) !== 0) {
        // gRPC "trailers-only" answer (an error with no messages): its whole header block is the
        // trailers (status, message and the server's trailing metadata); only content-type stays
        trailers = {};
        for (const [k, v] of Object.entries(out)) {
          if (k === 'content-type' || v === undefined) continue;
          trailers[k] = Array.isArray(v) ? v : String(v);
          delete out[k];
        }
      }
      if (!a.respond(status, out, trailers)) {
        stream.close();
        return;
      }
      stream.on('trailers', (tr) =>
        (res as ServerResponse).addTrailers(responseHeadersForClient(tr) as Record<string, string>),
      );
      stream.pipe(res as NodeJS.WritableStream);
    });
    // before a response a lost stream is a reset; after one it cuts the client's response short,
    // but a normal close after the end must not
    stream.once('error', (err) => a.fail('reset', err));
    stream.once('close', () => {
      if (a.open || stream.rstCode !== h2c.NGHTTP2_NO_ERROR)
        a.fail('reset', new Error(`stream closed (code ${stream.rstCode})`));
    });
    res.once('close', () => {
      if (!stream.closed) stream.close(h2c.NGHTTP2_CANCEL);
    });
    if (body) req.pipe(stream);
  }
}
