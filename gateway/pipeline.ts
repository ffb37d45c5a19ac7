import type { Span } from '@opentelemetry/api';
import type { VerifiedIdentity } from '../ca/index.ts';
import type { Req, Res } from './http-request.ts';

/** The service a request is routed to, once the route layer has resolved it. */
export interface RouteTarget {
  namespace: string;
  name: string;
  /** 'any': local endpoints and remote gateways (egress); 'local': this cluster's endpoints only (east-west) */
  scope: 'any' | 'local';
  port?: number;
  portName?: string;
}

/**
 * One request (or CONNECT stream) on its way through the gateway. Layers fill in what they establish
 * (the caller, the peer, the route, the span) and the terminal records how it ended.
 */
export interface GatewayRequest {
  readonly listener: 'egress' | 'eastWest';
  readonly req: Req;
  readonly res: Res;
  /** the cluster the call comes from: ours at egress, the verified peer's on the east-west listener */
  sourceCluster: string;
  /** the verified peer gateway (east-west only) */
  peer?: VerifiedIdentity;
  /** the caller's SPIFFE ID: a workload, an anonymous caller of a cluster, or a peer gateway itself */
  caller?: string;
  route?: RouteTarget;
  span?: Span;
  /** the cluster that answered ('' until a target answered) and the status sent to the caller */
  destination: string;
  status: number;
}

export type Handler = (r: GatewayRequest) => Promise<void>;

/** One per-request job around the rest of the pipeline: `next` is everything inside it. */
export type RequestLayer = (next: Handler) => Handler;

/** `stack(terminal, a, b, c)` = `a(b(c(terminal)))`: a sees the request first. Composed once, at start. */
export function stack(terminal: Handler, ...layers: readonly RequestLayer[]): Handler {
  let h = terminal;
  for (let i = layers.length - 1; i >= 0; i--) h = layers[i]!(h);
  return h;
}

export function newRequest(listener: GatewayRequest['listener'], req: Req, res: Res, sourceCluster: string) {
  const r: GatewayRequest = { listener, req, res, sourceCluster, destination: '', status: 0 };
  return r;
}

/** The route a layer after the route layer relies on; a pipeline built in the wrong order fails loudly. */
export function routeOf(r: GatewayRequest): RouteTarget {
  if (!r.route) throw new Error('pipeline order: this layer needs the route layer before it');
  return r.route;
}
