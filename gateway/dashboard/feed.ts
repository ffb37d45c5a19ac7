import type { ServerResponse } from 'node:http';
import type { ExposedSample } from './exposition.ts';
import { type BuiltState, buildState, type DashboardSources, type DashboardState } from './state.ts';

/** Something that happened, as the dashboard lists it (newest first). */
export interface DashboardEvent {
  atMs: number;
  kind: 'ejection' | 'recovery' | 'failover' | 'stale' | 'live' | 'refusal';
  text: string;
}

export type DashboardPayload = DashboardState & { events: DashboardEvent[] };

/**
 * A failover: a service's home cluster serves less than MOVED_BELOW of its calls in this tick. A
 * cluster becomes the home when it served at least HOME_SHARE of the calls (at least MIN_CALLS of them)
 * over the live window when the page opened, or over the last HORIZON ticks with calls; it stays the
 * home through ticks that say nothing clear (a tick split by the failure itself) until the calls leave
 * it. Calls spread over several clusters (power of two choices within a locality) give no home, so
 * their swings from tick to tick are not failovers.
 */
const HOME_SHARE = 0.8;
const MOVED_BELOW = 0.1;
const HORIZON = 5;
const MIN_CALLS = 10;

/** calls per cluster of one tick */
type Tick = Map<string, number>;

/** the cluster that held the calls over these ticks, if one did */
function homeOf(ticks: readonly Tick[]): string | undefined {
  const byCluster = new Map<string, number>();
  for (const t of ticks) for (const [c, n] of t) byCluster.set(c, (byCluster.get(c) ?? 0) + n);
  const total = [...byCluster.values()].reduce((a, b) => a + b, 0);
  const [top] = [...byCluster].sort((x, y) => y[1] - x[1]);
  return top && total >= MIN_CALLS && top[1] / total >= HOME_SHARE ? top[0] : undefined;
}

/** events kept for late viewers; older ones are dropped */
const MAX_EVENTS = 100;

interface Baseline {
  counters: Map<string, number>;
  healthy: Map<string, number>;
  stale: Map<string, boolean>;
  /** per service: its calls per cluster in the last HORIZON ticks that had calls */
  history: Map<string, Tick[]>;
  /** per service: the cluster that holds its calls, while one does */
  homes: Map<string, string>;
}

function sum(
  samples: readonly ExposedSample[],
  key: (s: ExposedSample) => string | undefined,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    const k = key(s);
    if (k !== undefined) out.set(k, (out.get(k) ?? 0) + s.value);
  }
  return out;
}

/**
 * Where each service's calls went over the live window, as one tick of history: a page that opens
 * sees a failover that follows at once, without waiting ticks to learn where the calls used to go.
 */
function recentCalls(b: BuiltState): Map<string, Tick[]> {
  const out = new Map<string, Tick[]>();
  for (const r of b.rows) {
    const tick = out.get(r.destination_service)?.[0] ?? new Map<string, number>();
    tick.set(r.destination_cluster, (tick.get(r.destination_cluster) ?? 0) + r.requests);
    out.set(r.destination_service, [tick]);
  }
  return out;
}

function baselineOf(b: BuiltState): Baseline {
  const s = (name: string) => b.samples.get(name) ?? [];
  const counters = new Map<string, number>();
  const add = (prefix: string, m: Map<string, number>) => {
    for (const [k, v] of m) counters.set(`${prefix}|${k}`, v);
  };
  add(
    'refused',
    sum(s('meshfed_refused_total'), (x) => `${x.labels.listener}|${x.labels.reason}`),
  );
  add(
    'catalog',
    sum(s('meshfed_catalog_rejected_total'), (x) => x.labels.reason),
  );
  add(
    'cert',
    sum(s('meshfed_egress_client_certs_total'), (x) =>
      x.labels.result === 'verified' || x.labels.result === 'anonymous' ? undefined : x.labels.result,
    ),
  );
  add(
    'ejected',
    sum(s('meshfed_outlier_ejections_total'), (x) => `${x.labels.service}|${x.labels.destination_cluster}`),
  );
  add(
    'calls',
    sum(s('meshfed_requests_total'), (x) =>
      x.labels.direction === 'outbound'
        ? `${x.labels.destination_service}|${x.labels.destination_cluster}`
        : undefined,
    ),
  );
  return {
    counters,
    healthy: sum(
      s('meshfed_upstream_healthy'),
      (x) => `${x.labels.service}|${x.labels.destination_cluster}|${x.labels.target}`,
    ),
    stale: new Map(b.state.clusters.map((c) => [c.name, c.stale])),
    history: new Map(),
    homes: new Map(),
  };
}

/**
 * The dashboard's live feed: while at least one page listens (server-sent events), it rebuilds the
 * state every `intervalMs`, turns what changed since the last tick into events (ejections, recoveries,
 * failovers, stale clusters, refusals) and sends both to every page. Nobody listening: no work.
 */
export class DashboardFeed {
  readonly #src: DashboardSources;
  readonly #intervalMs: number;
  readonly #maxClients: number;
  readonly #clients = new Set<ServerResponse>();
  readonly #events: DashboardEvent[] = [];
  #timer: NodeJS.Timeout | undefined;
  #base: Baseline | undefined;
  #busy = false;

