import {
  type Endpoint,
  type EndpointSource,
  type LocalService,
  type Logger,
  MeshfedError,
  PROTOCOLS,
  type Protocol,
  silentLogger,
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

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export interface ConsulSourceOptions {
  config: ConsulSourceConfig;
  log?: Logger;
}

interface ServiceWatch {
  abort: AbortController;
  /** what the last good health answer said */
  service: LocalService | undefined;
  answered: boolean;
}

/**
 * This cluster's services from a Consul agent. One blocking query follows the catalog's service
 * list; one blocking query per service follows its passing instances. Every loop keeps its own
 * X-Consul-Index (reset per Consul's rules) and backs off with jitter on errors; failures never
 * clear the last known set, and one shared FailureLog keeps a dead agent to a few log lines.
 */
export class ConsulSource implements EndpointSource {
  readonly name = 'consul';
  private readonly config: ConsulSourceConfig;
  private readonly log: Logger;
  private readonly holder: ServiceSetHolder;
  private readonly failures: FailureLog;
  private api: ConsulApi | undefined;
  private abort = new AbortController();
  private readonly watches = new Map<string, ServiceWatch>();
  /** tags per service name from the last catalog answer */
  private catalogTags = new Map<string, string[]>();
  private flushScheduled = false;
  private warnedFiltered = false;
  private readonly loops = new Set<Promise<void>>();
  private catalogSynced = false;

  constructor(options: ConsulSourceOptions) {
    this.config = options.config;
    this.log = (options.log ?? silentLogger()).child({ source: 'consul' });
    this.holder = new ServiceSetHolder((err) => this.log.error({ err }, 'a discovery listener threw'));
    this.failures = new FailureLog(this.log, 'reading services from Consul');
  }

  /** Starts the watch loops and returns at once; an unreachable agent is retried in the background. */
  async start(): Promise<void> {
    this.abort = new AbortController();
    this.api = new ConsulApi(this.config);
    this.track(this.catalogLoop(this.api, this.abort.signal));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    for (const w of this.watches.values()) w.abort.abort();
    await Promise.allSettled([...this.loops]);
    this.watches.clear();
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

  /** true once the service list was read and every service answered at least once. */
  get synced(): boolean {
    return this.catalogSynced && [...this.watches.values()].every((w) => w.answered);
  }

  private async catalogLoop(api: ConsulApi, signal: AbortSignal): Promise<void> {
    const backoff = this.backoff();
    let index = 0;
    while (!signal.aborted) {
      try {
        const res = await api.blockingGet<unknown>(
          (c, o) => c.catalog.service.list(o),
          'GET /v1/catalog/services',
          index,
          this.config.wait,
          signal,
        );
        const parsed = catalogServicesSchema.safeParse(res.body);
        if (!parsed.success) throw invalid('GET /v1/catalog/services', parsed.error);
        index = nextBlockingIndex(index, res.index);
        this.noteFiltered(res.filtered);
        backoff.reset();
        this.failures.success('catalog');
        this.syncWatches(api, parsed.data);
        this.catalogSynced = true;
      } catch (err) {
        if (signal.aborted) break;
        const delay = backoff.next();
        this.failures.failure(err, delay, 'catalog');
        await abortableDelay(delay, signal);
      }
    }
  }

  private syncWatches(api: ConsulApi, catalog: Record<string, string[] | null>): void {
    this.catalogTags = new Map(Object.entries(catalog).map(([k, v]) => [k, v ?? []]));
    let removed = false;
    for (const [name, w] of this.watches) {
      if (this.catalogTags.has(name)) continue;
      w.abort.abort();
      this.watches.delete(name);
      this.failures.success(name); // a watch that is gone cannot keep the source "failing"
      removed = true;
    }
    for (const name of this.catalogTags.keys()) {
      if (name === 'consul' || this.watches.has(name)) continue;
      const w: ServiceWatch = { abort: new AbortController(), service: undefined, answered: false };
      this.watches.set(name, w);
      const signal = AbortSignal.any([this.abort.signal, w.abort.signal]);
      this.track(this.serviceLoop(api, name, w, signal));
    }
    if (removed) this.scheduleFlush();
  }

  private async serviceLoop(
    api: ConsulApi,
    name: string,
    w: ServiceWatch,
    signal: AbortSignal,
  ): Promise<void> {
    const backoff = this.backoff();
    let index = 0;
    const what = `GET /v1/health/service/${name}?passing`;
    while (!signal.aborted) {
      try {
        const res = await api.blockingGet<unknown>(
          (c, o) => c.health.service({ ...o, service: name, passing: true }),
          what,
          index,
          this.config.wait,
          signal,
        );
        const parsed = healthSchema.safeParse(res.body);
        if (!parsed.success) throw invalid(what, parsed.error);
        if (signal.aborted) break;
        index = nextBlockingIndex(index, res.index);
        this.noteFiltered(res.filtered);
        backoff.reset();
        this.failures.success(name);
        w.answered = true;
        const next = this.toLocalService(name, parsed.data, w.service);
        if (JSON.stringify(next) !== JSON.stringify(w.service)) {
          w.service = next;
          this.scheduleFlush();
        }
      } catch (err) {
        if (signal.aborted) break;
        const delay = backoff.next();
        this.failures.failure(err, delay, name);
        await abortableDelay(delay, signal);
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

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // many watches answering in the same tick become one change
    setImmediate(() => {
      this.flushScheduled = false;
      const out: LocalService[] = [];
      for (const w of this.watches.values()) if (w.service) out.push(w.service);
      this.holder.set(out);
    });
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

function invalid(what: string, error: z.ZodError): MeshfedError {
  return new MeshfedError(
    'MESHFED_DISCOVERY_INVALID',
    `Consul answered ${what} with an unexpected shape: ${error.issues[0]?.message}`,
    {
      retryable: true,
      details: { operation: what },
    },
  );
}
