import type { CertificateSource, TrustBundle } from '../../ca/index.ts';
import { type EndpointSource, serviceKey } from '../../core/index.ts';
import type { FederationNode } from '../../federation/index.ts';
import type { Balancers, TrafficSnapshot } from '../../gateway/index.ts';
import type { DaemonConfig } from '../daemon-config.ts';
import type { AdminBackend } from './admin-server.ts';

export interface AdminBackendDeps {
  /** the configuration the process runs on (reload() may change its live keys) */
  config: () => DaemonConfig;
  startedAt: number;
  /** the gateway's own identity */
  identity: CertificateSource;
  bundle: () => TrustBundle;
  source: EndpointSource;
  federation: FederationNode;
  balancers: Balancers;
  traffic: (windowMs: number) => TrafficSnapshot | Promise<TrafficSnapshot>;
  addresses: () => Record<string, string>;
  /** the east-west address other clusters dial */
  advertise: string;
}

/** What the gateway's admin API answers (`meshfed status|clusters|services|routes|stat`), from the daemon's parts. */
export function adminBackend(d: AdminBackendDeps): AdminBackend {
  return {
    status() {
      const leaf = d.identity.current();
      const nats = d.federation.natsStatus();
      const local = d.source.current();
      return {
        cluster: d.config().cluster,
        gateway: d.config().name,
        trust_domain: d.config().trustDomain,
        region: d.config().locality.region,
        zone: d.config().locality.zone,
        spiffe_id: leaf.spiffeId,
        cert_serial: leaf.serial,
        cert_not_after_ms: leaf.notAfter.getTime(),
        nats_connected: nats.connected,
        nats_server: nats.server ?? '',
        nats_last_error: nats.lastError ?? '',
        clusters_seen: d.federation.clusters().map((cl) => cl.cluster),
        uptime_ms: Date.now() - d.startedAt,
        version: '',
        now_ms: Date.now(),
        addresses: d.addresses(),
        bundle_root_fingerprints: d
          .bundle()
          .roots()
          .map((r) => r.fingerprint256),
        local_services: local.length,
        exported_services: local.filter((s) => s.exported).length,
        policy_revisions: Object.fromEntries(
          d.federation.policy.current().scopes.map((p) => [p.scope, p.revision]),
        ),
        policy_documents: d.federation.policy.current().documents.length,
      };
    },
    async stats(windowMs: number) {
      return d.traffic(windowMs);
    },
    clusters() {
      const c = d.config();
      const local = d.source.current().filter((x) => x.exported).length;
      const selfEntry = {
        name: c.cluster,
        region: c.locality.region,
        zone: c.locality.zone,
        gateways: [{ name: c.name, address: d.advertise }],
        last_heartbeat_ms: Date.now(),
        stale: false,
        services: local,
        self: true,
      };
      const others = d.federation
        .clusters()
        .filter((cl) => cl.cluster !== c.cluster)
        .map((cl) => ({
          name: cl.cluster,
          region: cl.locality?.region ?? '',
          zone: cl.locality?.zone ?? '',
          gateways: cl.gateways.map((g) => ({ name: g.name, address: g.address })),
          last_heartbeat_ms: cl.lastHeartbeat ?? 0,
          stale: cl.stale,
          services: cl.services,
          self: false,
        }));
      return [selfEntry, ...others];
    },
    services() {
      const byKey = new Map<
        string,
        { namespace: string; name: string; ports: unknown[]; offers: unknown[]; exported: boolean }
      >();
      for (const svc of d.source.current()) {
        byKey.set(serviceKey(svc), {
          namespace: svc.namespace,
          name: svc.name,
          ports: svc.ports,
          exported: svc.exported,
          offers: [
            {
              cluster: d.config().cluster,
              region: d.config().locality.region,
              zone: d.config().locality.zone,
              weight: svc.endpoints.filter((e) => e.healthy).length,
              stale: false,
              revision: 0,
              local: true,
            },
          ],
        });
      }
      for (const ref of d.federation.services()) {
        const key = serviceKey(ref);
        const entry = byKey.get(key) ?? {
          namespace: ref.namespace,
          name: ref.name,
          ports: [],
          offers: [],
          exported: false,
        };
        for (const inst of d.federation.instances(ref.namespace, ref.name)) {
          if (inst.cluster === d.config().cluster) continue;
          if (entry.ports.length === 0) entry.ports = inst.ports;
          entry.offers.push({
            cluster: inst.cluster,
            region: inst.locality.region,
            zone: inst.locality.zone,
            weight: inst.weight,
            stale: inst.stale,
            revision: inst.revision,
            local: false,
          });
        }
        byKey.set(key, entry);
      }
      return [...byKey.values()].sort((a, b) =>
        `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`),
      );
    },
    routes(namespace: string, name: string) {
      return d.balancers.explain(namespace, name);
    },
  };
}
