// `npm run chaos` runs every chaos scenario; `npm run chaos -- <name>…` only those. Flags:
// --rate N (req/s, default 1000), --duration S (seconds of load per scenario, default 30),
// --nats-outage S (default 60). Writes bench/results/chaos.json (merged: a scenario run alone
// replaces only its own entry) and the table of docs/reliability.md; `--out NAME` another file of
// bench/results and its own table, `--out /abs/path.json` that file alone (a development run whose figures
// belong in no table).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { round } from '../figures.ts';
import { hostTicks, stealPct } from '../steal.ts';
import type { Scenario, ScenarioResult } from './scenario.ts';
import { SCENARIOS } from './scenarios/index.ts';
import { LIVE } from './federation.ts';
import { CHILDREN } from './processes.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOC = join(ROOT, 'docs', 'reliability.md');

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '30' },
    'nats-outage': { type: 'string', default: '60' },
    // another results file (and its own table in docs/reliability.md), e.g. for a run at a lower rate;
    // a path outside bench/results (e.g. /tmp/mine.json) is a scratch run: that file only, no table
    out: { type: 'string', default: 'chaos.json' },
    // rewrite docs/reliability.md's table from the results file, running nothing
    'doc-only': { type: 'boolean', default: false },
  },
});
const RESULTS_DIR = join(ROOT, 'bench', 'results');
const RESULTS = resolve(RESULTS_DIR, values.out);
/** a results file of the repository gets its table in docs/reliability.md; a scratch file does not */
const WITH_DOC = dirname(RESULTS) === RESULTS_DIR;

interface Entry extends ScenarioResult {
  criterion: string;
  date: string;
  command: string;
  host: {
    cpus: number;
    loadavgBefore: number[];
    loadavgAfter: number[];
    /** connections the kernel dropped at a full accept queue during the scenario (whole host, this netns) */
    listenOverflows?: number;
    /** CPU time the hypervisor gave to other guests over the scenario, % of all (bench/steal.ts says why) */
    stealPct?: number;
    shared: string;
  };
  wallSeconds: number;
}

/** steal over the interval since `before`, in % of all CPU time */
function stealSince(before: ReturnType<typeof hostTicks>): { stealPct?: number } {
  const pct = stealPct(before, hostTicks());
  return pct === null ? {} : { stealPct: round(pct) };
}

/**
 * The kernel's count of connections dropped at a full listen queue (TcpExt ListenOverflows in
 * /proc/net/netstat): a listener that accepts too slowly shows here, not in any process's figures.
 */
function listenOverflows(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0]?.split(/\s+/) ?? [];
    const values = lines[1]?.split(/\s+/) ?? [];
    const i = names.indexOf('ListenOverflows');
    return i > 0 ? Number(values[i]) : undefined;
  } catch {
    return undefined;
  }
}

function overflowsSince(before: number | undefined): { listenOverflows?: number } {
  const after = listenOverflows();
  return before === undefined || after === undefined ? {} : { listenOverflows: after - before };
}

const chosen: Scenario[] = positionals.length ? positionals.map(pick) : SCENARIOS;
function pick(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) {
    process.stderr.write(
      `no chaos scenario ${name}; there are: ${SCENARIOS.map((x) => x.name).join(', ')}\n`,
    );
    process.exit(2);
  }
  return s;
}

// an interrupted run ends every process it started rather than leaving them to the host
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const c of CHILDREN) c.kill('SIGKILL');
    void Promise.all([...LIVE].flatMap((f) => (f.nats?.servers ?? []).map((s) => s.kill()))).finally(() =>
      process.exit(130),
    );
  });
}

const results: Record<string, Entry> = (() => {
  try {
    return (JSON.parse(readFileSync(RESULTS, 'utf8')) as { scenarios: Record<string, Entry> }).scenarios;
  } catch {
    return {};
  }
})();

if (values['doc-only']) {
  save();
  process.exit(0);
}

