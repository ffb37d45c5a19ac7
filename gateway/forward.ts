import type { BalancerConfig, Balancers } from './balancer/index.ts';
import { answerFor } from './answers.ts';
import { isIdempotent } from './http-request.ts';
import { type GatewayRequest, type Handler, routeOf } from './pipeline.ts';
import {
  balancedDispatch,
  budgetPerService,
  type CircuitBreakers,
  callContext,
  compose,
  deadline,
  grpcTimeoutMs,
  perTryTimeout,
  type ResilienceMetrics,
  retry,
  UpstreamFailure,
} from './resilience/index.ts';
import { type Sent, sendTry, type UpstreamCodec } from './upstream/attempt.ts';

export interface ForwardOptions {
  balancers: Balancers;
  breakers: CircuitBreakers;
  config: BalancerConfig;
  metrics: ResilienceMetrics;
  cluster: string;
  codec: UpstreamCodec;
}

/**
 * The terminal of the HTTP pipelines: pick → circuit breaker → send, inside retry (budget per service),
 * the caller's gRPC deadline and a per-try timeout. An upstream failure is answered here (it is not a
 * refusal: the request reached the balancer) and recorded on the request for the metrics layer.
 */
export function forward(o: ForwardOptions): Handler {
  const bc = o.config;
  const dispatch = compose<Sent, GatewayRequest>(
    balancedDispatch<Sent, GatewayRequest>({
      balancers: o.balancers,
      breakers: o.breakers,
      send: (t, ctx) => sendTry(t, ctx, { codec: o.codec, maxAttempts: bc.retry.attempts }),
      classify: (s) => (s.status >= 500 && s.status !== 501 ? '5xx' : undefined),
    }),
    // a gRPC caller's deadline bounds all tries together, as Envoy honours grpc-timeout
    deadline<Sent, GatewayRequest>({ ms: (ctx) => grpcTimeoutMs(ctx.payload.headers['grpc-timeout']) }),
    retry<Sent, GatewayRequest>({
      attempts: bc.retry.attempts,
      budgetFor: budgetPerService({
        budgetPercent: bc.retry.budgetPercent,
        minRetriesPerSecond: bc.retry.minRetriesPerSecond,
        windowMs: bc.retry.budgetWindow,
      }),
      backoffBase: bc.retry.backoffBase,
      backoffMax: bc.retry.backoffMax,
      metrics: o.metrics,
      sourceCluster: o.cluster,
    }),
    perTryTimeout<Sent, GatewayRequest>({ ms: bc.timeouts.request }),
  );
  return async (r) => {
    const route = routeOf(r);
    try {
      const sent = await dispatch(
        callContext(
          {
            namespace: route.namespace,
            name: route.name,
            // a body already streamed to a failed try cannot be sent again
            idempotent: isIdempotent(r.method, r.hasBody),
            scope: route.scope,
            port: route.port,
            portName: route.portName,
            cluster: route.cluster,
          },
          r,
        ),
      );
      r.destination = sent.cluster;
      r.status = sent.status;
    } catch (err) {
      const answer = answerFor(err);
      if (err instanceof UpstreamFailure) r.destination = err.target.cluster;
      r.status = answer.status;
      // a response already under way (a passed-through 5xx, or a body cut short) is not replaced
      r.answer(answer);
    }
  };
}
