import { FixedCatalog, FixedSource, makeBalancers } from './fixtures.ts';

// What the policy asks of the balancer: a pick restricted to one cluster (a split backend pinned to it)
// and per-service outlier thresholds (a ResilienceOverride).

function setup() {
  const catalog = new FixedCatalog();
  catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 4, gateways: 2 });
  catalog.offer('north', { region: 'ca', zone: 'ca-a' }, { weight: 4, gateways: 1 });
  const local = new FixedSource();
  local.endpoints(['eu-a', 'eu-a']);
  return makeBalancers(catalog, local);
}

test('a pick pinned to a cluster takes only its targets, although local endpoints are closer', () => {
  const { balancers } = setup();
  for (let i = 0; i < 50; i++) {
    const p = balancers.pick('shop', 'orders', { cluster: 'west' })!;
    expect(p.target.cluster).toBe('west');
    p.release({ ok: true, latencyMs: 1 });
  }
  expect(balancers.pick('shop', 'orders', { cluster: 'nowhere' })).toBeUndefined();
  // unpinned, locality decides: the local endpoints
  expect(balancers.pick('shop', 'orders')!.target.local).toBe(true);
  balancers.close();
});

test('an outlier override ejects after its own threshold, and withdrawing it restores the configured one', async () => {
  const { balancers, registry } = setup();
  const ejections = async () =>
    (await registry.getSingleMetric('meshfed_outlier_ejections_total')?.get())?.values.reduce(
      (n, v) => n + v.value,
      0,
    ) ?? 0;
  const failOnce = (cluster: string) =>
    balancers.pick('shop', 'orders', { cluster })!.release({ ok: false, latencyMs: 1, failure: 'connect' });
  balancers.outlierOverrides((s) =>
    s.name === 'orders' ? { consecutiveFailures: 1, maxEjectionPercent: 100 } : undefined,
  );
  failOnce('north');
  expect(await ejections()).toBe(1);
  balancers.outlierOverrides(undefined);
  // the configured threshold (5 in a row) is back: one failure ejects nothing
  failOnce('west');
  expect(await ejections()).toBe(1);
  balancers.close();
});
