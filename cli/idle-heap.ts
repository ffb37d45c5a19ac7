import { Counter, type Logger, type Registry } from '../core/index.ts';

/**
 * Gives the memory an idle gateway no longer uses back to the system. After a burst of allocation (start-up,
 * a catalog sync, traffic) V8 keeps the pages it freed in a pool of its own for later use, and neither its
 * ordinary collections nor its memory reducer return them: a demo gateway idle for minutes held 7-9 MB of them
 * (docs/performance.md, "Ninth round"). A last-resort collection (several full, compacting collections, then the
 * pool released) returns them, at the price of one pause of the process (79 ms on a demo gateway). So it
 * runs only when nothing waits on it: once no request has been in flight, or started, for `afterMs`. It runs
 * again only after requests came and went, or an admin call (touch()), or after REARM_MS of idleness (for what
 * catalog syncs pooled in the meantime): an idle gateway pays the pause once per quiet spell, and a busy one
 * never. Each shrink is counted (meshfed_idle_heap_*).
 */

/** the requests of a gateway: how many are in flight, and when (performance.now()) the last one started */
export interface RequestActivity {
  readonly count: number;
  readonly lastStart: number;
}

/** the requests of a process that serves none (a multi-process gateway's supervisor) */
export const NO_REQUESTS: RequestActivity = { count: 0, lastStart: Number.NEGATIVE_INFINITY };

/** a quiet gateway shrinks again after this long, requests or not */
export const REARM_MS = 10 * 60_000;

export interface IdleHeapOptions {
  /** how long without a request before the heap is shrunk; 0: never */
  afterMs: number;
  activity: RequestActivity;
  /** the last-resort collection; undefined where the process cannot run one (see lastResortCollection) */
  collect: (() => void) | undefined;
  log: Logger;
  /** where the shrinks are counted (meshfed_idle_heap_*); none in unit tests */
  registry?: Registry;
  now?: () => number;
  /** the process's resident bytes; process.memoryUsage.rss by default */
  resident?: () => number;
}

/** The collection that returns V8's pooled pages: `gc` with the `last-resort` flavour (node --expose-gc). */
export function lastResortCollection(): (() => void) | undefined {
  const gc = globalThis.gc;
  if (typeof gc !== 'function') return undefined;
  return () => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

export class IdleHeap {
  readonly #o: IdleHeapOptions;
  readonly #now: () => number;
  readonly #resident: () => number;
  /** shrinks run, the event loop's time spent in them, and the resident memory they gave back */
  readonly #metrics: { shrinks: Counter; pause: Counter; released: Counter } | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** when the last shrink ran (or, before the first, when this started) */
  #since: number;
  /** the last activity (request start or touch) at the last shrink (NaN before the first: armed at start) */
  #lastSeen = Number.NaN;
  /** when touch() was last called: work outside the request path (an admin call) that allocated */
  #touched = Number.NEGATIVE_INFINITY;

  constructor(options: IdleHeapOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
    this.#resident = options.resident ?? (() => process.memoryUsage.rss());
    this.#since = this.#now();
    const registers = options.registry ? [options.registry] : undefined;
    this.#metrics = registers && {
      shrinks: new Counter({
        name: 'meshfed_idle_heap_shrinks_total',
        help: 'last-resort collections an idle gateway ran to give pooled heap pages back (idleHeapShrink)',
        registers,
      }),
      pause: new Counter({
        name: 'meshfed_idle_heap_shrink_pause_seconds_total',
        help: 'time the event loop was paused by those collections',
        registers,
      }),
      released: new Counter({
        name: 'meshfed_idle_heap_released_bytes_total',
        help: 'resident memory those collections gave back to the system',
        registers,
      }),
    };
  }

  start(): void {
    const { afterMs, collect, log } = this.#o;
    if (afterMs <= 0) return;
    if (!collect) {
      log.debug('idle heap shrink off: this process runs without --expose-gc');
      return;
    }
    // a third of the quiet spell: the shrink comes at most a third late, and an idle process wakes rarely
    this.#timer = setInterval(() => this.check(), Math.max(1000, Math.floor(afterMs / 3)));
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Work outside the request path happened now (an operator's admin call: its first one loads the gRPC server):
   * it re-arms the shrink, which then waits for afterMs of quiet after it as after a request.
   */
  touch(): void {
    this.#touched = this.#now();
  }

  /** Shrinks the heap if the gateway has been quiet long enough and something may have been pooled since. */
  check(): boolean {
    const { activity, afterMs, collect } = this.#o;
    if (!collect || afterMs <= 0 || activity.count > 0) return false;
    const now = this.#now();
    const last = Math.max(activity.lastStart, this.#touched);
    if (now - Math.max(last, this.#since) < afterMs) return false;
    // a request started since the last shrink, or REARM_MS passed (NaN never equals: the first one is armed)
    if (last === this.#lastSeen && now - this.#since < REARM_MS) return false;
    const before = this.#resident();
    const t0 = performance.now();
    collect();
    const pauseMs = performance.now() - t0;
    const after = this.#resident();
    this.#since = this.#now();
    this.#lastSeen = last;
    this.#metrics?.shrinks.inc();
    this.#metrics?.pause.inc(pauseMs / 1000);
    this.#metrics?.released.inc(Math.max(0, before - after));
    this.#o.log.debug(
      { rssMb: { before: mb(before), after: mb(after) }, pauseMs: Math.round(pauseMs * 10) / 10 },
      'idle: heap shrunk',
    );
    return true;
  }
}
