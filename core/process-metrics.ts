import { readdirSync, readFileSync } from 'node:fs';
import { constants, type ELDHistogram, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { type Aggregator, Counter, Gauge, Histogram, type Registry } from './metrics.ts';

/**
 * The process's own metrics (CPU, memory, file descriptors, event loop, garbage collection), under the names
 * meshfed has always exposed them with: `meshfed_process_` then the usual Node.js process metric names.
 * Everything is read when the registry is read. The two figures that need something running between reads
 * (event-loop delay, a timer every 10 ms; GC pauses, an observer) start at the first read: a gateway nobody
 * scrapes runs neither.
 */
const PREFIX = 'meshfed_process_';
const LINUX = process.platform === 'linux';
const GC_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5];
const GC_KINDS = new Map([
  [constants.NODE_PERFORMANCE_GC_MAJOR, 'major'],
  [constants.NODE_PERFORMANCE_GC_MINOR, 'minor'],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, 'incremental'],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, 'weakcb'],
]);

/**
 * `read`, called at most once per turn of the event loop: a registry reads all its families in one turn, so
 * the families made from one reading (three from /proc/self/status) share it.
 */
function oncePerTurn<T>(read: () => T): () => T {
  let held: { value: T } | undefined;
  return () => {
    if (held === undefined) {
      held = { value: read() };
      queueMicrotask(() => {
        held = undefined;
      });
    }
    return held.value;
  };
}

/** VmRSS, VmSize and VmData of /proc/self/status, in bytes. */
function procStatus(): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of readFileSync('/proc/self/status', 'utf8').matchAll(/^(VmRSS|VmSize|VmData):\s+(\d+) kB$/gm))
    out.set(m[1]!, Number(m[2]) * 1024);
  return out;
}

/** The soft limit on open files, from /proc/self/limits; NaN when it cannot be read. */
function maxFds(): number {
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line ? Number(line[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** How many of each kind: the constructor name of each handle or request, or each resource type. */
function countBy<T>(items: readonly T[], kind: (x: T) => string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const x of items) {
    const k = kind(x);
    if (k !== undefined) out.set(k, (out.get(k) ?? 0) + 1);
  }
  return out;
}

/** Node's undocumented lists of live handles and requests, for the two families meshfed has always had of them. */
const internals = process as unknown as {
  _getActiveHandles?: () => object[];
  _getActiveRequests?: () => object[];
};

export function registerProcessMetrics(registry: Registry): void {
  const registers = [registry];
  const gauge = (
    name: string,
    help: string,
    collect: (this: Gauge) => void | Promise<void>,
    o: { labelNames?: string[]; aggregator?: Aggregator } = {},
  ) => new Gauge({ name: PREFIX + name, help, registers, collect, ...o });

  // the CPU the process has used since it started, start-up included: the counters add what each read finds new
  const cpu = oncePerTurn(() => process.cpuUsage());
  const cpuCounter = (name: string, help: string, micros: (u: NodeJS.CpuUsage) => number) => {
    let counted = 0;
    new Counter({
      name: PREFIX + name,
      help,
      registers,
      collect() {
        const total = micros(cpu()) / 1e6;
        if (total > counted) this.inc(total - counted);
        counted = Math.max(counted, total);
      },
    });
  };
  cpuCounter('process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', (u) => u.user);
  cpuCounter('process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.', (u) => u.system);
  cpuCounter(
    'process_cpu_seconds_total',
    'Total user and system CPU time spent in seconds.',
    (u) => u.user + u.system,
  );

  const started = Math.round(Date.now() / 1000 - process.uptime());
  // each process has its own: a sum or an average of them means nothing
  gauge(
    'process_start_time_seconds',
    'Start time of the process since unix epoch in seconds.',
    function () {
      this.set(started);
    },
    { aggregator: 'omit' },
  );

  if (LINUX) {
    const status = oncePerTurn(procStatus);
    const fromStatus = (name: string, help: string, field: string) =>
      gauge(name, help, function () {
        this.set(status().get(field) ?? Number.NaN);
      });
    fromStatus('process_resident_memory_bytes', 'Resident memory size in bytes.', 'VmRSS');
    fromStatus('process_virtual_memory_bytes', 'Virtual memory size in bytes.', 'VmSize');
    fromStatus('process_heap_bytes', 'Process heap size in bytes.', 'VmData');
    // minus the descriptor readdir itself held open while it listed them
    gauge('process_open_fds', 'Number of open file descriptors.', function () {
      this.set(readdirSync('/proc/self/fd').length - 1);
    });
    let limit: number | undefined;
    gauge('process_max_fds', 'Maximum number of open file descriptors.', function () {
      limit ??= maxFds();
      this.set(limit);
    });
  } else {
    gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', function () {
      this.set(process.memoryUsage.rss());
    });
  }

  registerLoopMetrics(gauge);

  const resources = oncePerTurn(() => countBy(process.getActiveResourcesInfo(), (r) => r));
  const handles = oncePerTurn(() =>
    countBy(internals._getActiveHandles?.() ?? [], (h) => h?.constructor?.name),
  );
  const requests = oncePerTurn(() =>
    countBy(internals._getActiveRequests?.() ?? [], (r) => r?.constructor?.name),
  );
  for (const [name, help, byType] of [
    [
      'nodejs_active_resources',
      'Number of active resources that are currently keeping the event loop alive, grouped by async resource type.',
      resources,
    ],
    [
      'nodejs_active_handles',
      'Number of active libuv handles grouped by handle type. Every handle type is C++ class name.',
      handles,
    ],
    [
      'nodejs_active_requests',
      'Number of active libuv requests grouped by request type. Every request type is C++ class name.',
      requests,
    ],
  ] as const) {
    gauge(
      name,
      help,
      function () {
        this.reset();
        for (const [type, n] of byType()) this.set({ type }, n);
      },
      { labelNames: ['type'] },
    );
    gauge(`${name}_total`, `Total number of ${name.slice('nodejs_'.length).replace('_', ' ')}.`, function () {
      let total = 0;
      for (const n of byType().values()) total += n;
      this.set(total);
    });
  }

  const memory = oncePerTurn(() => process.memoryUsage());
  gauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', function () {
    this.set(memory().heapTotal);
  });
  gauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', function () {
    this.set(memory().heapUsed);
  });
  gauge('nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', function () {
    this.set(memory().external);
  });
  const spaces = oncePerTurn(getHeapSpaceStatistics);
  for (const [kind, field] of [
    ['total', 'space_size'],
    ['used', 'space_used_size'],
    ['available', 'space_available_size'],
  ] as const) {
    gauge(
      `nodejs_heap_space_size_${kind}_bytes`,
      `Process heap space size ${kind} from Node.js in bytes.`,
      function () {
        for (const s of spaces()) this.set({ space: s.space_name.replace(/_space$/, '') }, s[field]);
      },
      { labelNames: ['space'] },
    );
  }

  const [major, minor, patch] = process.versions.node.split('.');
  const version = { version: process.version, major, minor, patch };
  gauge(
    'nodejs_version_info',
    'Node.js version info.',
    function () {
      this.set(version, 1);
    },
    { labelNames: ['version', 'major', 'minor', 'patch'], aggregator: 'first' },
  );

  let gcObserver: PerformanceObserver | undefined;
  const gc: Histogram<'kind'> = new Histogram({
    name: `${PREFIX}nodejs_gc_duration_seconds`,
    help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    labelNames: ['kind'],
    buckets: GC_BUCKETS,
    registers,
    collect() {
      if (gcObserver) return;
      gcObserver = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          const kind = GC_KINDS.get((e as { detail?: { kind?: number } }).detail?.kind ?? -1);
          gc.observe(kind === undefined ? {} : { kind }, e.duration / 1000);
        }
      });
      gcObserver.observe({ entryTypes: ['gc'] });
    },
  });
}

