// Load-balancing resilience benchmark (issue 5): four "remote clusters" as real HTTP servers on 127.0.0.1; one of them
// answers after 2 s for a 30 s window; open-loop load at a fixed rate; per-try timeout 1 s. Runs the same harness twice:
// with meshfed's balancer + resilience layers, and with plain round robin (no retries, no outlier detection). Prints
// both success ratios and latency figures and writes bench/results/lb.json. The machine is shared: figures are noisy.
//   npm run bench:lb                          (rate 1000/s, warm-up 5 s, slow window 30 s, tail 5 s)
//   npm run bench:lb -- --rate 500 --slow 10  (shorter run)
// The per-target send is pluggable: import { runScenario } and pass your own `send` (e.g. through real gateways).
import { mkdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Pool } from 'undici';
import { createLogger, Registry } from '../core/index.ts';
import { type BalancerTarget, Balancers, balancerConfigSchema } from '../gateway/balancer/index.ts';
import {
  balancedDispatch,
  budgetPerService,
  CircuitBreakers,
  callContext,
  compose,
  deadline,
  perTryTimeout,
  resilienceMetrics,
  retry,
  UpstreamFailure,
} from '../gateway/resilience/index.ts';
import { FixedCatalog, FixedSource } from '../test/gateway/balancer/fixtures.ts';

export interface ScenarioOptions {
  rate: number;
  warmupMs: number;
  slowMs: number;
  tailMs: number;
  slowDelayMs: number;
  tryTimeoutMs: number;
}

/** Sends one request to one target; throws UpstreamFailure on failure. Replace to go through real gateways. */
export type TargetSend = (target: BalancerTarget, signal: AbortSignal) => Promise<number>;

interface Backends {
  addresses: string[];
  close(): Promise<void>;
  /** sets when backend 0 starts and stops being slow (ms on performance.now()) */
  slowBetween(from: number, to: number): void;
}

/**
 * The backends run in a worker thread so that their answers do not wait on the load generator's event
 * loop (and the other way round); the slow window is given in Date.now() time, which both threads share.
 */
async function startBackends(n: number, slowDelayMs: number): Promise<Backends> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { n, slowDelayMs } });
  const [addresses] = (await once(worker, 'message')) as [string[]];
  return {
    addresses,
    slowBetween(from, to) {
      worker.postMessage({ from, to });
    },
    async close() {
      await worker.terminate();
    },
  };
}

async function backendWorker(n: number, slowDelayMs: number): Promise<void> {
  let slowFrom = Number.POSITIVE_INFINITY;
  let slowTo = 0;
  parentPort!.on('message', (m: { from: number; to: number }) => {
    slowFrom = m.from;
    slowTo = m.to;
  });
  const servers: Server[] = [];
  for (let i = 0; i < n; i++) {
    const s = createServer((req, res) => {
      const t = Date.now();
      const answer = () => {
        if (!res.destroyed) res.end('ok');
      };
      req.resume();
      if (i === 0 && t >= slowFrom && t < slowTo) setTimeout(answer, slowDelayMs);
      else answer();
    });
    s.keepAliveTimeout = 60_000;
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    servers.push(s);
  }
  parentPort!.postMessage(servers.map((s) => `127.0.0.1:${(s.address() as AddressInfo).port}`));
}

/** Direct HTTP/1.1 send over an undici pool per target. */
function directSend(): { send: TargetSend; close(): Promise<void> } {
  const pools = new Map<string, Pool>();
  return {
    send: async (t, signal) => {
      let pool = pools.get(t.address);
      if (!pool) {
        pool = new Pool(`http://${t.address}`, { connections: 512, pipelining: 1 });
        pools.set(t.address, pool);
      }
      try {
        const res = await pool.request({ path: '/', method: 'GET', signal });
        await res.body.dump();
        return res.statusCode;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        const code = (err as { code?: string }).code;
        throw new UpstreamFailure(code === 'ECONNREFUSED' ? 'refused' : 'reset', t, { cause: err });
      }
    },
    close: async () => {
      await Promise.all([...pools.values()].map((p) => p.destroy()));
    },
  };
}

interface RunResult {
  sent: number;
  ok: number;
  successRatio: number;
  p50Ms: number;
  p99Ms: number;
  errors: Record<string, number>;
}

/** Open loop: requests start on schedule whatever the earlier ones do, so slowness cannot lower the offered load. */
async function openLoop(o: ScenarioOptions, call: () => Promise<boolean>): Promise<RunResult> {
  const total = Math.round((o.rate * (o.warmupMs + o.slowMs + o.tailMs)) / 1000);
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  let ok = 0;
  const errors: Record<string, number> = {};
  const start = performance.now();
  let started = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * o.rate) / 1000));
      for (; started < due; started++) {
        const t0 = performance.now();
        pending.push(
          call().then(
            (good) => {
              if (good) {
                ok++;
                latencies.push(performance.now() - t0);
              }
            },
            (err: unknown) => {
              const key =
                err instanceof UpstreamFailure
                  ? `${err.code}:${err.failure}`
                  : ((err as { code?: string }).code ?? String(err));
              errors[key] = (errors[key] ?? 0) + 1;
            },
          ),
        );
      }
      if (started >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 2);
  });
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Math.round((latencies[Math.floor(q * (latencies.length - 1))] ?? 0) * 10) / 10;
  return { sent: total, ok, successRatio: ok / total, p50Ms: at(0.5), p99Ms: at(0.99), errors };
}

