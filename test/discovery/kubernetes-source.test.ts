import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMeshfedError, type LocalService, waitFor, silentLogger } from '../../core/index.ts';
import { kubernetesSourceSchema } from '../../discovery/index.ts';
import { loadKubeConfig } from '../../discovery/kubernetes-client.ts';
import { KubernetesSource, protocolOf } from '../../discovery/kubernetes-source.ts';
import { KubeDouble } from '../doubles/kube-double.ts';
import { kubeConfigFor, kubeconfigYaml, service, slice } from '../doubles/kube-fixtures.ts';
import { captureLogger } from '../doubles/log-capture.ts';

function config(extra: Record<string, unknown> = {}) {
  return kubernetesSourceSchema.parse({
    type: 'kubernetes',
    watchTimeout: '30s',
    idleTimeout: '3s',
    backoff: { min: '20ms', max: '300ms' },
    ...extra,
  });
}

function find(src: KubernetesSource, ns: string, name: string): LocalService | undefined {
  return src.current().find((s) => s.namespace === ns && s.name === name);
}

describe('protocolOf', () => {
  test.each([
    [{ port: 80, appProtocol: 'http' }, 'http'],
    [{ port: 80, appProtocol: 'kubernetes.io/h2c' }, 'http2'],
    [{ port: 80, name: 'grpc-api' }, 'grpc'],
    [{ port: 443, name: 'https' }, 'tls'],
    [{ port: 5432, name: 'postgres' }, 'tcp'],
  ])('%j → %s', (port, want) => {
    expect(protocolOf(port)).toBe(want);
  });
});

