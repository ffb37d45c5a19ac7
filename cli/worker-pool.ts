import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';
import type http from 'node:http';
import net from 'node:net';
import type { CertificateSource, IssuedLeaf } from '../ca/index.ts';
import {
  aggregate,
  type CatalogView,
  Counter,
  type EndpointSource,
  Gauge,
  type LinkReportView,
  type Logger,
  MeshfedError,
  type MetricFamily,
  exposition,
  type PolicyScopeRevision,
  type PolicyView,
  type Registry,
} from '../core/index.ts';
import type { Balancers } from '../gateway/index.ts';
import { adminServer, mergeSnapshots, type PolicySummary, type TrafficSnapshot } from '../gateway/index.ts';
import type { DaemonConfig } from './daemon-config.ts';
import {
  type FromWorker,
  GATEWAY_WORKER_ENV,
  policySnapshot,
  type ToWorker,
  type TrustMaterial,
  type WorkerStats,
} from './worker-protocol.ts';

const STATS_TIMEOUT_MS = 2_000;
/** a worker that dies sooner than this after its start counts as a crash loop: restarts back off */
const CRASH_LOOP_MS = 5_000;
const MAX_BACKOFF_MS = 30_000;

export interface WorkerPoolOptions {
  count: number;
  config: DaemonConfig;
  identity: CertificateSource;
  trust: () => TrustMaterial;
  source: EndpointSource;
  catalog: CatalogView;
  policy: PolicyView;
  /** the other clusters' gateways' link reports, for the dashboard */
  linkReports: LinkReportView;
  /** for /debug/routes: the supervisor's view of the routes (outlier state lives in each worker) */
  balancers: Balancers;
  registry: Registry;
  logger: Logger;
}

interface Entry {
  worker: Worker;
  pid: number;
  ready: boolean;
  startedAt: number;
}

/** Binds host:0 for a moment to learn a free port: every worker must bind the same concrete port. */
async function concretePort(host: string, port: number): Promise<number> {
  if (port !== 0) return port;
  const srv = net.createServer();
  srv.listen(0, host);
  await once(srv, 'listening');
  const p = (srv.address() as net.AddressInfo).port;
  srv.close();
  await once(srv, 'close');
  return p;
}

/**
 * The supervisor of a multi-process gateway (`workers: N`, node:cluster). It keeps N data-plane workers
 * running (a worker that dies is replaced, with back-off when it keeps dying), feeds them what the
 * control plane learns (leaf rotations, trust bundle, local services, catalog changes), serves the
 * admin listener with every worker's metrics summed, and drains them all on shutdown.
 */
export class WorkerPool {
  private readonly o: WorkerPoolOptions;
  private readonly log: Logger;
  private config!: DaemonConfig;
  private readonly entries = new Map<number, Entry>();
  private readonly replies = new Map<number, (m: FromWorker) => void>();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly restarts: Counter;
  private admin: http.Server | undefined;
  private bound: Record<string, string> = {};
  private stopping = false;
  private fastCrashes = 0;
  private seq = 0;

  constructor(o: WorkerPoolOptions) {
    this.o = o;
    this.log = o.logger;
    this.restarts = new Counter({
      name: 'meshfed_worker_restarts_total',
      help: 'data-plane workers replaced after they exited unexpectedly',
      registers: [o.registry],
    });
    const self = this;
    new Gauge({
      name: 'meshfed_workers',
      help: 'data-plane worker processes, by state',
      labelNames: ['state'],
      registers: [o.registry],
      collect() {
        const ready = [...self.entries.values()].filter((e) => e.ready).length;
        this.set({ state: 'ready' }, ready);
        this.set({ state: 'starting' }, self.entries.size - ready);
      },
    });
  }

