import { type Counter, type EndpointSource, Gauge, type Registry, sharedCounter } from '../core/index.ts';

/**
 * Discovery's metrics. Gauges are computed at scrape time from the sources' current sets, so
 * nothing on the change path does metric work. Registering twice on one registry reuses the
 * existing metric (one process may build several sources).
 */
export function registerSourceMetrics(registry: Registry, sources: readonly EndpointSource[]): void {
  if (registry.getSingleMetric('meshfed_discovery_services')) return;
  new Gauge({
    name: 'meshfed_discovery_services',
    help: 'local services each discovery source currently reports, by source and exported flag',
    labelNames: ['source', 'exported'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sources) {
        let exported = 0;
        let other = 0;
        for (const svc of s.current()) {
          if (svc.exported) exported++;
          else other++;
        }
        this.set({ source: s.name, exported: 'true' }, exported);
        this.set({ source: s.name, exported: 'false' }, other);
      }
    },
  });
}

export interface ImportMetrics {
  imports: Gauge<'sink'>;
  applies: Counter<'sink' | 'result'>;
}

export function importMetrics(registry: Registry): ImportMetrics {
  const imports =
    (registry.getSingleMetric('meshfed_discovery_imports') as Gauge<'sink'> | undefined) ??
    new Gauge({
      name: 'meshfed_discovery_imports',
      help: 'imported services each sink last applied successfully',
      labelNames: ['sink'],
      registers: [registry],
    });
  const applies = sharedCounter(
    registry,
    'meshfed_discovery_applies_total',
    'sink applies by result (ok, retryable, terminal)',
    ['sink', 'result'],
  );
  return { imports, applies };
}