type GaugeMaker = (
  name: string,
  help: string,
  collect: (this: Gauge) => void | Promise<void>,
  o?: { aggregator?: Aggregator },
) => Gauge;

/**
 * Event-loop lag: how late a callback queued now runs (measured at each read), and the delay statistics of
 * the timer that runs from the first read on, over the time since the read before (NaN until it has run).
 */
function registerLoopMetrics(gauge: GaugeMaker): void {
  gauge(
    'nodejs_eventloop_lag_seconds',
    'Lag of event loop in seconds.',
    async function () {
      const start = performance.now();
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.set((performance.now() - start) / 1000);
    },
    { aggregator: 'average' },
  );
  let monitor: ELDHistogram | undefined;
  const delays = oncePerTurn(() => {
    if (monitor === undefined) {
      monitor = monitorEventLoopDelay({ resolution: 10 });
      monitor.enable();
    }
    const h = monitor;
    const read =
      h.count === 0
        ? undefined
        : {
            min: h.min,
            max: h.max,
            mean: h.mean,
            stddev: h.stddev,
            p50: h.percentile(50),
            p90: h.percentile(90),
            p99: h.percentile(99),
          };
    h.reset();
    return read;
  });
  for (const [stat, help, aggregator] of [
    ['min', 'The minimum recorded event loop delay.', 'min'],
    ['max', 'The maximum recorded event loop delay.', 'max'],
    ['mean', 'The mean of the recorded event loop delays.', 'average'],
    ['stddev', 'The standard deviation of the recorded event loop delays.', 'average'],
    ['p50', 'The 50th percentile of the recorded event loop delays.', 'average'],
    ['p90', 'The 90th percentile of the recorded event loop delays.', 'average'],
    ['p99', 'The 99th percentile of the recorded event loop delays.', 'average'],
  ] as const) {
    gauge(
      `nodejs_eventloop_lag_${stat}_seconds`,
      help,
      function () {
        const d = delays();
        this.set(d === undefined ? Number.NaN : d[stat] / 1e9);
      },
      { aggregator },
    );
  }
}
