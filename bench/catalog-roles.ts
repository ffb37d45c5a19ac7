/**
 * The child processes of the catalog benchmark (bench/catalog.ts): every simulated publisher with the change
 * stream, and one view (a watching cluster, or the joiner), each a real FederationNode. What they report to the
 * orchestrator (catalog-scale.ts) over IPC is typed here.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { CertificateSource, type IssuedLeaf, TrustBundle } from '../ca/index.ts';
import { createRegistry, type EndpointSource, type LocalService, silentLogger } from '../core/index.ts';
import { FederationNode } from '../federation/index.ts';
import { benchService } from './catalog-common.ts';
import { round, sleep } from './figures.ts';

export const TD = 'bench.example';

/** when a joiner's memory is read again after its sync */
export const SETTLE_MS = 20_000;

/**
 * ms with sub-ms resolution on the system's monotonic clock (process.hrtime is CLOCK_MONOTONIC on Linux), so
 * every process of this machine reads the same clock. Not performance.timeOrigin + now(): timeOrigin is the
 * wall clock at process start, so a wall-clock step between two process starts becomes a constant error in
 * every latency (one run here reported all 2,000 latencies between 9.53 and 9.65 s).
 */
const clock = (): number => Number(process.hrtime.bigint()) / 1e6;

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

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
    next[i] = benchService(this.services[i]!.name, healthy);
    this.services = next;
    for (const l of this.#listeners) l(next);
  }
}

/** What every child process is told (one JSON file). */
export interface Spec {
  rootPem: string;
  leaves: Record<string, IssuedLeaf>;
  servers: string[][];
  clusters: number;
  services: number;
  /** gateways per cluster, all listed in every entry (each is an offer of its own in a view) */
  gateways: number;
}

function nodeConfig(servers: string[], stateDir?: string) {
  return {
    nats: { servers, reconnectWait: '500ms' },
    heartbeatInterval: '2s',
    staleAfter: '30s',
    // no TTL refresh inside the measured window: only the steady change stream moves
    entryTtl: '30m',
    ...(stateDir ? { stateDir } : {}),
  };
}

function leafOf(spec: Spec, name: string): IssuedLeaf {
  const l = spec.leaves[name]!;
  return { ...l, notBefore: new Date(l.notBefore), notAfter: new Date(l.notAfter) };
}

async function signerOf(spec: Spec, bundle: TrustBundle, name: string): Promise<CertificateSource> {
  const leaf = leafOf(spec, name);
  const s = new CertificateSource({ logger: silentLogger(), issue: async () => leaf, bundle: () => bundle });
  await s.start();
  return s;
}

function send(msg: unknown): void {
  process.send!(msg);
}