const command = `npm run chaos -- ${process.argv.slice(2).join(' ')}`.trim();
const suiteStart = performance.now();
let failed = 0;
for (const scenario of chosen) {
  const dir = mkdtempSync(join(tmpdir(), `meshfed-chaos-${scenario.name}-`));
  const log = (line: string) => process.stderr.write(`[${scenario.name}] ${line}\n`);
  const before = loadavg().map(round);
  const overflowsBefore = listenOverflows();
  const ticksBefore = hostTicks();
  const t0 = performance.now();
  log(`start (rate ${values.rate}/s, ${values.duration} s of load)`);
  let result: ScenarioResult;
  try {
    result = await scenario.run({
      rate: Number(values.rate),
      durationMs: Number(values.duration) * 1000,
      natsOutageMs: Number(values['nats-outage']) * 1000,
      dir,
      log,
    });
  } catch (err) {
    result = {
      pass: false,
      figures: {},
      notes: [`the scenario itself failed: ${(err as Error).stack ?? err}`],
    };
  }
  const entry: Entry = {
    ...result,
    criterion: scenario.criterion,
    date: new Date().toISOString(),
    command,
    host: {
      cpus: cpus().length,
      loadavgBefore: before,
      loadavgAfter: loadavg().map(round),
      ...overflowsSince(overflowsBefore),
      ...stealSince(ticksBefore),
      shared: 'shared host: other engineers ran tests on the same 2 cores during the run',
    },
    wallSeconds: round((performance.now() - t0) / 1000),
  };
  results[scenario.name] = entry;
  if (!result.pass && !result.skipped) failed++;
  log(
    `${result.skipped ? `SKIPPED: ${result.skipped}` : result.pass ? 'PASS' : 'FAIL'} in ${entry.wallSeconds} s`,
  );
  log(JSON.stringify(result.figures));
  for (const n of result.notes) log(`note: ${n}`);
  save();
  // a failed scenario's folder (every process's log and config) is what tells why: kept; a passed one is not
  if (result.pass && process.env.MESHFED_CHAOS_KEEP !== '1') {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      log(`could not remove ${dir}: ${(err as Error).message}`);
    }
  } else log(`its processes' logs and configs are in ${dir}`);
}
process.stderr.write(
  `chaos: ${chosen.length} scenario(s) in ${round((performance.now() - suiteStart) / 1000)} s, ${failed} failed\n`,
);

function save(): void {
  mkdirSync(dirname(RESULTS), { recursive: true });
  const ordered = Object.fromEntries(
    SCENARIOS.filter((s) => results[s.name]).map((s) => [s.name, results[s.name]!]),
  );
  writeFileSync(RESULTS, `${JSON.stringify({ scenarios: ordered }, null, 2)}\n`);
  if (WITH_DOC) writeDoc(ordered);
}

function headline(e: Entry): string {
  const f = e.figures as Record<string, unknown>;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(f)) {
    if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') parts.push(`${k} ${v}`);
    if (parts.length >= 8) break;
  }
  return parts.join('; ');
}

function writeDoc(entries: Record<string, Entry>): void {
  const marker = `<!-- chaos table ${values.out}: written by npm run chaos -->`;
  let doc: string;
  try {
    doc = readFileSync(DOC, 'utf8');
  } catch {
    doc = '# Reliability\n';
  }
  if (!doc.includes(marker)) doc += `\n${marker}\n${marker}\n`;
  const rows = Object.entries(entries).map(([name, e]) => {
    const verdict = e.skipped ? `skipped: ${e.skipped}` : e.pass ? 'pass' : `FAIL: ${e.notes.join('; ')}`;
    return `| ${name} | ${e.criterion} | ${verdict} | ${headline(e)} | ${e.date.slice(0, 16).replace('T', ' ')} UTC, load avg ${e.host.loadavgBefore[0]}→${e.host.loadavgAfter[0]} on ${e.host.cpus} shared cores${e.host.stealPct === undefined ? '' : `, steal ${e.host.stealPct} %`}${e.host.listenOverflows === undefined ? '' : `, ${e.host.listenOverflows} listen overflows`} | \`${e.command}\` |`;
  });
  const table = [
    marker,
    '| scenario | pass criterion | result | measured | date, host | command |',
    '|---|---|---|---|---|---|',
    ...rows,
    marker,
  ].join('\n');
  const [head, , tail] = doc.split(marker);
  writeFileSync(DOC, `${head}${table}${tail ?? '\n'}`);
  // the doc is checked by `biome ci` like every other file: written in its format
  execFileSync(join(ROOT, 'node_modules', '.bin', 'biome'), ['format', '--write', DOC], { stdio: 'ignore' });
}
