/**
 * Catalog benchmark (issues 4 and 15): propagation latency under a steady change rate, the CPU a view spends per
 * change, full sync time of a newly joined cluster, and the memory of one view. The NATS side is real (a
 * supercluster of 3 NATS clusters). The mesh clusters' publishers are simulated in one child process (one
 * publish-only FederationNode each); every view is a real FederationNode in its own process, started as
 * `meshfed gateway` is (cli/node-flags.ts, meshfed's build: builtViewScript) with persistence to a stateDir, so
 * the publishers' work never delays a view's event loop and each view's memory is its own.
 *
 *   npm run bench:catalog                                   10,000 and 100,000 entries
 *   npm run bench:catalog -- --scale 50x5000                250,000 entries (opt-in: ~1.5 GB of processes)
 *   npm run bench:catalog -- --scale 10x1000 --seconds 10 --rate 200
 *   npm run bench:catalog -- --scale 50x2000 --join-only    full sync and memory only (no watching views)
 *   BENCH_PROF=view|joiner|publishers npm run bench:catalog   CPU profiles in /tmp/meshfed-prof
 *   BENCH_VIEW_FLAGS='--max-semi-space-size=2' …             more V8 flags for every view process
 *   BENCH_DEBUG=1 …                                            heap spaces of each view after its sync
 *   BENCH_HEAPSNAP=/tmp/dir …                                  a heap snapshot of the joiner after its sync
 *
 * Latency is publish → visible in all three watching views, timed on the system's monotonic clock, which every
 * process of one machine shares (see `clock`). CPU per change is each watching view's CPU time while the stream
 * runs, less what the same view spends idle over as long (heartbeats, timers), divided by the changes.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import {
  CertificateSource,
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
  TrustBundle,
} from '../ca/index.ts';
import { createRegistry, type EndpointSource, type LocalService, silentLogger } from '../core/index.ts';
import { startNatsSupercluster } from '../cli/demo/nats-topology.ts';
import { GATEWAY_ENV, GATEWAY_NODE_FLAGS, missingEnv } from '../cli/node-flags.ts';
import { FederationNode } from '../federation/index.ts';
import { benchService, mergeResults } from './catalog-common.ts';
import { median, percentile, round, sleep } from './figures.ts';

const TD = 'bench.example';
const NATS_CLUSTERS = ['nats-a', 'nats-b', 'nats-c'];
const here = new URL('.', import.meta.url).pathname;

/** what a view process runs: this file as JavaScript beside meshfed's build (builtViewScript), or as it is */
let viewScript = join(here, 'catalog.ts');

/**
 * `meshfed gateway` runs meshfed's build (scripts/build.js), not its sources, so it does not carry Node's
 * type-stripping loader (~17 MB). For a view process to hold what a gateway's would, this file and the bench
 * modules it imports are stripped into the build's folder, their imports pointing at the built modules. The
 * sources when the build cannot be made.
 */
