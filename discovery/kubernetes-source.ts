import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Endpoint, EndpointSource, LocalService, Logger, Protocol, ServicePort } from '../core/index.ts';
import { FailureLog } from './backoff.ts';
import type { KubernetesSourceConfig } from './config.ts';
import { type KubeItem, type KubeList, ListWatch } from './kube-list-watch.ts';
import { loadKubeConfig } from './kubernetes-client.ts';
import { ServiceSetHolder } from './service-set.ts';

export const EXPORT_ANNOTATION = 'meshfed.io/export';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'meshfed';
export const MCS_GROUP = 'multicluster.x-k8s.io';
export const MCS_VERSION = 'v1alpha1';

interface K8sServicePort {
  name?: string;
  port: number;
  protocol?: string;
  appProtocol?: string;
}

interface K8sSlice extends KubeItem {
  ports?: { name?: string; port?: number; protocol?: string }[] | null;
  endpoints?:
    | { addresses?: string[]; conditions?: { ready?: boolean | null } | null; zone?: string | null }[]
    | null;
}

/** appProtocol (or a port name prefix such as `http-` or `grpc-`) → meshfed protocol. */
export function protocolOf(p: K8sServicePort): Protocol {
  const app = (p.appProtocol ?? '').toLowerCase();
  const byApp: Record<string, Protocol> = {
    http: 'http',
    'kubernetes.io/h2c': 'http2',
    h2c: 'http2',
    http2: 'http2',
    grpc: 'grpc',
    tls: 'tls',
    https: 'tls',
    'kubernetes.io/ws': 'http',
  };
  if (byApp[app]) return byApp[app];
  const prefix = (p.name ?? '').split('-')[0]!.toLowerCase();
  const byName: Record<string, Protocol> = {
    http: 'http',
    http2: 'http2',
    grpc: 'grpc',
    tls: 'tls',
    https: 'tls',
  };
  return byName[prefix] ?? 'tcp';
}

export interface KubernetesSourceOptions {
  config: KubernetesSourceConfig;
  log: Logger;
  /** an already loaded KubeConfig (tests, or a composition root that shares one) */
  kubeConfig?: KubeConfig;
}

/**
 * This cluster's services from the Kubernetes API: Services, EndpointSlices and MCS
 * ServiceExports, each through its own list+watch. Export is opt-in by the annotation
 * `meshfed.io/export: "true"` or a ServiceExport of the same name; readiness comes from the
 * EndpointSlice `conditions.ready` (unset means ready, as the API documents), zone from `zone`.
 */
export class KubernetesSource implements EndpointSource {
  readonly name = 'kubernetes';
  private readonly config: KubernetesSourceConfig;
  private readonly log: Logger;
  private readonly holder: ServiceSetHolder;
  private readonly failures: FailureLog;
  private kc: KubeConfig | undefined;
  private abort = new AbortController();
  private loops: Promise<void>[] = [];
  readonly watches: { services: ListWatch[]; slices: ListWatch[]; exports: ListWatch[] } = {
    services: [],
    slices: [],
    exports: [],
  };
  private flushScheduled = false;

  constructor(options: KubernetesSourceOptions) {
    this.config = options.config;
    this.log = options.log.child({ source: 'kubernetes' });
    this.holder = new ServiceSetHolder((err) => this.log.error({ err }, 'a discovery listener threw'));
    this.failures = new FailureLog(this.log, 'watching the Kubernetes API');
    this.kc = options.kubeConfig;
  }

  /** Loads access (a bad kubeconfig fails here) and starts the watches; returns without waiting for them. */
  async start(): Promise<void> {
    const kc = this.kc ?? loadKubeConfig(this.config);
    this.kc = kc;
    this.abort = new AbortController();
    const core = kc.makeApiClient(CoreV1Api);
    const disc = kc.makeApiClient(DiscoveryV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const scopes: (string | undefined)[] =
      this.config.namespaces.length > 0 ? this.config.namespaces : [undefined];
    const common = {
      kc,
      watchTimeoutMs: this.config.watchTimeout,
      idleTimeoutMs: this.config.idleTimeout,
      backoff: this.config.backoff,
      failures: this.failures,
      onChange: () => this.scheduleFlush(),
    };
    for (const ns of scopes) {
      const where = ns === undefined ? '' : `/namespaces/${ns}`;
      this.watches.services.push(
        new ListWatch({
          ...common,
          what: `list/watch services${ns ? ` in ${ns}` : ''}`,
          path: `/api/v1${where}/services`,
          list: async () =>
            (ns === undefined
              ? await core.listServiceForAllNamespaces()
              : await core.listNamespacedService({ namespace: ns })) as unknown as KubeList,
        }),
      );
      this.watches.slices.push(
        new ListWatch({
          ...common,
          what: `list/watch endpointslices${ns ? ` in ${ns}` : ''}`,
          path: `/apis/discovery.k8s.io/v1${where}/endpointslices`,
          list: async () =>
            (ns === undefined
              ? await disc.listEndpointSliceForAllNamespaces()
              : await disc.listNamespacedEndpointSlice({ namespace: ns })) as unknown as KubeList,
        }),
      );
      this.watches.exports.push(
        new ListWatch({
          ...common,
          optional: true,
          what: `list/watch serviceexports${ns ? ` in ${ns}` : ''}`,
          path: `/apis/${MCS_GROUP}/${MCS_VERSION}${where}/serviceexports`,
          list: async () =>
            (ns === undefined
              ? await custom.listClusterCustomObject({
                  group: MCS_GROUP,
                  version: MCS_VERSION,
                  plural: 'serviceexports',
                })
              : await custom.listNamespacedCustomObject({
                  group: MCS_GROUP,
                  version: MCS_VERSION,
                  namespace: ns,
                  plural: 'serviceexports',
                })) as KubeList,
        }),
      );
    }
    for (const w of this.all()) this.loops.push(w.run(this.abort.signal));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.loops);
    this.loops = [];
    this.watches.services = [];
    this.watches.slices = [];
    this.watches.exports = [];
  }

