// Load-balancing resilience benchmark (issue 5), through the real data plane: a load generator sends plain HTTP/1.1
// to the egress listener of a real meshfed Gateway ("home"), which balances over four remote clusters, each a real
// Gateway (mTLS tunnel, identity checks) in front of one HTTP backend. Cluster c0's backend answers after 2 s for a
// 30 s window; home's per-try timeout is 1 s; everything else is the shipped default balancer config (outlier
// detection, retry budget 20 %, circuit breakers). The baseline is a client doing plain round robin over the four
// backends directly, with the same 1 s timeout and no retries. Prints both success ratios, success per phase
// (warm-up / slow window / tail), latencies, ejection times and event-loop delay, and writes bench/results/lb.json.
//   npm run bench:lb                                   (1,000 req/s, warm-up 5 s, slow window 30 s, tail 5 s)
//   npm run bench:lb -- --rate 200 --slow 15 --mode meshfed
//   node --cpu-prof bench/lb.ts ...                    (profiles the home gateway's thread)
// Threads: home gateway + orchestration (main), each remote cluster (gateway + backend) in a worker of its own,
// the load generator in another, so neither the load nor the far side shares an event loop with the gateway
// under test. The host is shared: the event-loop delays printed say how starved each side was.
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Pool } from 'undici';
import { type CaMaterial, createRoot } from '../ca/index.ts';
import { createMesh, httpService, TRUST_DOMAIN, type TestGateway } from '../test/gateway/harness.ts';

interface ScenarioOptions {
  rate: number;
  warmupMs: number;
  slowMs: number;
  tailMs: number;
  slowDelayMs: number;
  tryTimeoutMs: number;
}

type Mode = 'meshfed' | 'round-robin';
const CLUSTERS = 4;
const HOST = 'orders.shop.svc.clusterset.local';
const PHASES = ['warmup', 'slow', 'tail'] as const;
/** the client's own deadline for a request through the gateway (3 tries × 1 s + back-offs + slack) */
const CLIENT_DEADLINE_MS = 5_000;

interface PhaseResult {
  sent: number;
  ok: number;
  p99Ms: number;
}

interface LoadResult {
  sent: number;
  ok: number;
  phases: Record<(typeof PHASES)[number], PhaseResult>;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: Record<string, number>;
  /** event-loop delay of the load generator's thread: shows whether the load itself was starved */
  loadEventLoopDelayMs: DelaySummary;
  /** how far the open loop fell behind its schedule at worst */
  maxScheduleLagMs: number;
  /** per second of schedule: "ok/sent p99" */
  perSecond: string[];
}

interface DelaySummary {
  p50: number;
  p99: number;
  max: number;
}

function summarize(h: ReturnType<typeof monitorEventLoopDelay>): DelaySummary {
  const ms = (ns: number) => Math.round(ns / 1e4) / 100;
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) };
}

// ---------------------------------------------------------------- remote clusters (worker)

interface RemoteCluster {
  cluster: string;
  eastWest: string;
  backend: string;
}

/**
 * One remote cluster, in a worker thread of its own (a cluster is a machine of its own in real life): a backend
 * and a real Gateway exporting shop/orders. Cluster 0's backend answers slowly in the window it is given.
 */
