import type { BalancerTarget } from '../balancer/index.ts';
import { requestHeadersForUpstream } from '../headers.ts';
import type { Identities } from '../identity.ts';
import { type GatewayRequest, routeOf } from '../pipeline.ts';

/**
 * The request's headers for `t`, without host (HTTP/1 adds it, h2 sends :authority): the client's
 * headers minus hop-by-hop and internal ones, our span's traceparent, and the identity headers — the
 * caller for a local backend; the service, our chain and the caller for a remote gateway.
 */
export function upstreamHeaders(
  r: GatewayRequest,
  t: BalancerTarget,
  identities: Identities,
): Record<string, unknown> {
  const headers = requestHeadersForUpstream(r.headers) as Record<string, unknown>;
  if (r.injectTrace) {
    delete headers.traceparent;
    delete headers.tracestate;
    r.injectTrace(headers);
  }
  if (t.local) {
    if (r.caller) headers['x-meshfed-peer-identity'] = r.caller;
  } else {
    const route = routeOf(r);
    headers['x-meshfed-service'] = `${route.namespace}/${route.name}/${t.port.name}`;
    // node's TLS server only exposes our leaf: send our intermediate so the peer can check the whole chain
    headers['x-meshfed-chain'] = identities.localChain().b64;
    if (r.caller) headers['x-meshfed-caller'] = r.caller;
  }
  return headers;
}
