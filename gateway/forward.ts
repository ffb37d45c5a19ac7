import type { ResilienceOverrideSpec, ServiceRef } from '../core/index.ts';
import type { BalancerConfig, Balancers } from './balancer/index.ts';
import { answerFor } from './answers.ts';
import { isGrpc, isIdempotent } from './http-request.ts';
import type { PeerLiveness } from './peer-liveness.ts';
import { type GatewayRequest, type Handler, routeOf } from './pipeline.ts';
import { retryOnMatches } from './policy/index.ts';
import {
  balancedDispatch,
  type CallContext,
  type CircuitBreakers,
  callContext,
  classifyAnswer,
  compose,
  deadline,
  grpcTimeoutMs,
  perTryTimeout,
  type ResilienceMetrics,
  retriedByDefault,
  type RetryBudget,
  retry,
  type TryOutcome,
  UpstreamFailure,
} from './resilience/index.ts';
import { type Sent, sendTry, type UpstreamCodec } from './upstream/attempt.ts';
import { canResend } from './upstream/body-replay.ts';

export interface ForwardOptions {
  balancers: Balancers;
  breakers: CircuitBreakers;
  config: BalancerConfig;
  metrics: ResilienceMetrics;
  /** the retry budget of a service (shared with its TCP connections) */
  budgetFor: (service: ServiceRef) => RetryBudget;
  cluster: string;
  codec: UpstreamCodec;
  /** a service's ResilienceOverride (from the policy in force), replacing the gateway-wide settings */
  resilience?: (service: ServiceRef) => ResilienceOverrideSpec | undefined;
  /** PINGs a remote gateway at a timeout and stops the tries to it that can be retried when it is silent */
  liveness?: PeerLiveness;
}

function earliest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

/**
 * The terminal of the HTTP pipelines: pick → circuit breaker → send, inside retry (budget per service),
 * the caller's gRPC deadline and a per-try timeout. An upstream failure is answered here (it is not a
 * refusal: the request reached the balancer) and recorded on the request for the metrics layer.
 */
export function forward(options: ForwardOptions): Handler {
  const bc = options.config;
  const override = (ctx: ServiceRef) => options.resilience?.(ctx);
  const attempts = (ctx: ServiceRef) => override(ctx)?.retry?.attempts ?? bc.retry.attempts;
  const outcome = (ctx: CallContext<GatewayRequest>, failure: TryOutcome['failure'], sent?: Sent) => {
    const o: TryOutcome = { failure, grpc: isGrpc(ctx.payload.headers) };
    if (sent) o.status = sent.status;
    if (sent?.grpcStatus !== undefined) o.grpcStatus = sent.grpcStatus;
    return o;
  };
  // the one retry decision, read both by the retry layer and by a try that must decide whether to hold a
  // failed answer back, and only for a request that can be sent again whole: the gateway's conditions,
  // or the service's retry-on, which narrows them for HTTP and decides alone for gRPC (docs/policy.md)
  const retryable = (ctx: CallContext<GatewayRequest>, o: TryOutcome): boolean => {
    if (!canResend(ctx.payload)) return false;
    const on = override(ctx)?.retry?.retryOn;
    if (!on) return retriedByDefault(o, ctx.idempotent);
    return retryOnMatches(on, o) && (o.grpc || retriedByDefault(o, ctx.idempotent));
  };
  const tryOptions = {
    codec: options.codec,
    // a failed answer is held back only when another try may follow and would be made
    holdBack: (c: CallContext<GatewayRequest>, sent: Sent) => {
      const failure = classifyAnswer(sent.status, sent.grpcStatus);
      return failure !== undefined && c.attempt < attempts(c) && retryable(c, outcome(c, failure, sent));
    },
  };
  const dispatch = compose<Sent, GatewayRequest>(
    balancedDispatch<Sent, GatewayRequest>({
      balancers: options.balancers,
      breakers: options.breakers,
      send: (t, ctx) => sendTry(t, ctx, tryOptions),
      // a try to a silent gateway is stopped early only when a try that timed out would be retried
      observer: options.liveness?.observer<GatewayRequest>(
        (ctx) => ctx.attempt < attempts(ctx) && retryable(ctx, outcome(ctx, 'timeout')),
      ),
      classify: (s) => classifyAnswer(s.status, s.grpcStatus),
      sendHonoursSignal: true,
    }),
    // a gRPC caller's deadline (grpc-timeout) bounds all tries together; so does a service's request
    // timeout (the whole call, every try and backoff included)
    deadline<Sent, GatewayRequest>({
      ms: (ctx) =>
        earliest(grpcTimeoutMs(ctx.payload.headers['grpc-timeout']), override(ctx)?.timeouts?.request),
    }),
    retry<Sent, GatewayRequest>({
      attempts,
      retryable: (ctx, err) => {
        const sent = err.response as Sent | undefined;
        // an answer already forwarded to the caller cannot be replaced
        return !sent?.forwarded && retryable(ctx, outcome(ctx, err.failure, sent));
      },
      budgetFor: options.budgetFor,
      backoffBase: bc.retry.backoffBase,
      backoffMax: bc.retry.backoffMax,
      metrics: options.metrics,
      sourceCluster: options.cluster,
    }),
    perTryTimeout<Sent, GatewayRequest>({
      ms: (ctx) => override(ctx)?.retry?.perTryTimeout ?? bc.timeouts.request,
    }),
  );
  // one `then` per request, not an async function's frame
  return (r) => {
    const route = routeOf(r);
    let sent: Promise<Sent>;
    try {
      sent = dispatch(
        callContext(
          {
            namespace: route.namespace,
            name: route.name,
            // a body already streamed to a failed try is sent again only from its replay (canResend)
            idempotent: isIdempotent(r.method),
            scope: route.scope,
            port: route.port,
            portName: route.portName,
            cluster: route.cluster,
          },
          r,
        ),
      );
    } catch (err) {
      sent = Promise.reject(err);
    }
    return sent.then(
      (s) => {
        r.destination = s.cluster;
        r.status = s.status;
      },
      (err: unknown) => {
        const answer = answerFor(err);
        if (err instanceof UpstreamFailure) r.destination = err.target.cluster;
        r.status = answer.status;
        // a response already under way (a passed-through 5xx, or a body cut short) is not replaced
        r.answer(answer);
      },
    );
  };
}