  async start(): Promise<void> {
    const c = this.o.config;
    const l = c.gateway.listeners;
    const at = async (a: { host: string; port: number }) => ({
      ...a,
      port: await concretePort(a.host, a.port),
    });
    this.config = {
      ...c,
      gateway: {
        ...c.gateway,
        listeners: { ...l, egress: await at(l.egress), eastWest: await at(l.eastWest) },
        tcpPorts: await Promise.all(
          c.gateway.tcpPorts.map(async (t) => ({ ...t, listen: await at(t.listen) })),
        ),
      },
    };
    cluster.setupPrimary({ serialization: 'advanced' });
    const onRotated = (leaf: IssuedLeaf) => this.broadcast({ t: 'leaf', leaf });
    this.o.identity.on('rotated', onRotated);
    this.unsubscribe.push(
      () => this.o.identity.off('rotated', onRotated),
      this.o.source.onChange((services) => this.broadcast({ t: 'local', services })),
      this.o.catalog.onChange((changes) => this.broadcast({ t: 'catalog', changes })),
      this.o.policy.onChange((set) => this.broadcast({ t: 'policy', policy: policySnapshot(set) })),
    );
    try {
      // the admin listener first: it answers /healthz and /readyz ("starting") while the workers start, and
      // a port already taken fails the start at once rather than after every worker is up
      await this.listenAdmin();
      await Promise.all(Array.from({ length: this.o.count }, () => this.fork()));
    } catch (err) {
      await this.drain(0);
      await this.stop();
      throw err;
    }
  }

  /** The TLS/trust material changed (SIGHUP): every worker swaps it. */
  trustChanged(): void {
    this.broadcast({ t: 'trust', trust: this.o.trust() });
  }

  private broadcast(m: ToWorker): void {
    for (const e of this.entries.values()) if (e.worker.isConnected()) e.worker.send(m);
  }

  private init(): ToWorker {
    const catalog = this.o.catalog;
    return {
      t: 'init',
      config: this.config,
      leaf: this.o.identity.current(),
      trust: this.o.trust(),
      local: this.o.source.current(),
      instances: catalog.services().flatMap((s) => catalog.instances(s.namespace, s.name)),
      clusters: catalog.clusters(),
      policy: policySnapshot(this.o.policy.current()),
    };
  }

