import {
  defaultTextMapGetter,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { type RequestLayer, routeOf } from '../pipeline.ts';

// W3C trace context directly, so traceparent works whether or not a global propagator is installed
export const W3C = new W3CTraceContextPropagator();

/**
 * A server span per request, child of the caller's `traceparent`; the upstream codecs inject it into
 * the request they send. Ends with the status the caller got.
 */
export function traceLayer(options: { tracer: Tracer; cluster: string; gateway: string }): RequestLayer {
  return (next) => async (r) => {
    const route = routeOf(r);
    const service = `${route.name}.${route.namespace}`;
    const parent = W3C.extract(ROOT_CONTEXT, r.headers, defaultTextMapGetter);
    const span = options.tracer.startSpan(
      `${r.listener === 'egress' ? 'egress' : 'ingress'} ${service}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'meshfed.listener': r.listener,
          'meshfed.cluster': options.cluster,
          'meshfed.gateway': options.gateway,
          'meshfed.service': service,
          ...(r.peer ? { 'meshfed.peer': r.peer.spiffeId } : {}),
        },
      },
      parent,
    );
    r.span = span;
    try {
      await next(r);
    } finally {
      span.setAttribute('http.response.status_code', r.status);
      if (r.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
  };
}
