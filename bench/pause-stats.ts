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
  /**
   * when each stall happened (ms since the epoch, to join with a load client's per-request log; at most
   * 20,000 of each): GC pauses over 1 ms [start, ms, kind], event-loop turns late by 5 ms or more [end, ms],
   * accepted connections [at, local address]
   */
  timeline: { gc: [number, number, string][]; late: [number, number][]; accepts: [number, string][] };
}

const TIMELINE_MAX = 20_000;

/** Records from now on; `reset()` starts the window again (after a warm-up), `write()` saves it. */
export function recordPauses(file: string): { reset(): void; write(extra?: object): PauseStats } {
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  let gc: Record<string, Omit<GcKind, 'medianMs'> & { pauses: number[] }> = {};
  let accepted: Record<string, number> = {};
  let since = performance.now();
  let timeline: PauseStats['timeline'] = { gc: [], late: [], accepts: [] };
  const epoch = (t: number) => Math.round((performance.timeOrigin + t) * 1000) / 1000;
  // a turn of the loop late by 5 ms or more, and when it ended: a timer due every 2 ms, unreferenced
  let expected = performance.now() + 2;
  setInterval(() => {
    const now = performance.now();
    const late = now - expected;
    if (late >= 5 && timeline.late.length < TIMELINE_MAX)
      timeline.late.push([epoch(now), Math.round(late * 100) / 100]);
    expected = now + 2;
  }, 2).unref();
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
      if (e.duration > 1 && timeline.gc.length < TIMELINE_MAX)
        timeline.gc.push([epoch(e.startTime), Math.round(e.duration * 100) / 100, kind]);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  subscribe('net.server.socket', (m) => {
    const s = (m as { socket: Socket }).socket;
    const key = `${s.localAddress}:${s.localPort}`;
    accepted[key] = (accepted[key] ?? 0) + 1;
    if (timeline.accepts.length < TIMELINE_MAX) timeline.accepts.push([epoch(performance.now()), key]);
  });
  const ms = (ns: number) => Math.round(ns / 1e4) / 100;
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    reset() {
      eld.reset();
      gc = {};
      accepted = {};
      timeline = { gc: [], late: [], accepts: [] };
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
        timeline,
      };
      writeFileSync(file, `${JSON.stringify(stats)}\n`);
      return stats;
    },
  };
}
