/**
 * The orchestrator of the catalog benchmark (bench/catalog.ts): for one scale, a NATS supercluster, the
 * identities, the child processes (catalog-roles.ts), and the figures they report, printed and returned.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRoot, type IssuedLeaf, issueIntermediate, issueLeaf } from '../ca/index.ts';
import { startNatsSupercluster } from '../cli/demo/nats-topology.ts';
import { GATEWAY_ENV, GATEWAY_NODE_FLAGS, missingEnv } from '../cli/node-flags.ts';
import { type Report, SETTLE_MS, type Spec, type Streamed, type Synced, TD } from './catalog-roles.ts';
import { median, percentile, round, sleep } from './figures.ts';

const NATS_CLUSTERS = ['nats-a', 'nats-b', 'nats-c'];

/** the scripts the child processes run: the publishers always the sources, a view maybe meshfed's build */
export interface RoleScripts {
  publishers: string;
  view: string;
}

interface Child {
  proc: ChildProcess;
  next<T>(type: string): Promise<T>;
}

/**
 * A child of the given role; `gateway`: started the way bin/meshfed.js starts `meshfed gateway` (its Node flags
 * and environment, cli/node-flags.ts), else with Node's and the C library's defaults.
 */
function spawnRole(
  scripts: RoleScripts,
  role: string,
  specFile: string,
  extra: string[],
  gateway: boolean,
): Child {
  const prof = process.env.BENCH_PROF;
  const execArgv =
    prof && role.startsWith(prof) ? ['--cpu-prof', '--cpu-prof-dir=/tmp/meshfed-prof'] : ([] as string[]);
  if (gateway) execArgv.push(...GATEWAY_NODE_FLAGS);
  if (role !== 'publishers' && process.env.BENCH_VIEW_FLAGS)
    execArgv.push(...process.env.BENCH_VIEW_FLAGS.split(' '));
  const env = gateway ? { ...process.env, ...missingEnv(GATEWAY_ENV, process.env) } : process.env;
  const script = role === 'publishers' ? scripts.publishers : scripts.view;
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

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** how long each watching view's idle CPU is measured before the stream */
const IDLE_WINDOW_MS = 3000;

const memoryLine = (x: Synced) =>
  `rss ${x.rss_mb.toFixed(0)} MB, ${x.rss_settled_mb.toFixed(0)} MB after ${SETTLE_MS / 1000} s (private ${x.rss_anon_mb.toFixed(0)} MB; heap ${x.heap_mb.toFixed(0)} of ${x.heap_total_mb.toFixed(0)} MB, young generation ${x.young_mb.toFixed(0)} MB, external ${x.external_mb.toFixed(0)} MB; rss before the view started ${x.base_rss_mb.toFixed(0)} MB)`;

/** Three watching views sync one after the other, then every view records a steady change stream. */
async function watchAndStream(
  scripts: RoleScripts,
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
    const c = spawnRole(scripts, 'view', specFile, ['--name', v, '--servers', String(i)], true);
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

export async function runScale(
  scripts: RoleScripts,
  clusters: number,
  services: number,
  seconds: number,
  rate: number,
  joinOnly: boolean,
  gateways: number,
) {
  const label = `${clusters}x${services}`;
  const total = clusters * services;
  console.log(
    `\n== ${label}: ${clusters} clusters × ${services} services = ${total} entries, ${gateways} gateway(s) per cluster`,
  );
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
    gateways,
  };
  const specFile = join(tmpdir(), `meshfed-bench-catalog-${process.pid}.json`);
  writeFileSync(specFile, JSON.stringify(spec));
  const children: Child[] = [];
  try {
    const t1 = Date.now();
    const pubs = spawnRole(scripts, 'publishers', specFile, [], false);
    children.push(pubs);
    await pubs.next('ready');
    console.log(
      `${clusters} publishers up (one child process) in ${((Date.now() - t1) / 1000).toFixed(1)} s`,
    );
    const stream = joinOnly ? {} : await watchAndStream(scripts, specFile, pubs, children, seconds, rate);

    // full sync of a newly joined cluster, in its own process, started as meshfed gateway is
    const joiner = spawnRole(scripts, 'joiner', specFile, ['--name', 'joiner', '--servers', '1'], true);
    children.push(joiner);
    const joined = await joiner.next<Synced>('synced');
    console.log(
      `full sync of a new cluster (${total} entries): ${joined.sync_s.toFixed(2)} s (CPU ${joined.sync_cpu_s.toFixed(2)} s); its ${memoryLine(joined)}`,
    );
    await stopChild(joiner);
    // the same join with Node's defaults (a view before cli/node-flags.ts, or run as plain `node`)
    const plain = spawnRole(
      scripts,
      'joiner',
      specFile,
      ['--name', 'joiner-node-defaults', '--servers', '1'],
      false,
    );
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
