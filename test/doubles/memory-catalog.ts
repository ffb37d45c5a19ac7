import type {
  CatalogChange,
  CatalogView,
  ClusterState,
  RemoteServiceInstance,
  ServicePort,
  ServiceRef,
} from '../../core/index.ts';
import { serviceKey } from '../../core/index.ts';

/**
 * An in-memory CatalogView for discovery tests that do not need NATS: tests put and remove
 * remote offers and listeners get the same diffs federation/ would send.
 */
export class MemoryCatalog implements CatalogView {
  private readonly byService = new Map<string, Map<string, RemoteServiceInstance>>();
  private readonly listeners = new Set<(changes: readonly CatalogChange[]) => void>();
  private revision = 0;

  services(): readonly ServiceRef[] {
    return [...this.byService.entries()]
      .filter(([, m]) => m.size > 0)
      .map(([k]) => {
        const [namespace, name] = k.split('/') as [string, string];
        return { namespace, name };
      });
  }

  instances(namespace: string, name: string): readonly RemoteServiceInstance[] {
    return [...(this.byService.get(`${namespace}/${name}`)?.values() ?? [])];
  }

  clusters(): readonly ClusterState[] {
    const names = new Set<string>();
    for (const m of this.byService.values()) for (const c of m.keys()) names.add(c);
    return [...names].map((cluster) => ({ cluster, gateways: [], stale: false, services: 0 }));
  }

  onChange(listener: (changes: readonly CatalogChange[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  put(
    cluster: string,
    ref: ServiceRef,
    options: { ports?: ServicePort[]; stale?: boolean; expiresAt?: number; weight?: number } = {},
  ): RemoteServiceInstance {
    const instance: RemoteServiceInstance = {
      ...ref,
      cluster,
      ports: options.ports ?? [{ name: 'http', port: 8080, protocol: 'http' }],
      locality: { region: `${cluster}-region`, zone: `${cluster}-zone` },
      weight: options.weight ?? 1,
      gateways: [{ name: `${cluster}-gw`, address: '127.0.0.1:15443' }],
      revision: ++this.revision,
      expiresAt: options.expiresAt ?? Date.now() + 3_600_000,
      stale: options.stale ?? false,
    };
    const key = serviceKey(ref);
    const m = this.byService.get(key) ?? new Map<string, RemoteServiceInstance>();
    this.byService.set(key, m);
    m.set(cluster, instance);
    this.emit([{ type: 'upsert', instance }]);
    return instance;
  }

  remove(cluster: string, ref: ServiceRef): void {
    this.byService.get(serviceKey(ref))?.delete(cluster);
    this.emit([{ type: 'remove', cluster, namespace: ref.namespace, name: ref.name }]);
  }

  private emit(changes: CatalogChange[]): void {
    for (const l of [...this.listeners]) l(changes);
  }
}