describe('KubernetesSource against the API double', () => {
  let kube: KubeDouble;
  let src: KubernetesSource | undefined;
  beforeEach(async () => {
    kube = new KubeDouble({ token: 'test-token' });
    kube.bookmarkIntervalMs = 200;
    await kube.start();
  });
  afterEach(async () => {
    await src?.stop();
    src = undefined;
    await kube.stop();
  });

  test('export by annotation and by ServiceExport; readiness and zone from EndpointSlices', async () => {
    kube.put('services', service('shop', 'orders', { annotations: { 'meshfed.io/export': 'true' } }));
    kube.put(
      'endpointslices',
      slice('shop', 'orders', [
        { ip: '10.1.0.1', zone: 'east-1a' },
        { ip: '10.1.0.2', ready: false, zone: 'east-1b' },
      ]),
    );
    kube.put(
      'services',
      service('shop', 'billing', { ports: [{ name: 'grpc', port: 9090, protocol: 'TCP' }] }),
    );
    kube.put(
      'endpointslices',
      slice('shop', 'billing', [{ ip: '10.1.1.1', ready: true }], { portName: 'grpc', port: 9091 }),
    );
    kube.put('services', service('shop', 'internal'));
    src = new KubernetesSource({ log: silentLogger(), config: config(), kubeConfig: kubeConfigFor(kube) });
    await src.start();
    const s = src;
    await waitFor(() => s.synced && find(s, 'shop', 'billing'), { what: 'the first sync' });
    expect(find(s, 'shop', 'orders')).toMatchObject({
      exported: true,
      source: 'kubernetes',
      ports: [{ name: 'http', port: 80, protocol: 'http' }],
      endpoints: [
        { host: '10.1.0.1', ports: { http: 8080 }, healthy: true, zone: 'east-1a' },
        { host: '10.1.0.2', ports: { http: 8080 }, healthy: false, zone: 'east-1b' },
      ],
    });
    expect(find(s, 'shop', 'billing')?.exported).toBe(false);
    kube.put('serviceexports', { metadata: { namespace: 'shop', name: 'billing' } });
    await waitFor(() => find(s, 'shop', 'billing')?.exported, {
      what: 'the ServiceExport to export billing',
    });
    expect(find(s, 'shop', 'billing')!.endpoints).toEqual([
      { host: '10.1.1.1', ports: { grpc: 9091 }, healthy: true },
    ]);
    expect(find(s, 'shop', 'internal')?.exported).toBe(false);
    kube.remove('serviceexports', 'shop', 'billing');
    await waitFor(() => find(s, 'shop', 'billing')?.exported === false, { what: 'the unexport' });
    kube.remove('services', 'shop', 'orders');
    await waitFor(() => !find(s, 'shop', 'orders'), { what: 'the deleted service to go' });
  });

  test('410 Gone after compaction re-lists, and nothing is missed', async () => {
    kube.put('services', service('shop', 'a', { annotations: { 'meshfed.io/export': 'true' } }));
    src = new KubernetesSource({ log: silentLogger(), config: config(), kubeConfig: kubeConfigFor(kube) });
    await src.start();
    const s = src;
    await waitFor(() => find(s, 'shop', 'a'));
    // the watches die while changes happen, then the history they would resume from is compacted
    await kube.stop();
    kube.put('services', service('shop', 'b', { annotations: { 'meshfed.io/export': 'true' } }));
    kube.remove('services', 'shop', 'a');
    kube.compact();
    await kube.start();
    await waitFor(() => find(s, 'shop', 'b') && !find(s, 'shop', 'a'), {
      what: 'the state after the re-list',
    });
    expect(s.watches.services[0]!.stats.gone).toBeGreaterThanOrEqual(1);
    expect(s.watches.services[0]!.stats.lists).toBeGreaterThanOrEqual(2);
  });

  test('410 as an HTTP status is handled the same way', async () => {
    kube.gone410AsHttp = true;
    src = new KubernetesSource({ log: silentLogger(), config: config(), kubeConfig: kubeConfigFor(kube) });
    await src.start();
    const s = src;
    await waitFor(() => s.synced);
    kube.dropWatches();
    kube.put('services', service('shop', 'c'));
    kube.compact();
    await waitFor(() => find(s, 'shop', 'c'), { what: 'c after an HTTP 410' });
    expect(s.watches.services[0]!.stats.gone).toBeGreaterThanOrEqual(1);
  });

  test('a dropped stream resumes from the last resourceVersion without missing or duplicating', async () => {
    src = new KubernetesSource({ log: silentLogger(), config: config(), kubeConfig: kubeConfigFor(kube) });
    const seen: string[] = [];
    src.onChange((set) => seen.push(set.map((x) => x.name).join(',')));
    await src.start();
    const s = src;
    await waitFor(() => s.synced);
    const listsBefore = s.watches.services[0]!.stats.lists;
    for (let i = 0; i < 5; i++) {
      kube.dropWatches();
      kube.put('services', service('shop', `svc-${i}`));
    }
    await waitFor(() => s.current().length === 5, { what: 'all five services' });
    expect(s.watches.services[0]!.stats.lists).toBe(listsBefore); // resumed, not re-listed
    expect(s.current().map((x) => x.name)).toEqual(['svc-0', 'svc-1', 'svc-2', 'svc-3', 'svc-4']);
    // every published set is distinct: a replayed event changes nothing and notifies nobody
    expect(new Set(seen).size).toBe(seen.length);
  });

  test('API server down, 500, garbage: last set kept, bounded logs, recovery after restart', async () => {
    kube.put('services', service('shop', 'a', { annotations: { 'meshfed.io/export': 'true' } }));
    const { log, lines } = captureLogger();
    src = new KubernetesSource({ config: config(), kubeConfig: kubeConfigFor(kube), log });
    await src.start();
    const s = src;
    await waitFor(() => find(s, 'shop', 'a'));
    kube.fault = { kind: 'status', status: 500 };
    kube.dropWatches();
    let before = kube.requests.length;
    await waitFor(() => kube.requests.length > before + 10, { what: 'failing re-watches' });
    // garbage on list: compaction forces the re-list, whose body cannot be parsed
    kube.fault = { kind: 'garbage' };
    kube.compact();
    kube.dropWatches();
    before = kube.requests.length;
    await waitFor(() => kube.requests.length > before + 6, { what: 'failing re-lists' });
    expect(find(s, 'shop', 'a')).toBeDefined();
    kube.fault = { kind: 'none' };
    await kube.restart();
    kube.put('services', service('shop', 'z'));
    await waitFor(() => find(s, 'shop', 'z'), { what: 'recovery' });
    await waitFor(() => lines.some((l) => String(l.msg).includes('recovered')), {
      what: 'the "recovered" line',
    });
    const warns = lines.filter((l) => l.level === 'warn');
    expect(warns.length).toBeLessThanOrEqual(2);
  });

  test('a hung API server (list never answers) is timed out, the set kept, and it recovers', async () => {
    kube.put('services', service('shop', 'a', { annotations: { 'meshfed.io/export': 'true' } }));
    const { log, lines } = captureLogger();
    src = new KubernetesSource({
      config: config({ idleTimeout: '1s' }),
      kubeConfig: kubeConfigFor(kube),
      log,
    });
    await src.start();
    const s = src;
    await waitFor(() => find(s, 'shop', 'a'));
    kube.fault = { kind: 'hang' };
    kube.compact();
    kube.dropWatches();
    await waitFor(() => lines.some((l) => l.level === 'warn'), { what: 'the hang to be noticed' });
    expect(find(s, 'shop', 'a')).toBeDefined();
    kube.fault = { kind: 'none' };
    kube.put('services', service('shop', 'b'));
    await waitFor(() => find(s, 'shop', 'b'), { what: 'recovery after the hang' });
  });

  test('a cluster without the MCS CRDs still works (annotation only)', async () => {
    kube.mcsInstalled = false;
    kube.put('services', service('shop', 'a', { annotations: { 'meshfed.io/export': 'true' } }));
    src = new KubernetesSource({
      log: silentLogger(),
      config: config({ namespaces: ['shop'] }),
      kubeConfig: kubeConfigFor(kube),
    });
    await src.start();
    const s = src;
    await waitFor(() => s.synced && find(s, 'shop', 'a')?.exported);
  });

  test('kubeconfig file with a named context; bad context and in-cluster without a pod are clear errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-kube-'));
    const file = join(dir, 'kubeconfig');
    writeFileSync(file, kubeconfigYaml(kube));
    kube.put('services', service('default', 'web'));
    src = new KubernetesSource({
      log: silentLogger(),
      config: config({ kubeconfig: file, context: 'double' }),
    });
    await src.start();
    const s = src;
    await waitFor(() => find(s, 'default', 'web'), { what: 'a sync through the kubeconfig file' });
    let err: unknown;
    try {
      loadKubeConfig({ kubeconfig: file, context: 'nope', inCluster: false });
    } catch (e) {
      err = e;
    }
    expect(isMeshfedError(err, 'MESHFED_CONFIG_INVALID')).toBe(true);
    const saved = process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_HOST;
    try {
      loadKubeConfig({ inCluster: true });
      err = undefined;
    } catch (e) {
      err = e;
    } finally {
      if (saved !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved;
    }
    expect(isMeshfedError(err, 'MESHFED_CONFIG_INVALID')).toBe(true);
  });

  test('in-cluster config reads the service host, port and mounted token', () => {
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    try {
      const kc = loadKubeConfig({ inCluster: true });
      expect(kc.getCurrentCluster()?.server).toBe('https://10.96.0.1:443');
      expect(kc.getCurrentUser()?.authProvider?.config?.tokenFile).toBe(
        '/var/run/secrets/kubernetes.io/serviceaccount/token',
      );
    } finally {
      for (const [k, v] of [
        ['KUBERNETES_SERVICE_HOST', saved.host],
        ['KUBERNETES_SERVICE_PORT', saved.port],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
