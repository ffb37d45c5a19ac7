// The public surface of gateway/: listeners, routing, the tunnel, and (in balancer/) load balancing.
export { type AuthorizeHook, Gateway, type GatewayOptions } from './gateway.ts';
export { anonymousCaller } from './identity.ts';
export { type GatewayRequest, type RequestLayer, stack } from './pipeline.ts';
export { FAST_ALPN, type GatewayConfig, gatewayConfigSchema, TUNNEL_ALPN } from './config.ts';
export { type HelloResult, parseClientHello } from './client-hello.ts';
export { H2Pool } from './h2-pool.ts';
export { type AdminEndpointOptions, adminHandler, adminServer } from './admin-endpoint.ts';
export {
  type BalancerConfig,
  type BalancerTarget,
  Balancers,
  type BalancersOptions,
  balancerConfigSchema,
  type RouteExplanation,
} from './balancer/index.ts';
