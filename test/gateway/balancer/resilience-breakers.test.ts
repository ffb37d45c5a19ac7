import { Registry } from '../../../core/index.ts';
import type { BalancerTarget } from '../../../gateway/balancer/index.ts';
import { balancedDispatch, CircuitBreakers, resilienceMetrics } from '../../../gateway/resilience/index.ts';
import { codeOf, ctx, twoGateways } from './resilience-fixtures.ts';

// Circuit breakers: each limit refuses past its bound and admits again after a release; balanced dispatch
// refuses when every target is full.

describe('circuit breakers', () => {
  const target = (id: string, cluster = 'west'): BalancerTarget => ({
    id,
    local: false,
    cluster,
    locality: { region: 'us', zone: 'us-a' },
    address: '127.0.0.1:1',
    weight: 1,
    port: { name: 'http', port: 80, protocol: 'http' },
  });

  test.each([
    {
      limit: 'requests' as const,
      config: { maxRequests: 2 },
      acquire: (b: CircuitBreakers) => b.acquireRequest(target('a')),
    },
    {
      limit: 'pending' as const,
      config: { maxPending: 2 },
      acquire: (b: CircuitBreakers) => b.acquirePending(target('a')),
    },
    {
      limit: 'connections' as const,
      config: { maxConnections: 2 },
      acquire: (b: CircuitBreakers) => b.acquireConnection(target('a')),
    },
    {
      limit: 'cluster_requests' as const,
      config: { maxClusterRequests: 2 },
      acquire: (() => {
        let i = 0;
        return (b: CircuitBreakers) => b.acquireRequest(target(`t${i++}`));
      })(),
    },
    {
      limit: 'service_requests' as const,
      config: { maxServiceRequests: 2 },
      // a new target each time, far below the cluster limit: only the service's own limit binds
      acquire: (() => {
        let i = 0;
        return (b: CircuitBreakers) => b.acquireRequest(target(`s${i++}`), 'shop/orders');
      })(),
    },
  ])('refuses past the $limit limit and admits again after a release', async ({ limit, config, acquire }) => {
    const registry = new Registry();
    const b = new CircuitBreakers(
      {
        maxConnections: 100,
        maxPending: 100,
        maxRequests: 100,
        maxClusterRequests: 100,
        maxServiceRequests: 100,
        ...config,
      },
      { metrics: resilienceMetrics(registry), sourceCluster: 'home' },
    );
    const first = acquire(b);
    expect(first).toBeDefined();
    expect(acquire(b)).toBeDefined();
    expect(acquire(b)).toBeUndefined();
    first!();
    first!(); // releasing twice must not free two slots
    expect(acquire(b)).toBeDefined();
    expect(acquire(b)).toBeUndefined();
    const text = await registry.getSingleMetricAsString('meshfed_upstream_circuit_breaker_open_total');
    expect(text).toContain(`limit="${limit}"} 2`);
  });

  test('balanced dispatch refuses with MESHFED_GATEWAY_OVERLOADED when every target is full', async () => {
    const { balancers } = twoGateways();
    const breakers = new CircuitBreakers({
      maxConnections: 1,
      maxPending: 1,
      maxRequests: 1,
      maxClusterRequests: 10,
      maxServiceRequests: 10,
    });
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const dispatch = balancedDispatch({ balancers, breakers, send: () => gate.then(() => 200) });
    const a = dispatch(ctx());
    const b = dispatch(ctx());
    expect(await codeOf(dispatch(ctx()))).toBe('MESHFED_GATEWAY_OVERLOADED');
    open();
    await expect(Promise.all([a, b])).resolves.toEqual([200, 200]);
    balancers.close();
  });
});
