// Where a process allocates, collected objects included: V8's sampling heap profiler through the inspector,
// summarised by function (self bytes). What the young generation fills with decides how often scavenges
// pause the event loop. bench/peers-gateway.ts starts it with BENCH_ALLOC_PROFILE=<file> on SIGUSR2 (after
// the warm-up) and writes the summary there on SIGTERM.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

export async function startAllocSampling(): Promise<{
  stop(file: string, requests?: number): Promise<void>;
}> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  return {
    async stop(file, requests) {
      const { profile } = (await session.post('HeapProfiler.stopSampling')) as {
        profile: { head: ProfileNode };
      };
      session.disconnect();
      const bySite = new Map<string, number>();
      let total = 0;
      const walk = (n: ProfileNode) => {
        if (n.selfSize > 0) {
          const f = n.callFrame;
          const site = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|wt-[^/]+|meshfed[^/]*)\//, '')}:${f.lineNumber + 1}`;
          bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize);
          total += n.selfSize;
        }
        for (const c of n.children) walk(c);
      };
      walk(profile.head);
      const top = [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 40);
      const perRequest = requests ? (b: number) => Math.round(b / requests) : undefined;
      writeFileSync(
        file,
        `${JSON.stringify(
          {
            totalMb: Math.round(total / 2 ** 17) / 8,
            ...(perRequest ? { bytesPerRequest: perRequest(total) } : {}),
            top: top.map(([site, bytes]) => ({
              site,
              kb: Math.round(bytes / 1024),
              share: Math.round((1000 * bytes) / total) / 10,
            })),
          },
          null,
          1,
        )}\n`,
      );
    },
  };
}

/**
 * A benchmark process's sampling from SIGUSR2 (sent after its warm-up) to `stop()`, which it calls on SIGTERM
 * before it exits; with no `file`, or no SIGUSR2 yet, `stop()` writes nothing.
 */
export function allocSamplingOnSignal(file: string | undefined): { stop(): Promise<void> } {
  let allocs: ReturnType<typeof startAllocSampling> | undefined;
  if (file) process.on('SIGUSR2', () => (allocs = startAllocSampling()));
  return { stop: () => (file && allocs ? allocs.then((a) => a.stop(file)) : Promise.resolve()) };
}
