import { readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { MeshfedError } from '../core/index.ts';

/**
 * The nice value an operator may give V8's worker thread (Linux; one, `--v8-pool-size=1` in node-flags.ts) with
 * MESHFED_V8_WORKER_NICE=19. V8 compiles hot functions with its optimising compiler, marks the heap and sweeps
 * on that thread, in bursts; at 19 the event loop preempts it, which took the added p99 of two gateways at
 * 1,000 req/s down by a quarter on a host with a CPU to spare (docs/performance.md, "The fixed-rate tail").
 * It is no longer the default: on a host whose CPUs are all busy (the chaos suite's root rotation at 400 req/s,
 * every process of the federation on two cores) a thread at 19 gets about 1.5 % of a CPU, and gateways with it
 * failed 12 to 4,849 requests in each of ten runs (dials and tries past their timeouts), against 0, 0, 0, 3 and
 * 127 in five runs without it: the event loop waits, most likely, for work the starved thread has taken
 * (docs/performance.md, "Sixteenth round"). Opt in only on a host with CPU to spare, and never for a process
 * pinned to one CPU: a busy loop leaves no idle cycle there, and the compiler's work would wait for minutes.
 */
export const V8_WORKER_NICE = 19;

/** The nice value asked for: MESHFED_V8_WORKER_NICE when set (0 to 19); else 0 (V8's threads left as they are). */
export function v8WorkerNice(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env.MESHFED_V8_WORKER_NICE;
  if (raw === undefined || raw === '') return 0;
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
