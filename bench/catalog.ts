/**
 * Catalog benchmark (issue 4): propagation latency under a steady change rate, full sync time of a newly joined
 * cluster, and resident memory of one view. The NATS side is real (a supercluster of 3 NATS clusters); the mesh
 * clusters' publishers are simulated in this process (one FederationNode each, publish-only), and three watching
 * views (one per NATS cluster) observe. Prints figures and writes bench/results/catalog.json.
 *
 *   npm run bench:catalog                 both scales
 *   npm run bench:catalog -- --scale 10x1000 --seconds 10 --rate 200
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  CertificateSource,
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
  TrustBundle,
} from '../ca/index.ts';
import pino from 'pino';
import {
  createLogger,
  createRegistry,
  type EndpointSource,
  type LocalService,
  silentLogger,
  startNatsServer,
  startNatsSupercluster,
} from '../core/index.ts';
import { FederationNode } from '../federation/index.ts';

const TD = 'bench.example';
const NATS_CLUSTERS = ['nats-a', 'nats-b', 'nats-c'];
const here = new URL('.', import.meta.url).pathname;

const { values: args } = parseArgs({
  options: {
    scale: { type: 'string', multiple: true },
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '200' },
    'child-view': { type: 'string' },
    transport: { type: 'boolean', default: false },
    keys: { type: 'string', default: '20000' },
  },
});

class BenchSource implements EndpointSource {
  readonly name = 'bench';
  services: LocalService[];
  readonly #listeners = new Set<(s: readonly LocalService[]) => void>();
  constructor(services: LocalService[]) {
    this.services = services;
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  current(): readonly LocalService[] {
    return this.services;
  }
  onChange(l: (s: readonly LocalService[]) => void): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
  /** replaces one service (a new object, so the publisher re-signs just that one) */
  setWeight(i: number, healthy: number): void {
    const next = this.services.slice();
    next[i] = svc(this.services[i]!.name, healthy);
    this.services = next;
    for (const l of this.#listeners) l(next);
  }
}

function svc(name: string, healthy: number): LocalService {
  return {
    namespace: 'bench',
    name,
    source: 'bench',
    exported: true,
    ports: [
      { name: 'http', port: 8080, protocol: 'http' },
      { name: 'grpc', port: 9090, protocol: 'grpc' },
    ],
    endpoints: Array.from({ length: healthy }, (_, k) => ({
      host: `10.0.0.${k}`,
      ports: { http: 8080 },
      healthy: true,
    })),
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function sourceOf(leaf: IssuedLeaf, bundle: TrustBundle): CertificateSource {
  return new CertificateSource({ issue: async () => leaf, bundle: () => bundle });
}

interface Pki {
  bundle: TrustBundle;
  rootPem: string;
  leaves: Map<string, IssuedLeaf>;
}

async function makePki(names: string[]): Promise<Pki> {
  const root = await createRoot({ trustDomain: TD });
  const leaves = new Map<string, IssuedLeaf>();
  for (const n of names)
    leaves.set(n, await issueLeaf(await issueIntermediate(root, { cluster: n }), { kind: 'federation' }));
  return { bundle: TrustBundle.fromPem(root.certPem), rootPem: root.certPem, leaves };
}

function nodeConfig(servers: string[]) {
  return {
    nats: { servers, reconnectWait: '500ms' },
    heartbeatInterval: '2s',
    staleAfter: '30s',
    // no TTL refresh inside the measured window: only the steady change stream moves
    entryTtl: '30m',
  };
}

const viewRegistry = createRegistry();

async function observer(name: string, servers: string[], pki: Pki): Promise<FederationNode> {
  const signer = sourceOf(pki.leaves.get(name)!, pki.bundle);
  await signer.start();
  const node = new FederationNode({
    config: nodeConfig(servers),
    cluster: name,
    trustDomain: TD,
    locality: { region: 'bench', zone: 'bench-a' },
    gateways: [],
    signer,
    bundle: () => pki.bundle,
    logger: process.env.BENCH_DEBUG
      ? createLogger({ level: 'debug', destination: pino.destination(2) })
      : silentLogger(),
    registry: createRegistry(),
  });
  await node.start();
  return node;
}

/** The child-process role: one view, fully synced, then report its resident memory. */
async function childView(spec: string): Promise<void> {
  const o = JSON.parse(readFileSync(spec, 'utf8')) as {
    servers: string[];
    rootPem: string;
    leaf: IssuedLeaf;
    expected: number;
  };
  const leaf = { ...o.leaf, notBefore: new Date(o.leaf.notBefore), notAfter: new Date(o.leaf.notAfter) };
  const bundle = TrustBundle.fromPem(o.rootPem);
  const pki: Pki = { bundle, rootPem: o.rootPem, leaves: new Map([['rss-view', leaf]]) };
  const started = Date.now();
  const node = await observer('rss-view', o.servers, pki);
  await until(() => node.entryCount() >= o.expected, 120_000, 'the child view to sync');
  const syncS = (Date.now() - started) / 1000;
  await sleep(1000);
  (globalThis as { gc?: () => void }).gc?.();
  await sleep(200);
  const m = process.memoryUsage();
  process.stdout.write(
    `${JSON.stringify({ rss_mb: m.rss / 1048576, heap_mb: m.heapUsed / 1048576, entries: node.entryCount(), sync_s: syncS })}\n`,
  );
  await node.stop();
  process.exit(0);
}

async function measureRss(
  servers: string[],
  pki: Pki,
  expected: number,
): Promise<{ rss_mb: number; heap_mb: number; sync_s: number }> {
  const spec = join(tmpdir(), `meshfed-bench-view-${process.pid}.json`);
  writeFileSync(
    spec,
    JSON.stringify({ servers, rootPem: pki.rootPem, leaf: pki.leaves.get('rss-view'), expected }),
  );
  const child = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] : []),
      '--expose-gc',
      join(here, 'catalog.ts'),
      '--child-view',
      spec,
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  if (code !== 0) throw new Error(`the memory probe exited with ${code}`);
  return JSON.parse(out.trim().split('\n').pop()!);
}

