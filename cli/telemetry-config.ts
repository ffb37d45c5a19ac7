import { z } from '../core/index.ts';

// The tracing section of the config, apart from the OpenTelemetry SDK (cli/telemetry.ts), which is
// loaded only when tracing is on: reading a config must not cost the SDK's ~40 MB of memory.
export const tracingConfigSchema = z
  .strictObject({
    exporter: z
      .enum(['none', 'console', 'otlp'])
      .default('none')
      .describe('where spans go: nowhere, stdout, or an OTLP/HTTP collector (`endpoint`)'),
    endpoint: z
      .string()
      .url()
      .optional()
      .describe('OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces'),
    sampleRatio: z
      .number()
      .min(0)
      .max(1)
      .default(1)
      .describe("share of new traces recorded (parent-based: a sampled caller's trace is always continued)"),
  })
  .prefault({});

export type TracingConfig = z.output<typeof tracingConfigSchema>;
