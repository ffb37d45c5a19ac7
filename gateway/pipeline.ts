import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Span } from '@opentelemetry/api';
import type { VerifiedIdentity } from '../ca/index.ts';
import { type Answer, writeAnswer } from './answers.ts';
import { GUARD_CLOSE_GRACE_MS } from './h2-session-guard.ts';
import { closeSessionWithin } from './session-close.ts';
import type { Exchange } from './h1/exchange.ts';
import type { BodyReplay } from './upstream/body-replay.ts';
import { authorityOf, hasBody, type Req, type Res, socketOf } from './http-request.ts';

/** The service a request is routed to, once the route layer has resolved it. */
export interface RouteTarget {
  namespace: string;
  name: string;
  /** 'any': local endpoints and remote gateways (egress); 'local': this cluster's endpoints only (east-west) */
  scope: 'any' | 'local';
  port?: number;
  portName?: string;
  /** only this cluster's targets (a traffic split backend pinned to a cluster); locality balancing is bypassed */
  cluster?: string;
}

/** What the policy layers decided for a request, for metrics, spans and `x-meshfed-policy`. */
export interface PolicyNote {
  /** the authorization decision at the destination ('allow' also when no policy names the service) */
  authorization?: 'allow' | 'deny';
  /** the deciding rule, `<policy>/<rule>`, or 'default-deny' */
  rule?: string;
  /** the traffic split route and backend chosen at the source */
  route?: string;
  backend?: string;
  /** the fault injected at the source */
  fault?: 'delay' | 'abort' | 'delay+abort';
}

/**
 * One request (or CONNECT stream) on its way through the gateway. Layers fill in what they establish
 * (the caller, the peer, the route, the span) and the terminal records how it ended.
 */
export interface GatewayRequest {
  readonly listener: 'egress' | 'eastWest';
  readonly method: string;
  /** the request-target as received (origin-form once requestTargetCheck passed) */
  readonly target: string;
  /** `:authority` or `Host`; '' when the request names none */
  readonly authority: string;
  /** lower-case names; a layer may delete a header, never add one (the codecs build what goes upstream) */
  readonly headers: IncomingHttpHeaders;
  /** the connection the request arrived on (TLS for the east-west listener and egress mTLS) */
  readonly socket: TLSSocket;
  /** what carries the request: its h2 session, or for HTTP/1.1 its socket (tracked for peer re-verification) */
  readonly connection: Http2Session | Socket;
  readonly hasBody: boolean;
  /**
   * Answers the caller with a gateway answer (a refusal or a failure); a response already under way is
   * left alone when it was forwarded, else cut.
   */
  answer(a: Answer): void;
  /** calls `fn` once, when the response is over (sent whole, or cut): at once if it already is */
  whenDone(fn: () => void): void;
  /** the response is over (sent whole, or cut: the caller reset the stream or closed the connection) */
  responseOver(): boolean;
  /** asks for the connection to close once this exchange ends (h2: GOAWAY; HTTP/1.1: Connection: close) */
  closeConnection(): void;
  /**
   * the codec's own handle on the exchange: node's request and response for the node codecs (for a
   * request of the HTTP/1.1 codec, node-shaped stand-ins made on first use)
   */
  readonly io: NodeIo;
  /** the HTTP/1.1 codec's exchange, for a request that arrived through it (gateway/h1) */
  readonly fast?: Exchange;
  /** the cluster the call comes from: ours at egress, the verified peer's on the east-west listener */
  sourceCluster: string;
  /** the verified peer gateway (east-west only) */
  peer?: VerifiedIdentity;
  /** the caller's SPIFFE ID: a workload, an anonymous caller of a cluster, or a peer gateway itself */
  caller?: string;
  route?: RouteTarget;
  /** the service the caller addressed, before a traffic split chose a backend (set by the split layer) */
  addressed?: RouteTarget;
  policy?: PolicyNote;
  span?: Span;
  /** writes the span's W3C trace context into the next hop's headers (set with span, by the trace layer) */
  injectTrace?: (headers: Record<string, unknown>) => void;
  /** the cluster that answered ('' until a target answered) and the status sent to the caller */
  destination: string;
  status: number;
  /** the grpc-status the caller got ('' until the codec saw one) */
  grpcStatus: string;
  /** body bytes received from the caller and sent back to it, counted by the codecs as they flow */
  bytesIn: number;
  bytesOut: number;
  /** the request body as the first try that streamed it recorded it, for a retry (upstream/body-replay.ts) */
  replay?: BodyReplay;
}

export type Handler = (r: GatewayRequest) => Promise<void>;

/**
 * One per-request job around the rest of the pipeline: `next` is everything inside it. A layer that waits
 * for nothing may be a plain function that returns `next(r)`, saving an async function's promise and its
 * extra turns per request: what it throws is answered by the answer layer, which every pipeline has
 * outermost, exactly as a rejection is.
 */
export type RequestLayer = (next: Handler) => Handler;

/** `stack(terminal, a, b, c)` = `a(b(c(terminal)))`: a sees the request first. Composed once, at start. */
export function stack(terminal: Handler, ...layers: readonly RequestLayer[]): Handler {
  let h = terminal;
  for (let i = layers.length - 1; i >= 0; i--) h = layers[i]!(h);
  return h;
}

export interface NodeIo {
  req: Req;
  res: Res;
}

/** A request as node's HTTP/1.1 or HTTP/2 server hands it over, read once for every layer. */
export function fromNode(
  listener: GatewayRequest['listener'],
  req: Req,
  res: Res,
  sourceCluster: string,
): GatewayRequest {
  return {
    listener,
    method: req.method ?? 'GET',
    target: req.url ?? '',
    authority: authorityOf(req),
    headers: req.headers,
    socket: socketOf(req),
    connection: (req as Http2ServerRequest).stream?.session ?? req.socket,
    hasBody: hasBody(req),
    answer: (a) => writeAnswer(req, res, a),
    whenDone: (fn) => {
      if (responseOver(res)) fn();
      else res.once('close', fn);
    },
    responseOver: () => responseOver(res),
    closeConnection: () => {
      const session = (req as Http2ServerRequest).stream?.session;
      if (session) closeSessionWithin(session, GUARD_CLOSE_GRACE_MS);
      else (res as ServerResponse).shouldKeepAlive = false;
    },
    io: { req, res },
    sourceCluster,
    destination: '',
    status: 0,
    grpcStatus: '',
    bytesIn: 0,
    bytesOut: 0,
  };
}

/** The route a layer after the route layer relies on; a pipeline built in the wrong order fails loudly. */
export function routeOf(r: GatewayRequest): RouteTarget {
  if (!r.route) throw new Error('pipeline order: this layer needs the route layer before it');
  return r.route;
}

/**
 * The response is over (sent, or cut): its 'close' has fired or is the next thing to happen. A finished
 * writable side counts only once the head is out: node's HTTP/2 server ends a HEAD request's stream for
 * writing as it arrives (no body may follow), so its response reads as finished before any answer was sent.
 */
function responseOver(res: Res): boolean {
  const s = res as {
    writableFinished?: boolean;
    headersSent?: boolean;
    destroyed?: boolean;
    closed?: boolean;
    stream?: { closed?: boolean };
  };
  return (
    (s.writableFinished === true && s.headersSent === true) ||
    s.destroyed === true ||
    s.closed === true ||
    s.stream?.closed === true
  );
}