  constructor(src: DashboardSources, o: { intervalMs?: number; maxClients?: number } = {}) {
    this.#src = src;
    this.#intervalMs = o.intervalMs ?? 1_000;
    this.#maxClients = o.maxClients ?? 16;
  }

  /** The state now, with the events seen so far (GET /ui/state). */
  async snapshot(): Promise<DashboardPayload> {
    return { ...(await buildState(this.#src)).state, events: [...this.#events] };
  }

  /** Starts an event stream on `res`; false (nothing written) when too many pages already listen. */
  subscribe(res: ServerResponse): boolean {
    if (this.#clients.size >= this.#maxClients) return false;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write('retry: 1000\n\n');
    this.#clients.add(res);
    res.once('close', () => {
      this.#clients.delete(res);
      if (this.#clients.size === 0) this.#stop();
    });
    if (!this.#timer) {
      this.#timer = setInterval(() => void this.tick(), this.#intervalMs);
      this.#timer.unref();
    }
    void this.tick();
    return true;
  }

  #stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    // a page that comes back later compares against a fresh baseline, not one from long ago
    this.#base = undefined;
  }

  /** Ends every event stream (the admin listener is closing). */
  close(): void {
    for (const res of this.#clients) res.end();
    this.#clients.clear();
    this.#stop();
  }

  /** One refresh: rebuild, diff, send. The timer runs it every `intervalMs`; tests call it directly. */
  async tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const built = await buildState(this.#src);
      const next = baselineOf(built);
      if (this.#base) this.#diff(this.#base, next, built.state.atMs);
      else {
        next.history = recentCalls(built);
        for (const [service, ticks] of next.history) {
          const home = homeOf(ticks);
          if (home) next.homes.set(service, home);
        }
      }
      this.#base = next;
      const data = JSON.stringify({ ...built.state, events: this.#events });
      for (const res of this.#clients) res.write(`event: state\ndata: ${data}\n\n`);
    } catch (err) {
      const data = JSON.stringify({ error: (err as Error).message });
      for (const res of this.#clients) res.write(`event: failure\ndata: ${data}\n\n`);
    } finally {
      this.#busy = false;
    }
  }

  #event(atMs: number, kind: DashboardEvent['kind'], text: string): void {
    this.#events.unshift({ atMs, kind, text });
    if (this.#events.length > MAX_EVENTS) this.#events.length = MAX_EVENTS;
  }

  #diff(prev: Baseline, next: Baseline, atMs: number): void {
    const calls = new Map<string, Map<string, number>>();
    for (const [key, v] of next.counters) {
      const delta = v - (prev.counters.get(key) ?? 0);
      if (delta <= 0) continue;
      const [kind, a, b] = key.split('|') as [string, string, string | undefined];
      if (kind === 'refused') this.#event(atMs, 'refusal', `${delta} × ${b} refused on the ${a} listener`);
      else if (kind === 'catalog') this.#event(atMs, 'refusal', `${delta} catalog message(s) rejected: ${a}`);
      else if (kind === 'cert')
        this.#event(atMs, 'refusal', `${delta} workload certificate(s) refused: ${a}`);
      else if (kind === 'ejected')
        this.#event(atMs, 'ejection', `${a}: a target in ${b} was ejected by outlier detection`);
      else if (kind === 'calls') {
        const byCluster = calls.get(a) ?? new Map<string, number>();
        byCluster.set(b ?? '', delta);
        calls.set(a, byCluster);
      }
    }
    for (const [key, v] of next.healthy) {
      const was = prev.healthy.get(key);
      if (was === 0 && v > 0) {
        const [service, cluster] = key.split('|');
        this.#event(atMs, 'recovery', `${service}: the target in ${cluster} is back in rotation`);
      }
    }
    for (const [cluster, stale] of next.stale) {
      const was = prev.stale.get(cluster);
      if (was === undefined || was === stale) continue;
      if (stale)
        this.#event(
          atMs,
          'stale',
          `cluster ${cluster} is stale: its heartbeats stopped, it gets no new calls`,
        );
      else this.#event(atMs, 'live', `cluster ${cluster} is live again`);
    }
    for (const [service, byCluster] of calls) {
      const before = prev.history.get(service) ?? [];
      const total = [...byCluster.values()].reduce((a, b) => a + b, 0);
      const home = prev.homes.get(service);
      // the cluster that held the calls now serves (almost) none of them: the calls moved
      if (home && (byCluster.get(home) ?? 0) / total < MOVED_BELOW) {
        const now = [...byCluster]
          .filter(([, n]) => n / total >= MOVED_BELOW)
          .map(([c]) => c)
          .sort();
        this.#event(atMs, 'failover', `${service}: calls moved from ${home} to ${now.join(', ')}`);
        next.history.set(service, [byCluster]);
        continue;
      }
      const history = [...before, byCluster].slice(-HORIZON);
      next.history.set(service, history);
      const settled = history.length >= HORIZON ? homeOf(history) : undefined;
      if (settled ?? home) next.homes.set(service, (settled ?? home)!);
    }
    // a service with no calls this tick keeps its history and home, so a pause is not a failover
    for (const [service, ticks] of prev.history) {
      if (calls.has(service)) continue;
      next.history.set(service, ticks);
      const home = prev.homes.get(service);
      if (home) next.homes.set(service, home);
    }
  }
}