/** the process's private resident memory (Linux: RssAnon), i.e. without the node binary's shared file pages */
function rssAnonMb(): number {
  try {
    const line = readFileSync('/proc/self/status', 'utf8').match(/^RssAnon:\s+(\d+) kB/m);
    return line ? Number(line[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function loopDelay() {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  return {
    reset: () => h.reset(),
    read: () => ({ loop_p99_ms: round(h.percentile(99) / 1e6), loop_max_ms: round(h.max / 1e6) }),
  };
}

export interface Synced {
  sync_s: number;
  /** the view's CPU time from its start to the last entry (a shared host stretches the wall time, less this) */
  sync_cpu_s: number;
  rss_mb: number;
  heap_mb: number;
  heap_total_mb: number;
  young_mb: number;
  external_mb: number;
  base_rss_mb: number;
  rss_anon_mb: number;
  /** a joiner's rss SETTLE_MS after its sync */
  rss_settled_mb: number;
}

export interface Report {
  seen: [string, number, number][];
  rss_mb: number;
  cpu_ms: number;
  wall_ms: number;
  idle_cpu_ms_per_s: number;
  loop_p99_ms: number;
  loop_max_ms: number;
}

export interface Streamed {
  changes: [string, number, number][];
  wall_ms: number;
  cpu_ms: number;
  loop_p99_ms: number;
  loop_max_ms: number;
}

// ---- child role: every simulated publisher, and the change stream ----

export async function publishersRole(spec: Spec): Promise<void> {
  const bundle = TrustBundle.fromPem(spec.rootPem);
  const names = Array.from({ length: spec.clusters }, (_, i) => `c${i}`);
  const sources: BenchSource[] = [];
  const nodes: FederationNode[] = [];
  for (const [i, name] of names.entries()) {
    const src = new BenchSource(
      Array.from({ length: spec.services }, (_, j) => benchService(`svc-${j}`, 1 + (j % 5))),
    );
    sources.push(src);
    const node = new FederationNode({
      config: nodeConfig(spec.servers[i % spec.servers.length]!),
      cluster: name,
      trustDomain: TD,
      locality: { region: `region-${i % 5}`, zone: `zone-${i}` },
      gateways: Array.from({ length: spec.gateways }, (_, g) => ({
        name: `gw-${g + 1}`,
        address: `10.1.${i}.${g + 1}:15443`,
      })),
      signer: await signerOf(spec, bundle, name),
      bundle: () => bundle,
      source: src,
      watch: false,
      logger: silentLogger(),
      registry: createRegistry(),
      now: Date.now,
    });
    await node.start();
    nodes.push(node);
  }
  await until(() => nodes.every((n) => n.natsStatus().connected), 120_000, 'the publishers to connect');
  send({ type: 'ready' });
  process.on('message', async (m: { type: string; rate?: number; seconds?: number }) => {
    if (m.type === 'stop') {
      await Promise.all(nodes.map((n) => n.stop()));
      process.exit(0);
    }
    if (m.type !== 'stream') return;
    const rate = m.rate!;
    const count = Math.round(m.seconds! * rate);
    const changes: [string, number, number][] = [];
    const loop = loopDelay();
    const cpu0 = process.cpuUsage();
    let rng = 42;
    const rand = (n: number) => {
      rng = (rng * 1103515245 + 12345) & 0x7fffffff;
      return rng % n;
    };
    const start = clock();
    let k = 0;
    // each tick publishes every change that is due by now: a late timer makes a burst, never a lower rate
    while (k < count) {
      const due = Math.min(count, Math.floor(((clock() - start) * rate) / 1000) + 1);
      for (; k < due; k++) {
        const c = rand(spec.clusters);
        const j = rand(spec.services);
        // weights only grow, so (service, weight) names one change and a later one supersedes it
        const weight = sources[c]!.services[j]!.endpoints.length + 1;
        changes.push([`${names[c]}/svc-${j}`, weight, clock()]);
        sources[c]!.setWeight(j, weight);
      }
      await sleep(start + (k * 1000) / rate - clock());
    }
    const wall = clock() - start;
    const cpu = process.cpuUsage(cpu0);
    send({
      type: 'streamed',
      changes,
      wall_ms: wall,
      cpu_ms: (cpu.user + cpu.system) / 1000,
      ...loop.read(),
    });
  });
}

// ---- child role: one view (a watching cluster, or the joiner) ----

export async function viewRole(spec: Spec, name: string, serversIdx: number): Promise<void> {
  const bundle = TrustBundle.fromPem(spec.rootPem);
  const stateDir = mkdtempSync(join(tmpdir(), `meshfed-bench-${name}-`));
  const expected = spec.clusters * spec.services;
  const node = new FederationNode({
    config: nodeConfig(spec.servers[serversIdx]!, stateDir),
    cluster: name,
    trustDomain: TD,
    locality: { region: 'bench', zone: 'bench-a' },
    gateways: [],
    signer: await signerOf(spec, bundle, name),
    bundle: () => bundle,
    logger: silentLogger(),
    registry: createRegistry(),
    now: Date.now,
  });
  const baseRss = process.memoryUsage().rss / 1048576;
  const started = clock();
  const cpuAtStart = process.cpuUsage();
  await node.start();
  await until(() => node.entryCount() >= expected, 300_000, `${name} to sync`);
  const syncS = (clock() - started) / 1000;
  const syncCpu = process.cpuUsage(cpuAtStart);
  // what the view holds once the sync's garbage had a chance to go (no forced GC: what an operator would see)
  await sleep(2000);
  const mem = process.memoryUsage();
  const young = getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
  if (process.env.BENCH_DEBUG) {
    const spaces = getHeapSpaceStatistics().map(
      (x) =>
        `${x.space_name}=${(x.space_size / 1048576).toFixed(0)}/${(x.space_used_size / 1048576).toFixed(0)}`,
    );
    // glibc's main malloc arena (brk heap): native memory outside V8's heap that a burst left behind
    const brk = readFileSync('/proc/self/smaps', 'utf8').match(/\[heap\]\n(?:.*\n)*?Rss:\s+(\d+) kB/);
    const brkMb = brk ? (Number(brk[1]) / 1024).toFixed(0) : '?';
    console.error(name, 'rss', (mem.rss / 1048576).toFixed(0), `malloc heap ${brkMb} MB`, spaces.join(' '));
  }
  // a joiner also says what it holds once the burst's garbage is collected (V8 frees it within ~10 s of quiet)
  let settledRss = Number.NaN;
  if (name.startsWith('joiner')) {
    await sleep(SETTLE_MS - (clock() - started - syncS * 1000));
    settledRss = process.memoryUsage().rss / 1048576;
  }
  if (process.env.BENCH_HEAPSNAP && name === 'joiner') {
    console.error(
      'heap snapshot',
      writeHeapSnapshot(join(process.env.BENCH_HEAPSNAP, `${name}.heapsnapshot`)),
    );
  }
  send({
    type: 'synced',
    sync_s: syncS,
    sync_cpu_s: (syncCpu.user + syncCpu.system) / 1e6,
    rss_mb: mem.rss / 1048576,
    heap_mb: mem.heapUsed / 1048576,
    heap_total_mb: mem.heapTotal / 1048576,
    young_mb: (young?.space_size ?? Number.NaN) / 1048576,
    external_mb: mem.external / 1048576,
    base_rss_mb: baseRss,
    rss_anon_mb: rssAnonMb(),
    rss_settled_mb: settledRss,
    entries: node.entryCount(),
  });
  const seen: [string, number, number][] = [];
  let recording = false;
  node.onChange((changes) => {
    if (!recording) return;
    const t = clock();
    for (const ch of changes) {
      if (ch.type === 'upsert')
        seen.push([`${ch.instance.cluster}/${ch.instance.name}`, ch.instance.weight, t]);
    }
  });
  const loop = loopDelay();
  let cpu0 = process.cpuUsage();
  let wall0 = clock();
  let idleCpuPerS = Number.NaN;
  const cpuMs = () => {
    const c = process.cpuUsage(cpu0);
    return (c.user + c.system) / 1000;
  };
  process.on('message', async (m: { type: string }) => {
    if (m.type === 'idle') {
      cpu0 = process.cpuUsage();
      wall0 = clock();
    } else if (m.type === 'record') {
      idleCpuPerS = cpuMs() / ((clock() - wall0) / 1000);
      recording = true;
      loop.reset();
      cpu0 = process.cpuUsage();
      wall0 = clock();
    } else if (m.type === 'report') {
      recording = false;
      const mem2 = process.memoryUsage();
      send({
        type: 'report',
        seen,
        rss_mb: mem2.rss / 1048576,
        cpu_ms: cpuMs(),
        wall_ms: clock() - wall0,
        idle_cpu_ms_per_s: idleCpuPerS,
        ...loop.read(),
      });
    } else if (m.type === 'stop') {
      await node.stop();
      rmSync(stateDir, { recursive: true, force: true });
      process.exit(0);
    }
  });
}
