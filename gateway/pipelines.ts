import type { Counter, Logger } from '../core/index.ts';
import type { GatewayOptions } from './gateway-options.ts';
import type { GoldenMetrics } from './golden-metrics.ts';
import type { Identities } from './identity.ts';
import { answerLayer } from './layers/answer.ts';
import { authorizationPolicy } from './layers/authorization.ts';
import { faultInjection } from './layers/fault-injection.ts';
import { authorize, callerRule, egressCaller, peerGateway } from './layers/identity.ts';
import { type InFlight, metricsLayer } from './layers/metrics.ts';
import type { PolicyMetrics } from './layers/policy-facts.ts';
import { rateLimit } from './layers/rate-limit.ts';
import { requestTargetCheck, underscoreHeaders } from './layers/request-checks.ts';
import { connectRoute, egressRoute, tunnelRoute } from './layers/route.ts';
import { traceLayer } from './layers/trace.ts';
import { trafficSplit } from './layers/traffic-split.ts';
import type { LocalServices } from './local-services.ts';
import { type Handler, type RequestLayer, stack } from './pipeline.ts';
import type { PolicyIndex } from './policy/index.ts';

export interface PipelineParts {
  options: GatewayOptions;
  /** the terminal of the HTTP pipelines (forward.ts) */
  send: Handler;
  /** the terminal of the CONNECT pipeline (the TCP relay) */
  connect: Handler;
  refused: Counter;
  log: Logger;
  identities: Identities;
  local: LocalServices;
  golden: GoldenMetrics;
  inFlight: InFlight;
  policy: { index: PolicyIndex; metrics: PolicyMetrics } | undefined;
}

/**
 * The gateway's three request pipelines, composed once, outermost layer first: egress requests, east-west
 * requests and east-west CONNECT streams. A new per-request behaviour is a layer added here.
 */
export function requestPipelines(p: PipelineParts): { egress: Handler; eastWest: Handler; connect: Handler } {
  const options = p.options;
  const answer = answerLayer({ refused: p.refused, log: p.log });
  const headers = underscoreHeaders(options.config.headersWithUnderscores);
  const observe: RequestLayer[] = [
    ...(options.tracer
      ? [
          traceLayer({
            tracer: options.tracer,
            cluster: options.cluster,
            gateway: options.name,
          }),
        ]
      : []),
  ];
  const golden = metricsLayer({ golden: p.golden, inFlight: p.inFlight });
  const authorization = options.authorize ? [authorize(options.authorize, options.cluster)] : [];
  const policy = p.policy;
  const random = options.random ?? Math.random;
  // destination: who may call (on the verified caller), then how often; source: the split, then faults
  // (both keyed on the service as the caller addressed it)
  const destinationPolicy: RequestLayer[] = policy
    ? [
        authorizationPolicy({ ...policy, local: p.local }),
        rateLimit({ ...policy, ...(options.rateLimitClock ? { now: options.rateLimitClock } : {}) }),
      ]
    : [];
  const sourcePolicy: RequestLayer[] = policy
    ? [trafficSplit({ ...policy, random }), faultInjection({ ...policy, random })]
    : [];
  const peer = peerGateway(p.identities);
  const callers = callerRule(p.identities);
  const egress = stack(
    p.send,
    answer,
    requestTargetCheck,
    headers,
    egressRoute({ catalog: options.catalog, local: p.local }),
    egressCaller(p.identities),
    golden,
    ...observe,
    ...sourcePolicy,
  );
  const eastWest = stack(
    p.send,
    answer,
    peer,
    requestTargetCheck,
    headers,
    tunnelRoute({ local: p.local }),
    callers,
    golden,
    ...authorization,
    ...destinationPolicy,
    ...observe,
  );
  // CONNECT passes the same identity, caller and authorization layers as a request
  const connect = stack(
    p.connect,
    answer,
    peer,
    connectRoute({ local: p.local }),
    callers,
    golden,
    ...authorization,
    ...destinationPolicy,
  );
  return { egress, eastWest, connect };
}
