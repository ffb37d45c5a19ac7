/**
 * Discovery latency: time from a change in a backend (Consul or Kubernetes API double) to the
 * change being visible (a) in the source's onChange and (b) in a remote cluster's federated
 * catalog view (east source → east FederationNode → nats-server → west FederationNode), with
 * 1,000 services registered and exported. Prints median, p90, p99 and mean.
 *
 *   npm run bench:discovery [-- --services 1000 --changes 200 --only consul|kubernetes]
 *
 * The doubles run in this same process (their CPU is counted).
 *
 * Shared, noisy machine: quote medians.
 */
import { performance } from 'node:perf_hooks';
import type { CatalogView } from '../core/index.ts';
import { silentLogger } from '../core/index.ts';
import { startNatsServer } from '../cli/demo/nats-topology.ts';
import type { FederationNode } from '../federation/index.ts';
import { makePki, type Pki, startNode } from '../test/federation/helpers.ts';
import { createLogger, type EndpointSource, type LocalService } from '../core/index.ts';
import { consulSourceSchema, kubernetesSourceSchema } from '../discovery/index.ts';
import { ConsulSource } from '../discovery/consul-source.ts';
import { KubernetesSource } from '../discovery/kubernetes-source.ts';
import { ConsulDouble } from '../test/doubles/consul-double.ts';
import { KubeDouble } from '../test/doubles/kube-double.ts';
import { kubeConfigFor, service, slice } from '../test/doubles/kube-fixtures.ts';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}
const SERVICES = arg('services', 1000);
const CHANGES = arg('changes', 200);
const TIMEOUT_MS = 10_000;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function report(label: string, ms: number[]): void {
  const s = [...ms].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  console.log(
    `${label.padEnd(46)} n=${s.length}  p50=${pct(s, 50).toFixed(2)} ms  p90=${pct(s, 90).toFixed(2)} ms  p99=${pct(s, 99).toFixed(2)} ms  mean=${mean.toFixed(2)} ms  >250ms: ${s.filter((x) => x > 250).length}`,
  );
}

