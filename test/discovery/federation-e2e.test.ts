import {
  CombinedSource,
  consulSinkSchema,
  consulSourceSchema,
  ImportReconciler,
  kubernetesSinkSchema,
  kubernetesSourceSchema,
} from '../../discovery/index.ts';
import { ConsulSink } from '../../discovery/consul-sink.ts';
import { ConsulSource } from '../../discovery/consul-source.ts';
import { KubernetesSink } from '../../discovery/kubernetes-sink.ts';
import { KubernetesSource } from '../../discovery/kubernetes-source.ts';
import { waitFor, createRegistry, silentLogger } from '../../core/index.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { FederationNode } from '../../federation/index.ts';
import { ConsulDouble } from '../doubles/consul-double.ts';
import { KubeDouble } from '../doubles/kube-double.ts';
import { kubeConfigFor, service, slice } from '../doubles/kube-fixtures.ts';
import { makePki, startNode } from '../federation/helpers.ts';

// Real federation over a real nats-server: cluster east discovers its services in Consul and
// Kubernetes (API doubles), cluster west sees them in its catalog view and registers the imports
// in its own Consul and Kubernetes.
let nats: NatsServerProcess;
let east: FederationNode;
let west: FederationNode;
let eastSource: CombinedSource;
let reconciler: ImportReconciler;
const eastConsul = new ConsulDouble({ datacenter: 'east' });
const eastKube = new KubeDouble({ token: 'test-token' });
const westConsul = new ConsulDouble({ datacenter: 'west' });
const westKube = new KubeDouble({ token: 'test-token' });

beforeAll(async () => {
  const [server, pki] = await Promise.all([startNatsServer({ name: 'fed-e2e' }), makePki(['east', 'west'])]);
  nats = server;
  await Promise.all([eastConsul.start(), eastKube.start(), westConsul.start(), westKube.start()]);
  eastKube.namespaces.add('shop');
  westKube.namespaces.add('shop');
  eastSource = new CombinedSource(
    [
      new ConsulSource({
        log: silentLogger(),
        config: consulSourceSchema.parse({
          type: 'consul',
          address: `127.0.0.1:${eastConsul.port}`,
          namespace: 'shop',
          wait: '2s',
          backoff: { min: '20ms', max: '200ms' },
        }),
      }),
      new KubernetesSource({
        log: silentLogger(),
        config: kubernetesSourceSchema.parse({ type: 'kubernetes', backoff: { min: '20ms', max: '200ms' } }),
        kubeConfig: kubeConfigFor(eastKube),
      }),
    ],
    silentLogger(),
  );
  await eastSource.start();
  east = await startNode({ pki, cluster: 'east', servers: [nats.url], source: eastSource });
  west = await startNode({ pki, cluster: 'west', servers: [nats.url] });
  reconciler = new ImportReconciler({
    logger: silentLogger(),
    registry: createRegistry(),
    catalog: west,
    cluster: 'west',
    debounceMs: 20,
    resyncMs: 0,
    sinks: [
      new ConsulSink({
        log: silentLogger(),
        config: consulSinkSchema.parse({ type: 'consul', address: `127.0.0.1:${westConsul.port}` }),
        gatewayId: 'west-gw-1',
        egress: { host: '127.0.0.1', port: 15001 },
      }),
      new KubernetesSink({
        log: silentLogger(),
        config: kubernetesSinkSchema.parse({ type: 'kubernetes' }),
        gatewayId: 'west-gw-1',
        egress: { host: '10.20.0.5', port: 15001 },
        kubeConfig: kubeConfigFor(westKube),
      }),
    ],
  });
  await reconciler.start();
}, 60_000);

afterAll(async () => {
  await reconciler?.stop();
  await west?.stop();
  await east?.stop();
  await eastSource?.stop();
  await Promise.all([eastConsul.stop(), eastKube.stop(), westConsul.stop(), westKube.stop()]);
  await nats?.stop();
  nats?.cleanup();
});

