import type { Locality } from '../../core/index.ts';

/** The demo federation: three clusters in three regions, and which demo service runs where. */
export interface DemoClusterSpec {
  name: string;
  locality: Locality;
}

export const DEMO_TRUST_DOMAIN = 'mesh.example';
export const DEMO_NAMESPACE = 'demo';

export const DEMO_CLUSTERS: readonly DemoClusterSpec[] = [
  { name: 'east', locality: { region: 'us-east', zone: 'us-east-1a' } },
  { name: 'west', locality: { region: 'us-west', zone: 'us-west-2a' } },
  { name: 'eu', locality: { region: 'eu-central', zone: 'eu-central-1a' } },
];

export interface DemoServiceSpec {
  /** service name in namespace `demo` */
  name: string;
  kind: 'hello' | 'greeter';
  /** the greeter's release (default v1): the policy phase's canary is a second service, greeter-v2 */
  version?: string;
  protocol: 'http' | 'grpc';
  /** the service port clients address (`<name>.demo.svc.clusterset.local:<port>`) */
  port: number;
  exported: boolean;
  clusters: readonly string[];
}

export const DEMO_SERVICES: readonly DemoServiceSpec[] = [
  {
    name: 'hello',
    kind: 'hello',
    protocol: 'http',
    port: 80,
    exported: true,
    clusters: ['east', 'west', 'eu'],
  },
  {
    name: 'greeter',
    kind: 'greeter',
    protocol: 'grpc',
    port: 50051,
    exported: true,
    clusters: ['west', 'eu'],
  },
  {
    name: 'greeter-v2',
    kind: 'greeter',
    version: 'v2',
    protocol: 'grpc',
    port: 50051,
    exported: true,
    clusters: ['eu'],
  },
  // the service the policy phase's AuthorizationPolicy guards: it runs in eu only, so every caller crosses
  // to eu's gateway, where authorization is enforced
  { name: 'ledger', kind: 'hello', protocol: 'http', port: 80, exported: true, clusters: ['eu'] },
  { name: 'internal', kind: 'hello', protocol: 'http', port: 80, exported: false, clusters: ['east'] },
];
