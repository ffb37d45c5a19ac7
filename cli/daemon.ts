import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { CertificateSource, TrustBundle } from '../ca/index.ts';
import {
  componentLogger,
  createLogger,
  createRegistry,
  type Logger,
  isWildcardHost,
  MeshfedError,
  parseHostPort,
  type Registry,
} from '../core/index.ts';
import { createSinks, createSources, ImportReconciler } from '../discovery/index.ts';
import { FederationNode } from '../federation/index.ts';
import type { Balancers } from '../gateway/index.ts';
import { Gateway, outboundLinks } from '../gateway/index.ts';
import { adminBackend } from './admin/admin-backend.ts';
import { AdminServer } from './admin/admin-server.ts';
import { planReload } from './config-reload.ts';
import { type LoadedDaemonConfig, loadDaemonConfig } from './daemon-config.ts';
import { registerDaemonMetrics } from './daemon-metrics.ts';
import { DaemonTrust } from './daemon-trust.ts';
import { createBalancers, createGateway, startIdleHeap } from './data-plane.ts';
import { type IdleHeap, NO_REQUESTS } from './idle-heap.ts';
import { checkEnvironment } from './startup-checks.ts';
import type { Telemetry } from './telemetry.ts';
import type { WorkerPool } from './worker-pool.ts';

export interface DaemonOptions {
  logger?: Logger;
  /** data-plane worker processes; overrides the config's `workers` (the --workers flag) */
  workers?: number;
  /** tests pass an in-memory span exporter */
  spanExporter?: SpanExporter;
  /** the process environment (POD_IP); read here, in the composition root, and nowhere else */
  env?: NodeJS.ProcessEnv;
}

/**
 * Where sinks point imported services, from the address the egress listener is bound to. Apps on
 * this host reach a wildcard listener at loopback; pods reach it at the pod IP when the Downward API
 * sets POD_IP.
 */
export function sinkEgress(
  bound: string,
  env: NodeJS.ProcessEnv,
): { egress: { host: string; port: number }; podEgress: { host: string; port: number } } {
  const parsed = parseHostPort(bound);
  if (!parsed) throw new MeshfedError('MESHFED_INTERNAL', `the egress listener reported address ${bound}`);
  const loopback = parsed.host.includes(':') ? '::1' : '127.0.0.1';
  const host = isWildcardHost(parsed.host) ? loopback : parsed.host;
  const egress = { host, port: parsed.port };
  return { egress, podEgress: env.POD_IP ? { host: env.POD_IP, port: parsed.port } : egress };
}

/** The gateway daemon: the composition root that wires identity, discovery, federation and data plane. */
export class Daemon {
  loaded: LoadedDaemonConfig;
  readonly log: Logger;
  readonly registry: Registry;
  private readonly options: DaemonOptions;
  private readonly startedAt = Date.now();
  /** the trust bundle and the gateway and federation identities, and their reload */
  private readonly trust: DaemonTrust;
  private unwatchTrust: (() => void) | undefined;
  source!: Awaited<ReturnType<typeof createSources>>;
  federation!: FederationNode;
  balancers!: Balancers;
  /** the data plane: this process's Gateway (workers: 1), or the supervisor of N worker processes */
  gateway!: Gateway | WorkerPool;
  private reconciler: ImportReconciler | undefined;
  private admin: AdminServer | undefined;
  private telemetry: Telemetry | undefined;
  /** this process's (with workers, the supervisor's; each worker runs its own) */
  private idleHeap: IdleHeap | undefined;
  private stopping = false;

  constructor(loaded: LoadedDaemonConfig, options: DaemonOptions = {}) {
    this.loaded = loaded;
    this.options = options;
    const c = loaded.config;
    this.log =
      options.logger ??
      createLogger({
        level: c.observability.logLevel,
        base: { pid: process.pid, cluster: c.cluster, gateway: c.name },
      });
    this.registry = createRegistry();
    this.trust = new DaemonTrust({ loaded: () => this.loaded, log: this.log });
  }

  static fromFile(file: string, options: DaemonOptions = {}): Daemon {
    return new Daemon(loadDaemonConfig(file), options);
  }

  get config() {
    return this.loaded.config;
  }

  get gatewayIdentity(): CertificateSource {
    return this.trust.gatewayIdentity;
  }

  get federationIdentity(): CertificateSource {
    return this.trust.federationIdentity;
  }

  private get bundle(): TrustBundle {
    return this.trust.bundle;
  }