  /** Starts one worker; resolves once it listens, rejects when it fails or exits first. */
  private fork(initial = true): Promise<void> {
    const worker = cluster.fork({ [GATEWAY_WORKER_ENV]: '1' });
    const entry: Entry = { worker, pid: worker.process.pid ?? 0, ready: false, startedAt: Date.now() };
    this.entries.set(worker.id, entry);
    return new Promise((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'hello':
            worker.send(this.init());
            return;
          case 'ready':
            entry.ready = true;
            this.bound = m.addresses;
            this.log.info({ worker: worker.id, pid: entry.pid }, 'data-plane worker ready');
            resolve();
            return;
          case 'failed':
            reject(new MeshfedError('MESHFED_GATEWAY_LISTEN', `worker ${entry.pid}: ${m.message}`));
            return;
          case 'stats':
          case 'policy-state':
            this.replies.get(m.id)?.(m);
            return;
        }
      });
      worker.on('error', () => undefined);
      worker.once('exit', (code, signal) => {
        this.entries.delete(worker.id);
        if (!entry.ready) {
          reject(
            new MeshfedError(
              'MESHFED_GATEWAY_LISTEN',
              `data-plane worker ${entry.pid} exited (${signal ?? `code ${code}`}) before it was ready; its log says why`,
            ),
          );
        }
        if (this.stopping || (initial && !entry.ready)) return;
        this.replace(entry, code, signal);
      });
    });
  }

  private replace(entry: Entry, code: number | null, signal: string | null): void {
    this.restarts.inc();
    this.fastCrashes = Date.now() - entry.startedAt < CRASH_LOOP_MS ? this.fastCrashes + 1 : 0;
    const delay = this.fastCrashes === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.fastCrashes);
    this.log.warn(
      { pid: entry.pid, code, signal, restartInMs: delay },
      'data-plane worker exited unexpectedly; starting a replacement',
    );
    const timer = setTimeout(() => {
      if (this.stopping) return;
      // a replacement that dies before it is ready is replaced again (the exit handler), with back-off
      this.fork(false).catch((err: unknown) => this.log.error({ err }, 'replacement worker failed'));
    }, delay);
    timer.unref();
  }

  /**
   * Sends `request` (with a fresh id) to every live worker and gathers their answers of kind `t`; a worker
   * that does not answer within STATS_TIMEOUT_MS is left out. `asked`: the pids of the workers asked.
   */
  private async ask<T extends 'stats' | 'policy-state'>(
    t: T,
    request: (id: number) => ToWorker,
  ): Promise<{ answers: Extract<FromWorker, { t: T }>[]; asked: number[] }> {
    const id = ++this.seq;
    const live = [...this.entries.values()].filter((e) => e.ready && e.worker.isConnected());
    const answers: Extract<FromWorker, { t: T }>[] = [];
    await new Promise<void>((resolve) => {
      if (live.length === 0) return resolve();
      const timer = setTimeout(resolve, STATS_TIMEOUT_MS);
      this.replies.set(id, (m) => {
        if (m.t !== t) return;
        answers.push(m as Extract<FromWorker, { t: T }>);
        if (answers.length === live.length) {
          clearTimeout(timer);
          resolve();
        }
      });
      for (const e of live) e.worker.send(request(id));
    });
    this.replies.delete(id);
    return { answers, asked: live.map((e) => e.pid) };
  }

  /** Every live worker's counters and metrics (a worker that does not answer in time is left out). */
  async collect(
    windowMs = 60_000,
  ): Promise<{ stats: WorkerStats[]; metrics: MetricFamily[][]; traffic: TrafficSnapshot[] }> {
    const { answers } = await this.ask('stats', (id) => ({ t: 'stats', id, windowMs }));
    return {
      stats: answers.map((a) => a.stats),
      metrics: answers.map((a) => a.metrics),
      traffic: answers.map((a) => a.traffic),
    };
  }

  /** /debug/policy of a multi-process gateway: what each worker enforces, against what the supervisor holds. */
  async policyState(): Promise<WorkersPolicyState> {
    const { answers, asked } = await this.ask('policy-state', (id) => ({ t: 'policy-state', id }));
    return workersPolicyState(this.o.policy.current().scopes, answers, asked);
  }

  /** The golden metrics' window of every worker, added up (a worker that does not answer in time is left out). */
  async traffic(windowMs: number): Promise<TrafficSnapshot> {
    return mergeSnapshots((await this.collect(windowMs)).traffic, windowMs);
  }

  private async listenAdmin(): Promise<void> {
    const c = this.config;
    const a = c.gateway.listeners.admin;
    this.admin = adminServer({
      state: () =>
        this.stopping
          ? 'draining'
          : [...this.entries.values()].filter((e) => e.ready).length >= this.o.count
            ? 'ready'
            : 'starting',
      metrics: async () => {
        const own = await this.o.registry.getMetricsAsJSON();
        const { metrics } = await this.collect();
        return { contentType: this.o.registry.contentType, text: exposition(aggregate([own, ...metrics])) };
      },
      balancers: this.o.balancers,
      catalog: this.o.catalog,
      local: this.o.source,
      allowedHosts: c.gateway.adminAllowedHosts,
      traffic: (windowMs) => this.traffic(windowMs),
      dashboard: {
        self: { cluster: c.cluster, gateway: c.name, locality: c.locality },
        links: () => this.o.linkReports.linkReports(),
      },
      config: () => ({
        cluster: c.cluster,
        locality: c.locality,
        workers: this.o.count,
        gateway: c.gateway,
        balancer: c.balancer,
      }),
      views: {
        '/debug/policy': () => this.policyState(),
        '/debug/workers': async () => ({
          supervisor: process.pid,
          desired: this.o.count,
          restarts: (await this.restarts.get()).values[0]?.value ?? 0,
          workers: (await this.collect()).stats.sort((x, y) => x.startedAtMs - y.startedAtMs),
        }),
      },
    });
    this.admin.listen(a.port, a.host);
    try {
      await Promise.race([
        once(this.admin, 'listening'),
        once(this.admin, 'error').then(([e]) => Promise.reject(e)),
      ]);
    } catch (err) {
      throw new MeshfedError(
        'MESHFED_GATEWAY_LISTEN',
        `listener admin cannot bind ${a.host}:${a.port}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  addresses(): Record<string, string> {
    const out = { ...this.bound };
    const a = this.admin?.address() as net.AddressInfo | null | undefined;
    if (a) out.admin = `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
    return out;
  }

  /** Every worker drains (notice, then in-flight requests within the bound), then exits. */
  async drain(timeoutMs: number, noticeMs = 0): Promise<void> {
    this.stopping = true;
    const exits = [...this.entries.values()].map((e) =>
      e.worker.isDead() ? Promise.resolve() : once(e.worker, 'exit').then(() => undefined),
    );
    this.broadcast({ t: 'drain', timeoutMs, noticeMs });
    // a worker stuck past the bound (and a grace for its own cleanup) is killed
    const deadline = setTimeout(
      () => {
        for (const e of this.entries.values()) e.worker.process.kill('SIGKILL');
      },
      noticeMs + timeoutMs + 5_000,
    );
    await Promise.all(exits);
    clearTimeout(deadline);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const u of this.unsubscribe.splice(0)) u();
    for (const e of this.entries.values()) e.worker.process.kill('SIGKILL');
    if (this.admin?.listening) {
      this.admin.closeAllConnections();
      await new Promise<void>((r) => this.admin!.close(() => r()));
    }
  }
}

