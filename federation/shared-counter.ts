import { Counter, type Registry } from '../core/index.ts';

/** The registry's counter of that name, made on first use: several nodes (tests, benchmarks) may share one registry. */
export function sharedCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  label: L,
): Counter<L> {
  return (
    (registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames: [label], registers: [registry] })
  );
}
