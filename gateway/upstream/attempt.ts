import type { ServerResponse } from 'node:http';
import type { OutgoingHttpHeaders } from 'node:http';
import type { BalancerTarget, Failure } from '../balancer/index.ts';
import type { GatewayRequest } from '../pipeline.ts';
import { type CallContext, type TrySignal, UpstreamFailure } from '../resilience/index.ts';

/** A try whose response headers arrived; `forwarded: false` is a failed answer held back for a retry. */
export interface Sent {
  status: number;
  cluster: string;
  forwarded: boolean;
  /** the grpc-status of a trailers-only answer (a gRPC error before any message) */
  grpcStatus?: number;
}

/** What an upstream codec reports to the one place that settles a try. */
export interface UpstreamAttempt {
  /** false once the try is settled (answered, failed, timed out, or the caller left) */
  readonly open: boolean;
  /**
   * The codec waits for a connection (a dial, a pooled connection or tunnel session to free up) and nothing
   * of the request has left: a try that runs out of time now failed to connect, which is safe to send
   * elsewhere whatever the method. Set while waiting, cleared before the first byte is written.
   */
  waitsForConnection: boolean;
  /** how to stop the upstream request when the try is abandoned */
  onCancel(fn: () => void): void;
  /** response headers arrived: forwards them and returns true, or false when the upstream must be dropped */
  respond(
    status: number,
    headers: OutgoingHttpHeaders,
    trailers?: Record<string, string | string[]>,
  ): boolean;
  /** the upstream failed: before a response the try fails; after a forwarded one the response is cut */
  fail(failure: Failure, err: unknown): void;
}

/** What a try writes the response to: node's response, or the HTTP/1.1 codec's exchange. */
interface Downstream {
  once(event: 'close', fn: () => void): unknown;
  off(event: 'close', fn: () => void): unknown;
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown;
  addTrailers(t: Record<string, string | string[]>): void;
  destroy(): unknown;
}

/** An upstream protocol: sends one request to one target and reports through the attempt. */
export interface UpstreamCodec {
  send(r: GatewayRequest, t: BalancerTarget, a: UpstreamAttempt): void;
}

interface TryOptions {
  codec: UpstreamCodec;
  /** a failed answer (5xx, a gRPC error status) that a retry will replace: held back, not forwarded */
  holdBack: (ctx: CallContext<GatewayRequest>, sent: Sent) => boolean;
}

const NO_CANCEL = (): void => undefined;
const ONCE = { once: true } as const;

/**
 * The attempt of one try: settled once, by the response headers, a failure, the per-try abort or the
 * caller leaving. A class, so a try is one object with two listeners (the codecs call its methods), not a
 * literal of five closures and a getter.
 */
class Attempt implements UpstreamAttempt {
  readonly #t: BalancerTarget;
  readonly #ctx: CallContext<GatewayRequest> & { signal: TrySignal };
  readonly #holdBack: TryOptions['holdBack'];
  readonly #res: Downstream;
  readonly #resolve: (s: Sent) => void;
  readonly #reject: (err: unknown) => void;
  #settled = false;
  #forwarded = false;
  #cancel = NO_CANCEL;
  waitsForConnection = false;

  constructor(
    t: BalancerTarget,
    ctx: CallContext<GatewayRequest> & { signal: TrySignal },
    holdBack: TryOptions['holdBack'],
    res: Downstream,
    resolve: (s: Sent) => void,
    reject: (err: unknown) => void,
  ) {
    this.#t = t;
    this.#ctx = ctx;
    this.#holdBack = holdBack;
    this.#res = res;
    this.#resolve = resolve;
    this.#reject = reject;
    ctx.signal.addEventListener('abort', this.#onAbort, ONCE);
    res.once('close', this.onClientGone);
  }

  get open(): boolean {
    return !this.#settled;
  }

  onCancel(fn: () => void): void {
    this.#cancel = fn;
  }

  #finish(): void {
    this.#settled = true;
    this.#ctx.signal.removeEventListener('abort', this.#onAbort);
    this.#res.off('close', this.onClientGone);
  }

  readonly #onAbort = (): void => {
    if (this.#settled) return;
    this.#finish();
    this.#cancel();
    const reason = this.#ctx.signal.reason;
    // the request never left: the dispatch reads a per-try timeout now as a failure to connect (retryable)
    this.#reject(
      this.waitsForConnection ? new UpstreamFailure('connect', this.#t, { cause: reason }) : reason,
    );
  };