async function runScale(clusters: number, services: number, seconds: number, rate: number) {
  const label = `${clusters}x${services}`;
  console.log(`\n== ${label}: ${clusters} clusters × ${services} services = ${clusters * services} entries`);
  const names = Array.from({ length: clusters }, (_, i) => `c${i}`);
  const viewNames = NATS_CLUSTERS.map((_, i) => `view-${i}`);
  const t0 = Date.now();
  const [sc, pki] = await Promise.all([
    startNatsSupercluster({ clusters: NATS_CLUSTERS.map((name) => ({ name })) }),
    makePki([...names, ...viewNames, 'joiner', 'rss-view']),
  ]);
  console.log(`setup: supercluster and ${names.length + 5} identities in ${Date.now() - t0} ms`);
  const natsOf = (i: number) => sc.cluster(NATS_CLUSTERS[i % NATS_CLUSTERS.length]!).urls;
  const sources: BenchSource[] = [];
  const publishers: FederationNode[] = [];
  try {
    const t1 = Date.now();
    for (const [i, name] of names.entries()) {
      const src = new BenchSource(Array.from({ length: services }, (_, j) => svc(`svc-${j}`, 1 + (j % 5))));
      sources.push(src);
      const signer = sourceOf(pki.leaves.get(name)!, pki.bundle);
      await signer.start();
      const node = new FederationNode({
        config: nodeConfig(natsOf(i)),
        cluster: name,
        trustDomain: TD,
        locality: { region: `region-${i % 5}`, zone: `zone-${i}` },
        gateways: [{ name: 'gw-1', address: `10.1.${i}.1:15443` }],
        signer,
        bundle: () => pki.bundle,
        source: src,
        watch: false,
        logger: silentLogger(),
        registry: createRegistry(),
      });
      await node.start();
      publishers.push(node);
    }
    const total = clusters * services;
    await until(
      () => publishers.every((p) => p.natsStatus().connected),
      120_000,
      'the publishers to connect',
    );
    console.log(`${clusters} publishers up in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    // the watching views join one after the other: each is a full-sync sample, and one process syncing three
    // views at once would starve its own sockets (NATS cuts slow consumers after a 10 s write deadline)
    const views: FederationNode[] = [];
    const viewSyncs: number[] = [];
    for (const [i, v] of viewNames.entries()) {
      const t = performance.now();
      const view = await observer(v, natsOf(i), pki);
      await until(() => view.entryCount() >= total, 120_000, `${v} to sync`);
      viewSyncs.push((performance.now() - t) / 1000);
      views.push(view);
    }
    console.log(
      `full sync of the 3 watching views, one at a time: ${viewSyncs.map((x) => x.toFixed(2)).join(', ')} s`,
    );

    // propagation: publish → visible in every watching view
    const pending = new Map<string, { t: number; weight: number; seen: number }>();
    const latencies: number[] = [];
    for (const v of views) {
      v.onChange((changes) => {
        const now = performance.now();
        for (const ch of changes) {
          if (ch.type !== 'upsert') continue;
          const key = `${ch.instance.cluster}/${ch.instance.name}`;
          const p = pending.get(key);
          if (!p || p.weight !== ch.instance.weight) continue;
          if (++p.seen === views.length) {
            latencies.push(now - p.t);
            pending.delete(key);
          }
        }
      });
    }
    const count = Math.round(seconds * rate);
    const stalls: string[] = [];
    let lastBeat = performance.now();
    const beat = setInterval(() => {
      const now = performance.now();
      if (now - lastBeat > 100) stalls.push(`${new Date().toISOString()} ${(now - lastBeat).toFixed(0)}ms`);
      lastBeat = now;
    }, 10);
    const cpu0 = process.cpuUsage();
    let cpuUsed = cpu0;
    const start = performance.now();
    let rng = 42;
    const rand = (n: number) => {
      rng = (rng * 1103515245 + 12345) & 0x7fffffff;
      return rng % n;
    };
    for (let k = 0; k < count; k++) {
      await sleep(start + (k * 1000) / rate - performance.now());
      const c = rand(clusters);
      const j = rand(services);
      const key = `${names[c]}/svc-${j}`;
      if (pending.has(key)) continue;
      const old = sources[c]!.services[j]!.endpoints.length;
      const weight = 6 + ((old + 1 + rand(40)) % 50);
      if (weight === old) continue;
      pending.set(key, { t: performance.now(), weight, seen: 0 });
      sources[c]!.setWeight(j, weight);
    }
    const sent = performance.now() - start;
    clearInterval(beat);
    console.log(
      `event loop stalls over 100 ms during the change stream: ${stalls.length}; process CPU ${((process.cpuUsage(cpu0).user + process.cpuUsage(cpu0).system) / 1e6).toFixed(1)} s in ${(sent / 1000).toFixed(1)} s of wall time`,
    );
    const cpu = process.cpuUsage(cpu0);
    cpuUsed = cpu;
    if (process.env.BENCH_DEBUG) {
      const accepted = await viewRegistry.getSingleMetric('meshfed_catalog_accepted_total')?.get();
      const rejected = await viewRegistry.getSingleMetric('meshfed_catalog_rejected_total')?.get();
      console.error(
        JSON.stringify({
          stalls: stalls.length,
          cpu_user_s: cpu.user / 1e6,
          cpu_system_s: cpu.system / 1e6,
          wall_s: sent / 1000,
          accepted: accepted?.values,
          rejected: rejected?.values,
        }),
      );
    }
    await until(() => pending.size === 0, 30_000, 'the last changes to propagate').catch(() => undefined);
    latencies.sort((a, b) => a - b);
    const achieved = (latencies.length / sent) * 1000;
    console.log(
      `propagation over ${latencies.length} changes at ${achieved.toFixed(0)}/s (asked ${rate}/s), lost ${pending.size}: p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${latencies[latencies.length - 1]?.toFixed(1)} ms`,
    );

    // full sync of a newly joined cluster
    const joinStart = performance.now();
    const joiner = await observer('joiner', natsOf(1), pki);
    await until(() => joiner.entryCount() >= total, 300_000, 'the joiner to sync');
    const fullSync = (performance.now() - joinStart) / 1000;
    console.log(`full sync of a new cluster (${joiner.entryCount()} entries): ${fullSync.toFixed(2)} s`);
    await joiner.stop();

    const mem = await measureRss(natsOf(2), pki, total);
    console.log(
      `one view of ${total} entries in its own process: rss ${mem.rss_mb.toFixed(0)} MB (heap ${mem.heap_mb.toFixed(0)} MB), its own sync ${mem.sync_s.toFixed(2)} s`,
    );
    await Promise.all(views.map((v) => v.stop()));
    return {
      clusters,
      services,
      entries: total,
      change_rate_per_s: Math.round(achieved),
      changes_measured: latencies.length,
      changes_lost: pending.size,
      propagation_p50_ms: round(percentile(latencies, 50)),
      propagation_p99_ms: round(percentile(latencies, 99)),
      propagation_max_ms: round(latencies[latencies.length - 1] ?? Number.NaN),
      // CPU the whole bench process (publishers + 3 views) spent per change: steadier than latency on a busy host
      cpu_ms_per_change: round((cpuUsed.user + cpuUsed.system) / 1000 / Math.max(1, latencies.length)),
      wall_over_cpu: round(sent / ((cpuUsed.user + cpuUsed.system) / 1000)),
      full_sync_s: round(fullSync),
      full_sync_samples_s: [...viewSyncs, fullSync, mem.sync_s].map(round),
      rss_mb: round(mem.rss_mb),
      heap_mb: round(mem.heap_mb),
    };
  } finally {
    await Promise.all(publishers.map((p) => p.stop()));
    await sc.stop();
    sc.cleanup();
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * The transport choice, measured: JetStream KV (put → watch, and a new watcher's initial load) against plain
 * subjects (publish → subscribe, and a snapshot request answered in parts), on the same JetStream-enabled
 * supercluster, with catalog-sized payloads (unsigned: this isolates the transport).
 */
async function transport(keys: number, rate: number, seconds: number): Promise<Record<string, number>> {
  const { connect } = await import('@nats-io/transport-node');
  const { Kvm } = await import('@nats-io/kv');
  console.log(
    `\n== transport: JetStream KV vs plain subjects, ${keys} keys, ${rate} changes/s for ${seconds} s`,
  );
  // core's launcher cannot start a JetStream supercluster (nats-server refuses clustered JetStream on
  // single-server clusters without routes), so KV is measured on one JetStream server: its best case
  const server = await startNatsServer({ name: 'kv', jetstream: true });
  const sc = {
    cluster: (_: string) => ({ urls: [server.url] }),
    stop: () => server.stop(),
    cleanup: () => server.cleanup(),
  };
  const value = 'x'.repeat(1300); // the size of a signed entry with its x5c chain
  try {
    const writer = await connect({ servers: sc.cluster('nats-a').urls });
    const reader = await connect({ servers: sc.cluster('nats-c').urls });
    // the bucket lives in one NATS cluster (R1 here; R3 needs 3 servers per cluster) — the writer's
    const kv = await new Kvm(writer).create('catalog', { history: 1 });
    const rkv = await new Kvm(reader).open('catalog');
    const t0 = performance.now();
    for (let i = 0; i < keys; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, keys - i) }, (_, k) =>
          kv.put(`c${(i + k) % 50}.bench.svc-${i + k}`, value),
        ),
      );
    }
    const fillS = (performance.now() - t0) / 1000;
    // initial load of a new watcher
    const t1 = performance.now();
    let initial = 0;
    const pending = new Map<string, number>();
    const kvLat: number[] = [];
    let initialDone: () => void = () => undefined;
    const loaded = new Promise<void>((r) => {
      initialDone = r;
    });
    const watch = await rkv.watch({ key: '>' });
    void (async () => {
      for await (const e of watch) {
        if (!e.isUpdate) {
          if (++initial === keys) initialDone();
          continue;
        }
        const t = pending.get(e.key);
        if (t !== undefined) {
          kvLat.push(performance.now() - t);
          pending.delete(e.key);
        }
      }
    })();
    await loaded;
    const kvLoadS = (performance.now() - t1) / 1000;
    const count = Math.round(rate * seconds);
    const start = performance.now();
    for (let k = 0; k < count; k++) {
      await sleep(start + (k * 1000) / rate - performance.now());
      const key = `c${k % 50}.bench.svc-${k % keys}`;
      pending.set(key, performance.now());
      void kv.put(key, value);
    }
    await until(() => pending.size === 0, 20_000, 'the KV updates').catch(() => undefined);
    watch.stop();

    // plain subjects: publish → subscribe across the gateways, and a snapshot in 256 KiB parts
    const subLat: number[] = [];
    const sent = new Map<string, number>();
    reader.subscribe('bench.catalog.*', {
      callback: (_e, m) => {
        const t = sent.get(m.subject);
        if (t !== undefined) {
          subLat.push(performance.now() - t);
          sent.delete(m.subject);
        }
      },
    });
    await reader.flush();
    const perPart = Math.floor((256 * 1024) / (value.length + 3));
    writer.subscribe('bench.snapshot', {
      callback: (_e, m) => {
        for (let i = 0; i < keys; i += perPart) {
          const n = Math.min(perPart, keys - i);
          writer.publish(m.reply!, JSON.stringify(Array.from({ length: n }, () => value)));
        }
      },
    });
    await writer.flush();
    // interest crosses the gateways asynchronously: probe until the subscription is seen
    for (let probe = 0; probe < 200; probe++) {
      const subject = `bench.catalog.probe${probe}`;
      sent.set(subject, performance.now());
      writer.publish(subject, value);
      await sleep(10);
      if (subLat.length > 0) break;
    }
    subLat.length = 0;
    sent.clear();
    const start2 = performance.now();
    for (let k = 0; k < count; k++) {
      await sleep(start2 + (k * 1000) / rate - performance.now());
      const subject = `bench.catalog.k${k}`;
      sent.set(subject, performance.now());
      writer.publish(subject, value);
    }
    await until(() => sent.size === 0, 20_000, 'the subject updates').catch(() => undefined);
    const inbox = `_INBOX.bench.${Date.now()}`;
    let got = 0;
    let snapDone: () => void = () => undefined;
    const snapDoneP = new Promise<void>((r) => {
      snapDone = r;
    });
    reader.subscribe(inbox, {
      callback: (_e, m) => {
        got += (JSON.parse(m.string()) as unknown[]).length;
        if (got >= keys) snapDone();
      },
    });
    await reader.flush();
    const t3 = performance.now();
    reader.publish('bench.snapshot', '', { reply: inbox });
    await snapDoneP;
    const snapS = (performance.now() - t3) / 1000;
    kvLat.sort((a, b) => a - b);
    subLat.sort((a, b) => a - b);
    const r = {
      keys,
      kv_fill_s: round(fillS),
      kv_initial_load_s: round(kvLoadS),
      kv_update_p50_ms: round(percentile(kvLat, 50)),
      kv_update_p99_ms: round(percentile(kvLat, 99)),
      subject_p50_ms: round(percentile(subLat, 50)),
      subject_p99_ms: round(percentile(subLat, 99)),
      subject_snapshot_s: round(snapS),
    };
    console.log(
      `KV: fill ${r.kv_fill_s} s, new watcher loads ${keys} keys in ${r.kv_initial_load_s} s, update p50 ${r.kv_update_p50_ms} ms p99 ${r.kv_update_p99_ms} ms`,
    );
    console.log(
      `subjects: publish p50 ${r.subject_p50_ms} ms p99 ${r.subject_p99_ms} ms, snapshot of ${keys} values in ${r.subject_snapshot_s} s`,
    );
    await writer.close();
    await reader.close();
    return r;
  } finally {
    await sc.stop();
    sc.cleanup();
  }
}

async function main(): Promise<void> {
  if (args['child-view']) return childView(args['child-view']);
  if (args.transport) {
    const r = await transport(Number(args.keys), Number(args.rate), Number(args.seconds));
    mkdirSync(join(here, 'results'), { recursive: true });
    writeFileSync(join(here, 'results', 'catalog-transport.json'), `${JSON.stringify(r, null, 2)}\n`);
    process.exit(0);
  }
  const scales = (args.scale ?? ['10x1000', '50x2000']).map(
    (s) => s.split('x').map(Number) as [number, number],
  );
  const results: Record<string, unknown> = {};
  for (const [c, s] of scales) {
    results[`${c}x${s}`] = await runScale(c, s, Number(args.seconds), Number(args.rate));
  }
  const out = {
    ...results,
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      note: 'shared 2-core machine: figures are noisy; one run, medians of the per-change latencies',
    },
  };
  mkdirSync(join(here, 'results'), { recursive: true });
  // scales run separately (--scale) accumulate in one file; a scale run again replaces its own figures
  const file = join(here, 'results', 'catalog.json');
  let previous: Record<string, unknown> = {};
  try {
    previous = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    previous = {};
  }
  writeFileSync(file, `${JSON.stringify({ ...previous, ...out }, null, 2)}\n`);
  console.log(`\nwrote bench/results/catalog.json`);
  process.exit(0);
}

await main();
