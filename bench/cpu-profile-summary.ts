// Where a `node --cpu-prof` profile's samples went: self time by function and by area of the code, as
// shares of all samples (idle and GC included, so two profiles of the same load compare directly).
//   node bench/cpu-profile-summary.ts PROFILE.cpuprofile [--top 30] [--from-ms N --for-ms M] [--cpu-us N] [--json out.json]
// --from-ms/--for-ms: only the samples of that window after the profile started (leaves start-up, warm-up and
// shutdown out). Shares are of the busy samples (idle left out), so runs on a quiet and on a loaded host
// compare; --cpu-us (the process's measured CPU per request) splits that cost by the same shares.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '30' },
    'from-ms': { type: 'string', default: '0' },
    'for-ms': { type: 'string', default: 'Infinity' },
    'cpu-us': { type: 'string' },
    json: { type: 'string' },
  },
});
const file = positionals[0];
if (!file)
  throw new Error('usage: node bench/cpu-profile-summary.ts PROFILE.cpuprofile [--top N] [--json FILE]');
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));

/** the repository-relative path of a script, or node's own module name */
function where(url: string): string {
  if (url === '') return '';
  const repo = url.lastIndexOf('/wt-');
  const rel = url.replace(/^file:\/\/.*?\/(gateway|core|ca|bench|cli|node_modules)\//, '$1/');
  if (rel !== url) return rel;
  return repo === -1 ? url : url.slice(repo);
}

/** The area of the code a function belongs to, for the coarse table. */
function area(f: CallFrame): string {
  const name = f.functionName;
  const w = where(f.url);
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'garbage collection';
  if (name === '(program)') return 'node and V8 outside JavaScript (program)';
  if (w === '') {
    if (/^(writev|writeUtf8String|writeLatin1String|writeBuffer|writeAsciiString)$/.test(name))
      return 'socket writes (native: syscall, TLS encryption)';
    if (/^(onStreamRead|readStop|readStart)$/.test(name)) return 'socket reads (native)';
    return `native: ${name}`;
  }
  if (w.startsWith('gateway/h1/')) return 'gateway/h1 (codec)';
  if (w.startsWith('gateway/resilience/') || w === 'gateway/forward.ts' || w.startsWith('gateway/upstream/'))
    return 'resilience stack, forward, upstream attempt';
  if (w.startsWith('gateway/layers/') || w === 'gateway/pipeline.ts' || w === 'gateway/answers.ts')
    return 'request layers';
  if (w.startsWith('gateway/balancer/')) return 'balancer';
  if (w === 'gateway/headers.ts') return 'header rewriting';
  if (w.startsWith('gateway/')) return `gateway (other): ${w}`;
  if (w.startsWith('core/metrics') || w === 'core/process-metrics.ts') return 'metrics (core)';
  if (w.startsWith('node_modules/')) return `library: ${w.split('/')[1]}`;
  if (w.startsWith('node:internal/streams') || w.startsWith('node:internal/stream_base'))
    return 'node streams';
  if (w.startsWith('node:internal/tls') || w.startsWith('node:_tls') || w === 'node:tls') return 'node TLS';
  if (w.startsWith('node:internal/timers') || w === 'node:timers') return 'node timers';
  if (w.startsWith('node:')) return `node: ${w.replace(/^node:(internal\/)?/, '')}`;
  return w;
}

const selfUs = new Map<number, number>();
let total = 0;
let samples = 0;
const fromUs = Number(values['from-ms']) * 1000;
const toUs = fromUs + Number(values['for-ms']) * 1000;
let at = 0;
for (let i = 0; i < profile.samples.length; i++) {
  at += profile.timeDeltas[i] ?? 0;
  if (at < fromUs || at > toUs) continue;
  samples++;
  const us = profile.timeDeltas[i + 1] ?? 0;
  const id = profile.samples[i]!;
  selfUs.set(id, (selfUs.get(id) ?? 0) + us);
  total += us;
}

const fns = new Map<string, number>();
const areas = new Map<string, number>();
for (const [id, us] of selfUs) {
  const f = byId.get(id)!.callFrame;
  const w = where(f.url);
  const key = `${f.functionName || '(anonymous)'}${w ? ` ${w}:${f.lineNumber + 1}` : ''}`;
  fns.set(key, (fns.get(key) ?? 0) + us);
  const a = area(f);
  areas.set(a, (areas.get(a) ?? 0) + us);
}

const idle = areas.get('idle') ?? 0;
const busy = total - idle;
const cpuUs = values['cpu-us'] === undefined ? undefined : Number(values['cpu-us']);
const pct = (us: number) =>
  `${((us / busy) * 100).toFixed(1).padStart(5)}${cpuUs === undefined ? '' : ` ${((us / busy) * cpuUs).toFixed(1).padStart(6)}`}`;
const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
const top = Number(values.top);
process.stdout.write(
  `${file}: ${(total / 1e6).toFixed(2)} s sampled, ${samples} samples, ${((idle / total) * 100).toFixed(1)} % idle\n\n`,
);
const head = cpuUs === undefined ? 'share' : 'share  µs/req';
process.stdout.write(`${head}  area (self time, share of the busy samples)\n`);
for (const [a, us] of sorted(areas)) {
  if (a !== 'idle' && us / busy >= 0.002) process.stdout.write(`${pct(us)}  ${a}\n`);
}
process.stdout.write(`\n${head}  function (self time)\n`);
for (const [f, us] of sorted(fns)
  .filter(([f]) => f !== '(idle)')
  .slice(0, top))
  process.stdout.write(`${pct(us)}  ${f}\n`);
if (values.json) {
  const shares = (m: Map<string, number>) =>
    Object.fromEntries(
      sorted(m)
        .filter(([k]) => k !== 'idle' && k !== '(idle)')
        .map(([k, us]) => [k, Number(((us / busy) * 100).toFixed(2))]),
    );
  const summary = {
    file,
    sampledSeconds: total / 1e6,
    idlePercent: Number(((idle / total) * 100).toFixed(2)),
    cpuUsPerRequest: cpuUs,
    busyShares: { areas: shares(areas), functions: shares(fns) },
  };
  writeFileSync(values.json, `${JSON.stringify(summary, null, 2)}\n`);
}