async function remoteWorker(root: CaMaterial, index: number, slowDelayMs: number): Promise<void> {
  let slowFrom = Number.POSITIVE_INFINITY;
  let slowTo = 0;
  const eld = monitorEventLoopDelay({ resolution: 10 });
  const server = http.createServer((req, res) => {
    req.resume();
    const now = Date.now();
    if (now >= slowFrom && now < slowTo) {
      const timer = setTimeout(() => res.end('ok'), slowDelayMs);
      res.once('close', () => clearTimeout(timer));
    } else res.end('ok');
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const backend = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const gw = await (await createMesh({ root })).gateway(`c${index}`);
  gw.source.set([httpService('shop', 'orders', [backend])]);
  parentPort!.on('message', async (m: { slow?: [number, number]; stop?: true }) => {
    if (m.slow) {
      if (index === 0) [slowFrom, slowTo] = m.slow;
      eld.enable();
    }
    if (m.stop) {
      eld.disable();
      const refused: Record<string, number> = {};
      for (const v of (await gw.registry.getSingleMetric('meshfed_refused_total')?.get())?.values ?? [])
        refused[`c${index} ${v.labels.reason}`] = v.value;
      await gw.close();
      server.closeAllConnections();
      parentPort!.postMessage({ refused, eventLoopDelayMs: summarize(eld) });
    }
  });
  const cluster: RemoteCluster = { cluster: `c${index}`, eastWest: gw.eastWest, backend };
  parentPort!.postMessage(cluster);
}

// ---------------------------------------------------------------- load generator (worker)

interface LoadPlan {
  mode: Mode;
  /** meshfed: the home gateway's egress listener; round robin: the four backends */
  origins: string[];
  o: ScenarioOptions;
}

/** Open loop: requests start on schedule whatever the earlier ones do, so slowness cannot lower the offered load. */
async function loadWorker(plan: LoadPlan): Promise<LoadResult> {
  const { o } = plan;
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  const pools = plan.origins.map((a) => new Pool(`http://${a}`, { connections: 1024, pipelining: 1 }));
  const total = Math.round((o.rate * (o.warmupMs + o.slowMs + o.tailMs)) / 1000);
  const phases = Object.fromEntries(
    PHASES.map((p) => [p, { sent: 0, ok: 0, p99Ms: 0 }]),
  ) as LoadResult['phases'];
  const phaseLatencies = Object.fromEntries(PHASES.map((p) => [p, [] as number[]]));
  const seconds = Array.from({ length: Math.ceil(total / o.rate) }, () => ({
    sent: 0,
    ok: 0,
    l: [] as number[],
  }));
  const errors: Record<string, number> = {};
  const latencies: number[] = [];
  let ok = 0;
  let maxLag = 0;
  const phaseOf = (at: number) =>
    at < o.warmupMs ? 'warmup' : at < o.warmupMs + o.slowMs ? 'slow' : ('tail' as const);
  // through the gateway a request may take three tries of tryTimeoutMs plus back-offs; the client gives it
  // that and a little more (CLIENT_DEADLINE_MS), so a request queued behind a starved gateway counts as failed
  const clientTimeout = plan.mode === 'meshfed' ? CLIENT_DEADLINE_MS : o.tryTimeoutMs;
  const one = async (i: number): Promise<void> => {
    const name = phaseOf((i * 1000) / o.rate);
    const phase = phases[name];
    const second = seconds[Math.floor(i / o.rate)]!;
    phase.sent++;
    second.sent++;
    const t0 = performance.now();
    try {
      const res = await pools[plan.mode === 'meshfed' ? 0 : i % pools.length]!.request({
        path: '/',
        method: 'GET',
        headers: { host: HOST },
        signal: AbortSignal.timeout(clientTimeout),
      });
      await res.body.dump();
      if (res.statusCode === 200) {
        ok++;
        phase.ok++;
        latencies.push(performance.now() - t0);
        phaseLatencies[name]!.push(performance.now() - t0);
        second.ok++;
        second.l.push(performance.now() - t0);
      } else {
        const key = `${res.statusCode} ${res.headers['x-meshfed-error'] ?? ''}`.trim();
        errors[key] = (errors[key] ?? 0) + 1;
      }
    } catch (err) {
      const key = (err as { name?: string; code?: string }).code ?? (err as Error).name ?? String(err);
      errors[key] = (errors[key] ?? 0) + 1;
    }
  };
  const pending: Promise<void>[] = [];
  // not counted: open a few dozen client connections and the gateway's tunnel sessions first, as a running
  // client population would have them; otherwise the first second opens ~1,000 connections at once, the
  // listener's accept backlog overflows and dropped SYNs come back only after TCP's 1 s, 3 s, 7 s retries
  for (let round = 0; round < 5; round++) {
    await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        pools[i % pools.length]!.request({ path: '/', method: 'GET', headers: { host: HOST } })
          .then((r) => r.body.dump())
          .catch(() => undefined),
      ),
    );
  }
  // the worker's own start-up (loading modules) must not eat into the warm-up: say when ready, then
  // wait for the common start time, on which the slow window is aligned too
  parentPort!.postMessage({ ready: true });
  const [{ startAt }] = (await once(parentPort!, 'message')) as [{ startAt: number }];
  await new Promise<void>((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
  const start = performance.now();
  let started = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const elapsed = performance.now() - start;
      const due = Math.min(total, Math.floor((elapsed * o.rate) / 1000));
      if (due > started) maxLag = Math.max(maxLag, elapsed - (started * 1000) / o.rate);
      for (; started < due; started++) pending.push(one(started));
      if (started >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 1);
  });
  await Promise.all(pending);
  eld.disable();
  await Promise.all(pools.map((p) => p.close()));
  const at = (q: number, l = latencies) => Math.round((l[Math.floor(q * (l.length - 1))] ?? 0) * 10) / 10;
  latencies.sort((a, b) => a - b);
  for (const p of PHASES)
    phases[p].p99Ms = at(
      0.99,
      phaseLatencies[p]!.sort((a, b) => a - b),
    );
  return {
    sent: total,
    ok,
    phases,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: at(1),
    errors,
    loadEventLoopDelayMs: summarize(eld),
    maxScheduleLagMs: Math.round(maxLag),
    perSecond: seconds.map(
      (x) =>
        `${x.ok}/${x.sent} ${at(
          0.99,
          x.l.sort((a, b) => a - b),
        )}ms`,
    ),
  };
}

