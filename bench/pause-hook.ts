// `node --import ./bench/pause-hook.ts …` with BENCH_PAUSE_DIR=<dir>: the process records its event-loop
// delay, GC pauses and accepted connections (bench/pause-stats.ts) and writes them to
// <dir>/pauses-<pid>.json when it exits, with its command line, e.g. for the gateways of a chaos run:
//   BENCH_PAUSE_DIR=/tmp/p NODE_OPTIONS="--import $PWD/bench/pause-hook.ts" npm run chaos -- baseline
import { join } from 'node:path';
import { recordPauses } from './pause-stats.ts';

const dir = process.env.BENCH_PAUSE_DIR;
if (dir) {
  const r = recordPauses(join(dir, `pauses-${process.pid}.json`));
  process.on('exit', () => r.write({ argv: process.argv.slice(1).join(' ') }));
}
