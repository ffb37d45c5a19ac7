// Preloaded into a gateway process (`node --import ./bench/async-counts.ts`; bench/fastpath-profile.sh -p): how
// many promises, process.nextTick and queueMicrotask callbacks, timers and immediates the process makes between
// SIGUSR2 (after the warm-up) and SIGTERM, written as JSON to BENCH_ASYNC_COUNTS. Divided by the requests of that
// window, the asynchronous steps a request costs: each promise is an allocation and a job of the microtask queue.
// The counting itself slows the process: read the counts, not its CPU figures.
import { writeFileSync } from 'node:fs';
import { promiseHooks } from 'node:v8';

const file = process.env.BENCH_ASYNC_COUNTS;
if (!file) throw new Error('BENCH_ASYNC_COUNTS must name the file the counts are written to');
const counts = { promises: 0, nextTicks: 0, microtasks: 0, timeouts: 0, immediates: 0 };
promiseHooks.onInit(() => {
  counts.promises++;
});
const nextTick = process.nextTick;
process.nextTick = (...args: Parameters<typeof nextTick>) => {
  counts.nextTicks++;
  nextTick(...args);
};
const microtask = globalThis.queueMicrotask;
globalThis.queueMicrotask = (fn) => {
  counts.microtasks++;
  microtask(fn);
};
const timeout = globalThis.setTimeout;
globalThis.setTimeout = ((...args: Parameters<typeof timeout>) => {
  counts.timeouts++;
  return timeout(...args);
}) as typeof setTimeout;
const immediate = globalThis.setImmediate;
globalThis.setImmediate = ((...args: Parameters<typeof immediate>) => {
  counts.immediates++;
  return immediate(...args);
}) as typeof setImmediate;
process.on('SIGUSR2', () => {
  for (const k of Object.keys(counts) as (keyof typeof counts)[]) counts[k] = 0;
});
// before the process's own SIGTERM handler, which exits
process.prependListener('SIGTERM', () => writeFileSync(file, JSON.stringify(counts)));
