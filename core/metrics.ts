import { Counter, Registry } from 'prom-client';

export { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** One registry per process, built in the composition root and handed to every component. */
export function createRegistry(): Registry {
  return new Registry();
}

/** Latency buckets in seconds, from 100µs to 10s: cross-cluster calls span that whole range. */
export const LATENCY_BUCKETS = [
  0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/**
 * The registry's counter of that name, made on first use: several components of one process (sources, nodes in
 * tests and benchmarks) may share one registry, which refuses a second metric of the same name.
 */
export function sharedCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
): Counter<L> {
  return (
    (registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames, registers: [registry] })
  );
}
