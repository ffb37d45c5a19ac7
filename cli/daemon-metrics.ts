import type { CertificateSource } from '../ca/index.ts';
import { Gauge, type Registry, registerProcessMetrics } from '../core/index.ts';
import type { FederationNode } from '../federation/index.ts';

/** What the daemon's own gauges read at each scrape; a part not built yet reads as absent. */
export interface DaemonMetricsSources {
  gatewayIdentity: () => CertificateSource | undefined;
  federationIdentity: () => CertificateSource | undefined;
  federation: () => FederationNode | undefined;
  cluster: () => string;
}

/** The process metrics and the gauges only the composition root can fill: certificates, NATS, the catalog. */
export function registerDaemonMetrics(registry: Registry, s: DaemonMetricsSources): void {
  registerProcessMetrics(registry);
  new Gauge({
    name: 'meshfed_cert_expiry_seconds',
    help: 'seconds until the current certificate of each identity expires',
    labelNames: ['identity'],
    registers: [registry],
    collect() {
      for (const [name, src] of [
        ['gateway', s.gatewayIdentity()],
        ['federation', s.federationIdentity()],
      ] as const) {
        const leaf = src?.current();
        if (leaf) this.set({ identity: name }, (leaf.notAfter.getTime() - Date.now()) / 1000);
      }
    },
  });
  new Gauge({
    name: 'meshfed_nats_connected',
    help: '1 when the federation is connected to NATS',
    registers: [registry],
    collect() {
      this.set(s.federation()?.natsStatus().connected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'meshfed_catalog_services',
    help: 'services in the federated catalog, by serving cluster and staleness',
    labelNames: ['source_cluster', 'destination_cluster', 'stale'],
    registers: [registry],
    collect() {
      this.reset();
      const federation = s.federation();
      if (!federation) return;
      for (const ref of federation.services()) {
        for (const inst of federation.instances(ref.namespace, ref.name)) {
          this.inc({
            source_cluster: s.cluster(),
            destination_cluster: inst.cluster,
            stale: String(inst.stale),
          });
        }
      }
    },
  });
}
