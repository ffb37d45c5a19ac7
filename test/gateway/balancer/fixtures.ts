import {
  type CatalogChange,
  type CatalogView,
  type ClusterState,
  createLogger,
  type EndpointSource,
  type LocalService,
  type Locality,
  Registry,
  type RemoteServiceInstance,
  type ServiceRef,
} from '../../../core/index.ts';
import { type BalancerTarget, Balancers, balancerConfigSchema } from '../../../gateway/balancer/index.ts';

export const PORTS = [{ name: 'http', port: 8080, protocol: 'http' as const }];

/** A CatalogView holding exactly the remote offers a test gives it. */
export class FixedCatalog implements CatalogView {
  offers: RemoteServiceInstance[] = [];
  services(): readonly ServiceRef[] {
    return [...new Map(this.offers.map((o) => [`${o.namespace}/${o.name}`, o])).values()];
  }
  instances(namespace: string, name: string): readonly RemoteServiceInstance[] {
    return this.offers.filter((o) => o.namespace === namespace && o.name === name);
  }
  clusters(): readonly ClusterState[] {
    return [];
  }
  private readonly listeners = new Set<(c: readonly CatalogChange[]) => void>();
  onChange(l: (c: readonly CatalogChange[]) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  /** tells the subscribers that the offers changed (the balancer re-reads them) */
  changed(): void {
    for (const l of this.listeners) l([]);
  }
  offer(
    cluster: string,
    locality: Locality,
    o: { weight?: number; gateways?: number; stale?: boolean; name?: string } = {},
  ): void {
    this.offers.push({
      namespace: 'shop',
      name: o.name ?? 'orders',
      cluster,
      ports: PORTS,
      locality,
      weight: o.weight ?? 4,
      gateways: Array.from({ length: o.gateways ?? 2 }, (_, i) => ({
        name: `gw${i}`,
        address: `127.0.0.${10 + i}:15443`,
      })),
      revision: 1,
      expiresAt: Number.MAX_SAFE_INTEGER,
      stale: o.stale ?? false,
    });
  }
}

export class FixedSource implements EndpointSource {
  readonly name = 'fixed';
  services: LocalService[] = [];
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  current(): readonly LocalService[] {
    return this.services;
  }
  onChange(_l: (s: readonly LocalService[]) => void): () => void {
    return () => {};
  }
  /** one local service `shop/orders` with endpoints 10.0.0.<i> in the zones given */
  endpoints(zones: readonly string[]): void {
    this.services = [
      {
        namespace: 'shop',
        name: 'orders',
        ports: PORTS,
        exported: true,
        source: 'fixed',
        endpoints: zones.map((zone, i) => ({
          host: `10.0.0.${i + 1}`,
          ports: { http: 8080 },
          healthy: true,
          zone,
        })),
      },
    ];
  }
}

/** A deterministic PRNG (mulberry32) so shares are reproducible run to run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const SELF: Locality = { region: 'eu', zone: 'eu-a' };

export function makeBalancers(
  catalog: CatalogView,
  local: EndpointSource,
  config: Record<string, unknown> = {},
): { balancers: Balancers; clock: { t: number }; registry: Registry } {
  const clock = { t: 1_000_000 };
  const registry = new Registry();
  const balancers = new Balancers({
    cluster: 'home',
    locality: SELF,
    catalog,
    local,
    config: balancerConfigSchema.parse(config),
    registry,
    logger: createLogger({ level: 'silent' }),
    now: () => clock.t,
    wallNow: () => clock.t,
    random: seeded(42),
  });
  return { balancers, clock, registry };
}

/** Picks n times, releasing each at once with the latency/outcome `outcome` gives; returns counts. */
export function drive(
  b: Balancers,
  n: number,
  outcome: (id: string) => { ok: boolean; latencyMs: number } = () => ({ ok: true, latencyMs: 2 }),
): { levels: number[]; byTarget: Map<string, number> } {
  const levels = [0, 0, 0];
  const byTarget = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const p = b.pick('shop', 'orders');
    if (!p) throw new Error('no pick');
    levels[p.level]!++;
    byTarget.set(p.target.id, (byTarget.get(p.target.id) ?? 0) + 1);
    const o = outcome(p.target.id);
    p.release(o.ok ? o : { ...o, failure: '5xx' });
  }
  return { levels, byTarget };
}

export function failTimes(b: Balancers, targetId: string, times: number): void {
  let done = 0;
  for (let guard = 0; done < times && guard < 10_000; guard++) {
    const p = b.pick('shop', 'orders');
    if (!p) return;
    if (p.target.id === targetId) {
      p.release({ ok: false, latencyMs: 1, failure: 'connect' });
      done++;
    } else p.release({ ok: true, latencyMs: 1 });
  }
}

/** balancers that probe the catalog's gateways every 10 ms with `probe` */
export function probingBalancers(
  catalog: FixedCatalog,
  probe: (t: BalancerTarget) => Promise<boolean>,
): Balancers {
  return new Balancers({
    cluster: 'home',
    locality: SELF,
    catalog,
    local: new FixedSource(),
    config: balancerConfigSchema.parse({ healthCheck: { interval: '10ms', timeout: '500ms' } }),
    registry: new Registry(),
    logger: createLogger({ level: 'silent' }),
    probe,
  });
}
