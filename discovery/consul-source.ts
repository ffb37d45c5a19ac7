import {
  type Endpoint,
  type EndpointSource,
  type LocalService,
  type Logger,
  MeshfedError,
  PROTOCOLS,
  type Protocol,
  z,
} from '../core/index.ts';
import { abortableDelay, Backoff, FailureLog } from './backoff.ts';
import type { ConsulSourceConfig } from './config.ts';
import { ConsulApi, nextBlockingIndex } from './consul-client.ts';
import { ServiceSetHolder } from './service-set.ts';

/** Meta keys meshfed reads on Consul services (and writes on the ones its sink registers). */
export const CONSUL_META = {
  managed: 'meshfed-managed',
  owner: 'meshfed-owner',
  clusters: 'meshfed-clusters',
  namespace: 'meshfed-namespace',
  service: 'meshfed-service',
  protocol: 'meshfed-protocol',
  portName: 'meshfed-port-name',
  port: 'meshfed-port',
  zone: 'meshfed-zone',
} as const;

const catalogServicesSchema = z.record(z.string(), z.array(z.string()).nullable());
const healthEntrySchema = z.object({
  Node: z.object({ Node: z.string(), Address: z.string(), Meta: z.record(z.string(), z.string()).nullish() }),
  Service: z.object({
    ID: z.string(),
    Service: z.string(),
    Tags: z.array(z.string()).nullish(),
    Address: z.string().nullish(),
    Meta: z.record(z.string(), z.string()).nullish(),
    Port: z.number().int().min(0).max(65535),
  }),
  Checks: z.array(z.object({ Status: z.string() })).nullish(),
});
const healthSchema = z.array(healthEntrySchema);
type HealthEntry = z.output<typeof healthEntrySchema>;

const MIN_CALL_INTERVAL_MS = 20;
/** how long a registration change waits for the checks loop to name the service it touched */
const CHECKS_GRACE_MS = 300;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export interface ConsulSourceOptions {
  config: ConsulSourceConfig;
  log: Logger;
}

const checksSchema = z.array(
  z.object({
    CheckID: z.string(),
    Status: z.string(),
    ServiceID: z.string().nullish(),
    ServiceName: z.string().nullish(),
    ModifyIndex: z.number().nullish(),
  }),
);

/**
 * This cluster's services from a Consul agent, with a fixed number of connections however many
 * services there are (Consul limits each client to 200 by default, http_max_conns_per_client):
 *
 * - a blocking query on /v1/catalog/services follows which services exist (and their tags);
 * - a blocking query on /v1/health/state/any follows every check, so a health change, a new
 *   instance or a removed one names the services it touched;
 * - the touched services are re-read with /v1/health/service/<name>?passing by a small worker
 *   pool; a registration that moved no check (an instance without checks) re-reads all of them,
 *   and so does a periodic resync.
 *
 * Each long poll keeps its own X-Consul-Index (reset per Consul's rules) and backs off with
 * jitter on errors; failures never clear the last known set, and one keyed FailureLog keeps a
 * dead agent to a few log lines.
 */
export class ConsulSource implements EndpointSource {
  readonly name = 'consul';
  private readonly config: ConsulSourceConfig;
  private readonly log: Logger;
  private readonly holder: ServiceSetHolder;
  private readonly failures: FailureLog;
  private api: ConsulApi | undefined;
  private abort = new AbortController();
  private readonly loops = new Set<Promise<void>>();
  /** tags per service name from the last catalog answer */
  private catalogTags = new Map<string, string[]>();
  /** last good LocalService per Consul service name (undefined: known, nothing to report) */
  private readonly services = new Map<string, LocalService | undefined>();
  /** per service, a signature of its checks from the last health/state answer */
  private checkSignatures = new Map<string, string>();
  private readonly dirty = new Set<string>();
  private inFlight = 0;
  private catalogAnswered = false;
  private checksAnswered = false;
  private flushScheduled = false;
  private warnedFiltered = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private readBackoff: Backoff;
  private readRetry: NodeJS.Timeout | undefined;
  /** reads of single services, for tests and the bench */
  readonly stats = { serviceReads: 0, resyncs: 0, fullReads: 0 };
  /** highest X-Consul-Index the checks loop has seen */
  private checksIndex = 0;

