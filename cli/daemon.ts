import { readFileSync, statSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { collectDefaultMetrics } from 'prom-client';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import {
  CertificateSource,
  type IssuedLeaf,
  type IssueLeafOptions,
  issueLeaf,
  TrustBundle,
} from '../ca/index.ts';
import {
  componentLogger,
  createLogger,
  createRegistry,
  Gauge,
  type Logger,
  isWildcardHost,
  MeshfedError,
  parseHostPort,
  type Registry,
} from '../core/index.ts';
import { createSinks, createSources, ImportReconciler } from '../discovery/index.ts';
import { FederationNode } from '../federation/index.ts';
import type { Balancers } from '../gateway/index.ts';
import { type Gateway, outboundLinks } from '../gateway/index.ts';
import { adminBackend } from './admin/admin-backend.ts';
import { AdminServer } from './admin/admin-server.ts';
import { IssuingCaDir } from './issuing-ca.ts';
import { issueLeafInChildProcess } from './leaf-issuer.ts';
import { watchTrustFiles } from './trust-watch.ts';
import { WorkerPool } from './worker-pool.ts';
import { createBalancers, createGateway } from './data-plane.ts';
import { planReload } from './config-reload.ts';
import { type LoadedDaemonConfig, loadDaemonConfig } from './daemon-config.ts';
import type { Telemetry } from './telemetry.ts';

/** Refuses environments that would silently turn TLS verification off. */
export function checkEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  if (env.NODE_TLS_REJECT_UNAUTHORIZED === '0') {
    throw new MeshfedError(
      'MESHFED_INSECURE_ENVIRONMENT',
      'NODE_TLS_REJECT_UNAUTHORIZED=0 turns TLS certificate verification off; meshfed refuses to start. Unset it.',
    );
  }
}

