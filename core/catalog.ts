/**
 * The catalog types and the interfaces where meshfed's parts meet. The gateway consumes a
 * CatalogView and EndpointSources without knowing that NATS, Consul or Kubernetes exist;
 * federation/ implements CatalogView, discovery/ implements EndpointSource and ImportSink.
 */

export type Protocol = 'http' | 'http2' | 'grpc' | 'tcp' | 'tls';
export const PROTOCOLS: readonly Protocol[] = ['http', 'http2', 'grpc', 'tcp', 'tls'];

export interface Locality {
  region: string;
  zone: string;
}

export interface ServicePort {
  /** port name, unique within the service (e.g. "http", "grpc") */
  name: string;
  /** the service port number that clients address */
  port: number;
  protocol: Protocol;
}

export interface ServiceRef {
  namespace: string;
  name: string;
}

/** One instance (pod, VM, process) of a local service. */
export interface Endpoint {
  host: string;
  /** port name → the port this endpoint listens on for it */
  ports: Record<string, number>;
  healthy: boolean;
  zone?: string;
}

/** A service of this cluster, as a discovery source sees it. */
export interface LocalService extends ServiceRef {
  ports: ServicePort[];
  endpoints: Endpoint[];
  /** export is opt-in: only exported services are published and reachable from other clusters */
  exported: boolean;
  /** which source reported it (static, consul, kubernetes) */
  source: string;
}

/** A source of this cluster's services (static file, Consul, Kubernetes). */
export interface EndpointSource {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** the last known good set; never emptied by a backend outage */
  current(): readonly LocalService[];
  /** called with the whole new set after every change; returns an unsubscribe function */
  onChange(listener: (services: readonly LocalService[]) => void): () => void;
}

/** A gateway's east-west address as other clusters dial it. */
export interface GatewayEndpoint {
  name: string;
  /** host:port of the east-west listener */
  address: string;
  locality?: Locality;
}

/** One cluster's offer of one service, as the federated view holds it. */
export interface RemoteServiceInstance extends ServiceRef {
  cluster: string;
  ports: ServicePort[];
  locality: Locality;
  /** healthy endpoint count in that cluster: the load-balancing weight */
  weight: number;
  gateways: GatewayEndpoint[];
  revision: number;
  /** epoch ms after which the entry is void unless refreshed */
  expiresAt: number;
  /** the cluster's heartbeats stopped: keep visible, send no new traffic */
  stale: boolean;
}

export interface ClusterState {
  cluster: string;
  locality?: Locality;
  gateways: GatewayEndpoint[];
  /** epoch ms of the last heartbeat seen, if any */
  lastHeartbeat?: number;
  stale: boolean;
  /** number of services this cluster exports */
  services: number;
}

export type CatalogChange =
  | { type: 'upsert'; instance: RemoteServiceInstance }
  | { type: 'remove'; cluster: string; namespace: string; name: string }
  | { type: 'cluster'; state: ClusterState };

/** The federated catalog: which clusters offer which services. */
export interface CatalogView {
  services(): readonly ServiceRef[];
  /**
   * The offers that may get traffic. The view applies their expiry (and may keep them past it while it
   * cannot hear their cluster, e.g. its NATS is down); consumers do not filter by `expiresAt` themselves.
   */
  instances(namespace: string, name: string): readonly RemoteServiceInstance[];
  clusters(): readonly ClusterState[];
  /** called with the smallest diff after every change; returns an unsubscribe function */
  onChange(listener: (changes: readonly CatalogChange[]) => void): () => void;
}

/** A service imported from other clusters, to be made resolvable locally. */
export interface ImportedService extends ServiceRef {
  ports: ServicePort[];
  /** the clusters that serve it */
  clusters: string[];
}

/** A place where imported services are registered (Consul, Kubernetes). */
export interface ImportSink {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** the complete desired set; the sink reconciles toward it and removes only what it owns */
  apply(services: readonly ImportedService[]): Promise<void>;
}

export const CLUSTERSET_SUFFIX = '.svc.clusterset.local';

export function serviceKey(ref: ServiceRef): string {
  return `${ref.namespace}/${ref.name}`;
}

export function clustersetHost(ref: ServiceRef): string {
  return `${ref.name}.${ref.namespace}${CLUSTERSET_SUFFIX}`;
}

/**
 * Parses `<svc>.<ns>.svc.clusterset.local` or `<port>.<svc>.<ns>.svc.clusterset.local`
 * (case-insensitive, optional trailing dot and `:port`). Returns undefined for anything else.
 */
export function parseClustersetHost(
  host: string,
): (ServiceRef & { portName?: string; port?: number }) | undefined {
  let h = host.toLowerCase();
  let port: number | undefined;
  const colon = h.lastIndexOf(':');
  if (colon !== -1 && !h.includes(']')) {
    const p = Number(h.slice(colon + 1));
    if (!Number.isInteger(p) || p <= 0 || p > 65535) return undefined;
    port = p;
    h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (!h.endsWith(CLUSTERSET_SUFFIX)) return undefined;
  const labels = h.slice(0, -CLUSTERSET_SUFFIX.length).split('.');
  if (labels.length === 2) {
    const [name, namespace] = labels as [string, string];
    if (!name || !namespace) return undefined;
    return port === undefined ? { name, namespace } : { name, namespace, port };
  }
  if (labels.length === 3) {
    const [portName, name, namespace] = labels as [string, string, string];
    if (!portName || !name || !namespace) return undefined;
    return port === undefined ? { name, namespace, portName } : { name, namespace, portName, port };
  }
  return undefined;
}
