/**
 * How `meshfed gateway` processes are started: Node.js (V8) flags and C library settings that cannot be set from
 * inside a running process (V8 sizes its heap at start, glibc reads its malloc settings once), so bin/meshfed.js
 * re-executes the gateway once with the ones missing, before anything else loads. What an operator sets for the
 * same option (NODE_OPTIONS, node's own arguments, the environment) wins. Figures: docs/performance.md, "Catalog
 * view memory".
 */

/**
 * - `--max-semi-space-size=4` (MB): V8 grows its young generation to 2 × 32 MB during a catalog sync burst and
 *   keeps it, 56 MB of a 100,000-entry view's resident memory for nothing; capped, the same sync took between the
 *   same and a fifth more CPU time in our runs.
 * - `--v8-pool-size=1`: one V8 worker thread instead of Node's four. V8 compiles hot code and marks and sweeps
 *   the heap on those threads, in bursts; four of them took both cores of a two-core host for tens of
 *   milliseconds at a time, nice 19 or not (the load client and the backend waited up to 16 ms for a CPU). With
 *   one, a burst takes at most one core: p99 added by two gateways at 1,000 req/s, runs in ABBA order, medians
 *   4.08 → 3.50 ms in one process and 7.31 → 4.34 ms in two (a gateway's heap is tens of MB: one thread marks it
 *   in time). docs/performance.md, "V8's worker pool" and "Idle memory, fifth round".
 * - `--expose-gc`: the one way a process can ask V8 for a last-resort collection, which gives back the pages V8
 *   keeps pooled after bursts; an idle gateway does it once it is quiet (cli/idle-heap.ts, config idleHeapShrink).
 */
export const GATEWAY_NODE_FLAGS: readonly string[] = [
  '--max-semi-space-size=4',
  '--v8-pool-size=1',
  '--expose-gc',
];

/**
 * `MALLOC_MMAP_THRESHOLD_=65537` (glibc; ignored elsewhere): allocations above 64 KiB get their own mapping, given
 * back to the system when freed. A catalog sync burst passes ~100 MB of NATS messages (~90 KB each) through native
 * buffers; with glibc's adaptive threshold they came from its heap, which kept ~50 MB of them resident after they
 * were freed. A socket read's 64 KiB buffer is above it too (65,552 bytes with malloc's header), as is a TLS write
 * that joins a head and a 64 KiB body: they are mapped whenever the top of the heap is too small for them, which
 * under 64 KiB bodies comes and goes within a process and costs that path 20-45 % of its throughput while it is on.
 * A 68 KiB threshold removes it but keeps ~12 MB more in a 100,000-entry catalog view after its sync (over that
 * view's 150 MB goal), and one just above a read's chunk (65,560) cost that view 11-18 MB too, so it stays. The
 * data plane avoids the churn instead: the connections a gateway dials read into one shared buffer
 * (gateway/socket-reads.ts, sharedReads; docs/performance.md, "Seventh round").
 */
export const GATEWAY_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '65537' };

/**
 * `Buffer.poolSize` in a gateway process: 64 bytes short of 64 KiB. Node cuts every Buffer under half the pool's
 * size (Buffer.allocUnsafe, Buffer.from, small concats: request heads, copies of reads, a body piece copied behind
 * its head) from a shared pool, and makes a new pool whenever the last one is used up. Node 24's pool is 65,536
 * bytes, which with MALLOC_MMAP_THRESHOLD_ above (65,552 with malloc's header) is mapped on its own and unmapped once
 * the last buffer cut from it is collected: a 16 KiB response body, copied behind its head, mapped a pool every four
 * responses (700-1,600 mmap calls in 5 s; 1-5 with this). 64 bytes short, a pool comes from malloc's heap, and
 * buffers up to 32,735 bytes are still cut from it. Unlike the settings above it takes effect inside the process:
 * `meshfed gateway` sets it first thing (cli/commands/gateway.ts). docs/performance.md, "Eighth round".
 */
export const GATEWAY_BUFFER_POOL_SIZE = 64 * 1024 - 64;

/** The flags of `wanted` whose option (the part before `=`) neither `execArgv` nor `NODE_OPTIONS` sets already. */
export function missingNodeFlags(
  wanted: readonly string[],
  execArgv: readonly string[],
  nodeOptions: string | undefined,
): string[] {
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map(optionName);
  return wanted.filter((flag) => !given.includes(optionName(flag)));
}

/** The variables of `wanted` that `env` does not set. */
export function missingEnv(
  wanted: Readonly<Record<string, string>>,
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  return Object.fromEntries(Object.entries(wanted).filter(([k]) => env[k] === undefined));
}

/** `--max-semi-space-size=4` → `max-semi-space-size`; V8 reads `_` and `-` alike */
function optionName(arg: string): string {
  return arg.replace(/^-+/, '').split('=')[0]!.replaceAll('_', '-');
}
