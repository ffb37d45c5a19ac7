import { readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { MeshfedError } from '../core/index.ts';

/**
 * The nice value `meshfed gateway` gives V8's worker threads (Linux): V8 compiles hot functions with its
 * optimising compiler, marks the heap and sweeps on those threads, in bursts (600 ms of compile work within
 * one second when a gateway's request path tiers up a few seconds into its traffic). At the same priority as
 * the event loop they take the CPU the loop needs the moment a request arrives, and on a host with few
 * cores every request in flight waits: 90 of the 100 slowest requests of a 1,000 req/s run started inside
 * such a burst. At 19 the event loop preempts them whenever it has work; they still get every idle cycle.
 * Measured: p99 added by two gateways at 1,000 req/s −25 % (two pairs of runs), throughput at saturation
 * unchanged (docs/performance.md, "The fixed-rate tail"). MESHFED_V8_WORKER_NICE sets another value (0 leaves
 * the threads as they are).
 */
export const V8_WORKER_NICE = 19;

/** The nice value asked for: MESHFED_V8_WORKER_NICE when set (0 to 19), else V8_WORKER_NICE. */
export function v8WorkerNice(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env.MESHFED_V8_WORKER_NICE;
  if (raw === undefined || raw === '') return V8_WORKER_NICE;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 19) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `MESHFED_V8_WORKER_NICE: expected a whole number from 0 (leave V8's worker threads alone) to 19, got "${raw}"`,
    );
  }
  return n;
}

/**
 * Gives every V8 worker thread of this process (`/proc/self/task/<tid>/comm` "V8Worker"; V8 starts them with
 * the process and keeps them) the nice value `nice`. Linux only (elsewhere a thread's priority is not its
 * own): returns the threads changed, 0 where there is no /proc or nothing to do. A thread that cannot be
 * changed (a container that forbids it) is left as it is.
 */
export function lowerV8WorkerPriority(nice: number): number {
  if (nice === 0 || process.platform !== 'linux') return 0;
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  let changed = 0;
  for (const tid of tids) {
    try {
      if (!readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').startsWith('V8Worker')) continue;
      setPriority(Number(tid), nice);
      changed++;
    } catch {
      // gone meanwhile, or not allowed: it keeps its priority
    }
  }
  return changed;
}
