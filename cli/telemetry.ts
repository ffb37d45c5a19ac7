import {
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import {
  BatchSpanProcessor,
  ConsoleSpanExporter,
  type SpanExporter,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  ParentBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import type { TracingConfig } from './telemetry-config.ts';

export { type TracingConfig, tracingConfigSchema } from './telemetry-config.ts';

export interface Telemetry {
  tracer: Tracer;
  shutdown(): Promise<void>;
}

/**
 * Starts OpenTelemetry for one gateway process. W3C `traceparent` propagation is the SDK default;
 * `exporter: none` still propagates context (spans are not recorded) so traces stay whole across
 * clusters whose exporters differ. Tests pass their own exporter (in-memory).
 */
export function startTelemetry(o: {
  config: TracingConfig;
  serviceName: string;
  cluster: string;
  gateway: string;
  exporter?: SpanExporter;
}): Telemetry {
  let exporter: SpanExporter | undefined = o.exporter;
  if (!exporter && o.config.exporter === 'console') exporter = new ConsoleSpanExporter();
  if (!exporter && o.config.exporter === 'otlp') {
    exporter = new OTLPTraceExporter(o.config.endpoint ? { url: o.config.endpoint } : {});
  }
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      'service.name': o.serviceName,
      'meshfed.cluster': o.cluster,
      'meshfed.gateway': o.gateway,
    }),
    spanProcessors: exporter
      ? [o.exporter ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter)]
      : [],
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(o.config.sampleRatio) }),
    instrumentations: [],
  });
  sdk.start();
  return { tracer: trace.getTracer('meshfed-gateway'), shutdown: () => sdk.shutdown() };
}

export interface ProxySpan {
  /** headers to send upstream: the incoming ones with `traceparent`/`tracestate` rewritten to this span */
  readonly traceHeaders: Record<string, string>;
  readonly traceId: string;
  end(statusCode: number | undefined, error?: unknown): void;
}

/**
 * One span per proxied request: continues the caller's trace from its `traceparent` and yields the
 * `traceparent` to forward, so the next gateway's span is this one's child.
 */
export function startProxySpan(
  tracer: Tracer,
  name: string,
  headers: Record<string, string | string[] | undefined>,
  attributes: Record<string, string | number | boolean>,
): ProxySpan {
  const parent = propagation.extract(context.active(), headers, {
    get: (carrier, key) => carrier[key],
    keys: (carrier) => Object.keys(carrier),
  });
  const span: Span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
  const out: Record<string, string> = {};
  propagation.inject(trace.setSpan(parent, span), out);
  return {
    traceHeaders: out,
    traceId: span.spanContext().traceId,
    end(statusCode, error) {
      if (statusCode !== undefined) span.setAttribute('http.response.status_code', statusCode);
      if (error !== undefined || (statusCode !== undefined && statusCode >= 500)) {
        span.setStatus({
          code: SpanStatusCode.ERROR,
          message: error instanceof Error ? error.message : undefined,
        });
      }
      span.end();
    },
  };
}