// ---------------------------------------------------------------- orchestration (main thread)

interface ModeResult extends LoadResult {
  successRatio: number;
  /** the home gateway's counters (meshfed mode) */
  retries?: number;
  retryBudgetExhausted?: number;
  ejections?: number;
  breakerOpen?: number;
  /** target state changes seen by polling explain every 50 ms, ms after the slow window began */
  timeline?: string[];
  /** event-loop delay of the home gateway's thread */
  gatewayEventLoopDelayMs?: DelaySummary;
  /** retries by the failure of the try before */
  retriesBy?: Record<string, number>;
  /** connections or requests the remote gateways refused, by cluster and reason */
  remoteRefused?: Record<string, number>;
  /** event-loop delay of the remote clusters' threads (the worst of the four for each figure) */
  remoteEventLoopDelayMs?: DelaySummary;
}

function startWorker<T>(data: Record<string, unknown>): { worker: Worker; first: Promise<T> } {
  const worker = new Worker(new URL(import.meta.url), { workerData: data });
  const first = new Promise<T>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return { worker, first };
}

async function sumMetric(g: TestGateway, name: string): Promise<number> {
  return Object.values(await metricBy(g, name, 'source_cluster')).reduce((a, v) => a + v, 0);
}

async function metricBy(g: TestGateway, name: string, label: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await g.registry.getSingleMetric(name)?.get())?.values ?? []) {
    const key = String(v.labels[label] ?? '');
    out[key] = (out[key] ?? 0) + v.value;
  }
  return out;
}

async function runMode(mode: Mode, root: CaMaterial, o: ScenarioOptions): Promise<ModeResult> {
  const remotes = Array.from({ length: CLUSTERS }, (_, index) =>
    startWorker<RemoteCluster>({ role: 'remote', root, index, slowDelayMs: o.slowDelayMs }),
  );
  const clusters = await Promise.all(remotes.map((r) => r.first));
  let home: TestGateway | undefined;
  if (mode === 'meshfed') {
    const mesh = await createMesh({ root });
    home = await mesh.gateway('home', {
      // the shipped defaults, with the 1 s per-try timeout (the harness's own retry settings are generous)
      balancer: {
        timeouts: { request: `${o.tryTimeoutMs}ms` },
        retry: { attempts: 2, budgetPercent: 20, minRetriesPerSecond: 10 },
      },
    });
    for (const c of clusters)
      home.catalog.offer(c.cluster, httpService('shop', 'orders', [c.backend]), c.eastWest);
  }
  const plan: LoadPlan = { mode, origins: home ? [home.egress] : clusters.map((c) => c.backend), o };
  const load = startWorker<{ ready: true }>({ role: 'load', plan });
  await load.first;
  const done = once(load.worker, 'message') as Promise<[LoadResult]>;
  const startAt = Date.now() + 100;
  const slowFrom = startAt + o.warmupMs;
  for (const r of remotes) r.worker.postMessage({ slow: [slowFrom, slowFrom + o.slowMs] });
  load.worker.postMessage({ startAt });
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  const timeline: string[] = [];
  const last = new Map<string, string>();
  const poll = home
    ? setInterval(() => {
        for (const level of home!.balancers.explain('shop', 'orders').levels) {
          for (const t of level.targets) {
            const state = t.state.replace(/ \d+s$/, '');
            if (last.get(t.cluster) !== state) {
              timeline.push(`${Date.now() - slowFrom} ms: ${t.cluster} ${state}`);
              last.set(t.cluster, state);
            }
          }
        }
      }, 50)
    : undefined;
  const [result] = await done;
  clearInterval(poll);
  eld.disable();
  await load.worker.terminate();
  const out: ModeResult = { ...result, successRatio: result.ok / result.sent };
  if (home) {
    out.retries = await sumMetric(home, 'meshfed_upstream_retries_total');
    out.retriesBy = await metricBy(home, 'meshfed_upstream_retries_total', 'failure');
    out.retryBudgetExhausted = await sumMetric(home, 'meshfed_upstream_retry_budget_exhausted_total');
    out.ejections = await sumMetric(home, 'meshfed_outlier_ejections_total');
    out.breakerOpen = await sumMetric(home, 'meshfed_upstream_circuit_breaker_open_total');
    out.timeline = timeline;
    out.gatewayEventLoopDelayMs = summarize(eld);
    await home.close();
  }
  const stopped = await Promise.all(
    remotes.map(async (r) => {
      r.worker.postMessage({ stop: true });
      const [m] = (await once(r.worker, 'message')) as [
        { refused: Record<string, number>; eventLoopDelayMs: DelaySummary },
      ];
      await r.worker.terminate();
      return m;
    }),
  );
  out.remoteRefused = Object.assign({}, ...stopped.map((m) => m.refused));
  out.remoteEventLoopDelayMs = {
    p50: Math.max(...stopped.map((m) => m.eventLoopDelayMs.p50)),
    p99: Math.max(...stopped.map((m) => m.eventLoopDelayMs.p99)),
    max: Math.max(...stopped.map((m) => m.eventLoopDelayMs.max)),
  };
  return out;
}

