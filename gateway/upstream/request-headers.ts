import type { BalancerTarget } from '../balancer/index.ts';
import { requestHeadersForUpstream } from '../headers.ts';
import type { Identities } from '../identity.ts';
import { type GatewayRequest, routeOf } from '../pipeline.ts';

/**
 * The request's headers for `t`, without host (HTTP/1 adds it, h2 sends :authority): the client's
 * headers minus hop-by-hop and internal ones, our span's traceparent, and the identity headers — the
 * caller for a local backend; the service, our chain and the caller for a remote gateway. `chain`: the
 * chain header to send a remote gateway (our current one by default; null: none, the connection's peer
 * has it already).
 */
export function upstreamHeaders(
  r: GatewayRequest,
  t: BalancerTarget,
  identities: Identities,
  chain: string | null = identities.localChain().b64,
): Record<string, unknown> {
  const headers = requestHeadersForUpstream(r.headers) as Record<string, unknown>;
  if (r.injectTrace) {
    // deleted only when there: a delete leaves the headers a slower dictionary
    if (headers.traceparent !== undefined) delete headers.traceparent;
    if (headers.tracestate !== undefined) delete headers.tracestate;
    r.injectTrace(headers);
  }
  if (t.local) {
    if (r.caller) headers['x-meshfed-peer-identity'] = r.caller;
  } else {
    const route = routeOf(r);
    headers['x-meshfed-service'] = `${route.namespace}/${route.name}/${t.port.name}`;
    // node's TLS server only exposes our leaf: send our intermediate so the peer can check the whole chain
    if (chain !== null) headers['x-meshfed-chain'] = chain;
    if (r.caller) headers['x-meshfed-caller'] = r.caller;
  }
  return headers;
}