/** What /debug/policy answers for a multi-process gateway. */
export interface WorkersPolicyState {
  /** the signed revision per scope the supervisor holds (federation verified it and hands it to the workers) */
  scopes: readonly PolicyScopeRevision[];
  /** every worker asked answered and enforces exactly `scopes` */
  inStep: boolean;
  /** each worker that answered, oldest first: its local generation, the scopes it enforces, and whether they are the supervisor's */
  workers: {
    pid: number;
    startedAtMs: number;
    generation: number;
    scopes: readonly PolicyScopeRevision[];
    inStep: boolean;
    services: number;
  }[];
  /** workers asked that did not answer in time */
  unanswered: number[];
  /** per service, what the oldest worker in step compiled (every worker in step compiled the same set) */
  services: PolicySummary['services'];
}

const sameScopes = (a: readonly PolicyScopeRevision[], b: readonly PolicyScopeRevision[]) =>
  a.length === b.length && a.every((s, i) => s.scope === b[i]!.scope && s.revision === b[i]!.revision);

export function workersPolicyState(
  scopes: readonly PolicyScopeRevision[],
  answers: readonly Extract<FromWorker, { t: 'policy-state' }>[],
  asked: readonly number[],
): WorkersPolicyState {
  const sorted = [...answers].sort((x, y) => x.startedAtMs - y.startedAtMs);
  const workers = sorted.map((a) => ({
    pid: a.pid,
    startedAtMs: a.startedAtMs,
    generation: a.policy?.generation ?? 0,
    scopes: a.policy?.scopes ?? [],
    inStep: a.policy !== null && sameScopes(a.policy.scopes, scopes),
    services: a.policy?.services.length ?? 0,
  }));
  const answered = new Set(answers.map((a) => a.pid));
  const unanswered = asked.filter((pid) => !answered.has(pid));
  const reference = sorted[workers.findIndex((w) => w.inStep)]?.policy;
  return {
    scopes,
    inStep: unanswered.length === 0 && workers.length > 0 && workers.every((w) => w.inStep),
    workers,
    unanswered,
    services: reference?.services ?? [],
  };
}
