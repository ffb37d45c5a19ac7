import type { Tracer } from '@opentelemetry/api';
import { type RequestLayer, routeOf } from '../pipeline.ts';

/**
 * A server span per request, child of the caller's `traceparent`; the upstream codecs inject it into
 * the request they send (r.injectTrace). Ends with the status the caller got. The OpenTelemetry API is
 * loaded when this layer is built (trace-context.ts): a gateway without tracing never loads it.
 */
export function traceLayer(options: { tracer: Tracer; cluster: string; gateway: string }): RequestLayer {
  const otel = import('./trace-context.ts');
  return (next) => async (r) => {
    const { startServerSpan, endServerSpan, injectTraceContext } = await otel;
    const route = routeOf(r);
    const service = `${route.name}.${route.namespace}`;
    const span = startServerSpan(
      options.tracer,
      `${r.listener === 'egress' ? 'egress' : 'ingress'} ${service}`,
      {
        'meshfed.listener': r.listener,
        'meshfed.cluster': options.cluster,
        'meshfed.gateway': options.gateway,
        'meshfed.service': service,
        ...(r.peer ? { 'meshfed.peer': r.peer.spiffeId } : {}),
      },
      r.headers,
    );
    r.span = span;
    r.injectTrace = (headers) => injectTraceContext(span, headers);
    try {
      await next(r);
    } finally {
      endServerSpan(span, r.status);
    }
  };
}
