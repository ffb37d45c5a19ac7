import { type CatalogChange, createLogger, Registry, waitFor } from '../../../core/index.ts';
import { Balancers, balancerConfigSchema, IDLE_STATE_MS } from '../../../gateway/balancer/index.ts';
import { FixedCatalog, FixedSource, makeBalancers, probingBalancers, SELF } from './fixtures.ts';

// How the balancer follows catalog changes: state of targets that go away, and what a change re-reads.

describe('state of targets that go away', () => {
  test('idle targets are forgotten after a catalog change; one with a request in flight is kept', async () => {
    let now = 1_000_000;
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { gateways: 2 });
    const registry = new Registry();
    const balancers = new Balancers({
      cluster: 'home',
      locality: SELF,
      catalog,
      local: new FixedSource(),
      config: balancerConfigSchema.parse({}),
      registry,
      logger: createLogger({ level: 'silent' }),
      now: () => now,
    });
    const tracked = async () =>
      ((await registry.getSingleMetric('meshfed_upstream_healthy')?.get())?.values ?? []).length;
    // both gateways carry a request; one finishes, the other stays in flight
    const done = balancers.pick('shop', 'orders')!;
    const busy = balancers.pick('shop', 'orders', { exclude: new Set([done.target.id]) })!;
    done.release({ ok: true, latencyMs: 5 });
    expect(await tracked()).toBe(2);
    // west withdraws the service; time passes
    catalog.offers = [];
    now += IDLE_STATE_MS + 61_000;
    catalog.changed();
    expect(await tracked()).toBe(1);
    busy.release({ ok: true, latencyMs: 5 });
    now += IDLE_STATE_MS + 61_000;
    catalog.changed();
    expect(await tracked()).toBe(0);
    balancers.close();
  });
});

describe('catalog changes (a large catalog under a steady change stream)', () => {
  /** a FixedCatalog that counts how often the balancer reads it, and tells changes as the federated view does */
  class CountingCatalog extends FixedCatalog {
    reads = { services: 0, instances: new Map<string, number>() };
    override services() {
      this.reads.services++;
      return super.services();
    }
    override instances(namespace: string, name: string) {
      this.reads.instances.set(name, (this.reads.instances.get(name) ?? 0) + 1);
      return super.instances(namespace, name);
    }
    readonly #subscribers = new Set<(c: readonly CatalogChange[]) => void>();
    override onChange(l: (c: readonly CatalogChange[]) => void): () => void {
      this.#subscribers.add(l);
      return () => this.#subscribers.delete(l);
    }
    tell(changes: CatalogChange[]): void {
      for (const l of this.#subscribers) l(changes);
    }
  }

  test('a weight change re-resolves only its own service', () => {
    const catalog = new CountingCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { name: 'orders' });
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { name: 'carts' });
    const { balancers } = makeBalancers(catalog, new FixedSource());
    const before = balancers.resolve('shop', 'orders')?.targets[0]?.weight;
    balancers.resolve('shop', 'carts');
    catalog.offers[0] = { ...catalog.offers[0]!, weight: 9 };
    catalog.tell([{ type: 'upsert', instance: catalog.offers[0]! }]);
    expect(balancers.resolve('shop', 'orders')?.targets[0]?.weight).toBeGreaterThan(before!);
    balancers.resolve('shop', 'carts');
    expect(catalog.reads.instances.get('orders')).toBe(2);
    expect(catalog.reads.instances.get('carts')).toBe(1);
    // a cluster's change (staleness, gateways) may concern every service
    catalog.tell([{ type: 'cluster', state: { cluster: 'west', gateways: [], stale: false, services: 2 } }]);
    balancers.resolve('shop', 'carts');
    expect(catalog.reads.instances.get('carts')).toBe(2);
  });

  test('the probed gateways are listed again only when a change may add or remove one', async () => {
    const catalog = new CountingCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { gateways: 1 });
    const probed: string[] = [];
    const balancers = probingBalancers(catalog, async (t) => {
      probed.push(t.address);
      return true;
    });
    try {
      await waitFor(() => probed.length >= 1, { what: 'a first probe' });
      const listed = catalog.reads.services;
      catalog.offers[0] = { ...catalog.offers[0]!, weight: 7 };
      catalog.tell([{ type: 'upsert', instance: catalog.offers[0]! }]);
      const after = probed.length;
      await waitFor(() => probed.length >= after + 2, { what: 'two more probe rounds' });
      expect(catalog.reads.services).toBe(listed);
      // a new gateway address is probed
      catalog.offers[0] = {
        ...catalog.offers[0]!,
        gateways: [...catalog.offers[0]!.gateways, { name: 'gw9', address: '127.0.0.99:15443' }],
      };
      catalog.tell([{ type: 'upsert', instance: catalog.offers[0]! }]);
      await waitFor(() => probed.includes('127.0.0.99:15443'), { what: 'the new gateway to be probed' });
    } finally {
      balancers.close();
    }
  });
});
