import type { Tracer } from '@opentelemetry/api';
import type { CertificateSource, TrustBundle } from '../ca/index.ts';
import type {
  CatalogView,
  EndpointSource,
  LinkReportView,
  Locality,
  Logger,
  PolicyView,
  Registry,
} from '../core/index.ts';
import type { BalancerConfig, Balancers } from './balancer/index.ts';
import type { GatewayConfig } from './config.ts';
import type { GoldenLimits } from './golden-metrics.ts';

/** Decides whether an authenticated caller may reach a service; throw or return false to refuse. */
export type AuthorizeHook = (call: {
  peer: string;
  caller: string;
  service: string;
  cluster: string;
}) => boolean;

export interface GatewayOptions {
  config: GatewayConfig;
  cluster: string;
  trustDomain: string;
  locality: Locality;
  identity: CertificateSource;
  bundle: () => TrustBundle;
  catalog: CatalogView;
  local: EndpointSource;
  balancers: Balancers;
  balancerConfig: BalancerConfig;
  registry: Registry;
  logger: Logger;
  tracer?: Tracer;
  authorize?: AuthorizeHook;
  /**
   * the federated traffic policy to enforce: authorization and rate limits as the destination gateway,
   * splits and faults as the source gateway. Absent: no policy (exported = reachable), as before.
   */
  policy?: PolicyView;
  /**
   * the other clusters' gateways' link reports (federation), so the dashboard draws the links between
   * other clusters too. Absent: the dashboard shows the links this gateway measures, and no others
   */
  linkReports?: LinkReportView;
  /** the random source of traffic splits and fault injection, in [0, 1) (tests pass a seeded one) */
  random?: () => number;
  /** the clock of the rate limits' token buckets, in ms (tests read the times the buckets decided at) */
  rateLimitClock?: () => number;
  /** the gateway's name (config `name`) in spans, metrics and the dashboard */
  name: string;
  /**
   * bind the data-plane listeners with SO_REUSEPORT (exclusive, outside node:cluster's sharing): several
   * worker processes listen on the same ports and the kernel spreads connections among them
   */
  reusePort?: boolean;
  /** caps on the golden metrics' label values and tuples (default DEFAULT_GOLDEN_LIMITS) */
  metricLimits?: GoldenLimits;
  /** default true; a multi-process gateway's supervisor serves the admin listener instead */
  adminListener?: boolean;
}
