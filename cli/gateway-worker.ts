import cluster from 'node:cluster';
import { CertificateSource, type IssuedLeaf, TrustBundle } from '../ca/index.ts';
import {
  componentLogger,
  createLogger,
  createRegistry,
  type MetricFamily,
  type Registry,
  registerProcessMetrics,
} from '../core/index.ts';
import { createBalancers, createGateway, startIdleHeap } from './data-plane.ts';
import type { Telemetry } from './telemetry.ts';
import {
  type FromWorker,
  MirroredCatalog,
  MirroredPolicy,
  MirroredSource,
  type ToWorker,
  type TrustMaterial,
  type WorkerStats,
} from './worker-protocol.ts';

function send(m: FromWorker): void {
  process.send?.(m);
}

export function trustBundleOf(t: TrustMaterial): TrustBundle {
  const bundle = TrustBundle.fromPem(t.roots);
  if (t.intermediates) bundle.addIntermediates(t.intermediates);
  return bundle;
}

/** Sums a metric's values in a registry's JSON (requests, connections) for the supervisor's worker view. */
function total(metrics: readonly MetricFamily[], name: string): number {
  return (metrics.find((m) => m.name === name)?.values ?? []).reduce((sum, v) => sum + v.value, 0);
}

/**
 * One data-plane worker of a multi-process gateway (`workers: N`). The supervisor owns identity,
 * discovery and federation and streams what the data plane needs over the IPC channel: the gateway
 * leaf, the trust bundle, this cluster's services and the federated catalog. The worker binds the
 * data-plane ports with SO_REUSEPORT beside its siblings and drains when the supervisor says so, or
 * when the supervisor is gone.
 */
export async function runWorker(): Promise<number> {
  const messages: ToWorker[] = [];
  let wake: (() => void) | undefined;
  const queue = (m: ToWorker) => {
    messages.push(m);
    wake?.();
  };
  process.on('message', queue);
  // signals reach the whole process group: the supervisor coordinates the drain, not each worker
  const ignore = () => undefined;
  process.on('SIGTERM', ignore);
  process.on('SIGINT', ignore);
  send({ t: 'hello' });
  // what the supervisor broadcast before our init (catalog changes, say) is in init already: drop it. Wait
  // only when nothing is queued: init may have arrived together with the messages before it.
  while (messages[0]?.t !== 'init') {
    if (messages.length > 0) {
      messages.shift();
      continue;
    }
    await new Promise<void>((r) => {
      wake = r;
    });
  }
  const init = messages.shift() as Extract<ToWorker, { t: 'init' }>;
  const c = init.config;
  const log = createLogger({
    level: c.observability.logLevel,
    base: { pid: process.pid, cluster: c.cluster, gateway: c.name, worker: cluster.worker?.id ?? 0 },
  });
  const startedAtMs = Date.now();
  const registry: Registry = createRegistry();
  registerProcessMetrics(registry);
  let bundle = trustBundleOf(init.trust);
  let leaf: IssuedLeaf = init.leaf;
  const identity = new CertificateSource({
    issue: async () => leaf,
    bundle: () => bundle,
    logger: componentLogger(log, 'identity'),
  });
  await identity.start();
  const catalog = new MirroredCatalog(init.instances, init.clusters);
  const policy = new MirroredPolicy(init.policy);
  const local = new MirroredSource(init.local);
  let telemetry: Telemetry | undefined;
  if (c.observability.tracing.exporter !== 'none') {
    const { startTelemetry } = await import('./telemetry.ts');
    telemetry = startTelemetry({
      config: c.observability.tracing,
      serviceName: 'meshfed-gateway',
      cluster: c.cluster,
      gateway: c.name,
    });
  }
  const inputs = { config: c, catalog, policy, local, registry, log };
  const balancers = createBalancers(inputs);
  const gateway = createGateway(
    { ...inputs, identity, bundle: () => bundle, balancers, tracer: telemetry?.tracer },
    { reusePort: true, adminListener: false },
  );
  try {
    await gateway.start();
  } catch (err) {
    send({ t: 'failed', message: (err as Error).message });
    return 1;
  }
  send({ t: 'ready', addresses: gateway.addresses() });
  const idleHeap = startIdleHeap(gateway.requestActivity, inputs);

  let drainMs: number | undefined;
  let noticeMs: number | undefined;
  const stopped = new Promise<void>((resolve) => {
    const handle = (m: ToWorker) => {
      switch (m.t) {
        case 'leaf':
          leaf = m.leaf;
          // a leaf the TLS contexts cannot take is logged; the worker keeps serving with the one it has
          identity
            .renewNow()
            .catch((err: Error) => log.error({ err }, 'the new gateway certificate could not be used'));
          return;
        case 'trust':
          try {
            bundle = trustBundleOf(m.trust);
          } catch (err) {
            log.error({ err }, 'the new trust bundle cannot be used; keeping the current one');
            return;
          }
          gateway.trustChanged();
          return;
        case 'local':
          local.set(m.services);
          return;
        case 'catalog':
          catalog.apply(m.changes);
          return;
        case 'policy':
          policy.apply(m.policy);
          return;
        case 'stats':
          void registry.getMetricsAsJSON().then(
            (metrics) => {
              const stats: WorkerStats = {
                pid: process.pid,
                requests: total(metrics, 'meshfed_requests_total'),
                connections: total(metrics, 'meshfed_active_connections'),
                startedAtMs,
              };
              send({ t: 'stats', id: m.id, stats, metrics, traffic: gateway.traffic(m.windowMs) });
            },
            (err: Error) =>
              log.warn(
                { err },
                'metrics collection failed; the supervisor gets no stats from this worker this time',
              ),
          );
          return;
        case 'policy-state':
          send({
            t: 'policy-state',
            id: m.id,
            pid: process.pid,
            startedAtMs,
            policy: gateway.policySummary() ?? null,
          });
          return;
        case 'drain':
          drainMs = m.timeoutMs;
          noticeMs = m.noticeMs;
          resolve();
          return;
        case 'init':
          return;
      }
    };
    for (const m of messages.splice(0)) handle(m);
    wake = undefined;
    process.off('message', queue);
    process.on('message', handle);
    // the supervisor is gone (killed): nobody will restart us or route our metrics; leave cleanly
    process.once('disconnect', () => resolve());
  });
  await stopped;
  idleHeap.stop();
  await gateway
    .drain(drainMs ?? c.drainTimeout, noticeMs ?? c.drainNotice)
    .catch((err: unknown) => log.warn({ err }, 'drain failed'));
  await gateway.stop();
  balancers.close();
  identity.stop();
  await telemetry?.shutdown();
  log.info('worker stopped');
  return 0;
}
