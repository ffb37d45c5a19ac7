import { grpcStatusOf } from '../answers.ts';
import type { CallProtocol, GoldenMetrics } from '../golden-metrics.ts';
import { isGrpc } from '../http-request.ts';
import { type GatewayRequest, type RequestLayer, routeOf } from '../pipeline.ts';

/** Requests in flight through the pipelines (the meshfed_active_requests gauge, and what drain waits for). */
export class InFlight {
  count = 0;
}

/** The response is over (sent, or cut): its 'close' has fired or is the next thing to happen. */
function responseOver(res: GatewayRequest['io']['res']): boolean {
  const s = res as {
    writableFinished?: boolean;
    destroyed?: boolean;
    closed?: boolean;
    stream?: { closed?: boolean };
  };
  return (
    s.writableFinished === true || s.destroyed === true || s.closed === true || s.stream?.closed === true
  );
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
export function metricsLayer(o: { golden: GoldenMetrics; inFlight: InFlight }): RequestLayer {
  return (next) => async (r) => {
    const route = routeOf(r);
    const t0 = performance.now();
    o.inFlight.count++;
    try {
      await next(r);
    } finally {
      o.inFlight.count--;
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
        o.golden
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
      if (responseOver(r.io.res)) done();
      else r.io.res.once('close', done);
    }
  };
}
