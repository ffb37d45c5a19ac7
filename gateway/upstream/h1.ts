import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Agent } from 'undici';
import type { BalancerTarget } from '../balancer/index.ts';
import { responseHeadersForClient } from '../headers.ts';
import type { Identities } from '../identity.ts';
import type { GatewayRequest } from '../pipeline.ts';
import type { CircuitBreakers } from '../resilience/index.ts';
import type { UpstreamAttempt, UpstreamCodec } from './attempt.ts';
import { BodyReplay } from './body-replay.ts';
import { badRequest, notReplayable } from './h2.ts';
import { upstreamHeaders } from './request-headers.ts';

/** requests whose body is being counted: a retried try must not count it twice */
const counting = new WeakSet<GatewayRequest>();

/**
 * Counts the body bytes undici reads, chunked or not (a declared length would say nothing of a chunked
 * body). Called from onRequestStart: undici attaches its own reader in the same turn, right after, and a
 * stream starts flowing only on the next tick, so both readers see every chunk, and none is read before
 * a try is connected (a try that never connects leaves the body whole for the next target).
 */
function countBody(r: GatewayRequest, body: IncomingMessage): void {
  if (counting.has(r)) return;
  counting.add(r);
  body.on('data', (d: Buffer) => {
    r.bytesIn += d.length;
  });
}

/**
 * HTTP/1.1 upstream to local endpoints through undici's pooled client: its dispatch API is the leanest
 * path Node has (no ClientRequest/IncomingMessage objects). undici writes a streamed body only once
 * connected, so a connect failure has consumed none of it and the request can go to another target.
 */
export class H1Upstream implements UpstreamCodec {
  readonly #options: { agent: () => Agent; breakers: CircuitBreakers; identities: Identities };
  /** `agent` is asked at each request: the gateway makes its Agent on the first one (gateway.ts, #undici) */
  constructor(options: { agent: () => Agent; breakers: CircuitBreakers; identities: Identities }) {
    this.#options = options;
  }

  send(r: GatewayRequest, t: BalancerTarget, a: UpstreamAttempt): void {
    const { req, res } = r.io;
    const headers = upstreamHeaders(r, t, this.#options.identities);
    headers.host = r.authority;
    // node's server has already answered `Expect: 100-continue`; the upstream gets the body directly
    delete headers.expect;
    // `te: trailers` crosses HTTP/2 hops (gRPC needs it) but is hop-by-hop here: HTTP/1.1 sends TE only with a
    // `Connection: TE` (RFC 9110 10.1.4), which undici cannot write, and this codec forwards no trailers
    if (headers.te !== undefined) delete headers.te;
    const out = res as ServerResponse;
    if (r.hasBody && r.replay) {
      // a retry of a body another codec streamed: undici takes it whole, as a buffer
      if (!r.replay.replayable) {
        a.fail('cancelled', notReplayable());
        return;
      }
    }
    // waiting for one of the endpoint's connections is 'pending' (circuitBreaker.maxPending)
    const releasePending = this.#options.breakers.acquirePending(t);
    if (!releasePending) {
      a.fail('overflow', undefined);
      return;
    }
    let connected = false;
    let discard = false;
    let controller: { abort(reason: Error): void; pause(): void; resume(): void } | undefined;
    a.onCancel(() => controller?.abort(new Error('the try was abandoned')));
    res.once('close', () => {
      if (!out.writableFinished) controller?.abort(new Error('the client went away'));
    });
    const onDrain = () => controller?.resume();
    try {
      this.#options.agent().dispatch(
        {
          origin: `http://${t.address}`,
          path: r.target,
          method: r.method,
          headers: headers as Record<string, string | string[]>,
          body: !r.hasBody ? null : r.replay ? Buffer.concat(r.replay.chunks) : (req as IncomingMessage),
        },
        {
          // undici calls this on a connected socket, right before it writes the request
          onRequestStart: (c) => {
            controller = c;
            connected = true;
            releasePending();
            if (r.hasBody) countBody(r, req as IncomingMessage);
            // undici streams the body itself, unrecorded: once it starts, no other try can send it
            if (r.hasBody) r.replay ??= BodyReplay.unrecorded();
          },
          onResponseStart: (_c, status, h) => {
            if (status < 200) return;
            discard = !a.respond(status, responseHeadersForClient(h));
          },
          onResponseData: (c, chunk) => {
            if (discard) return;
            r.bytesOut += chunk.length;
            if (!out.write(chunk)) {
              c.pause();
              out.once('drain', onDrain);
            }
          },
          onResponseEnd: () => {
            if (!discard) out.end();
          },
          onResponseError: (_c, err: Error & { code?: string }) => {
            releasePending();
            const code = err.code ?? '';
            if (discard) return;
            // undici refuses a request it cannot write (an asterisk-form `OPTIONS *` target) before it connects:
            // the request is at fault, never the endpoint, whose health a caller could otherwise wear down
            if (code === 'UND_ERR_INVALID_ARG') return a.fail('cancelled', badRequest(err));
            const beforeConnect = !connected || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ECONNREFUSED';
            const timedOut = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
            a.fail(beforeConnect ? 'connect' : timedOut ? 'timeout' : 'reset', err);
          },
        },
      );
    } catch (err) {
      // undici refuses a request it cannot send (an invalid header value, say) before any I/O
      releasePending();
      a.fail('cancelled', badRequest(err));
    }
  }
}