  current(): readonly LocalService[] {
    return this.holder.current();
  }

  onChange(listener: (services: readonly LocalService[]) => void): () => void {
    return this.holder.onChange(listener);
  }

  /** true once every list has been read at least once */
  get synced(): boolean {
    return this.all().length > 0 && this.all().every((w) => w.synced);
  }

  private all(): ListWatch[] {
    return [...this.watches.services, ...this.watches.slices, ...this.watches.exports];
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.holder.set(this.assemble());
    });
  }

  private assemble(): LocalService[] {
    const exports = new Set<string>();
    for (const w of this.watches.exports) for (const k of w.store.keys()) exports.add(k);
    const slicesBySvc = new Map<string, K8sSlice[]>();
    for (const w of this.watches.slices) {
      for (const s of w.store.values()) {
        const svc = s.metadata?.labels?.['kubernetes.io/service-name'];
        if (!svc) continue;
        const k = `${s.metadata?.namespace ?? ''}/${svc}`;
        const list = slicesBySvc.get(k) ?? [];
        list.push(s as K8sSlice);
        slicesBySvc.set(k, list);
      }
    }
    const out: LocalService[] = [];
    for (const w of this.watches.services) {
      for (const [k, item] of w.store) {
        const svc = this.toLocalService(item, exports.has(k), slicesBySvc.get(k) ?? []);
        if (svc) out.push(svc);
      }
    }
    return out;
  }

  private toLocalService(item: KubeItem, hasExport: boolean, slices: K8sSlice[]): LocalService | undefined {
    const meta = item.metadata ?? {};
    if (!meta.name || !meta.namespace) return undefined;
    // what our own sink created is an import, never a local service
    if (meta.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE) return undefined;
    const spec = (item.spec ?? {}) as { type?: string; ports?: K8sServicePort[] };
    if (spec.type === 'ExternalName') return undefined;
    const ports: ServicePort[] = [];
    const sliceName = new Map<string, string>(); // our port name → the slice's port name
    for (const p of spec.ports ?? []) {
      if ((p.protocol ?? 'TCP') !== 'TCP' || typeof p.port !== 'number') continue; // UDP/SCTP are not routed
      const protocol = protocolOf(p);
      const name = p.name && p.name !== '' ? p.name : ports.length === 0 ? protocol : `port-${p.port}`;
      ports.push({ name, port: p.port, protocol });
      sliceName.set(name, p.name ?? '');
    }
    if (ports.length === 0) return undefined;
    const byHost = new Map<string, Endpoint>();
    for (const s of slices) {
      const slicePorts = s.ports ?? [];
      for (const e of s.endpoints ?? []) {
        const epPorts: Record<string, number> = {};
        for (const p of ports) {
          const sp = slicePorts.find((x) => (x.name ?? '') === sliceName.get(p.name));
          if (sp?.port) epPorts[p.name] = sp.port;
        }
        if (Object.keys(epPorts).length === 0) continue;
        // conditions.ready unset means ready (discovery.k8s.io/v1 EndpointConditions)
        const healthy = e.conditions?.ready !== false;
        for (const host of e.addresses ?? []) {
          const prev = byHost.get(host);
          // the same address in two slices (during a slice split): ready wins
          if (prev && (prev.healthy || !healthy)) continue;
          const ep: Endpoint = { host, ports: epPorts, healthy };
          if (e.zone) ep.zone = e.zone;
          byHost.set(host, ep);
        }
      }
    }
    return {
      namespace: meta.namespace,
      name: meta.name,
      ports,
      endpoints: [...byHost.values()],
      exported: hasExport || meta.annotations?.[EXPORT_ANNOTATION] === 'true',
      source: 'kubernetes',
    };
  }
}
