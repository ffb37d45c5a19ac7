import { waitFor, createRegistry, silentLogger } from '../../core/index.ts';
import { consulSinkSchema, ImportReconciler, kubernetesSinkSchema } from '../../discovery/index.ts';
import { ConsulSink } from '../../discovery/consul-sink.ts';
import { KubernetesSink } from '../../discovery/kubernetes-sink.ts';
import { ConsulDouble } from '../doubles/consul-double.ts';
import { KubeDouble } from '../doubles/kube-double.ts';
import { kubeConfigFor } from '../doubles/kube-fixtures.ts';
import { MemoryCatalog } from '../doubles/memory-catalog.ts';

// The catalog here is an in-memory CatalogView; test/discovery/federation-e2e.test.ts runs the
// same flow through real federation over NATS.
describe('imports: catalog view → ImportReconciler → Consul and Kubernetes sinks', () => {
  test('a service offered by another cluster is registered at the egress in both, and withdrawn', async () => {
    const consul = new ConsulDouble();
    const kube = new KubeDouble({ token: 'test-token' });
    kube.namespaces.add('shop');
    await consul.start();
    await kube.start();
    const view = new MemoryCatalog();
    const rec = new ImportReconciler({
      logger: silentLogger(),
      registry: createRegistry(),
      catalog: view,
      cluster: 'east',
      debounceMs: 20,
      resyncMs: 0,
      backoff: { minMs: 20, maxMs: 200 },
      sinks: [
        new ConsulSink({
          log: silentLogger(),
          config: consulSinkSchema.parse({ type: 'consul', address: `127.0.0.1:${consul.port}` }),
          gatewayId: 'east-gw',
          egress: { host: '127.0.0.1', port: 15001 },
        }),
        new KubernetesSink({
          log: silentLogger(),
          config: kubernetesSinkSchema.parse({ type: 'kubernetes' }),
          gatewayId: 'east-gw',
          egress: { host: '10.0.0.5', port: 15001 },
          kubeConfig: kubeConfigFor(kube),
        }),
      ],
    });
    await rec.start();
    try {
      const orders = { namespace: 'shop', name: 'orders' };
      view.put('east', { namespace: 'shop', name: 'local-only' }); // our own offer: never imported
      view.put('west', orders);
      await waitFor(
        () => consul.get('meshfed-east-gw-shop-orders') && kube.get('serviceimports', 'shop', 'orders'),
        {
          what: 'the import in both sinks',
        },
      );
      expect(consul.get('meshfed-east-gw-shop-orders')).toMatchObject({ address: '127.0.0.1', port: 15001 });
      expect(consul.get('meshfed-east-gw-shop-local-only')).toBeUndefined();
      // Consul down while a second cluster starts offering it: retried until the agent is back
      await consul.stop();
      view.put('central', orders);
      await waitFor(
        () =>
          kube.get('serviceimports', 'shop', 'orders')?.metadata.annotations?.['meshfed.io/clusters'] ===
          'central,west',
      );
      await consul.start();
      await waitFor(
        () => consul.get('meshfed-east-gw-shop-orders')?.meta['meshfed-clusters'] === 'central,west',
        {
          what: 'the retried Consul update',
        },
      );
      expect(rec.eventCounts.ApplyRetry).toBeGreaterThanOrEqual(1);
      view.remove('west', orders);
      view.remove('central', orders);
      await waitFor(
        () =>
          !consul.get('meshfed-east-gw-shop-orders') && !kube.get('services', 'shop', 'orders-clusterset'),
        {
          what: 'the withdrawal in both sinks',
        },
      );
    } finally {
      await rec.stop();
      await consul.stop();
      await kube.stop();
    }
  });
});