  constructor(options: ConsulSourceOptions) {
    this.config = options.config;
    this.log = options.log.child({ source: 'consul' });
    this.holder = new ServiceSetHolder((err) => this.log.error({ err }, 'a discovery listener threw'));
    this.failures = new FailureLog(this.log, 'reading services from Consul');
    this.readBackoff = this.backoff();
  }

  /** Starts the watch loops and returns at once; an unreachable agent is retried in the background. */
  async start(): Promise<void> {
    this.abort = new AbortController();
    const api = new ConsulApi(this.config);
    this.api = api;
    this.track(this.catalogLoop(api, this.abort.signal));
    this.track(this.checksLoop(api, this.abort.signal));
    if (this.config.resync > 0) {
      this.resyncTimer = setInterval(() => {
        this.stats.resyncs++;
        for (const name of this.catalogTags.keys()) if (name !== 'consul') this.dirty.add(name);
        this.pump();
      }, this.config.resync);
      this.resyncTimer.unref();
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    if (this.readRetry) clearTimeout(this.readRetry);
    await Promise.allSettled([...this.loops]);
    this.api?.destroy();
  }

  private track(loop: Promise<void>): void {
    this.loops.add(loop);
    void loop.finally(() => this.loops.delete(loop));
  }

  current(): readonly LocalService[] {
    return this.holder.current();
  }

  onChange(listener: (services: readonly LocalService[]) => void): () => void {
    return this.holder.onChange(listener);
  }

  /** true once both long polls answered and every service they named has been read. */
  get synced(): boolean {
    return this.catalogAnswered && this.checksAnswered && this.dirty.size === 0 && this.inFlight === 0;
  }

  /** One blocking-query loop: index bookkeeping, validation, back-off and failure logging. */
  private async longPoll<T>(
    api: ConsulApi,
    key: string,
    what: string,
    call: (c: ConsulApi['consul'], o: Record<string, unknown>) => Promise<unknown>,
    schema: z.Schema<T>,
    onAnswer: (body: T, index: number) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const backoff = this.backoff();
    let index = 0;
    let lastCall = 0;
    while (!signal.aborted) {
      // Consul's docs ask blocking-query clients to rate-limit: an index that moves constantly
      // must not turn this loop into a hot loop against the agent (at most one call per 20 ms)
      const since = Date.now() - lastCall;
      if (since < MIN_CALL_INTERVAL_MS) await abortableDelay(MIN_CALL_INTERVAL_MS - since, signal);
      lastCall = Date.now();
      try {
        const res = await api.blockingGet<unknown>(call, what, index, this.config.wait, signal);
        if (signal.aborted) break;
        const parsed = schema.safeParse(res.body);
        if (!parsed.success) throw invalid(what, parsed.error);
        const changed = res.index !== index;
        index = nextBlockingIndex(index, res.index);
        this.noteFiltered(res.filtered);
        backoff.reset();
        this.failures.success(key);
        // a wait that expired with the same index carries nothing new
        if (changed) onAnswer(parsed.data, res.index);
      } catch (err) {
        if (signal.aborted) break;
        const delay = backoff.next();
        this.failures.failure(err, delay, key);
        await abortableDelay(delay, signal);
      }
    }
  }

  private catalogLoop(api: ConsulApi, signal: AbortSignal): Promise<void> {
    return this.longPoll(
      api,
      'catalog',
      'GET /v1/catalog/services',
      (c, o) => c.catalog.service.list(o),
      catalogServicesSchema,
      (catalog, catalogIndex) => {
        const first = !this.catalogAnswered;
        const next = new Map(Object.entries(catalog).map(([k, v]) => [k, v ?? []] as [string, string[]]));
        next.delete('consul');
        let removed = false;
        for (const name of this.services.keys()) {
          if (next.has(name)) continue;
          this.services.delete(name);
          this.dirty.delete(name);
          removed = true;
        }
        for (const [name, tags] of next) {
          const prev = this.catalogTags.get(name);
          // new services, and services whose tags changed (export opt-in by tag), are re-read
          if (!prev || prev.join(',') !== tags.join(',')) this.dirty.add(name);
        }
        this.catalogTags = next;
        this.catalogAnswered = true;
        if (removed) this.scheduleFlush();
        if (!first) this.verifyCoveredByChecks(catalogIndex);
        this.pump();
      },
      signal,
    );
  }

  private checksLoop(api: ConsulApi, signal: AbortSignal): Promise<void> {
    return this.longPoll(
      api,
      'checks',
      'GET /v1/health/state/any',
      (c, o) => c.health.state({ ...o, state: 'any' }),
      checksSchema,
      (checks, checksIndex) => {
        const parts = new Map<string, string[]>();
        for (const c of checks) {
          if (!c.ServiceName) continue; // node-level checks (serfHealth)
          const list = parts.get(c.ServiceName) ?? [];
          list.push(`${c.ServiceID}|${c.CheckID}|${c.Status}|${c.ModifyIndex ?? ''}`);
          parts.set(c.ServiceName, list);
        }
        const next = new Map<string, string>();
        for (const [name, list] of parts) next.set(name, list.sort().join(';'));
        for (const [name, sig] of next) if (this.checkSignatures.get(name) !== sig) this.dirty.add(name);
        for (const name of this.checkSignatures.keys()) if (!next.has(name)) this.dirty.add(name);
        this.checkSignatures = next;
        this.checksAnswered = true;
        this.checksIndex = Math.max(this.checksIndex, checksIndex);
        this.pump();
      },
      signal,
    );
  }

  /**
   * A registration change moves the catalog's index; if it wrote or removed a check, the checks
   * index moves to the same raft index and the checks loop names the service. If the checks index
   * has not caught up shortly after, the change was to an instance without checks, which names no
   * service: re-read them all (bounded by the read pool) rather than wait for the next resync.
   */
  private verifyCoveredByChecks(catalogIndex: number): void {
    if (this.checksIndex >= catalogIndex) return;
    const timer = setTimeout(() => {
      if (this.abort.signal.aborted || this.checksIndex >= catalogIndex) return;
      this.stats.fullReads++;
      for (const name of this.catalogTags.keys()) this.dirty.add(name);
      this.pump();
    }, CHECKS_GRACE_MS);
    timer.unref();
  }

  /** Keeps up to `concurrency` single-service reads running while services are dirty. */
  private pump(): void {
    const api = this.api;
    if (!api || this.abort.signal.aborted || this.readRetry) return;
    while (this.inFlight < this.config.concurrency && this.dirty.size > 0) {
      const name = this.dirty.values().next().value as string;
      this.dirty.delete(name);
      // a service the catalog no longer lists needs no read: it is gone
      if (this.catalogAnswered && !this.catalogTags.has(name)) continue;
      this.inFlight++;
      void this.read(api, name).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async read(api: ConsulApi, name: string): Promise<void> {
    const what = `GET /v1/health/service/${name}?passing`;
    this.stats.serviceReads++;
    try {
      const body = await api.call<unknown>(
        (c, o) => c.health.service({ ...o, service: name, passing: true }),
        what,
      );
      const parsed = healthSchema.safeParse(body);
      if (!parsed.success) throw invalid(what, parsed.error);
      this.failures.success('reads');
      this.readBackoff.reset();
      if (!this.catalogTags.has(name) && this.catalogAnswered) return;
      const prev = this.services.get(name);
      const next = this.toLocalService(name, parsed.data, prev);
      if (JSON.stringify(next) !== JSON.stringify(prev) || !this.services.has(name)) {
        this.services.set(name, next);
        this.scheduleFlush();
      }
    } catch (err) {
      if (this.abort.signal.aborted) return;
      // keep the last known state of this service and read it again after a back-off
      this.dirty.add(name);
      if (!this.readRetry) {
        const delay = this.readBackoff.next();
        this.failures.failure(err, delay, 'reads');
        this.readRetry = setTimeout(() => {
          this.readRetry = undefined;
          this.pump();
        }, delay);
      }
    }
  }

  /** Turns one service's passing instances into a LocalService (undefined: not ours to report). */
  private toLocalService(
    name: string,
    entries: HealthEntry[],
    previous: LocalService | undefined,
  ): LocalService | undefined {
    // imports registered by any meshfed sink are never re-exported (that would loop)
    const own = entries.filter((e) => e.Service.Meta?.[CONSUL_META.managed] !== 'true');
    const tags = this.catalogTags.get(name) ?? [];
    const tagExported = tags.includes(this.config.exportTag);
    if (own.length === 0) {
      if (entries.length > 0) return undefined;
      // no passing instance: keep the service (weight 0) if it was known or is tagged for export
      if (previous) return { ...previous, endpoints: [], exported: previous.exported || tagExported };
      return undefined;
    }
    const meta = (k: string) => own.map((e) => e.Service.Meta?.[k]).find((v) => v !== undefined && v !== '');
    const exported =
      tagExported ||
      own.some(
        (e) =>
          e.Service.Tags?.includes(this.config.exportTag) ||
          e.Service.Meta?.[this.config.exportTag] === 'true',
      );
    const ns = meta(CONSUL_META.namespace);
    const namespace = ns !== undefined && DNS_LABEL.test(ns) ? ns : this.config.namespace;
    const proto = meta(CONSUL_META.protocol);
    const protocol: Protocol = PROTOCOLS.includes(proto as Protocol) ? (proto as Protocol) : 'tcp';
    const portName = meta(CONSUL_META.portName) ?? protocol;
    const metaPort = Number(meta(CONSUL_META.port));
    const port =
      Number.isInteger(metaPort) && metaPort > 0 && metaPort < 65536 ? metaPort : own[0]!.Service.Port;
    const endpoints: Endpoint[] = own.map((e) => {
      const ep: Endpoint = {
        host: e.Service.Address || e.Node.Address,
        ports: { [portName]: e.Service.Port },
        healthy: (e.Checks ?? []).every((c) => c.Status === 'passing'),
      };
      const zone = e.Service.Meta?.[CONSUL_META.zone] || e.Node.Meta?.zone;
      if (zone) ep.zone = zone;
      return ep;
    });
    return {
      namespace,
      name,
      ports: [{ name: portName, port, protocol }],
      endpoints,
      exported,
      source: 'consul',
    };
  }

  /**
   * Publishes the set once the reads in progress are done, or at the latest 100 ms after the first
   * pending change: a resync of 1,000 services becomes a handful of notifications, not 1,000.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const started = Date.now();
    const attempt = () => {
      if (this.abort.signal.aborted) return;
      if ((this.inFlight > 0 || this.dirty.size > 0) && Date.now() - started < 100) {
        setTimeout(attempt, 5);
        return;
      }
      this.flushScheduled = false;
      const out: LocalService[] = [];
      for (const svc of this.services.values()) if (svc) out.push(svc);
      this.holder.set(out);
    };
    setImmediate(attempt);
  }

  private noteFiltered(filtered: boolean): void {
    if (filtered && !this.warnedFiltered) {
      this.warnedFiltered = true;
      this.log.warn(
        'Consul filtered results by ACL: the token lacks service:read/node:read; set token or tokenFile (see deploy/consul/meshfed-policy.hcl)',
      );
    }
  }

  private backoff(): Backoff {
    return new Backoff({ minMs: this.config.backoff.min, maxMs: this.config.backoff.max });
  }
}

function invalid(what: string, error: z.SchemaError): MeshfedError {
  return new MeshfedError(
    'MESHFED_DISCOVERY_INVALID',
    `Consul answered ${what} with an unexpected shape: ${error.issues[0]?.message}`,
    {
      retryable: true,
      details: { operation: what },
    },
  );
}
