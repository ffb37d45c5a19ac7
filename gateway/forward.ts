import type { ResilienceOverrideSpec, ServiceRef } from '../core/index.ts';
import type { BalancerConfig, Balancers } from './balancer/index.ts';
import { answerFor } from './answers.ts';
import { isIdempotent } from './http-request.ts';
import { type GatewayRequest, type Handler, routeOf } from './pipeline.ts';
import { retries5xx, retryOnMatches } from './policy/index.ts';
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
  /** a service's ResilienceOverride (from the policy in force), replacing the gateway-wide settings */
  resilience?: (service: ServiceRef) => ResilienceOverrideSpec | undefined;
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
  const dispatch = compose<Sent, GatewayRequest>(
    balancedDispatch<Sent, GatewayRequest>({
      balancers: options.balancers,
      breakers: options.breakers,
      send: (t, ctx) =>
        sendTry(t, ctx, {
          codec: options.codec,
          // a 5xx is held back for a retry only when another try may follow and retry-on lets it
          lastTry: (c) => c.attempt >= attempts(c) || !retries5xx(override(c)),
        }),
      classify: (s) => (s.status >= 500 && s.status !== 501 ? '5xx' : undefined),
    }),
    // a gRPC caller's deadline bounds all tries together, as Envoy honours grpc-timeout; so does a
    // service's request timeout (the whole call, as Istio's route timeout)
    deadline<Sent, GatewayRequest>({
      ms: (ctx) =>
        earliest(grpcTimeoutMs(ctx.payload.headers['grpc-timeout']), override(ctx)?.timeouts?.request),
    }),
    retry<Sent, GatewayRequest>({
      attempts,
      retryOn: (ctx, err) => {
        const on = override(ctx)?.retry?.retryOn;
        return !on || retryOnMatches(on, err);
      },
      budgetFor: budgetPerService({
        budgetPercent: bc.retry.budgetPercent,
        minRetriesPerSecond: bc.retry.minRetriesPerSecond,
        windowMs: bc.retry.budgetWindow,
      }),
      backoffBase: bc.retry.backoffBase,
      backoffMax: bc.retry.backoffMax,
      metrics: options.metrics,
      sourceCluster: options.cluster,
    }),
    perTryTimeout<Sent, GatewayRequest>({
      ms: (ctx) => override(ctx)?.retry?.perTryTimeout ?? bc.timeouts.request,
    }),
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
