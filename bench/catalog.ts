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
 *   npm run bench:catalog -- --scale 50x2000 --gateways 2   two gateways per cluster (two offers per entry)
 *   BENCH_PROF=view|joiner|publishers npm run bench:catalog   CPU profiles in /tmp/meshfed-prof
 *   BENCH_VIEW_FLAGS='--max-semi-space-size=2' …             more V8 flags for every view process
 *   BENCH_DEBUG=1 …                                            heap spaces of each view after its sync
 *   BENCH_HEAPSNAP=/tmp/dir …                                  a heap snapshot of the joiner after its sync
 *
 * Latency is publish → visible in all three watching views, timed on the system's monotonic clock, which every
 * process of one machine shares (see `clock` in catalog-roles.ts). CPU per change is each watching view's CPU
 * time while the stream runs, less what the same view spends idle over as long (heartbeats, timers), divided by
 * the changes. The runner (this file) parses the arguments and records the results; catalog-scale.ts runs one
 * scale, and the child processes it starts run this file again with `--role` (catalog-roles.ts).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { mergeResults } from './catalog-common.ts';
import { publishersRole, type Spec, viewRole } from './catalog-roles.ts';
import { runScale } from './catalog-scale.ts';
import { round } from './figures.ts';

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
  for (const f of ['catalog.ts', 'catalog-roles.ts', 'catalog-scale.ts', 'catalog-common.ts', 'figures.ts']) {
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
    // gateways per simulated cluster: every entry lists them all, so a view holds one offer per gateway
    gateways: { type: 'string', default: '1' },
    role: { type: 'string' },
    spec: { type: 'string' },
    name: { type: 'string' },
    servers: { type: 'string' },
  },
});

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
    const figures = await runScale(
      { publishers: join(here, 'catalog.ts'), view: viewScript },
      c,
      s,
      Number(args.seconds),
      Number(args.rate),
      args['join-only'],
      Number(args.gateways),
    );
    // each scale says which run it came from: one scale run again replaces its figures but not the other's,
    // which the top-level meta (the last run) would otherwise claim as its own
    results[`${c}x${s}${Number(args.gateways) > 1 ? `x${args.gateways}gw` : ''}`] = {
      ...figures,
      measured: { date: new Date().toISOString(), command },
    };
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
