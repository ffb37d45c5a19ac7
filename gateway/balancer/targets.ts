import type {
  CatalogView,
  GatewayEndpoint,
  Locality,
  LocalService,
  RemoteServiceInstance,
  ServicePort,
} from '../../core/index.ts';
import { serviceKey } from '../../core/index.ts';
import type { BalancerTarget, PickOptions } from './balancers.ts';

// What a service resolves to: its port and its targets (this cluster's endpoints, other clusters' gateways).

export interface ResolvedService {
  namespace: string;
  name: string;
  /** `namespace/name`, the key of this service's outlier state */
  key: string;
  port: ServicePort;
  targets: BalancerTarget[];
}

function choosePort(ports: readonly ServicePort[], o: PickOptions): ServicePort | undefined {
  if (o.portName) return ports.find((p) => p.name === o.portName);
  if (o.port !== undefined) return ports.find((p) => p.port === o.port);
  return ports[0];
}

export function resolveService(
  namespace: string,
  name: string,
  o: PickOptions,
  from: { cluster: string; locality: Locality; catalog: CatalogView },
  localIndex: ReadonlyMap<string, LocalService>,
): ResolvedService | undefined {
  const key = serviceKey({ namespace, name });
  const local = localIndex.get(key);
  const remotes = o.scope === 'local' ? [] : from.catalog.instances(namespace, name);
  const ports = local?.ports ?? remotes[0]?.ports;
  if (!ports) return undefined;
  const port = choosePort(ports, o);
  if (!port) return undefined;
  const targets: BalancerTarget[] = [];
  if (local) {
    for (const e of local.endpoints) {
      if (!e.healthy) continue;
      const p = e.ports[port.name] ?? port.port;
      targets.push({
        id: `local|${from.cluster}|${e.host}:${p}`,
        local: true,
        cluster: from.cluster,
        locality: { region: from.locality.region, zone: e.zone ?? from.locality.zone },
        address: `${e.host.includes(':') ? `[${e.host}]` : e.host}:${p}`,
        weight: 1,
        port,
      });
    }
  }
  for (const inst of remotes) {
    if (!usableOffer(inst, from.cluster)) continue;
    const remotePort = inst.ports.find((p) => p.name === port.name) ?? port;
    for (const g of inst.gateways) targets.push(remoteTarget(inst, g, remotePort));
  }
  return { namespace, name, key, port, targets };
}

/**
 * A remote offer that may get traffic: another cluster's, not stale, with weight and gateways. Its expiry
 * is the catalog view's to apply, not ours: a view whose NATS is down keeps the last verified offers past
 * their expiry (DESIGN.md: a gateway that loses NATS keeps routing), and removes them once it can tell.
 */
export function usableOffer(inst: RemoteServiceInstance, self: string): boolean {
  return !(inst.cluster === self || inst.stale || inst.weight <= 0 || inst.gateways.length === 0);
}

export function remoteTarget(
  inst: RemoteServiceInstance,
  g: GatewayEndpoint,
  port: ServicePort,
): BalancerTarget {
  return {
    id: `remote|${inst.cluster}|${g.name}|${g.address}`,
    local: false,
    cluster: inst.cluster,
    locality: g.locality ?? inst.locality,
    address: g.address,
    weight: inst.weight / inst.gateways.length,
    gatewayName: g.name,
    port,
  };
}
