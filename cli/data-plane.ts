import type { Tracer } from '@opentelemetry/api';
import type { CertificateSource, TrustBundle } from '../ca/index.ts';
import {
  type CatalogView,
  componentLogger,
  type EndpointSource,
  type LinkReportView,
  type Logger,
  type PolicyView,
  type Registry,
} from '../core/index.ts';
import { Balancers } from '../gateway/index.ts';
import { Gateway, type GatewayOptions } from '../gateway/index.ts';
import type { DaemonConfig } from './daemon-config.ts';
import { IdleHeap, lastResortCollection, type RequestActivity } from './idle-heap.ts';

/**
 * What a data plane is built from: the daemon config and the views of the control plane (the daemon's
 * own, or a worker's mirrors of the supervisor's).
 */
export interface DataPlaneInputs {
  config: DaemonConfig;
  catalog: CatalogView;
  /** the federated policy in force (the daemon's FederationNode, or a worker's mirror) */
  policy: PolicyView;
  /** the other clusters' link reports for the dashboard (the daemon's FederationNode; workers serve no dashboard) */
  linkReports?: LinkReportView;
  local: EndpointSource;
  registry: Registry;
  /** the process's logger; each component gets its child */
  log: Logger;
}

export function createBalancers(i: DataPlaneInputs, registry: Registry = i.registry): Balancers {
  const c = i.config;
  return new Balancers({
    cluster: c.cluster,
    locality: c.locality,
    catalog: i.catalog,
    local: i.local,
    config: c.balancer,
    registry,
    logger: componentLogger(i.log, 'balancer', c.cluster),
  });
}

export function createGateway(
  i: DataPlaneInputs & {
    identity: CertificateSource;
    bundle: () => TrustBundle;
    balancers: Balancers;
    tracer: Tracer | undefined;
  },
  worker: Pick<GatewayOptions, 'reusePort' | 'adminListener'> = {},
): Gateway {
  const c = i.config;
  // `policy` is GatewayOptions.policy once the enforcement layers (branch policy-gw) are merged
  const options: GatewayOptions & { policy?: PolicyView } = {
    config: c.gateway,
    cluster: c.cluster,
    trustDomain: c.trustDomain,
    locality: c.locality,
    identity: i.identity,
    bundle: i.bundle,
    catalog: i.catalog,
    local: i.local,
    balancers: i.balancers,
    balancerConfig: c.balancer,
    name: c.name,
    registry: i.registry,
    metricLimits: c.observability.metricLimits,
    logger: componentLogger(i.log, 'gateway', c.cluster),
    policy: i.policy,
    ...(i.linkReports ? { linkReports: i.linkReports } : {}),
    ...worker,
    ...(i.tracer ? { tracer: i.tracer } : {}),
  };
  return new Gateway(options);
}

/**
 * The idle heap shrink of a gateway process (cli/idle-heap.ts), started: quiet means no request of `activity` in
 * flight or started for idleHeapShrink. A multi-process gateway's supervisor serves no request (NO_REQUESTS): it
 * shrinks once that long after start, then every REARM_MS, like a worker that stays idle.
 */
export function startIdleHeap(activity: RequestActivity, i: DataPlaneInputs): IdleHeap {
  const heap = new IdleHeap({
    afterMs: i.config.idleHeapShrink,
    activity,
    collect: lastResortCollection(),
    log: componentLogger(i.log, 'process', i.config.cluster),
    registry: i.registry,
  });
  heap.start();
  return heap;
}
