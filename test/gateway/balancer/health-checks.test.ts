import { createLogger, Registry, waitFor } from '../../../core/index.ts';
import { Balancers, balancerConfigSchema } from '../../../gateway/balancer/index.ts';
import { FixedCatalog, FixedSource, probingBalancers, SELF } from './fixtures.ts';

// Active health checks of remote gateways: a gateway failing its probes leaves the rotation, and panic
// prefers a cluster whose gateway still answers them.

describe('active health checks', () => {
  test('a gateway failing its probes leaves the rotation and comes back after healthy probes', async () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 2, gateways: 2 });
    let down = true;
    const probed: string[] = [];
    const balancers = probingBalancers(catalog, async (t) => {
      probed.push(t.address);
      return !(down && t.address === '127.0.0.10:15443');
    });
    const stateOf = () =>
      balancers
        .explain('shop', 'orders')
        .levels[0]!.targets.find((t) => t.target.endsWith('127.0.0.10:15443'))!.state;
    await waitFor(() => stateOf() === 'failing health checks', {
      timeoutMs: 10_000,
      what: 'gw0 marked unhealthy',
    });
    for (let i = 0; i < 200; i++) {
      const p = balancers.pick('shop', 'orders')!;
      expect(p.target.address).toBe('127.0.0.11:15443');
      p.release({ ok: true, latencyMs: 1 });
    }
    down = false;
    await waitFor(() => stateOf() === 'healthy', { timeoutMs: 10_000, what: 'gw0 healthy again' });
    expect(probed.filter((a) => a === '127.0.0.10:15443').length).toBeGreaterThanOrEqual(4);
    balancers.close();
  });
});

describe('panic with a cluster cut off (network-partition)', () => {
  /** ejects every gateway of `cluster` for shop/orders: five failed picks pinned to it */
  function eject(b: Balancers, cluster: string): void {
    for (let i = 0; i < 5; i++)
      b.pick('shop', 'orders', { cluster })?.release({ ok: false, latencyMs: 1, failure: 'connect' });
  }

  test('regression: with every target ejected, panic sends the load to the cluster whose gateway answers health checks, not to the nearer one that does not', async () => {
    const catalog = new FixedCatalog();
    // near shares our zone (P0), far is another region (P2); one gateway each, at addresses of their own
    catalog.offer('near', SELF, { gateways: 1 });
    catalog.offer('far', { region: 'us', zone: 'us-a' }, { gateways: 1 });
    catalog.offers[1]!.gateways[0]!.address = '127.0.0.20:15443';
    let cut = false;
    let nearProbesFailed = 0;
    const balancers = new Balancers({
      cluster: 'home',
      locality: SELF,
      catalog,
      local: new FixedSource(),
      config: balancerConfigSchema.parse({
        healthCheck: { interval: '10ms', timeout: '500ms' },
        outlier: { maxEjectionPercent: 100 },
      }),
      registry: new Registry(),
      logger: createLogger({ level: 'silent' }),
      probe: async (t) => {
        if (!cut || t.cluster !== 'near') return true;
        nearProbesFailed++;
        return false;
      },
    });
    const clusters = () => {
      const seen = new Map<string, number>();
      for (let i = 0; i < 200; i++) {
        const p = balancers.pick('shop', 'orders')!;
        seen.set(p.target.cluster, (seen.get(p.target.cluster) ?? 0) + 1);
        // a cancelled try counts against nobody: the ejections stay as they are
        p.release({ ok: false, latencyMs: 1, failure: 'cancelled' });
      }
      return Object.fromEntries(seen);
    };
    eject(balancers, 'near');
    eject(balancers, 'far');
    const states = () =>
      balancers.explain('shop', 'orders').levels.flatMap((l) => l.targets.map((t) => t.state));
    expect(states().every((s) => s.startsWith('ejected'))).toBe(true);
    // both merely ejected: the nearest level takes the panic load
    expect(clusters()).toEqual({ near: 200 });
    cut = true;
    // unhealthy after two failed probes in a row (healthCheck.unhealthyThreshold), applied before the third
    await waitFor(() => nearProbesFailed >= 3, { timeoutMs: 10_000, what: 'near to fail its health checks' });
    expect(clusters()).toEqual({ far: 200 });
    // and the explanation says so (meshfed routes)
    const shares = Object.fromEntries(
      balancers
        .explain('shop', 'orders')
        .levels.flatMap((l) => l.targets)
        .map((t) => [t.cluster, t.share]),
    );
    expect(shares).toEqual({ near: 0, far: 100 });
    balancers.close();
  });
});
