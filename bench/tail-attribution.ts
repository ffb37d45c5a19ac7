// What the slow requests of a fixed-rate run overlapped in the gateway process: joins h2load's per-request log
// with the candidate's timeline of stalls (bench/pause-stats.ts), both on the epoch clock. Reads a run kept by
// `KEEP=<dir> bash bench/tail-probe.sh …`:
//   node bench/tail-attribution.ts <dir>/<label>-<round> [--over MS]   (default: the run's own p99)
// For each request slower than the bound it says what its interval overlapped first of: a GC pause, an
// event-loop turn late by 5 ms or more that no GC pause explains, a connection accepted by the process (a dial
// by the pool between the gateways, whose TLS handshake runs on the same loop), or nothing the process saw
// (the load client, the backend or the kernel). Slow requests that overlap each other are one episode: a
// process-wide stall holds every connection's request at once. It also says how h2load's fixed rate arrives:
// requests sent within 200 µs of each other are one batch (its connections' timers fire together), and the
// median latency by place in a batch of `-c` requests shows how much each waits for the others' work.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { PauseStats } from './pause-stats.ts';

const { values, positionals } = parseArgs({
  options: { over: { type: 'string' } },
  allowPositionals: true,
});
const dir = positionals[0];
if (!dir) {
  process.stderr.write('usage: node bench/tail-attribution.ts <run dir> [--over MS]\n');
  process.exit(2);
}
// h2load --log-file: start (µs since the epoch), status, duration (µs)
const requests = readFileSync(join(dir, 'h2load.log'), 'utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .map((l) => l.split('\t').map(Number) as [number, number, number])
  .map(([start, status, us]) => ({ start: start / 1000, status, ms: us / 1000 }));
const stats = JSON.parse(readFileSync(join(dir, 'pauses.json'), 'utf8')) as PauseStats;
const sorted = requests.map((r) => r.ms).sort((a, b) => a - b);
const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p * sorted.length) / 1000))] ?? 0;
const over = values.over === undefined ? pct(990) : Number(values.over);

const gc = stats.timeline.gc.map(([at, ms, kind]) => ({ from: at, to: at + ms, ms, kind }));
const late = stats.timeline.late.map(([at, ms]) => ({ from: at - ms, to: at, ms }));
const accepts = stats.timeline.accepts.map(([at, address]) => ({ at, address }));
const overlaps = (a: { from: number; to: number }, from: number, to: number) => a.from < to && a.to > from;

const slow = requests.filter((r) => r.ms > over).sort((a, b) => a.start - b.start);
const by: Record<string, number> = { gc: 0, 'late turn': 0, dial: 0, nothing: 0 };
let episodes = 0;
let episodeEnd = Number.NEGATIVE_INFINITY;
for (const r of slow) {
  const from = r.start;
  const to = r.start + r.ms;
  if (from > episodeEnd) episodes++;
  episodeEnd = Math.max(episodeEnd, to);
  const g = gc.filter((x) => overlaps(x, from, to));
  const l = late.filter((x) => overlaps(x, from, to) && !g.some((y) => overlaps(y, x.from, x.to)));
  const d = accepts.filter((x) => x.at >= from && x.at <= to);
  by[g.length > 0 ? 'gc' : l.length > 0 ? 'late turn' : d.length > 0 ? 'dial' : 'nothing']!++;
}
// batches: requests sent within 200 µs of the one before
const bySend = [...requests].sort((a, b) => a.start - b.start);
const batches: (typeof requests)[] = [];
for (const r of bySend) {
  const last = batches.at(-1);
  if (last && r.start - last.at(-1)!.start < 0.2) last.push(r);
  else batches.push([r]);
}
const widest = Math.max(...batches.map((b) => b.length));
const full = batches.filter((b) => b.length === widest);
const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1] ?? 0;
const byPlace = Array.from(
  { length: widest },
  (_, i) => Math.round(median(full.map((b) => b[i]!.ms)) * 100) / 100,
);
const share = (n: number) => `${n} (${slow.length ? Math.round((n / slow.length) * 100) : 0} %)`;
console.log(
  JSON.stringify({
    run: dir,
    requests: requests.length,
    p50: pct(500),
    p99: pct(990),
    p999: pct(999),
    over,
    slow: slow.length,
    episodes,
    overlapped: Object.fromEntries(Object.entries(by).map(([k, n]) => [k, share(n)])),
    gcPausesOver1ms: gc.length,
    gcPauseMsTotal: Math.round(gc.reduce((n, x) => n + x.ms, 0)),
    lateTurns: late.length,
    lateTurnsMaxMs: Math.max(0, ...late.map((x) => x.ms)),
    accepts: accepts.length,
    batches: {
      count: batches.length,
      inBatchesOfHalfOrMore: Math.round(
        (batches.filter((b) => b.length * 2 >= widest).reduce((n, b) => n + b.length, 0) / requests.length) *
          100,
      ),
      widest,
      medianMsByPlaceInWidest: byPlace,
    },
  }),
);