export async function runScenario(
  mode: 'meshfed' | 'round-robin',
  o: ScenarioOptions,
  sendFactory: () => { send: TargetSend; close(): Promise<void> } = directSend,
): Promise<RunResult & { retries: number; ejections: number }> {
  const backends = await startBackends(4, o.slowDelayMs);
  const catalog = new FixedCatalog();
  backends.addresses.forEach((address, i) => {
    catalog.offer(`c${i}`, { region: 'us', zone: `us-${i}` }, { weight: 4, gateways: 1 });
    catalog.offers[i]!.gateways = [{ name: 'gw', address }];
  });
  const registry = new Registry();
  const config = balancerConfigSchema.parse({ timeouts: { request: `${o.tryTimeoutMs}ms` } });
  const balancers = new Balancers({
    cluster: 'home',
    locality: { region: 'eu', zone: 'eu-a' },
    catalog,
    local: new FixedSource(),
    config,
    registry,
    logger: createLogger({ level: 'silent' }),
  });
  const { send, close } = sendFactory();
  const metrics = resilienceMetrics(registry);
  let call: () => Promise<boolean>;
  if (mode === 'meshfed') {
    const dispatch = compose(
      balancedDispatch({
        balancers,
        breakers: new CircuitBreakers(config.circuitBreaker, { metrics, sourceCluster: 'home' }),
        send: (t, ctx) => send(t, ctx.signal),
        classify: (status: number) => (status >= 500 ? '5xx' : undefined),
      }),
      deadline<number>({ ms: o.tryTimeoutMs * (config.retry.attempts + 1) + config.retry.backoffMax * 2 }),
      retry<number>({
        attempts: config.retry.attempts,
        budgetFor: budgetPerService(config.retry),
        backoffBase: config.retry.backoffBase,
        backoffMax: config.retry.backoffMax,
        metrics,
        sourceCluster: 'home',
      }),
      perTryTimeout<number>({ ms: config.timeouts.request }),
    );
    call = () =>
      dispatch(callContext({ namespace: 'shop', name: 'orders', idempotent: true })).then((s) => s === 200);
  } else {
    const targets = balancers.resolve('shop', 'orders')!.targets;
    let next = 0;
    call = () =>
      send(targets[next++ % targets.length]!, AbortSignal.timeout(o.tryTimeoutMs)).then((s) => s === 200);
  }
  const t0 = Date.now();
  backends.slowBetween(t0 + o.warmupMs, t0 + o.warmupMs + o.slowMs);
  const result = await openLoop(o, call);
  const sum = async (name: string) =>
    ((await registry.getSingleMetric(name)?.get())?.values ?? []).reduce((a, v) => a + v.value, 0);
  const extra = {
    retries: await sum('meshfed_upstream_retries_total'),
    ejections: await sum('meshfed_outlier_ejections_total'),
  };
  if (process.env.LB_EXPLAIN) console.log(JSON.stringify(balancers.explain('shop', 'orders'), null, 1));
  balancers.close();
  await close();
  await backends.close();
  return { ...result, ...extra };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '1000' },
      warmup: { type: 'string', default: '5' },
      slow: { type: 'string', default: '30' },
      tail: { type: 'string', default: '5' },
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
  console.log(
    `lb bench: 4 backends on 127.0.0.1, backend 0 answers after ${o.slowDelayMs} ms for ${o.slowMs / 1000} s ` +
      `(after ${o.warmupMs / 1000} s warm-up, then ${o.tailMs / 1000} s tail); ${o.rate} req/s open loop; ` +
      `per-try timeout ${o.tryTimeoutMs} ms; ${availableParallelism()} cores, shared machine`,
  );
  const ours = await runScenario('meshfed', o);
  console.log(
    `meshfed balancer+resilience: success ${ours.ok}/${ours.sent} = ${ours.successRatio.toFixed(5)}  ` +
      `p50 ${ours.p50Ms} ms  p99 ${ours.p99Ms} ms  retries ${ours.retries}  ejections ${ours.ejections}`,
  );
  const rr = await runScenario('round-robin', o);
  console.log(
    `plain round robin:           success ${rr.ok}/${rr.sent} = ${rr.successRatio.toFixed(5)}  ` +
      `p50 ${rr.p50Ms} ms  p99 ${rr.p99Ms} ms`,
  );
  mkdirSync(new URL('results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('results/lb.json', import.meta.url),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        cores: availableParallelism(),
        scenario: o,
        success_ratio: ours.successRatio,
        round_robin_success_ratio: rr.successRatio,
        meshfed: ours,
        round_robin: rr,
      },
      null,
      2,
    )}\n`,
  );
}

if (!isMainThread) await backendWorker(workerData.n, workerData.slowDelayMs);
else if (import.meta.url === `file://${process.argv[1]}`) await main();
