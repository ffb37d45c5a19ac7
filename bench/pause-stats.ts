// What stalls a benchmarked process, recorded from inside it: event-loop delay, garbage-collection pauses by
// kind, and connections accepted per local address (a pool that redials shows up as accepts on the peer
// gateway's listener). bench/peers-gateway.ts records them with BENCH_PAUSE_STATS=<file> and writes them
// there as JSON on exit (bench/tail-probe.sh reads them); any other node process with
// `--import bench/pause-hook.ts` and BENCH_PAUSE_DIR=<dir>.
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

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
}

export interface PauseStats {
  /** event-loop delay, ms (resolution 1 ms: the delay a timer due every 1 ms saw) */
  loopDelayMs: { p50: number; p99: number; p999: number; max: number; samples: number };
  gc: Record<string, GcKind>;
  /** connections accepted by the process's servers, per local address */
  accepted: Record<string, number>;
  /** since the recording started (or was reset) */
  seconds: number;
}

/** Records from now on; `reset()` starts the window again (after a warm-up), `write()` saves it. */
export function recordPauses(file: string): { reset(): void; write(extra?: object): PauseStats } {
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  let gc: Record<string, GcKind> = {};
  let accepted: Record<string, number> = {};
  let since = performance.now();
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KINDS[(e as unknown as { detail: { kind: number } }).detail.kind] ?? 'other';
      gc[kind] ??= { count: 0, totalMs: 0, maxMs: 0, over1ms: 0 };
      const k = gc[kind];
      k.count++;
      k.totalMs += e.duration;
      k.maxMs = Math.max(k.maxMs, e.duration);
      if (e.duration > 1) k.over1ms++;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  subscribe('net.server.socket', (m) => {
    const s = (m as { socket: Socket }).socket;
    const key = `${s.localAddress}:${s.localPort}`;
    accepted[key] = (accepted[key] ?? 0) + 1;
  });
  const ms = (ns: number) => Math.round(ns / 1e4) / 100;
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
          Object.entries(gc).map(([k, v]) => [
            k,
            { ...v, totalMs: Math.round(v.totalMs * 100) / 100, maxMs: Math.round(v.maxMs * 100) / 100 },
          ]),
        ),
        accepted,
        seconds: Math.round((performance.now() - since) / 10) / 100,
      };
      writeFileSync(file, `${JSON.stringify(stats)}\n`);
      return stats;
    },
  };
}
