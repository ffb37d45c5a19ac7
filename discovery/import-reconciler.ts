import {
  type CatalogView,
  type ImportedService,
  type ImportSink,
  type Logger,
  type Registry,
  type RemoteServiceInstance,
  type ServicePort,
  serviceKey,
  MAX_TIMER_MS,
} from '../core/index.ts';
import { Backoff } from './backoff.ts';
import { type ImportMetrics, importMetrics } from './metrics.ts';

/**
 * What one local cluster should import: every service that another cluster offers through a
 * live (non-stale, unexpired) entry. Ports are united by name across clusters; clusters sorted.
 */
export function computeImports(view: CatalogView, localCluster: string, now = Date.now()): ImportedService[] {
  const out: ImportedService[] = [];
  for (const ref of view.services()) {
    const live = view
      .instances(ref.namespace, ref.name)
      .filter((i) => i.cluster !== localCluster && !i.stale && i.expiresAt > now);
    if (live.length === 0) continue;
    out.push({
      namespace: ref.namespace,
      name: ref.name,
      ports: unitePorts(live),
      clusters: clustersOf(live),
    });
  }
  return out.sort((a, b) => (serviceKey(a) < serviceKey(b) ? -1 : 1));
}

function unitePorts(instances: readonly RemoteServiceInstance[]): ServicePort[] {
  const ports = new Map<string, ServicePort>();
  for (const i of instances) for (const p of i.ports) if (!ports.has(p.name)) ports.set(p.name, p);
  return [...ports.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

function clustersOf(instances: readonly RemoteServiceInstance[]): string[] {
  return [...new Set(instances.map((i) => i.cluster))].sort();
}

/** The named events of the reconciler's work queue. */
export type ImportEvent =
  | { type: 'CatalogChanged' }
  | { type: 'EntryExpired' }
  | { type: 'ResyncTriggered' }
  | { type: 'ApplyRetry'; sink: string; attempt: number };

export interface ImportReconcilerOptions {
  /** the federated catalog (federation/'s FederationNode in the daemon) */
  catalog: CatalogView;
  sinks: readonly ImportSink[];
  /** this cluster's name: its own entries are never imported */
  cluster: string;
  logger: Logger;
  /** lets the federated view fill before the first apply, so a restart does not withdraw and
   * re-add every import while the catalog is still loading (ms) */
  initialDelayMs?: number;
  /** quiet period that coalesces bursts of catalog changes (ms; `discovery.importDebounce`) */
  debounceMs: number;
  /** periodic full re-apply (ms; `discovery.resyncInterval`); 0 turns it off */
  resyncMs: number;
  backoff?: { minMs?: number; maxMs?: number };
  /** where meshfed_discovery_imports and meshfed_discovery_applies_total are registered */
  registry: Registry;
}

interface SinkState {
  sink: ImportSink;
  backoff: Backoff;
  /** digest of the set the sink last accepted */
  applied: string | undefined;
  running: boolean;
  /** a newer desired set arrived while an apply ran */
  dirty: boolean;
  retryTimer: NodeJS.Timeout | undefined;
  lastTerminal: string | undefined;
}

/**
 * Keeps every sink in line with the federated catalog. Catalog callbacks only enqueue named
 * events; one worker per sink applies the latest desired set (intermediate sets are skipped),
 * retries retryable errors with jittered back-off and logs terminal ones once per distinct error.
 */
export class ImportReconciler {
  private readonly view: CatalogView;
  private readonly cluster: string;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly resyncMs: number;
  private readonly initialDelayMs: number;
  private readonly sinks: SinkState[];
  private readonly metrics: ImportMetrics;
  private desired: ImportedService[] = [];
  private desiredDigest = '';
  private unsubscribe: (() => void) | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = true;
  /** no apply before this time (initialDelayMs after start) */
  private holdUntil = 0;
  private readonly idleWaiters: (() => void)[] = [];
  /** events handled, by type: for tests and the admin dump */
  readonly eventCounts: Record<ImportEvent['type'], number> = {
    CatalogChanged: 0,
    EntryExpired: 0,
    ResyncTriggered: 0,
    ApplyRetry: 0,
  };

  constructor(options: ImportReconcilerOptions) {
    this.view = options.catalog;
    this.initialDelayMs = options.initialDelayMs ?? 0;
    this.metrics = importMetrics(options.registry);
    this.cluster = options.cluster;
    this.log = options.logger;
    this.debounceMs = options.debounceMs;
    this.resyncMs = options.resyncMs;
    this.sinks = options.sinks.map((sink) => ({
      sink,
      backoff: new Backoff({ minMs: options.backoff?.minMs ?? 250, maxMs: options.backoff?.maxMs ?? 30_000 }),
      applied: undefined,
      running: false,
      dirty: false,
      retryTimer: undefined,
      lastTerminal: undefined,
    }));
  }

  /** Starts the sinks (each reconciles its own stale registrations) and applies the current view. */
  async start(): Promise<void> {
    this.stopped = false;
    for (const s of this.sinks) await s.sink.start();
    this.unsubscribe = this.view.onChange(() => this.enqueue({ type: 'CatalogChanged' }));
    if (this.resyncMs > 0) {
      this.resyncTimer = setInterval(() => this.enqueue({ type: 'ResyncTriggered' }), this.resyncMs);
      this.resyncTimer.unref();
    }
    this.holdUntil = Date.now() + this.initialDelayMs;
    if (this.initialDelayMs > 0) this.enqueue({ type: 'CatalogChanged' });
    else this.handle({ type: 'CatalogChanged' });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    for (const t of [this.debounceTimer, this.expiryTimer]) if (t) clearTimeout(t);
    this.debounceTimer = undefined;
    this.expiryTimer = undefined;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const s of this.sinks) {
      if (s.retryTimer) clearTimeout(s.retryTimer);
      s.retryTimer = undefined;
    }
    await this.idle();
    await Promise.allSettled(this.sinks.map((s) => s.sink.stop()));
  }

  /** The set last computed from the view. */
  imports(): readonly ImportedService[] {
    return this.desired;
  }

  /** Resolves when no apply is running and none is waiting on a debounce (retries may still be armed). */
  idle(): Promise<void> {
    if (!this.busy()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private busy(): boolean {
    return this.debounceTimer !== undefined || this.sinks.some((s) => s.running);
  }

  private enqueue(event: ImportEvent): void {
    if (this.stopped) return;
    if (event.type !== 'CatalogChanged') {
      this.handle(event);
      return;
    }
    // coalesce bursts: one recompute per quiet period
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    const delay = Math.max(this.debounceMs, this.holdUntil - Date.now());
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.handle(event);
    }, delay);
  }

  private handle(event: ImportEvent): void {
    if (this.stopped) return;
    this.eventCounts[event.type]++;
    if (event.type === 'ApplyRetry') {
      const s = this.sinks.find((x) => x.sink.name === event.sink);
      if (s) this.kick(s, true);
      return;
    }
    this.recompute();
    for (const s of this.sinks) this.kick(s, event.type === 'ResyncTriggered');
    this.notifyIdle();
  }

  private recompute(): void {
    const now = Date.now();
    this.desired = computeImports(this.view, this.cluster, now);
    this.desiredDigest = JSON.stringify(this.desired);
    this.armExpiry(now);
  }

  /** An entry that expires without any catalog event must still be withdrawn on time. */
  private armExpiry(now: number): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    let next = Number.POSITIVE_INFINITY;
    for (const ref of this.view.services()) {
      for (const i of this.view.instances(ref.namespace, ref.name)) {
        if (i.cluster !== this.cluster && !i.stale && i.expiresAt > now) next = Math.min(next, i.expiresAt);
      }
    }
    if (next === Number.POSITIVE_INFINITY) return;
    const delay = Math.min(Math.max(0, next - now) + 5, MAX_TIMER_MS);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.handle({ type: 'EntryExpired' });
    }, delay);
    this.expiryTimer.unref();
  }

  private kick(s: SinkState, force: boolean): void {
    if (force) s.applied = undefined;
    if (s.running) {
      s.dirty = true;
      return;
    }
    if (s.retryTimer && !force) return; // a retry is armed; it will carry the newest set
    if (s.applied === this.desiredDigest) return;
    if (s.retryTimer) clearTimeout(s.retryTimer);
    s.retryTimer = undefined;
    void this.run(s);
  }

  private async run(s: SinkState): Promise<void> {
    s.running = true;
    s.dirty = false;
    const digest = this.desiredDigest;
    const set = this.desired;
    try {
      await s.sink.apply(set);
      s.applied = digest;
      s.backoff.reset();
      s.lastTerminal = undefined;
      this.metrics.imports.set({ sink: s.sink.name }, set.length);
      this.metrics.applies.inc({ sink: s.sink.name, result: 'ok' });
      this.log.debug({ sink: s.sink.name, services: set.length }, 'imports applied');
    } catch (err) {
      const retryable = (err as { retryable?: unknown }).retryable === true;
      this.metrics.applies.inc({ sink: s.sink.name, result: retryable ? 'retryable' : 'terminal' });
      if (retryable && !this.stopped) {
        const delay = s.backoff.next();
        if (s.backoff.attempts === 1 || s.backoff.attempts % 10 === 0) {
          this.log.warn(
            { err, sink: s.sink.name, retryInMs: delay, attempt: s.backoff.attempts },
            'applying imports failed; will retry',
          );
        }
        s.retryTimer = setTimeout(() => {
          s.retryTimer = undefined;
          this.handle({ type: 'ApplyRetry', sink: s.sink.name, attempt: s.backoff.attempts });
        }, delay);
      } else {
        // terminal: retrying the same set cannot help; wait for the next change or resync
        s.applied = digest;
        const key = String((err as { code?: unknown }).code ?? (err as Error).message);
        if (key !== s.lastTerminal)
          this.log.error({ err, sink: s.sink.name }, 'applying imports failed (not retryable)');
        s.lastTerminal = key;
      }
    } finally {
      s.running = false;
    }
    if (s.dirty && !this.stopped) this.kick(s, false);
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.busy()) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
