import { type ImportedService, waitFor } from '../../core/index.ts';
import { kubernetesSinkSchema } from '../../discovery/index.ts';
import { KubernetesSink } from '../../discovery/kubernetes-sink.ts';
import { KubeDouble, type KubeObject } from '../doubles/kube-double.ts';
import { kubeConfigFor, service } from '../doubles/kube-fixtures.ts';
import { captureLogger } from '../doubles/log-capture.ts';

const orders: ImportedService = {
  namespace: 'shop',
  name: 'orders',
  ports: [
    { name: 'http', port: 80, protocol: 'http' },
    { name: 'grpc', port: 9090, protocol: 'grpc' },
  ],
  clusters: ['central', 'west'],
};

describe('KubernetesSink against the API double', () => {
  let kube: KubeDouble;
  beforeEach(async () => {
    kube = new KubeDouble({ token: 'test-token' });
    kube.namespaces.add('shop');
    await kube.start();
  });
  afterEach(async () => {
    await kube.stop();
  });

  function sink(log = captureLogger().log) {
    return new KubernetesSink({
      config: kubernetesSinkSchema.parse({ type: 'kubernetes' }),
      gatewayId: 'east-gw-1',
      egress: { host: '10.0.0.5', port: 15001 },
      kubeConfig: kubeConfigFor(kube),
      log,
    });
  }
  const writes = () => kube.requests.filter((r) => /^(POST|PUT|DELETE) /.test(r)).length;

  test('creates ServiceImport, Service and EndpointSlice at the egress; idempotent; updates; withdraws', async () => {
    const s = sink();
    await s.start();
    await s.apply([orders]);
    const svc = kube.get('services', 'shop', 'orders-clusterset')!;
    expect(svc.metadata.labels).toEqual({ 'app.kubernetes.io/managed-by': 'meshfed' });
    expect((svc.spec as { ports: unknown[] }).ports).toEqual([
      expect.objectContaining({ name: 'http', port: 80, targetPort: 15001, appProtocol: 'http' }),
      expect.objectContaining({ name: 'grpc', port: 9090, targetPort: 15001, appProtocol: 'grpc' }),
    ]);
    const slice = kube.get('endpointslices', 'shop', 'orders-clusterset-gw')!;
    expect(slice).toMatchObject({
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.0.0.5'], conditions: { ready: true } }],
      ports: [
        { name: 'http', port: 15001 },
        { name: 'grpc', port: 15001 },
      ],
    });
    expect(slice.metadata.labels?.['kubernetes.io/service-name']).toBe('orders-clusterset');
    const imp = kube.get('serviceimports', 'shop', 'orders')!;
    expect(imp.spec).toMatchObject({
      type: 'ClusterSetIP',
      ips: [(svc.spec as { clusterIP: string }).clusterIP],
    });
    expect(imp.metadata.annotations?.['meshfed.io/clusters']).toBe('central,west');

    const before = writes();
    await s.apply([orders]);
    expect(writes()).toBe(before); // nothing changed, nothing written

    await s.apply([{ ...orders, clusters: ['west'] }]);
    expect(kube.get('serviceimports', 'shop', 'orders')!.metadata.annotations?.['meshfed.io/clusters']).toBe(
      'west',
    );

    await s.apply([]);
    expect(kube.get('serviceimports', 'shop', 'orders')).toBeUndefined();
    expect(kube.get('services', 'shop', 'orders-clusterset')).toBeUndefined();
    expect(kube.get('endpointslices', 'shop', 'orders-clusterset-gw')).toBeUndefined();
  });

  test('nothing meshfed did not create is ever modified or deleted', async () => {
    const local = kube.put('services', service('shop', 'orders'));
    const squatter = kube.put('services', service('shop', 'billing-clusterset'));
    const others = kube.put(
      'services',
      service('shop', 'x-clusterset', { labels: { 'app.kubernetes.io/managed-by': 'helm' } }),
    );
    const userImport = kube.put('serviceimports', {
      metadata: { namespace: 'shop', name: 'billing' },
      spec: { type: 'Headless' },
    });
    const snapshot = (): (KubeObject | undefined)[] => [
      kube.get('services', 'shop', 'orders'),
      kube.get('services', 'shop', 'billing-clusterset'),
      kube.get('services', 'shop', 'x-clusterset'),
      kube.get('serviceimports', 'shop', 'billing'),
    ];
    const { log, lines } = captureLogger();
    const s = sink(log);
    await s.start();
    await s.apply([orders, { ...orders, name: 'billing' }]);
    await s.apply([orders, { ...orders, name: 'billing' }]);
    await s.apply([]);
    expect(snapshot()).toEqual([local, squatter, others, userImport]);
    // one clear error per foreign object, not one per apply
    const errs = lines.filter((l) => l.level === 'error');
    expect(errs.length).toBe(1); // billing-clusterset; its ServiceImport is then not attempted at all
    expect(String(errs[0]!.msg)).toContain('not labelled app.kubernetes.io/managed-by=meshfed');
  });

  test('cleans up its own leftovers after a crash on the first apply', async () => {
    const s1 = sink();
    await s1.start();
    await s1.apply([orders, { ...orders, name: 'stale' }]);
    expect(kube.get('services', 'shop', 'stale-clusterset')).toBeDefined();
    // a new process: it has no memory of what the last one made
    const s2 = sink();
    await s2.start();
    await s2.apply([orders]);
    expect(kube.get('services', 'shop', 'stale-clusterset')).toBeUndefined();
    expect(kube.get('serviceimports', 'shop', 'stale')).toBeUndefined();
    expect(kube.get('services', 'shop', 'orders-clusterset')).toBeDefined();
  });

  test('409 Conflict on replace: re-reads and applies on top of the newer object', async () => {
    const s = sink();
    await s.start();
    await s.apply([orders]);
    let raced = false;
    kube.beforeReplace = (plural, ns, name) => {
      if (raced || plural !== 'services' || name !== 'orders-clusterset') return;
      raced = true;
      // someone (a second replica, kubectl annotate) writes between our list and our PUT
      const cur = kube.get(plural, ns, name)!;
      kube.put(plural, {
        ...cur,
        metadata: { ...cur.metadata, annotations: { ...cur.metadata.annotations, note: 'x' } },
      });
    };
    await s.apply([{ ...orders, clusters: ['north'] }]);
    expect(raced).toBe(true);
    expect(
      kube.requests.filter((r) => r.startsWith('PUT /api/v1/namespaces/shop/services/orders-clusterset')),
    ).toHaveLength(2);
    expect(
      kube.get('services', 'shop', 'orders-clusterset')!.metadata.annotations?.['meshfed.io/clusters'],
    ).toBe('north');
  });

  test('missing namespace is a non-retryable error that does not block other imports; no CRDs still works', async () => {
    kube.mcsInstalled = false;
    const { log, lines } = captureLogger();
    const s = sink(log);
    await s.start();
    await expect(s.apply([orders, { ...orders, namespace: 'nowhere' }])).rejects.toMatchObject({
      code: 'MESHFED_DISCOVERY_INVALID',
      retryable: false,
    });
    expect(kube.get('services', 'shop', 'orders-clusterset')).toBeDefined();
    expect(lines.some((l) => l.level === 'warn' && String(l.msg).includes('ServiceImport CRD'))).toBe(true);
  });

  test('an API server that is down is a retryable error, and the next apply after restart succeeds', async () => {
    const s = sink();
    await s.start();
    await kube.stop();
    await expect(s.apply([orders])).rejects.toMatchObject({
      code: 'MESHFED_DISCOVERY_UNAVAILABLE',
      retryable: true,
    });
    await kube.start();
    await waitFor(async () => {
      await s.apply([orders]);
      return kube.get('services', 'shop', 'orders-clusterset');
    });
  });
});
