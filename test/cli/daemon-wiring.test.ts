import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { AdminClient } from '../../cli/admin/admin-client.ts';
import { Daemon } from '../../cli/daemon.ts';
import { waitFor } from '../../core/index.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { FederationNode } from '../../federation/index.ts';
import type { Gateway } from '../../gateway/index.ts';
import { ConsulDouble } from '../doubles/consul-double.ts';
import { KubeDouble } from '../doubles/kube-double.ts';
import { kubeconfigYaml } from '../doubles/kube-fixtures.ts';
import { captureLogger } from '../doubles/log-capture.ts';
import { ListSource, makePki, type Pki, service, startNode } from '../federation/helpers.ts';
import { startGatewayProcess, writeGatewayFiles } from '../gateway/daemon-process.ts';

// The composition root, built the way `meshfed gateway` builds it: one config file in, every
// component wired by cli/daemon.ts. Each test here is named after a wiring gap it closes.

let nats: NatsServerProcess;
let pki: Pki;
let west: FederationNode;
let dir: string;
let configFile: string;
let daemon: Daemon;
const consul = new ConsulDouble();
const kube = new KubeDouble({ token: 'test-token' });

/** cluster east's gateway `east-gw` under the root west trusts: no local services, both sinks. */
async function writeEastFiles(): Promise<string> {
  const files = await writeGatewayFiles({
    natsUrl: nats.url,
    services: {},
    root: pki.root,
    intermediate: pki.intermediates.get('east')!,
    config: {
      // port 0: the sinks must learn the port the egress listener really bound
      gateway: { listeners: { eastWest: '127.0.0.1:0', egress: '127.0.0.1:0', admin: '127.0.0.1:0' } },
      discovery: {
        sources: [{ type: 'static', file: 'services.yaml' }],
        sinks: [
          { type: 'consul', address: `127.0.0.1:${consul.port}` },
          { type: 'kubernetes', kubeconfig: 'kubeconfig', context: 'double' },
        ],
        importDebounce: '20ms',
      },
      observability: { metricLimits: { workloads: 8, tuples: 100 } },
    },
  });
  writeFileSync(join(files.dir, 'kubeconfig'), kubeconfigYaml(kube));
  dir = files.dir;
  return files.config;
}

beforeAll(async () => {
  [nats, pki] = await Promise.all([startNatsServer({ name: 'daemon-wiring' }), makePki(['east', 'west'])]);
  await Promise.all([consul.start(), kube.start()]);
  kube.namespaces.add('shop');
  west = await startNode({
    pki,
    cluster: 'west',
    servers: [nats.url],
    source: new ListSource([service('shop', 'orders')]),
  });
  configFile = await writeEastFiles();
  daemon = Daemon.fromFile(configFile, { logger: captureLogger().log, env: { POD_IP: '10.9.8.7' } });
  await daemon.start();
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
  await west?.stop();
  await Promise.all([consul.stop(), kube.stop()]);
  await nats?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the daemon wires discovery sinks from its config', () => {
  test('imports point at the bound egress listener and are owned by the configured gateway name, not the host name', async () => {
    const egressPort = Number(daemon.addresses().egress!.split(':').at(-1));
    expect(egressPort).not.toBe(15001);
    const reg = await waitFor(() => consul.get('meshfed-east-gw-shop-orders'), {
      timeoutMs: 30_000,
      what: 'the Consul registration of the import',
    });
    expect(reg).toMatchObject({ address: '127.0.0.1', port: egressPort });
    expect(reg.meta['meshfed-owner']).toBe('east-gw');
    // Kubernetes: the EndpointSlice carries the pod IP the root read from the environment
    const slice = await waitFor(() => kube.get('endpointslices', 'shop', 'orders-clusterset-gw'), {
      timeoutMs: 30_000,
      what: 'the EndpointSlice of the import',
    });
    expect(slice).toMatchObject({
      endpoints: [{ addresses: ['10.9.8.7'] }],
      ports: [{ name: 'http', port: egressPort }],
    });
    const imp = await waitFor(() => kube.get('serviceimports', 'shop', 'orders'), {
      what: 'the ServiceImport',
    });
    expect(imp.metadata.annotations?.['meshfed.io/owner']).toBe('east-gw');
  });

  test('the import reconciler reports meshfed_discovery_imports and meshfed_discovery_applies_total', async () => {
    await waitFor(() => consul.get('meshfed-east-gw-shop-orders'), { timeoutMs: 30_000 });
    const text = await waitFor(
      async () => {
        const t = await daemon.registry.metrics();
        const both = /imports\{sink="consul"\} 1\b/.test(t) && /imports\{sink="kubernetes"\} 1\b/.test(t);
        return both ? t : undefined;
      },
      { what: 'the imports gauge' },
    );
    expect(text).toMatch(/meshfed_discovery_imports\{sink="kubernetes"\} 1\b/);
    expect(text).toMatch(/meshfed_discovery_applies_total\{sink="consul",result="ok"\} [1-9]/);
  });
});