/** A private key readable by group or others is refused: mTLS identity must not leak. */
export function checkKeyFile(file: string): void {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CONFIG_UNREADABLE',
      `${file}: cannot read key file: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if ((mode & 0o077) !== 0) {
    throw new MeshfedError(
      'MESHFED_FILE_INSECURE',
      `${file}: private key is readable by other users (mode ${(mode & 0o777).toString(8)}); run: chmod 600 ${file}`,
    );
  }
}

function readTrustFile<T>(file: string, what: string, use: (pem: string) => T): T {
  try {
    return use(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `${file}: cannot load ${what}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/** how often the trust files are checked for changes, and how long they must be quiet before a reload */
const TRUST_POLL_MS = 2_000;
const TRUST_DEBOUNCE_MS = 500;

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
  private bundle!: TrustBundle;
  /** with identity.caDir: the intermediate this daemon issues its own leaves from */
  private issuingCa: IssuingCaDir | undefined;
  /** set while the leaves move to a new intermediate (reloadTrust) */
  private rotatingIntermediate = false;
  /** the trust reload under way: the next one starts after it */
  private trustReloads: Promise<unknown> = Promise.resolve();
  private unwatchTrust: (() => void) | undefined;
  gatewayIdentity!: CertificateSource;
  federationIdentity!: CertificateSource;
  source!: Awaited<ReturnType<typeof createSources>>;
  federation!: FederationNode;
  balancers!: Balancers;
  /** the data plane: this process's Gateway (workers: 1), or the supervisor of N worker processes */
  gateway!: Gateway | WorkerPool;
  private reconciler: ImportReconciler | undefined;
  private admin: AdminServer | undefined;
  private telemetry: Telemetry | undefined;
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
  }

  static fromFile(file: string, options: DaemonOptions = {}): Daemon {
    return new Daemon(loadDaemonConfig(file), options);
  }

  get config() {
    return this.loaded.config;
  }

  private loadBundle(): TrustBundle {
    const c = this.config;
    const file = c.identity.caDir
      ? join(this.loaded.path(c.identity.caDir), 'bundle.crt')
      : this.loaded.path(c.identity.bundle!);
    const bundle = readTrustFile(file, 'the trust bundle', (pem) => TrustBundle.fromPem(pem));
    if (c.identity.intermediates) {
      const extra = this.loaded.path(c.identity.intermediates);
      readTrustFile(extra, 'identity.intermediates', (pem) => bundle.addIntermediates(pem));
    }
    return bundle;
  }

  private async identities(): Promise<void> {
    const c = this.config;
    const bundle = () => this.bundle;
    if (c.identity.caDir) {
      const ca = new IssuingCaDir({
        dir: this.loaded.path(c.identity.caDir),
        trustDomain: c.trustDomain,
        checkKey: checkKeyFile,
      });
      await ca.reload();
      this.issuingCa = ca;
      const ttlMs = c.identity.leafTtl;
      // Leaves are issued in a child process (the certificate library stays out of this one), except right
      // after the intermediate changed (root rotation step 2): then both gateways of a link must move to
      // the new leaves within the reload, and a child's start-up (0.5-2 s on a busy host) let requests
      // race the rotation (test/e2e/root-rotation.test.ts lost some to upstream resets).
      const issue = (o: IssueLeafOptions) =>
        this.rotatingIntermediate ? issueLeaf(ca.current(), o) : issueLeafInChildProcess(ca.current(), o);
      this.gatewayIdentity = new CertificateSource({
        issue: () => issue({ kind: 'gateway', name: c.name, ttlMs }),
        bundle,
        logger: componentLogger(this.log, 'identity'),
      });
      this.federationIdentity = new CertificateSource({
        issue: () => issue({ kind: 'federation', ttlMs }),
        bundle,
        logger: componentLogger(this.log, 'identity'),
      });
    } else {
      const id = c.identity;
      checkKeyFile(this.loaded.path(id.gatewayKey!));
      checkKeyFile(this.loaded.path(id.federationKey!));
      this.gatewayIdentity = CertificateSource.fromFiles({
        certFile: this.loaded.path(id.gatewayCert!),
        keyFile: this.loaded.path(id.gatewayKey!),
        bundleFile: this.loaded.path(id.bundle!),
        logger: componentLogger(this.log, 'identity'),
      });
      this.federationIdentity = CertificateSource.fromFiles({
        certFile: this.loaded.path(id.federationCert!),
        keyFile: this.loaded.path(id.federationKey!),
        bundleFile: this.loaded.path(id.bundle!),
        logger: componentLogger(this.log, 'identity'),
      });
    }
    const onError = (err: unknown) =>
      this.log.error({ err }, 'certificate renewal failed; keeping the current one');
    this.gatewayIdentity.on('error', onError);
    this.federationIdentity.on('error', onError);
    this.gatewayIdentity.on('rotated', (leaf: IssuedLeaf) =>
      this.log.info(
        { cert: { spiffeId: leaf.spiffeId, serial: leaf.serial, notAfter: leaf.notAfter } },
        'gateway certificate rotated',
      ),
    );
    await this.gatewayIdentity.start();
    await this.federationIdentity.start();
  }

  /** the schema requires `advertise` whenever the east-west listener is a wildcard */
  private advertise(): string {
    const c = this.config;
    const a = c.advertise ?? c.gateway.listeners.eastWest;
    return `${a.host}:${a.port}`;
  }

  private metrics(): void {
    collectDefaultMetrics({ register: this.registry, prefix: 'meshfed_process_' });
    const self = this;
    new Gauge({
      name: 'meshfed_cert_expiry_seconds',
      help: 'seconds until the current certificate of each identity expires',
      labelNames: ['identity'],
      registers: [this.registry],
      collect() {
        for (const [name, src] of [
          ['gateway', self.gatewayIdentity],
          ['federation', self.federationIdentity],
        ] as const) {
          const leaf = src?.current();
          if (leaf) this.set({ identity: name }, (leaf.notAfter.getTime() - Date.now()) / 1000);
        }
      },
    });
    new Gauge({
      name: 'meshfed_nats_connected',
      help: '1 when the federation is connected to NATS',
      registers: [this.registry],
      collect() {
        this.set(self.federation?.natsStatus().connected ? 1 : 0);
      },
    });
    new Gauge({
      name: 'meshfed_catalog_services',
      help: 'services in the federated catalog, by serving cluster and staleness',
      labelNames: ['source_cluster', 'destination_cluster', 'stale'],
      registers: [this.registry],
      collect() {
        this.reset();
        if (!self.federation) return;
        for (const ref of self.federation.services()) {
          for (const inst of self.federation.instances(ref.namespace, ref.name)) {
            this.inc({
              source_cluster: self.config.cluster,
              destination_cluster: inst.cluster,
              stale: String(inst.stale),
            });
          }
        }
      },
    });
  }

  async start(): Promise<void> {
    const c = this.config;
    checkEnvironment();
    mkdirSync(this.loaded.path(c.stateDir), { recursive: true, mode: 0o700 });
    this.bundle = this.loadBundle();
    this.metrics();
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
    await this.identities();
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
        ? new WorkerPool({
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
    this.unwatchTrust = watchTrustFiles(this.trustFiles(), {
      pollMs: TRUST_POLL_MS,
      debounceMs: TRUST_DEBOUNCE_MS,
      onChange: () =>
        this.reloadTrust().then(
          (applied) => this.log.info({ applied }, 'trust files changed: reloaded'),
          (err: unknown) =>
            this.log.error({ err }, 'trust files changed but cannot be used; keeping the ones in use'),
        ),
    });
    this.log.info({ addresses: this.addresses(), advertise: address }, 'gateway started');
  }

  addresses(): Record<string, string> {
    const out: Record<string, string> = { ...this.gateway.addresses(), adminSocket: this.loaded.adminSocket };
    if (this.admin?.tcpPort) out.adminGrpc = `${this.config.admin.grpc!.host}:${this.admin.tcpPort}`;
    return out;
  }

  /**
   * Re-reads the trust material (SIGHUP, or one of its files changed): the bundle and identity.intermediates,
   * applied to every listener and pool at once, and with identity.caDir the cluster intermediate, from which
   * the leaves are re-issued when it changed (root rotation step 2). One reload at a time; a file that cannot
   * be used is refused (the error says which and why) and the material in use stays.
   */
  private reloadTrust(): Promise<string[]> {
    const next = this.trustReloads.then(async () => {
      const applied: string[] = [];
      this.bundle = this.loadBundle();
      this.gateway.trustChanged();
      this.admin?.credentialsChanged();
      applied.push('trust bundle re-read');
      if (await this.issuingCa?.reload()) {
        // a new intermediate: the leaves move to it now, not at their next renewal
        this.rotatingIntermediate = true;
        try {
          await Promise.all([this.gatewayIdentity.renewNow(), this.federationIdentity.renewNow()]);
        } finally {
          this.rotatingIntermediate = false;
        }
        applied.push('identity.caDir re-read: leaves re-issued');
      }
      return applied;
    });
    this.trustReloads = next.catch(() => undefined);
    return next;
  }

  /** The files reloadTrust() reads: a change to any of them reloads the trust material without SIGHUP. */
  private trustFiles(): string[] {
    const id = this.config.identity;
    const files = [id.intermediates ? this.loaded.path(id.intermediates) : undefined];
    if (id.caDir) {
      const dir = this.loaded.path(id.caDir);
      files.push(join(dir, 'bundle.crt'), join(dir, 'ca.crt'), join(dir, 'ca.key'));
    } else files.push(this.loaded.path(id.bundle!));
    return files.filter((f): f is string => f !== undefined);
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
   * SIGTERM: tell peers and clients to move (drainNotice, gateway/drain.ts) while still serving, stop
   * accepting, let in-flight requests finish within the bound, then leave. Nothing is withdrawn from the
   * federation: other gateways of this cluster may still serve these services, and the entries age out
   * (stale, then expired) if none does; peers stop choosing this gateway from its in-band drain notice.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.unwatchTrust?.();
    await this.gateway
      ?.drain(this.config.drainTimeout, this.config.drainNotice)
      .catch((err: unknown) => this.log.warn({ err }, 'drain failed'));
    await this.gateway?.stop();
    await this.admin?.stop();
    await this.reconciler?.stop();
    await this.federation?.stop();
    await this.source?.stop();
    this.gatewayIdentity?.stop();
    this.federationIdentity?.stop();
    this.balancers?.close();
    await this.telemetry?.shutdown();
    this.log.info('gateway stopped');
  }
}