function visible(src: EndpointSource, check: (set: readonly LocalService[]) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    if (check(src.current())) return resolve();
    const timer = setTimeout(() => {
      off();
      reject(new Error('change not visible within 10 s'));
    }, TIMEOUT_MS);
    const off = src.onChange((set) => {
      if (!check(set)) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

function visibleRemote(view: CatalogView, check: () => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    if (check()) return resolve();
    const timer = setTimeout(() => {
      off();
      reject(new Error('change not visible in the remote view within 10 s'));
    }, TIMEOUT_MS);
    const off = view.onChange(() => {
      if (!check()) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

interface Federation {
  pki: Pki;
  url: string;
}

/** east publishes `src`; returns west's view once it holds every service. */
async function federate(
  fed: Federation,
  src: EndpointSource,
  ns: string,
): Promise<{ west: FederationNode; stop: () => Promise<void> }> {
  const t0 = performance.now();
  const east = await startNode({
    pki: fed.pki,
    cluster: 'east',
    servers: [fed.url],
    source: src,
    config: { staleAfter: '60s', heartbeatInterval: '5s' },
  });
  const west = await startNode({
    pki: fed.pki,
    cluster: 'west',
    servers: [fed.url],
    config: { staleAfter: '60s', heartbeatInterval: '5s' },
  });
  await visibleRemote(west, () => west.services().filter((r) => r.namespace === ns).length >= SERVICES).catch(
    async () => {
      // a first sync of 1,000 entries may take longer than one change: wait on
      for (let i = 0; i < 60 && west.services().filter((r) => r.namespace === ns).length < SERVICES; i++) {
        await new Promise((r) => setTimeout(r, 1000));
      }
    },
  );
  console.log(
    `  federation: west view holds ${west.services().length} services after ${(performance.now() - t0).toFixed(0)} ms`,
  );
  return {
    west,
    stop: async () => {
      await west.stop();
      await east.stop();
    },
  };
}

async function measureRemote(
  label: string,
  west: FederationNode,
  change: (i: number) => () => boolean,
): Promise<void> {
  const ms: number[] = [];
  for (let n = 0; n < CHANGES; n++) {
    const i = (n * 7919) % SERVICES;
    const t0 = performance.now();
    const check = change(i);
    await visibleRemote(west, check);
    ms.push(performance.now() - t0);
  }
  report(label, ms);
}

async function measure(
  label: string,
  src: EndpointSource,
  change: (i: number) => void,
  check: (i: number, set: readonly LocalService[]) => boolean,
): Promise<void> {
  const ms: number[] = [];
  for (let n = 0; n < CHANGES; n++) {
    const i = (n * 7919) % SERVICES; // spread over the set
    const t0 = performance.now();
    const seen = visible(src, (set) => check(n, set));
    change(i);
    await seen;
    ms.push(performance.now() - t0);
  }
  report(label, ms);
}

async function consulBench(fed: Federation | undefined): Promise<void> {
  const consul = new ConsulDouble();
  await consul.start();
  for (let i = 0; i < SERVICES; i++) {
    consul.register({
      id: `svc-${i}-1`,
      service: `svc-${i}`,
      port: 8000,
      address: '10.0.0.1',
      tags: ['meshfed-export'],
    });
  }
  const src = new ConsulSource({
    config: consulSourceSchema.parse({ type: 'consul', address: `127.0.0.1:${consul.port}` }),
    log: createLogger({ level: 'warn', destination: process.stderr }),
  });
  const t0 = performance.now();
  await src.start();
  await visible(src, (set) => set.length === SERVICES);
  console.log(`consul: initial sync of ${SERVICES} services: ${(performance.now() - t0).toFixed(0)} ms`);
  let target = { name: '', host: '' };
  await measure(
    `consul: instance added → source onChange`,
    src,
    (i) => {
      const host = `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;
      target = { name: `svc-${i}`, host };
      consul.register({ id: `svc-${i}-extra`, service: `svc-${i}`, port: 8000, address: host });
      // the next change on this service removes it again, so every change is a real diff
      setImmediate(() => undefined);
    },
    (_n, set) => set.some((s) => s.name === target.name && s.endpoints.some((e) => e.host === target.host)),
  );
  await measure(
    `consul: instance critical → source onChange`,
    src,
    (i) => {
      target = { name: `svc-${i}`, host: '' };
      consul.setStatus(`svc-${i}-1`, consul.get(`svc-${i}-1`)!.status === 'passing' ? 'critical' : 'passing');
    },
    (_n, set) => {
      const s = set.find((x) => x.name === target.name);
      const want = consul.get(`${target.name}-1`)!.status === 'passing';
      return s !== undefined && s.endpoints.some((e) => e.host === '10.0.0.1') === want;
    },
  );
  if (fed) {
    const { west, stop } = await federate(fed, src, 'default');
    await measureRemote('consul → remote view: health flip (weight)', west, (i) => {
      const passing = consul.get(`svc-${i}-1`)!.status !== 'passing';
      consul.setStatus(`svc-${i}-1`, passing ? 'passing' : 'critical');
      const extra = consul.get(`svc-${i}-extra`) ? 1 : 0;
      const want = (passing ? 1 : 0) + extra;
      return () => (west.instances('default', `svc-${i}`)[0]?.weight ?? -1) === want;
    });
    await stop();
  }
  await src.stop();
  await consul.stop();
}

async function kubeBench(fed: Federation | undefined): Promise<void> {
  const kube = new KubeDouble();
  kube.namespaces.add('bench');
  await kube.start();
  for (let i = 0; i < SERVICES; i++) {
    kube.put('services', service('bench', `svc-${i}`, { annotations: { 'meshfed.io/export': 'true' } }));
    kube.put('endpointslices', slice('bench', `svc-${i}`, [{ ip: '10.2.0.1', ready: true }]));
  }
  const src = new KubernetesSource({
    log: silentLogger(),
    config: kubernetesSourceSchema.parse({ type: 'kubernetes' }),
    kubeConfig: kubeConfigFor(kube),
  });
  const t0 = performance.now();
  await src.start();
  await visible(src, (set) => set.length === SERVICES && set.every((s) => s.endpoints.length === 1));
  console.log(
    `kubernetes: initial list of ${SERVICES} services + slices: ${(performance.now() - t0).toFixed(0)} ms`,
  );
  let target = { name: '', ready: true };
  await measure(
    'kubernetes: endpoint readiness flip → onChange',
    src,
    (i) => {
      const cur = kube.get('endpointslices', 'bench', `svc-${i}-abc12`)!;
      const ready = !(cur.endpoints as { conditions: { ready: boolean } }[])[0]!.conditions.ready;
      target = { name: `svc-${i}`, ready };
      kube.put('endpointslices', slice('bench', `svc-${i}`, [{ ip: '10.2.0.1', ready }]));
    },
    (_n, set) => set.some((s) => s.name === target.name && s.endpoints[0]?.healthy === target.ready),
  );
  await measure(
    'kubernetes: export annotation flip → onChange',
    src,
    (i) => {
      const cur = kube.get('services', 'bench', `svc-${i}`)!;
      const exported = cur.metadata.annotations?.['meshfed.io/export'] !== 'true';
      target = { name: `svc-${i}`, ready: exported };
      kube.put('services', {
        ...cur,
        metadata: { ...cur.metadata, annotations: { 'meshfed.io/export': String(exported) } },
      });
    },
    (_n, set) => set.some((s) => s.name === target.name && s.exported === target.ready),
  );
  if (fed) {
    const { west, stop } = await federate(fed, src, 'bench');
    await measureRemote('kubernetes → remote view: readiness flip', west, (n) => {
      // only services still exported after the annotation row are visible remotely
      const names = src
        .current()
        .filter((s) => s.exported)
        .map((s) => Number(s.name.slice(4)));
      const i = names[n % names.length]!;
      const cur = kube.get('endpointslices', 'bench', `svc-${i}-abc12`)!;
      const ready = !(cur.endpoints as { conditions: { ready: boolean } }[])[0]!.conditions.ready;
      kube.put('endpointslices', slice('bench', `svc-${i}`, [{ ip: '10.2.0.1', ready }]));
      return () => (west.instances('bench', `svc-${i}`)[0]?.weight ?? -1) === (ready ? 1 : 0);
    });
    await stop();
  }
  await src.stop();
  await kube.stop();
}

console.log(
  `discovery bench: ${SERVICES} services, ${CHANGES} sequential changes per row, Node ${process.version}`,
);
let fed: Federation | undefined;
let nats: Awaited<ReturnType<typeof startNatsServer>> | undefined;
try {
  nats = await startNatsServer({ name: 'bench-discovery' });
  fed = { pki: await makePki(['east', 'west']), url: nats.url };
} catch (err) {
  console.log(`no nats-server (${(err as Error).message}): remote-view rows skipped`);
}
try {
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
  if (only !== 'kubernetes') await consulBench(fed);
  if (only !== 'consul') await kubeBench(fed);
} finally {
  await nats?.stop();
  nats?.cleanup();
}