  /** the caller left before the try settled */
  readonly onClientGone = (): void => {
    if (this.#settled) return;
    this.#finish();
    this.#cancel();
    this.#reject(new UpstreamFailure('cancelled', this.#t));
  };

  respond(
    status: number,
    headers: OutgoingHttpHeaders,
    trailers?: Record<string, string | string[]>,
  ): boolean {
    if (this.#settled) return false;
    this.#finish();
    const grpc = trailers?.['grpc-status'];
    const sent: Sent = { status, cluster: this.#t.cluster, forwarded: false };
    if (grpc !== undefined) sent.grpcStatus = Number(grpc);
    if (this.#holdBack(this.#ctx, sent)) {
      this.#resolve(sent);
      return false;
    }
    try {
      this.#res.writeHead(status, headers);
      if (trailers) this.#res.addTrailers(trailers);
    } catch (err) {
      // a head node cannot write for the caller (HTTP/2: a single-valued field the upstream repeated,
      // ERR_HTTP2_HEADER_SINGLE_VALUE): the upstream's answer is at fault. The response has taken some of its
      // fields, so it is cut rather than answered; the caller would otherwise wait for an answer that never comes
      this.#res.destroy();
      this.#reject(new UpstreamFailure('reset', this.#t, { cause: err }));
      return false;
    }
    this.#forwarded = true;
    sent.forwarded = true;
    this.#resolve(sent);
    return true;
  }

  fail(failure: Failure, err: unknown): void {
    if (!this.#settled) {
      this.#finish();
      this.#reject(new UpstreamFailure(failure, this.#t, { cause: err }));
    } else if (this.#forwarded) this.#res.destroy();
  }
}

/**
 * One try against one target, the innermost step of the forward dispatch. Resolves once the response
 * headers are forwarded (the body then streams on its own), or with `forwarded: false` for a failed
 * answer that the retry layer will replace. Rejects with an UpstreamFailure that says how the try failed, or
 * with the abort reason of the per-try timeout (so the dispatch need not race the abort itself).
 */
export function sendTry(
  t: BalancerTarget,
  ctx: CallContext<GatewayRequest> & { signal: TrySignal },
  options: TryOptions,
): Promise<Sent> {
  const r = ctx.payload;
  // a caller that reset its stream before the try (HTTP/2 rapid reset: HEADERS then RST_STREAM at once)
  // left no response to wait for: its 'close' already fired, and a request sent upstream now would cost
  // the peer a whole exchange and, cancelled, count against this gateway's own tunnel session there
  if (r.responseOver()) return Promise.reject(new UpstreamFailure('cancelled', t));
  // the HTTP/1.1 codec's exchange answers like node's response for what a try needs of it
  const res: Downstream = r.fast ?? (r.io.res as ServerResponse);
  return new Promise<Sent>((resolve, reject) => {
    const attempt = new Attempt(t, ctx, options.holdBack, res, resolve, reject);
    if (ctx.attempt > 0 || r.fast || !('goaway' in r.connection)) {
      options.codec.send(r, t, attempt);
      return;
    }
    // an HTTP/2 caller's first try leaves after the event loop has read what else its connection already
    // holds: a RST_STREAM sent right behind the HEADERS (rapid reset) is then seen before anything goes
    // upstream, instead of being relayed as a cancel that the peer's guard counts against our tunnel
    setImmediate(() => {
      if (!attempt.open) return;
      if (r.responseOver()) attempt.onClientGone();
      else options.codec.send(r, t, attempt);
    });
  });
}

/**
 * Routes a try to HTTP/2 (remote gateways, gRPC and h2 endpoints) or HTTP/1.1 (other local endpoints).
 * A request of the HTTP/1.1 codec goes to `fast` (remote gateways, which falls back to the tunnel for a
 * gateway without the fast path, and HTTP/1.1 endpoints); to h2 endpoints it takes the HTTP/2 codec.
 */
export function byTarget(h2: UpstreamCodec, h1: UpstreamCodec, fast?: UpstreamCodec): UpstreamCodec {
  return {
    send(r, t, a) {
      const useH2 = !t.local || t.port.protocol === 'grpc' || t.port.protocol === 'http2';
      if (fast && r.fast && !(t.local && useH2)) fast.send(r, t, a);
      else (useH2 ? h2 : h1).send(r, t, a);
    },
  };
}
