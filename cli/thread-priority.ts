import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, setPriority } from 'node:os';
import { MeshfedError } from '../core/index.ts';

/**
 * The nice value `meshfed gateway` gives V8's worker thread (Linux; one, `--v8-pool-size=1` in node-flags.ts)
 * when the process may run on more than one CPU: V8 compiles hot functions with its optimising compiler, marks
 * the heap and sweeps on that thread, in bursts (600 ms of compile work within one second when a gateway's
 * request path tiers up a few seconds into its traffic). At the event loop's priority it takes the CPU the
 * loop needs the moment a request arrives, and every request in flight waits. At 19 the loop preempts it
 * whenever it has work, and it runs on any CPU the loop leaves idle. Measured: p99 added by two gateways at
 * 1,000 req/s −25 % with V8's four threads; with one, lower again (docs/performance.md, "The fixed-rate tail",
 * "V8's worker pool" and, with the runs' order balanced, "Idle memory, fifth round").
 */
export const V8_WORKER_NICE = 19;

/**
 * The nice value asked for: MESHFED_V8_WORKER_NICE when set (0 to 19); else V8_WORKER_NICE when the process
 * may use more than one CPU (`cpus`: its affinity mask's), and 0 when it has one. On one CPU a busy event loop
 * leaves no idle cycle: a thread at 19 gets ~1.5 % of it, and the optimising compiler's work waits for minutes
 * (a gateway pinned to one core served half the requests per second: docs/performance.md, "V8's worker pool").
 */
export function v8WorkerNice(
  env: Readonly<Record<string, string | undefined>> = process.env,
  cpus: number = availableParallelism(),
): number {
  const raw = env.MESHFED_V8_WORKER_NICE;
  if (raw === undefined || raw === '') return cpus > 1 ? V8_WORKER_NICE : 0;
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
