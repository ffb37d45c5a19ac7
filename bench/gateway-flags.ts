// Imported first by bench/peers-gateway.ts: the candidate runs with the flags and environment `meshfed
// gateway` runs with (cli/node-flags.ts), re-executing itself once with those missing, as bin/meshfed.js
// does. Benchmarks measure the gateway as it ships: with Node's defaults this host gives V8 a 128 MB young
// generation, whose scavenges paused the candidate for ~50 ms each (median, load 16-20) against ~4 ms with
// the gateway's 4 MB semi-spaces (docs/performance.md, "The latency tail"). BENCH_NODE_DEFAULTS=1 keeps
// Node's defaults, to compare (V8's worker threads at the event loop's priority included).
import {
  GATEWAY_BUFFER_POOL_SIZE,
  GATEWAY_ENV,
  GATEWAY_NODE_FLAGS,
  missingEnv,
  missingNodeFlags,
} from '../cli/node-flags.ts';
import { lowerV8WorkerPriority, v8WorkerNice } from '../cli/thread-priority.ts';

const shipped = process.env.BENCH_NODE_DEFAULTS !== '1';
if (shipped && typeof process.execve === 'function') {
  const flags = missingNodeFlags(GATEWAY_NODE_FLAGS, process.execArgv, process.env.NODE_OPTIONS);
  const env = missingEnv(GATEWAY_ENV, process.env);
  if (flags.length > 0 || Object.keys(env).length > 0)
    process.execve(
      process.execPath,
      [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)],
      {
        ...process.env,
        ...env,
      },
    );
}
// and V8's worker threads at the priority `meshfed gateway` gives them (cli/thread-priority.ts), and its Buffer pool
if (shipped) {
  lowerV8WorkerPriority(v8WorkerNice());
  Buffer.poolSize = GATEWAY_BUFFER_POOL_SIZE;
}