function report(label: string, r: ModeResult): void {
  const phases = PHASES.map(
    (p) => `${p} ${r.phases[p].ok}/${r.phases[p].sent} p99 ${r.phases[p].p99Ms} ms`,
  ).join(', ');
  console.log(
    `${label}: success ${r.ok}/${r.sent} = ${r.successRatio.toFixed(5)}  (${phases})  ` +
      `p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms  max ${r.maxMs} ms`,
  );
  if (Object.keys(r.errors).length > 0) console.log(`  errors: ${JSON.stringify(r.errors)}`);
  if (r.retries !== undefined) {
    console.log(
      `  retries ${r.retries} ${JSON.stringify(r.retriesBy)}, retry budget exhausted ${r.retryBudgetExhausted}, ejections ${r.ejections}, ` +
        `circuit breaker refusals ${r.breakerOpen}`,
    );
    console.log(`  ejection timeline (ms after the slow window began): ${r.timeline?.join('; ')}`);
    console.log(`  event-loop delay, home gateway thread: ${JSON.stringify(r.gatewayEventLoopDelayMs)}`);
    console.log(
      `  remote clusters' threads: event-loop delay (worst) ${JSON.stringify(r.remoteEventLoopDelayMs)}, ` +
        `refusals ${JSON.stringify(r.remoteRefused)}`,
    );
  }
  console.log(`  per second (ok/sent p99): ${r.perSecond.join(', ')}`);
  console.log(
    `  event-loop delay, load generator thread: ${JSON.stringify(r.loadEventLoopDelayMs)}; ` +
      `worst schedule lag ${r.maxScheduleLagMs} ms`,
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '1000' },
      warmup: { type: 'string', default: '5' },
      slow: { type: 'string', default: '30' },
      tail: { type: 'string', default: '5' },
      mode: { type: 'string', default: 'both' },
    },
  });
  const o: ScenarioOptions = {
    rate: Number(values.rate),
    warmupMs: Number(values.warmup) * 1000,
    slowMs: Number(values.slow) * 1000,
    tailMs: Number(values.tail) * 1000,
    slowDelayMs: 2000,
    tryTimeoutMs: 1000,
  };
  const args = process.argv.slice(2);
  const loadAtStart = loadavg()[0]!;
  const modes: Mode[] = values.mode === 'both' ? ['meshfed', 'round-robin'] : [values.mode as Mode];
  console.log(
    `lb bench: home gateway → 4 remote clusters (real gateways, mTLS tunnel) on 127.0.0.1; c0's backend answers ` +
      `after ${o.slowDelayMs} ms for ${o.slowMs / 1000} s (after ${o.warmupMs / 1000} s warm-up, then ` +
      `${o.tailMs / 1000} s tail); ${o.rate} req/s open loop; per-try timeout ${o.tryTimeoutMs} ms; ` +
      `${availableParallelism()} cores, load average ${loadAtStart.toFixed(1)} (shared machine)`,
  );
  const root = await createRoot({ trustDomain: TRUST_DOMAIN });
  const results: Partial<Record<Mode, ModeResult>> = {};
  for (const mode of modes) {
    results[mode] = await runMode(mode, root, o);
    report(
      mode === 'meshfed' ? 'meshfed (through the gateway)' : 'plain round robin (client → backends)',
      results[mode]!,
    );
  }
  if (!results.meshfed) return;
  mkdirSync(new URL('results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('results/lb.json', import.meta.url),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        command: ['npm run bench:lb', ...(args.length > 0 ? ['--', ...args] : [])].join(' '),
        node: process.version,
        cores: availableParallelism(),
        loadAverageAtStart: loadAtStart,
        loadAverageAtEnd: loadavg()[0],
        scenario: o,
        success_ratio: results.meshfed.successRatio,
        round_robin_success_ratio: results['round-robin']?.successRatio ?? null,
        meshfed: results.meshfed,
        round_robin: results['round-robin'] ?? null,
      },
      null,
      2,
    )}\n`,
  );
}

if (!isMainThread) {
  const d = workerData as {
    role: 'remote' | 'load';
    root: CaMaterial;
    index: number;
    slowDelayMs: number;
    plan: LoadPlan;
  };
  if (d.role === 'remote') await remoteWorker(d.root, d.index, d.slowDelayMs);
  else parentPort!.postMessage(await loadWorker(d.plan));
} else if (import.meta.url === `file://${process.argv[1]}`) await main();