describe('the daemon wires the golden metrics from its config', () => {
  test('observability.metricLimits reaches the gateway (the caps that bound /metrics), defaults filled in', () => {
    expect((daemon.gateway as Gateway).golden.limits).toEqual({
      clusters: 64,
      services: 256,
      workloads: 8,
      tuples: 100,
    });
  });
});

describe('reload (SIGHUP)', () => {
  test('live keys change, restart-only keys are refused by name, and status still tells the truth', async () => {
    const admin = new AdminClient({ address: `unix:${daemon.loaded.adminSocket}` });
    try {
      const config = parse(readFileSync(configFile, 'utf8'));
      const next = {
        ...config,
        cluster: 'south',
        name: 'other-gw',
        drainTimeout: '3s',
        observability: { ...config.observability, logLevel: 'debug' },
        gateway: { listeners: { ...config.gateway.listeners, egress: '127.0.0.1:15999' } },
      };
      writeFileSync(configFile, stringify(next));
      const result = await daemon.reload();
      expect(result.applied).toEqual(expect.arrayContaining(['observability.logLevel', 'drainTimeout']));
      expect(result.needsRestart.sort()).toEqual(['cluster', 'gateway.listeners.egress', 'name'].sort());
      expect(daemon.log.level).toBe('debug');
      expect(daemon.config.drainTimeout).toBe(3000);
      expect(daemon.config.cluster).toBe('east');
      const status = await admin.status();
      expect(status).toMatchObject({ cluster: 'east', gateway: 'east-gw' });
      expect(status.addresses.egress).toBe(daemon.addresses().egress);

      // a file that does not validate changes nothing
      writeFileSync(
        configFile,
        stringify({ ...next, drainTimeout: 'soon', observability: { logLevel: 'info' } }),
      );
      await expect(daemon.reload()).rejects.toMatchObject({ code: 'MESHFED_CONFIG_INVALID' });
      expect(daemon.log.level).toBe('debug');
      expect(daemon.config.drainTimeout).toBe(3000);
    } finally {
      admin.close();
    }
  });

  test('a real process on SIGHUP names the refused keys and `status` keeps its cluster and name', async () => {
    const gw = await startGatewayProcess({ natsUrl: nats.url, services: {} });
    const admin = new AdminClient({ address: `unix:${join(gw.dir, 'state', 'admin.sock')}` });
    try {
      const config = parse(readFileSync(gw.config, 'utf8'));
      writeFileSync(gw.config, stringify({ ...config, cluster: 'south', name: 'other-gw' }));
      gw.child.kill('SIGHUP');
      const line = await waitFor(
        () =>
          gw
            .output()
            .split('\n')
            .filter((l) => l.startsWith('{'))
            .map((l) => JSON.parse(l) as { needsRestart?: string[] })
            .find((l) => l.needsRestart !== undefined),
        { timeoutMs: 20_000, what: 'the reload log line' },
      );
      expect(line.needsRestart!.sort()).toEqual(['cluster', 'name']);
      expect(await admin.status()).toMatchObject({ cluster: 'east', gateway: 'east-gw' });
    } finally {
      admin.close();
      await gw.stop();
    }
  }, 90_000);
});
