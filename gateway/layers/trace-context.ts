import {
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

// W3C trace context directly, so traceparent works whether or not a global propagator is installed
const W3C = new W3CTraceContextPropagator();

/** A server span named `name`, child of the `traceparent` in the caller's headers (if any). */
export function startServerSpan(
  tracer: Tracer,
  name: string,
  attributes: Record<string, string>,
  headers: Record<string, unknown>,
): Span {
  const parent = W3C.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
  return tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
}

/** Ends `span` with the status the caller got. */
export function endServerSpan(span: Span, status: number): void {
  span.setAttribute('http.response.status_code', status);
  if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/** Writes `span`'s traceparent (and tracestate) into the headers of the next hop. */
export function injectTraceContext(span: Span, headers: Record<string, unknown>): void {
  W3C.inject(trace.setSpan(ROOT_CONTEXT, span), headers, defaultTextMapSetter);
}
