// The public surface of gateway/: listeners, routing, the tunnel, and (in balancer/) load balancing.
export { type AuthorizeHook, Gateway, type GatewayOptions } from './gateway.ts';
export { anonymousCaller } from './identity.ts';
export { type GatewayRequest, type RequestLayer, stack } from './pipeline.ts';
export {
  FAST_ALPN,
  GATEWAY_ALPN_OFFER,
  type GatewayConfig,
  gatewayConfigSchema,
  TUNNEL_ALPN,
} from './config.ts';
export { type HelloResult, parseClientHello } from './client-hello.ts';
export { H2Pool } from './h2-pool.ts';
// the policy evaluation the enforcement layers run, for `meshfed policy explain`
export {
  type AuthorizationCall,
  type AuthorizationDecision,
  type AuthorizationExplanation,
  chooseRoute,
  compilePolicy,
  evaluateAuthorization,
  type ExplainInput,
  explainAuthorization,
  explainPolicy,
  faultsFor,
  matchFault,
  matchRoute,
  type PolicyExplanation,
  type PolicySummary,
  policyPath,
  requestCall,
} from './policy/index.ts';
export { type AdminEndpointOptions, adminHandler, adminServer } from './admin-endpoint.ts';
export {
  type BalancerConfig,
  type BalancerTarget,
  Balancers,
  type BalancersOptions,
  balancerConfigSchema,
  type RouteExplanation,
} from './balancer/index.ts';
export {
  type CallProtocol,
  DEFAULT_GOLDEN_LIMITS,
  type Direction,
  GoldenMetrics,
  type GoldenLimits,
  GoldenSeries,
  goldenSeriesBound,
} from './golden-metrics.ts';
export { outboundLinks } from './dashboard/links.ts';
export {
  mergeSnapshots,
  quantile,
  summarize,
  type TrafficRow,
  type TrafficSnapshot,
  type TrafficSummary,
  WINDOW_SECONDS,
  windowMsOf,
} from './traffic-window.ts';
