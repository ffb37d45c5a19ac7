// The host's steal time (CPU time the hypervisor gave to other guests) over each run of a peers harness
// run. The harness's `other%` counts CPU used by programs on this machine; steal is taken before any of
// them gets it, so a run can be "quiet" by `other%` and still lose a fifth of both CPUs. bench/peers.sh
// samples /proc/stat while the harness runs (one line per half second: epoch seconds, steal ticks, total
// ticks of the first `cpu` line); this joins the samples with the end time and length of each run's wrk log.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface RunSteal {
  /** `<topology>.<candidate>.<body>.c<conns>` */
  case: string;
  run: number;
  rps: number;
  /** share of all CPU time stolen over the run, percent; null when the samples do not cover the run */
  steal_pct: number | null;
}

interface Sample {
  t: number;
  steal: number;
  total: number;
}

function samples(file: string): Sample[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number))
    .filter((f) => f.length === 3 && f.every(Number.isFinite))
    .map(([t, steal, total]) => ({ t: t!, steal: steal!, total: total! }));
}

/** The host's steal ticks and all ticks now (/proc/stat's first line), or undefined off Linux. */
export function hostTicks(): { steal: number; total: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { steal: f[7] ?? 0, total: f.reduce((x, y) => x + y, 0) };
  } catch {
    return undefined;
  }
}

/** Steal between two readings, in % of all CPU time; null when they do not span any time. */
export function stealPct(
  a: { steal: number; total: number } | undefined,
  b: { steal: number; total: number } | undefined,
): number | null {
  if (!a || !b || b.total <= a.total) return null;
  return (100 * (b.steal - a.steal)) / (b.total - a.total);
}

/** Steal over [from, to] (epoch seconds) from the last sample at or before `from` to the first at or after `to`. */
function stealOver(s: Sample[], from: number, to: number): number | null {
  let a: Sample | undefined;
  let b: Sample | undefined;
  for (const x of s) {
    if (x.t <= from) a = x;
    if (x.t >= to && b === undefined) b = x;
  }
  return stealPct(a, b);
}

/** Every run whose wrk log is in `logsDir` (`<case>.<run>.json`, written when the run ends). */
export function runSteal(logsDir: string, samplesFile: string): RunSteal[] {
  const s = samples(samplesFile);
  const out: RunSteal[] = [];
  for (const name of readdirSync(logsDir)) {
    const m = /^(.+\.c\d+)\.(\d+)\.json$/.exec(name);
    if (!m) continue;
    const file = join(logsDir, name);
    let log: { requests?: number; duration_us?: number };
    try {
      log = JSON.parse(readFileSync(file, 'utf8')) as typeof log;
    } catch {
      continue; // a run cut short leaves no figures to join
    }
    if (!log.requests || !log.duration_us) continue;
    const end = statSync(file).mtimeMs / 1000;
    const steal = stealOver(s, end - log.duration_us / 1e6, end);
    out.push({
      case: m[1]!,
      run: Number(m[2]),
      rps: Math.round(log.requests / (log.duration_us / 1e6)),
      steal_pct: steal === null ? null : Math.round(steal * 10) / 10,
    });
  }
  return out.sort((x, y) => (x.case < y.case ? -1 : x.case > y.case ? 1 : x.run - y.run));
}
