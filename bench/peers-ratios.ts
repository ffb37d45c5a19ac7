// Issue 5's data-plane table from one run of the peers harness: meshfed's figures as ratios to haproxy's
// (and nginx's) measured in the same run. Reads the harness's results.json, prints the table, and writes
// bench/results/peers.json (or the file given with --out).
//   node bench/peers-ratios.ts .bench-peers/results/latest/results.json [--out bench/results/peers.json]
//        [--steal .bench-peers/steal.tsv]
// `npm run bench:peers` runs it after the harness. With --steal (bench/peers.sh samples the host's steal time
// while the harness runs) every run's req/s is listed with the steal over it, and each figure gets a second
// ratio: the medians of the runs with under STEAL_QUIET_PCT % steal, where both sides have such runs.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { median, round } from './figures.ts';
import { type RunSteal, runSteal } from './steal.ts';

/** a run with less steal than this (percent of all CPU time) counts as one the hypervisor left alone */
const STEAL_QUIET_PCT = 2;

interface Row {
  topology: string;
  candidate: string;
  body: string;
  conns: number;
  rps: number;
  req_per_gw_cpu_s: number;
  p50_ms: number;
  p99_ms: number;
  errors_total: number;
  noisy?: boolean;
  other_cpu_pct: number;
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: 'string', default: 'bench/results/peers.json' },
    candidate: { type: 'string' },
    steal: { type: 'string' },
  },
});
const file = positionals[0];
if (!file) throw new Error('usage: node bench/peers-ratios.ts <harness results.json> [--out FILE]');
const run = JSON.parse(readFileSync(file, 'utf8')) as { meta: Record<string, unknown>; results: Row[] };
const ours = values.candidate ?? 'meshfed';

// issue 16's table (the HTTP/1.1 fast path); the passthrough CPU figure is issue 5's
const GOALS: { topology: string; body: string; metric: 'rps' | 'req_per_gw_cpu_s'; goal: number }[] = [
  { topology: 'terminate-reuse', body: 'small', metric: 'rps', goal: 0.5 },
  { topology: 'terminate-reuse', body: 'small', metric: 'req_per_gw_cpu_s', goal: 0.45 },
  { topology: 'terminate-reuse', body: '64k', metric: 'rps', goal: 0.8 },
  { topology: 'terminate-noreuse', body: 'small', metric: 'rps', goal: 0.6 },
  { topology: 'terminate-noreuse', body: '64k', metric: 'rps', goal: 0.6 },
  { topology: 'passthrough', body: 'small', metric: 'rps', goal: 0.9 },
  { topology: 'passthrough', body: 'small', metric: 'req_per_gw_cpu_s', goal: 0.8 },
  { topology: 'passthrough', body: '64k', metric: 'rps', goal: 0.9 },
];

const find = (candidate: string, topology: string, body: string) =>
  run.results.find((r) => r.candidate === candidate && r.topology === topology && r.body === body);
const ratio = (a: number | undefined, b: number | undefined) =>
  a !== undefined && b !== undefined && b > 0 ? round(a / b) : null;

const runs: RunSteal[] = values.steal ? runSteal(join(dirname(file), 'logs'), values.steal) : [];
const conns = (run.meta.conns as number[] | undefined)?.[0] ?? 16;
/** the median req/s of a candidate's runs of a case that lost less than STEAL_QUIET_PCT to steal */
const quietRps = (candidate: string, topology: string, body: string): number | undefined => {
  const xs = runs
    .filter((r) => r.case === `${topology}.${candidate}.${body}.c${conns}`)
    .filter((r) => r.steal_pct !== null && r.steal_pct < STEAL_QUIET_PCT)
    .map((r) => r.rps);
  return xs.length > 0 ? median(xs) : undefined;
};

const rows = GOALS.map((g) => {
  const m = find(ours, g.topology, g.body);
  const h = find('haproxy', g.topology, g.body);
  const n = find('nginx', g.topology, g.body);
  const vsHaproxy = ratio(m?.[g.metric], h?.[g.metric]);
  const quiet =
    g.metric === 'rps' && runs.length > 0
      ? ratio(quietRps(ours, g.topology, g.body), quietRps('haproxy', g.topology, g.body))
      : null;
  return {
    figure: `${g.topology}, ${g.body}: ${g.metric === 'rps' ? 'req/s' : 'requests per gateway CPU-second'}`,
    meshfed: m?.[g.metric] ?? null,
    haproxy: h?.[g.metric] ?? null,
    nginx: n?.[g.metric] ?? null,
    vs_haproxy: vsHaproxy,
    vs_nginx: ratio(m?.[g.metric], n?.[g.metric]),
    goal: g.goal,
    met: vsHaproxy === null ? null : vsHaproxy >= g.goal,
    // a peer's median taken over runs the harness marked noisy is less trustworthy than a quiet one
    noisy: [m, h].some((r) => r?.noisy === true),
    ...(runs.length > 0 ? { vs_haproxy_low_steal: quiet } : {}),
  };
});

const pad = (s: unknown, n: number) => String(s ?? '-').padEnd(n);
console.log(
  `${pad('figure', 58)}${pad(ours, 10)}${pad('haproxy', 10)}${pad('nginx', 10)}${pad('÷haproxy', 10)}${pad('goal', 6)}`,
);
for (const r of rows)
  console.log(
    `${pad(r.figure, 58)}${pad(r.meshfed, 10)}${pad(r.haproxy, 10)}${pad(r.nginx, 10)}${pad(r.vs_haproxy, 10)}${pad(`≥${r.goal}`, 6)}${r.met ? ' met' : r.met === false ? ' not met' : ''}${r.noisy ? ' (noisy runs)' : ''}${r.vs_haproxy_low_steal != null ? `; runs under ${STEAL_QUIET_PCT}% steal: ${r.vs_haproxy_low_steal}` : ''}`,
  );
if (runs.length > 0) {
  console.log('\nreq/s of every run (host steal over the run):');
  const cases = [...new Set(runs.map((r) => r.case))];
  for (const c of cases)
    console.log(
      `  ${pad(c, 44)}${runs
        .filter((r) => r.case === c)
        .map((r) => `${r.rps} (${r.steal_pct ?? '?'}%)`)
        .join('  ')}`,
    );
}
mkdirSync(dirname(values.out), { recursive: true });
writeFileSync(
  values.out,
  `${JSON.stringify({ source: file, meta: run.meta, figures: rows, ...(runs.length > 0 ? { runs } : {}) }, null, 2)}\n`,
);
console.log(`written: ${values.out}`);