  /** the schema requires `advertise` whenever the east-west listener is a wildcard */
  private advertise(): string {
    const c = this.config;
    const a = c.advertise ?? c.gateway.listeners.eastWest;
    return `${a.host}:${a.port}`;
  }

  async start(): Promise<void> {
    const c = this.config;
    checkEnvironment();
    mkdirSync(this.loaded.path(c.stateDir), { recursive: true, mode: 0o700 });
    this.trust.loadBundle();
    registerDaemonMetrics(this.registry, {
      gatewayIdentity: () => this.trust.gatewayIdentity,
      federationIdentity: () => this.trust.federationIdentity,
      federation: () => this.federation,
      cluster: () => this.config.cluster,
    });
    if (c.observability.tracing.exporter !== 'none' || this.options.spanExporter) {
      // the OpenTelemetry SDK is large: load it only when tracing is on
      const { startTelemetry } = await import('./telemetry.ts');
      this.telemetry = startTelemetry({
        config: c.observability.tracing,
        serviceName: 'meshfed-gateway',
        cluster: c.cluster,
        gateway: c.name,
        ...(this.options.spanExporter ? { exporter: this.options.spanExporter } : {}),
      });
    }
    await this.trust.startIdentities();
    const discoveryLog = componentLogger(this.log, 'discovery', c.cluster);
    const basePath = this.loaded.path('.');
    this.source = await createSources(c.discovery, {
      logger: discoveryLog,
      registry: this.registry,
      basePath,
    });
    await this.source.start();
    const address = this.advertise();
    this.federation = new FederationNode({
      config: {
        ...c.federation,
        stateDir: this.loaded.path(c.federation.stateDir ?? join(c.stateDir, 'catalog')),
      },
      cluster: c.cluster,
      trustDomain: c.trustDomain,
      locality: c.locality,
      gateways: [{ name: c.name, address, locality: c.locality }],
      signer: this.federationIdentity,
      bundle: () => this.bundle,
      source: this.source,
      // what this gateway reports on links.<cluster>: its outbound calls per destination cluster
      links: async (windowMs) => (this.gateway ? outboundLinks(await this.gateway.traffic(windowMs)) : []),
      logger: componentLogger(this.log, 'federation', c.cluster),
      registry: this.registry,
      now: Date.now,
      // peers learn of this gateway only once its listeners accept (advertise() below)
      advertise: false,
    });
    await this.federation.start();
    const workers = this.options.workers ?? c.workers;
    const inputs = {
      config: c,
      catalog: this.federation,
      policy: this.federation.policy,
      linkReports: this.federation,
      local: this.source,
      registry: this.registry,
      log: this.log,
    };
    // with workers, these balancers only explain routes: the workers' own balancers report the metrics
    this.balancers = createBalancers(inputs, workers > 1 ? createRegistry() : this.registry);
    this.gateway =
      workers > 1
        ? new (await import('./worker-pool.ts')).WorkerPool({
            count: workers,
            config: c,
            identity: this.gatewayIdentity,
            trust: () => ({
              roots: this.bundle.toPem(),
              intermediates: this.bundle
                .intermediates()
                .map((x) => x.toString())
                .join(''),
            }),
            source: this.source,
            catalog: this.federation,
            policy: this.federation.policy,
            linkReports: this.federation,
            balancers: this.balancers,
            registry: this.registry,
            logger: componentLogger(this.log, 'workers', c.cluster),
          })
        : createGateway({
            ...inputs,
            identity: this.gatewayIdentity,
            bundle: () => this.bundle,
            balancers: this.balancers,
            tracer: this.telemetry?.tracer,
          });
    await this.gateway.start();
    // a supervisor of workers shrinks too: it holds the catalog, the federation and the admin API
    this.idleHeap = startIdleHeap(
      this.gateway instanceof Gateway ? this.gateway.requestActivity : NO_REQUESTS,
      inputs,
    );
    this.federation.advertise();
    // the address the egress listener actually bound, so registrations can never disagree with it
    const sinks = await createSinks(c.discovery, {
      logger: discoveryLog,
      basePath,
      gatewayId: c.name,
      ...sinkEgress(this.gateway.addresses().egress!, this.options.env ?? process.env),
    });
    if (sinks.length > 0) {
      this.reconciler = new ImportReconciler({
        cluster: c.cluster,
        catalog: this.federation,
        sinks,
        debounceMs: c.discovery.importDebounce,
        resyncMs: c.discovery.resyncInterval,
        logger: componentLogger(this.log, 'imports', c.cluster),
        registry: this.registry,
      });
      await this.reconciler.start();
    }
    this.admin = new AdminServer({
      backend: adminBackend({
        config: () => this.config,
        startedAt: this.startedAt,
        identity: this.gatewayIdentity,
        bundle: () => this.bundle,
        source: this.source,
        federation: this.federation,
        balancers: this.balancers,
        traffic: (windowMs) => this.gateway.traffic(windowMs),
        addresses: () => this.addresses(),
        advertise: this.advertise(),
      }),
      socketPath: this.loaded.adminSocket,
      logger: componentLogger(this.log, 'admin', c.cluster),
      onActivity: () => this.idleHeap?.touch(),
      ...(c.admin.grpc
        ? {
            tcp: {
              ...c.admin.grpc,
              leaf: () => this.gatewayIdentity.current(),
              bundle: () => this.bundle,
              trustDomain: c.trustDomain,
            },
          }
        : {}),
    });
    await this.admin.start();
    this.gatewayIdentity.on('rotated', () => this.admin?.credentialsChanged());
    this.unwatchTrust = this.trust.watch(() =>
      this.reloadTrust().then(
        (applied) => this.log.info({ applied }, 'trust files changed: reloaded'),
        (err: unknown) =>
          this.log.error({ err }, 'trust files changed but cannot be used; keeping the ones in use'),
      ),
    );
    this.log.info({ addresses: this.addresses(), advertise: address }, 'gateway started');
  }