async function builtViewScript(): Promise<string | undefined> {
  const { BUILD_DIR, ensureBuilt } = (await import('../scripts/build.js')) as {
    BUILD_DIR: string;
    ensureBuilt: () => { ok: boolean };
  };
  if (!ensureBuilt().ok) return undefined;
  const out = join(BUILD_DIR, 'bench');
  mkdirSync(out, { recursive: true });
  const relativeTs = /(\bfrom\s*|\bimport\s*\(?\s*)(['"])(\.\.?\/[^'"\n]*?)\.ts\2/g;
  for (const f of ['catalog.ts', 'catalog-common.ts', 'figures.ts']) {
    const code = stripTypeScriptTypes(readFileSync(join(here, f), 'utf8'), { mode: 'strip' });
    writeFileSync(join(out, f.replace(/\.ts$/, '.js')), code.replace(relativeTs, '$1$2$3.js$2'));
  }
  return join(out, 'catalog.js');
}

const { values: args } = parseArgs({
  options: {
    scale: { type: 'string', multiple: true },
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '200' },
    'join-only': { type: 'boolean', default: false },
    role: { type: 'string' },
    spec: { type: 'string' },
    name: { type: 'string' },
    servers: { type: 'string' },
  },
});

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
interface Spec {
  rootPem: string;
  leaves: Record<string, IssuedLeaf>;
  servers: string[][];
  clusters: number;
  services: number;
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

// ---- child role: every simulated publisher, and the change stream ----

async function publishersRole(spec: Spec): Promise<void> {
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
      gateways: [{ name: 'gw-1', address: `10.1.${i}.1:15443` }],
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

async function viewRole(spec: Spec, name: string, serversIdx: number): Promise<void> {
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

// ---- the orchestrator ----

interface Child {
  proc: ChildProcess;
  next<T>(type: string): Promise<T>;
}

/**
 * A child of the given role; `gateway`: started the way bin/meshfed.js starts `meshfed gateway` (its Node flags
 * and environment, cli/node-flags.ts), else with Node's and the C library's defaults.
 */
function spawnRole(role: string, specFile: string, extra: string[], gateway: boolean): Child {
  const prof = process.env.BENCH_PROF;
  const execArgv =
    prof && role.startsWith(prof) ? ['--cpu-prof', '--cpu-prof-dir=/tmp/meshfed-prof'] : ([] as string[]);
  if (gateway) execArgv.push(...GATEWAY_NODE_FLAGS);
  if (role !== 'publishers' && process.env.BENCH_VIEW_FLAGS)
    execArgv.push(...process.env.BENCH_VIEW_FLAGS.split(' '));
  const env = gateway ? { ...process.env, ...missingEnv(GATEWAY_ENV, process.env) } : process.env;
  const script = role === 'publishers' ? join(here, 'catalog.ts') : viewScript;
  const proc = fork(script, ['--role', role, '--spec', specFile, ...extra], {
    execArgv,
    env,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const queue: { type: string }[] = [];
  const waiters: { type: string; resolve: (m: unknown) => void; reject: (e: Error) => void }[] = [];
  proc.on('message', (m: { type: string }) => {
    const w = waiters.findIndex((x) => x.type === m.type);
    if (w >= 0) waiters.splice(w, 1)[0]!.resolve(m);
    else queue.push(m);
  });
  proc.on('exit', (code) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`${role} exited with ${code}`));
  });
  return {
    proc,
    next<T>(type: string): Promise<T> {
      const i = queue.findIndex((x) => x.type === type);
      if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0] as T);
      return new Promise<T>((resolve, reject) => {
        waiters.push({ type, resolve: resolve as (m: unknown) => void, reject });
      });
    },
  };
}

async function stopChild(c: Child): Promise<void> {
  if (c.proc.exitCode !== null) return;
  const exited = once(c.proc, 'exit');
  c.proc.send({ type: 'stop' });
  await exited;
}

interface Synced {
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

interface Report {
  seen: [string, number, number][];
  rss_mb: number;
  cpu_ms: number;
  wall_ms: number;
  idle_cpu_ms_per_s: number;
  loop_p99_ms: number;
  loop_max_ms: number;
}

interface Streamed {
  changes: [string, number, number][];
  wall_ms: number;
  cpu_ms: number;
  loop_p99_ms: number;
  loop_max_ms: number;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** when a joiner's memory is read again after its sync */
const SETTLE_MS = 20_000;

/** how long each watching view's idle CPU is measured before the stream */
const IDLE_WINDOW_MS = 3000;

const memoryLine = (x: Synced) =>
  `rss ${x.rss_mb.toFixed(0)} MB, ${x.rss_settled_mb.toFixed(0)} MB after ${SETTLE_MS / 1000} s (private ${x.rss_anon_mb.toFixed(0)} MB; heap ${x.heap_mb.toFixed(0)} of ${x.heap_total_mb.toFixed(0)} MB, young generation ${x.young_mb.toFixed(0)} MB, external ${x.external_mb.toFixed(0)} MB; rss before the view started ${x.base_rss_mb.toFixed(0)} MB)`;

/** Three watching views sync one after the other, then every view records a steady change stream. */
async function watchAndStream(
  specFile: string,
  pubs: Child,
  children: Child[],
  seconds: number,
  rate: number,
) {
  const viewNames = NATS_CLUSTERS.map((_, i) => `view-${i}`);
  // the watching views join one after the other (one per NATS cluster): each is a full-sync sample
  const views: Child[] = [];
  const viewSync: Synced[] = [];
  for (const [i, v] of viewNames.entries()) {
    const c = spawnRole('view', specFile, ['--name', v, '--servers', String(i)], true);
    children.push(c);
    views.push(c);
    viewSync.push(await c.next<Synced>('synced'));
  }
  console.log(
    `full sync of the 3 watching views, one at a time: ${viewSync.map((x) => x.sync_s.toFixed(2)).join(', ')} s (CPU ${viewSync.map((x) => x.sync_cpu_s.toFixed(2)).join(', ')} s); rss ${viewSync.map((x) => x.rss_mb.toFixed(0)).join(', ')} MB`,
  );
  for (const v of views) v.proc.send({ type: 'idle' });
  await sleep(IDLE_WINDOW_MS);
  for (const v of views) v.proc.send({ type: 'record' });
  pubs.proc.send({ type: 'stream', rate, seconds });
  const streamed = await pubs.next<Streamed>('streamed');
  // give the last changes time to arrive (bounded), then collect what every view saw
  await sleep(3000);
  const reports = await Promise.all(
    views.map((v) => {
      v.proc.send({ type: 'report' });
      return v.next<Report>('report');
    }),
  );
  // per view: key → ascending [weight, time] of what it showed
  const seenBy = reports.map((r) => {
    const m = new Map<string, [number, number][]>();
    for (const [key, w, t] of r.seen) {
      const l = m.get(key) ?? [];
      if (l.length === 0) m.set(key, l);
      l.push([w, t]);
    }
    return m;
  });
  const latencies: number[] = [];
  let lost = 0;
  for (const [key, weight, t] of streamed.changes) {
    let worst = 0;
    for (const m of seenBy) {
      // the first time this view showed this weight or a later one (two changes in one turn show only the last)
      const hit = m.get(key)?.find(([w]) => w >= weight);
      if (!hit) {
        worst = Number.NaN;
        break;
      }
      worst = Math.max(worst, hit[1] - t);
    }
    if (Number.isNaN(worst)) lost++;
    else latencies.push(worst);
  }
  latencies.sort((a, b) => a - b);
  const achieved = (streamed.changes.length / streamed.wall_ms) * 1000;
  const n = Math.max(1, streamed.changes.length);
  const cpuPerChange = reports.map((r) => r.cpu_ms / n);
  const netCpuPerChange = reports.map((r) => (r.cpu_ms - (r.idle_cpu_ms_per_s * r.wall_ms) / 1000) / n);
  console.log(
    `propagation over ${latencies.length} changes at ${achieved.toFixed(0)}/s (asked ${rate}/s), lost ${lost}: p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${latencies[latencies.length - 1]?.toFixed(1)} ms`,
  );
  console.log(
    `CPU per change of a watching view: ${netCpuPerChange.map((x) => x.toFixed(3)).join(', ')} ms net of idle (${cpuPerChange.map((x) => x.toFixed(3)).join(', ')} ms in all; idle ${reports.map((r) => r.idle_cpu_ms_per_s.toFixed(0)).join(', ')} ms/s)`,
  );
  console.log(
    `event loop delay p99/max: publishers ${streamed.loop_p99_ms}/${streamed.loop_max_ms} ms (CPU ${(streamed.cpu_ms / 1000).toFixed(1)} s in ${(streamed.wall_ms / 1000).toFixed(1)} s); views ${reports.map((r) => `${r.loop_p99_ms}/${r.loop_max_ms}`).join(', ')} ms; view rss after the stream ${reports.map((r) => r.rss_mb.toFixed(0)).join(', ')} MB`,
  );
  return {
    change_rate_per_s: Math.round(achieved),
    changes_measured: latencies.length,
    changes_lost: lost,
    propagation_p50_ms: round(percentile(latencies, 50)),
    propagation_p99_ms: round(percentile(latencies, 99)),
    propagation_max_ms: round(latencies[latencies.length - 1] ?? Number.NaN),
    view_cpu_ms_per_change: round3(median(netCpuPerChange)),
    view_cpu_ms_per_change_samples: netCpuPerChange.map(round3),
    view_cpu_ms_per_change_with_idle: round3(median(cpuPerChange)),
    view_idle_cpu_ms_per_s: reports.map((r) => round(r.idle_cpu_ms_per_s)),
    publisher_cpu_ms_per_change: round(streamed.cpu_ms / n),
    loop_delay_p99_ms: { publishers: streamed.loop_p99_ms, views: reports.map((r) => r.loop_p99_ms) },
    watching_views_sync_s: viewSync.map((x) => round(x.sync_s)),
    watching_views_sync_cpu_s: viewSync.map((x) => round(x.sync_cpu_s)),
    watching_views_rss_mb: viewSync.map((x) => round(x.rss_mb)),
    watching_views_rss_after_stream_mb: reports.map((r) => round(r.rss_mb)),
  };
}

async function runScale(
  clusters: number,
  services: number,
  seconds: number,
  rate: number,
  joinOnly: boolean,
) {
  const label = `${clusters}x${services}`;
  const total = clusters * services;
  console.log(`\n== ${label}: ${clusters} clusters × ${services} services = ${total} entries`);
  const names = Array.from({ length: clusters }, (_, i) => `c${i}`);
  const viewNames = NATS_CLUSTERS.map((_, i) => `view-${i}`);
  const t0 = Date.now();
  const root = await createRoot({ trustDomain: TD });
  const leaves: Record<string, IssuedLeaf> = {};
  const sc = await startNatsSupercluster({ clusters: NATS_CLUSTERS.map((name) => ({ name })) });
  for (const n of [...names, ...viewNames, 'joiner', 'joiner-node-defaults'])
    leaves[n] = await issueLeaf(await issueIntermediate(root, { cluster: n }), { kind: 'federation' });
  console.log(`setup: supercluster and ${names.length + 5} identities in ${Date.now() - t0} ms`);
  const spec: Spec = {
    rootPem: root.certPem,
    leaves,
    servers: NATS_CLUSTERS.map((c) => sc.cluster(c).urls),
    clusters,
    services,
  };
  const specFile = join(tmpdir(), `meshfed-bench-catalog-${process.pid}.json`);
  writeFileSync(specFile, JSON.stringify(spec));
  const children: Child[] = [];
  try {
    const t1 = Date.now();
    const pubs = spawnRole('publishers', specFile, [], false);
    children.push(pubs);
    await pubs.next('ready');
    console.log(
      `${clusters} publishers up (one child process) in ${((Date.now() - t1) / 1000).toFixed(1)} s`,
    );
    const stream = joinOnly ? {} : await watchAndStream(specFile, pubs, children, seconds, rate);

    // full sync of a newly joined cluster, in its own process, started as meshfed gateway is
    const joiner = spawnRole('joiner', specFile, ['--name', 'joiner', '--servers', '1'], true);
    children.push(joiner);
    const joined = await joiner.next<Synced>('synced');
    console.log(
      `full sync of a new cluster (${total} entries): ${joined.sync_s.toFixed(2)} s (CPU ${joined.sync_cpu_s.toFixed(2)} s); its ${memoryLine(joined)}`,
    );
    await stopChild(joiner);
    // the same join with Node's defaults (a view before cli/node-flags.ts, or run as plain `node`)
    const plain = spawnRole('joiner', specFile, ['--name', 'joiner-node-defaults', '--servers', '1'], false);
    children.push(plain);
    const joinedPlain = await plain.next<Synced>('synced');
    console.log(
      `the same with Node's defaults: full sync ${joinedPlain.sync_s.toFixed(2)} s (CPU ${joinedPlain.sync_cpu_s.toFixed(2)} s), ${memoryLine(joinedPlain)}`,
    );
    return {
      clusters,
      services,
      entries: total,
      view_started_with: [
        ...GATEWAY_NODE_FLAGS,
        ...Object.entries(GATEWAY_ENV).map(([k, v]) => `${k}=${v}`),
      ].join(' '),
      full_sync_s: round(joined.sync_s),
      full_sync_cpu_s: round(joined.sync_cpu_s),
      rss_mb: round(joined.rss_mb),
      rss_settled_mb: round(joined.rss_settled_mb),
      rss_private_mb: round(joined.rss_anon_mb),
      rss_before_view_mb: round(joined.base_rss_mb),
      rss_of_the_view_mb: round(joined.rss_mb - joined.base_rss_mb),
      heap_used_mb: round(joined.heap_mb),
      heap_total_mb: round(joined.heap_total_mb),
      young_generation_mb: round(joined.young_mb),
      external_mb: round(joined.external_mb),
      node_defaults: {
        full_sync_s: round(joinedPlain.sync_s),
        full_sync_cpu_s: round(joinedPlain.sync_cpu_s),
        rss_mb: round(joinedPlain.rss_mb),
        rss_settled_mb: round(joinedPlain.rss_settled_mb),
        rss_private_mb: round(joinedPlain.rss_anon_mb),
        heap_total_mb: round(joinedPlain.heap_total_mb),
        young_generation_mb: round(joinedPlain.young_mb),
      },
      ...stream,
    };
  } finally {
    await Promise.all(children.map(stopChild));
    rmSync(specFile, { force: true });
    await sc.stop();
    sc.cleanup();
  }
}

async function main(): Promise<void> {
  if (args.role) {
    const spec = JSON.parse(readFileSync(args.spec!, 'utf8')) as Spec;
    if (args.role === 'publishers') return publishersRole(spec);
    return viewRole(spec, args.name!, Number(args.servers));
  }
  const scales = (args.scale ?? ['10x1000', '50x2000']).map(
    (s) => s.split('x').map(Number) as [number, number],
  );
  const command = `npm run bench:catalog -- ${process.argv.slice(2).join(' ')}`.trim();
  viewScript = (await builtViewScript()) ?? viewScript;
  console.log(`view processes run ${viewScript}`);
  const loadAtStart = loadavg().map((x) => round(x));
  console.log(`load average at start: ${loadAtStart.join(', ')}`);
  const results: Record<string, unknown> = {};
  for (const [c, s] of scales) {
    const figures = await runScale(c, s, Number(args.seconds), Number(args.rate), args['join-only']);
    // each scale says which run it came from: one scale run again replaces its figures but not the other's,
    // which the top-level meta (the last run) would otherwise claim as its own
    results[`${c}x${s}`] = { ...figures, measured: { date: new Date().toISOString(), command } };
  }
  const out = {
    ...results,
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      command,
      load_average: { start: loadAtStart, end: loadavg().map((x) => round(x)) },
      note: 'shared 2-core machine: figures are noisy; publishers in one child process, every view in its own',
    },
  };
  // scales run separately (--scale) accumulate in one file; a scale run again replaces its own figures
  mergeResults('catalog.json', out);
  console.log(
    `\nload average at the end: ${out.meta.load_average.end.join(', ')}; wrote bench/results/catalog.json`,
  );
  process.exit(0);
}

await main();