const westOffers = (ns: string, name: string) => west.instances(ns, name).filter((i) => i.cluster === 'east');

describe('discovery ↔ federation end to end', () => {
  test('a Consul service tagged for export appears in the remote view and as a registration at its egress; deregistering withdraws it', async () => {
    eastConsul.register({
      id: 'orders-1',
      service: 'orders',
      port: 8080,
      tags: ['meshfed-export'],
      address: '10.1.0.1',
    });
    eastConsul.register({
      id: 'orders-2',
      service: 'orders',
      port: 8080,
      tags: ['meshfed-export'],
      address: '10.1.0.2',
    });
    eastConsul.register({ id: 'secret-1', service: 'secret', port: 9000, address: '10.1.0.3' }); // not exported
    await waitFor(() => westOffers('shop', 'orders')[0]?.weight === 2, {
      timeoutMs: 15_000,
      what: 'orders in west view',
    });
    expect(west.instances('shop', 'secret')).toEqual([]);
    await waitFor(() => westConsul.get('meshfed-west-gw-1-shop-orders'), {
      what: 'the import in west Consul',
    });
    expect(westConsul.get('meshfed-west-gw-1-shop-orders')).toMatchObject({
      service: 'orders',
      address: '127.0.0.1',
      port: 15001,
      meta: expect.objectContaining({ 'meshfed-clusters': 'east', 'meshfed-managed': 'true' }),
    });
    eastConsul.setStatus('orders-2', 'critical');
    await waitFor(() => westOffers('shop', 'orders')[0]?.weight === 1, {
      what: 'the weight to follow health',
    });
    eastConsul.deregister('orders-1');
    eastConsul.deregister('orders-2');
    await waitFor(() => westOffers('shop', 'orders').length === 0, {
      timeoutMs: 15_000,
      what: 'the withdrawal',
    });
    await waitFor(() => !westConsul.get('meshfed-west-gw-1-shop-orders'), {
      what: 'the deregistration in west',
    });
  });

  test('Kubernetes: export by annotation and by ServiceExport reach the remote view and its Kubernetes', async () => {
    eastKube.put('services', service('shop', 'cart', { annotations: { 'meshfed.io/export': 'true' } }));
    eastKube.put(
      'endpointslices',
      slice('shop', 'cart', [{ ip: '10.2.0.1' }, { ip: '10.2.0.2', ready: false }]),
    );
    eastKube.put('services', service('shop', 'search'));
    eastKube.put('endpointslices', slice('shop', 'search', [{ ip: '10.2.1.1' }]));
    await waitFor(() => westOffers('shop', 'cart')[0]?.weight === 1, {
      timeoutMs: 15_000,
      what: 'cart (annotation)',
    });
    expect(west.instances('shop', 'search')).toEqual([]);
    eastKube.put('serviceexports', { metadata: { namespace: 'shop', name: 'search' } });
    await waitFor(() => westOffers('shop', 'search').length === 1, {
      timeoutMs: 15_000,
      what: 'search (ServiceExport)',
    });
    await waitFor(
      () =>
        westKube.get('serviceimports', 'shop', 'search') && westKube.get('serviceimports', 'shop', 'cart'),
      {
        what: 'ServiceImports in west',
      },
    );
    expect(westKube.get('endpointslices', 'shop', 'search-clusterset-gw')).toMatchObject({
      endpoints: [{ addresses: ['10.20.0.5'] }],
    });
    eastKube.remove('serviceexports', 'shop', 'search');
    await waitFor(() => westOffers('shop', 'search').length === 0, {
      timeoutMs: 15_000,
      what: 'search withdrawn',
    });
    await waitFor(() => !westKube.get('serviceimports', 'shop', 'search'), { what: 'the ServiceImport GC' });
    expect(westKube.get('serviceimports', 'shop', 'cart')).toBeDefined();
  });
});