  addresses(): Record<string, string> {
    const out: Record<string, string> = { ...this.gateway.addresses(), adminSocket: this.loaded.adminSocket };
    if (this.admin?.tcpPort) out.adminGrpc = `${this.config.admin.grpc!.host}:${this.admin.tcpPort}`;
    return out;
  }

  /** Re-reads the trust material (DaemonTrust.reload) and applies a new bundle to every listener and pool. */
  private reloadTrust(): Promise<string[]> {
    return this.trust.reload(() => {
      this.gateway.trustChanged();
      this.admin?.credentialsChanged();
    });
  }

  /**
   * SIGHUP: re-read the config and the trust material; apply what can change live
   * (LIVE_CONFIG_KEYS, cli/config-reload.ts, and the trust bundle). Any other changed key is refused and named: the
   * process keeps running on its value, so `status` and the config dump describe what actually
   * runs. An invalid file throws MESHFED_CONFIG_INVALID and changes nothing.
   */
  async reload(): Promise<{ applied: string[]; needsRestart: string[] }> {
    const plan = planReload(this.config, loadDaemonConfig(this.loaded.file).config);
    const { applied, needsRestart } = plan;
    this.log.level = plan.config.observability.logLevel;
    applied.push(...(await this.reloadTrust()));
    // only the live keys move; paths, socket and everything else stay those of the running process
    this.loaded = { ...this.loaded, config: plan.config };
    if (needsRestart.length > 0) {
      this.log.warn(
        { needsRestart },
        `configuration reloaded, but ${needsRestart.join(', ')} changed and needs a restart; still running on the previous value`,
      );
    }
    this.log.info({ applied, needsRestart }, 'configuration reloaded');
    return { applied, needsRestart };
  }

  /**
   * SIGTERM: withdraw this gateway from the catalog by name, tell peers and clients to move (drainNotice,
   * gateway/drain.ts) while still serving, stop accepting, let in-flight requests finish within the bound, then
   * leave. Only this gateway is withdrawn, not the services: the cluster's other gateways stay in its offers,
   * and the entries age out (stale, then expired) if none is left. Peers of older versions, which do not read
   * withdrawals, stop choosing it from its in-band drain notice.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.unwatchTrust?.();
    this.idleHeap?.stop();
    await this.federation?.withdrawGateway();
    await this.gateway
      ?.drain(this.config.drainTimeout, this.config.drainNotice)
      .catch((err: unknown) => this.log.warn({ err }, 'drain failed'));
    await this.gateway?.stop();
    await this.admin?.stop();
    await this.reconciler?.stop();
    await this.federation?.stop();
    await this.source?.stop();
    this.trust.gatewayIdentity?.stop();
    this.trust.federationIdentity?.stop();
    this.balancers?.close();
    await this.telemetry?.shutdown();
    this.log.info('gateway stopped');
  }
}
