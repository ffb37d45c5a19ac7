import { grpcStatusOf } from '../answers.ts';
import type { CallProtocol, GoldenMetrics } from '../golden-metrics.ts';
import { isGrpc } from '../http-request.ts';
import { type GatewayRequest, type RequestLayer, type RouteTarget, routeOf } from '../pipeline.ts';

/** Requests in flight through the pipelines (the meshfed_active_requests gauge, and what drain waits for). */
export class InFlight {
  count = 0;
  /** performance.now() when the last request started */
  lastStart = 0;
}

function protocolOf(r: GatewayRequest): CallProtocol {
  if (r.method === 'CONNECT') return 'tcp';
  return isGrpc(r.headers) ? 'grpc' : 'http';
}

/**
 * The golden metrics of every routed request or CONNECT stream (see golden-metrics.ts): latency to the
 * response headers; status, grpc-status and bytes once the response is over (a gRPC status arrives in
 * the trailers, the bytes with the body).
 */
export function metricsLayer(options: { golden: GoldenMetrics; inFlight: InFlight }): RequestLayer {
  /** the request left the pipeline: its series is recorded once its response is over */
  const ended = (r: GatewayRequest, route: RouteTarget, t0: number): void => {
    options.inFlight.count--;
    const seconds = (performance.now() - t0) / 1000;
    const protocol = protocolOf(r);
    const done = () => {
      const grpc =
        protocol !== 'grpc'
          ? ''
          : r.grpcStatus !== ''
            ? r.grpcStatus
            : r.status !== 200
              ? String(grpcStatusOf(r.status))
              : 'unknown';
      options.golden
        .series(
          r.listener === 'egress' ? 'outbound' : 'inbound',
          protocol,
          r.sourceCluster,
          r.caller,
          r.destination,
          `${route.name}.${route.namespace}`,
        )
        .record(r.status, grpc, seconds, r.bytesIn, r.bytesOut);
    };
    r.whenDone(done);
  };
  // not an async function: one `then` per request, not a frame and an await
  return (next) => (r) => {
    const route = routeOf(r);
    const t0 = performance.now();
    options.inFlight.count++;
    options.inFlight.lastStart = t0;
    let left: Promise<void>;
    try {
      left = next(r);
    } catch (err) {
      ended(r, route, t0);
      throw err;
    }
    return left.then(
      () => ended(r, route, t0),
      (err: unknown) => {
        ended(r, route, t0);
        throw err;
      },
    );
  };
}
