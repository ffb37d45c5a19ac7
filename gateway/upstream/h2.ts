import type { ServerResponse } from 'node:http';
import http2, { type ClientHttp2Stream, constants as h2c, type IncomingHttpHeaders } from 'node:http2';
import { MeshfedError } from '../../core/index.ts';
import type { BalancerTarget } from '../balancer/index.ts';
import { type H2Pool, refusedUnread } from '../h2-pool.ts';
import { responseHeadersForClient } from '../headers.ts';
import { chainHeaderOf, type Identities } from '../identity.ts';
import type { GatewayRequest } from '../pipeline.ts';
import { type CircuitBreakers, UpstreamFailure } from '../resilience/index.ts';
import type { UpstreamAttempt, UpstreamCodec } from './attempt.ts';
import { BodyReplay } from './body-replay.ts';
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

/** node's errors for a request on a session that is closed or going away: the stream never left */
const SESSION_GONE = new Set([
  'ERR_HTTP2_INVALID_SESSION',
  'ERR_HTTP2_GOAWAY_SESSION',
  'ERR_HTTP2_OUT_OF_STREAMS',
]);

/** A retry found the body of an earlier try unrecorded: a guard, the retry layer checks this first. */
export function notReplayable(): MeshfedError {
  return new MeshfedError(
    'MESHFED_GATEWAY_UPSTREAM',
    'the request body was consumed by an earlier try and cannot be sent again',
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
    a.waitsForConnection = true;
    try {
      session = await this.#options.pool.session(t.address, t.local ? undefined : t.cluster);
    } catch (err) {
      if (err instanceof UpstreamFailure) return a.fail(err.failure, err.cause);
      const identity = err instanceof MeshfedError && err.code.startsWith('MESHFED_CA_');
      return a.fail(identity ? 'refused' : 'connect', err);
    } finally {
      release();
      a.waitsForConnection = false;
    }
    // the per-try timeout or the caller may have ended the try while the session was dialled
    if (!a.open) return;
    if (r.hasBody && r.replay && !r.replay.replayable) return a.fail('cancelled', notReplayable());
    const headers = upstreamHeaders(r, t, this.#options.identities);
    // the chain of the leaf this session presented (one dialled as our leaf rotated presents the old one)
    const leaf = t.local ? undefined : this.#options.pool.leafOf(session);
    if (leaf) headers['x-meshfed-chain'] = chainHeaderOf(leaf);
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
      // a session closed or going away since the pool handed it out: nothing was sent, try elsewhere
      if (SESSION_GONE.has((err as { code?: string }).code ?? '')) return a.fail('refused', err);
      // node refuses headers it cannot send before any I/O: the request is at fault, not the target
      return a.fail('cancelled', badRequest(err));
    }
    a.onCancel(() => stream.close(h2c.NGHTTP2_CANCEL));
    stream.setTimeout(this.#options.idleTimeoutMs, () => stream.close(h2c.NGHTTP2_CANCEL));
    let answered = false;
    stream.on('response', (h: IncomingHttpHeaders, flags: number) => {
      answered = true;
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
      if (trailers?.['grpc-status'] !== undefined) r.grpcStatus = String(trailers['grpc-status']);
      stream.on('trailers', (tr) => {
        if (tr['grpc-status'] !== undefined) r.grpcStatus = String(tr['grpc-status']);
        (res as ServerResponse).addTrailers(responseHeadersForClient(tr) as Record<string, string>);
      });
      stream.on('data', (d: Buffer) => {
        r.bytesOut += d.length;
      });
      stream.pipe(res as NodeJS.WritableStream);
    });
    // before a response a lost stream is a reset; after one it cuts the client's response short,
    // but a normal close after the end must not. A stream the peer refused (refusedUnread, or beyond
    // the last stream of its GOAWAY) never reached its application: 'refused', safe to send elsewhere.
    stream.once('error', (err: Error & { code?: string }) =>
      a.fail(
        err.code === 'ERR_HTTP2_GOAWAY_SESSION' || refusedUnread(stream, session, answered)
          ? 'refused'
          : 'reset',
        err,
      ),
    );
    stream.once('close', () => {
      if (a.open || stream.rstCode !== h2c.NGHTTP2_NO_ERROR)
        a.fail(
          refusedUnread(stream, session, answered) ? 'refused' : 'reset',
          new Error(`stream closed (code ${stream.rstCode})`),
        );
    });
    res.once('close', () => {
      if (!stream.closed) stream.close(h2c.NGHTTP2_CANCEL);
    });
    if (body) {
      const replay = r.replay;
      if (replay) {
        // a retry: the body an earlier try streamed, as it recorded it (the retry layer checked it is whole)
        for (const chunk of replay.chunks) stream.write(chunk);
        stream.end();
        return;
      }
      const recorder = new BodyReplay();
      r.replay = recorder;
      req.on('data', (d: Buffer) => {
        r.bytesIn += d.length;
        recorder.record(d);
      });
      req.once('end', () => recorder.end());
      req.pipe(stream);
    }
  }
}
