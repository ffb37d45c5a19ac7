// What stalls a benchmarked process, recorded from inside it: event-loop delay, garbage-collection pauses by
// kind, and connections accepted per local address (a pool that redials shows up as accepts on the peer
// gateway's listener). bench/peers-gateway.ts records them with BENCH_PAUSE_STATS=<file> and writes them
// there as JSON on exit (bench/tail-probe.sh reads them); any other node process with
// `--import bench/pause-hook.ts` and BENCH_PAUSE_DIR=<dir>.
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};

interface GcKind {
  count: number;
  totalMs: number;
  maxMs: number;
  /** pauses over 1 ms */
  over1ms: number;
  /** the median pause: on a busy host the longest ones are mostly time the process was not scheduled */
  medianMs: number;
}

export interface PauseStats {
  /** event-loop delay, ms (resolution 1 ms: the delay a timer due every 1 ms saw) */
  loopDelayMs: { p50: number; p99: number; p999: number; max: number; samples: number };
  gc: Record<string, GcKind>;
  /** connections accepted by the process's servers, per local address */
  accepted: Record<string, number>;
  /** since the recording started (or was reset) */
  seconds: number;
  /** resident memory and V8's young generation when written, MB */
  rssMb: number;
  youngMb: number;
}

/** Records from now on; `reset()` starts the window again (after a warm-up), `write()` saves it. */
export function recordPauses(file: string): { reset(): void; write(extra?: object): PauseStats } {
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  let gc: Record<string, Omit<GcKind, 'medianMs'> & { pauses: number[] }> = {};
  let accepted: Record<string, number> = {};
  let since = performance.now();
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KINDS[(e as unknown as { detail: { kind: number } }).detail.kind] ?? 'other';
      gc[kind] ??= { count: 0, totalMs: 0, maxMs: 0, over1ms: 0, pauses: [] };
      const k = gc[kind];
      k.count++;
      k.totalMs += e.duration;
      k.maxMs = Math.max(k.maxMs, e.duration);
      if (e.duration > 1) k.over1ms++;
      if (k.pauses.length < 100_000) k.pauses.push(e.duration);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  subscribe('net.server.socket', (m) => {
    const s = (m as { socket: Socket }).socket;
    const key = `${s.localAddress}:${s.localPort}`;
    accepted[key] = (accepted[key] ?? 0) + 1;
  });
  const ms = (ns: number) => Math.round(ns / 1e4) / 100;
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    reset() {
      eld.reset();
      gc = {};
      accepted = {};
      since = performance.now();
    },
    write(extra = {}) {
      const stats: PauseStats = {
        ...extra,
        loopDelayMs: {
          p50: ms(eld.percentile(50)),
          p99: ms(eld.percentile(99)),
          p999: ms(eld.percentile(99.9)),
          max: ms(eld.max),
          samples: eld.count,
        },
        gc: Object.fromEntries(
          Object.entries(gc).map(([kind, { pauses, ...v }]) => [
            kind,
            {
              ...v,
              totalMs: round(v.totalMs),
              maxMs: round(v.maxMs),
              medianMs: round(pauses.sort((a, b) => a - b)[pauses.length >> 1] ?? 0),
            },
          ]),
        ),
        accepted,
        seconds: Math.round((performance.now() - since) / 10) / 100,
        rssMb: round(process.memoryUsage().rss / 2 ** 20),
        youngMb: round(
          getHeapSpaceStatistics()
            .filter((x) => x.space_name === 'new_space')
            .reduce((n, x) => n + x.space_size, 0) /
            2 ** 20,
        ),
      };
      writeFileSync(file, `${JSON.stringify(stats)}\n`);
      return stats;
    },
  };
}
