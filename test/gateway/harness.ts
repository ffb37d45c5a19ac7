import type { Tracer } from '@opentelemetry/api';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  type CaMaterial,
  CertificateSource,
  createRoot,
  issueIntermediate,
  issueLeaf,
  TrustBundle,
} from '../../ca/index.ts';
import {
  type CatalogChange,
  type CatalogView,
  type ClusterState,
  createRegistry,
  type EndpointSource,
  type LinkReportView,
  type LocalService,
  type PolicyView,
  type Registry,
  type RemoteServiceInstance,
  type ServiceRef,
  silentLogger,
} from '../../core/index.ts';
import { Balancers, balancerConfigSchema } from '../../gateway/balancer/index.ts';
import { Gateway, gatewayConfigSchema, type GoldenLimits } from '../../gateway/index.ts';

export const TRUST_DOMAIN = 'meshfed.test';

/**
 * Whether gateways of this harness take the HTTP/1.1 fast path (config.fastPath); MESHFED_FAST_PATH=0
 * runs a suite on node's HTTP server and the HTTP/2 tunnel (test/gateway/tunnel-path/ does that).
 */
export const FAST_PATH = process.env.MESHFED_FAST_PATH !== '0';

/** A CatalogView double: tests set the remote offers directly. */
export class TestCatalog implements CatalogView {
  private list: RemoteServiceInstance[] = [];
  private readonly listeners = new Set<(c: readonly CatalogChange[]) => void>();
  services(): readonly ServiceRef[] {
    return this.list.map((i) => ({ namespace: i.namespace, name: i.name }));
  }
  instances(namespace: string, name: string): readonly RemoteServiceInstance[] {
    return this.list.filter((i) => i.namespace === namespace && i.name === name);
  }
  clusters(): readonly ClusterState[] {
    return [...new Set(this.list.map((i) => i.cluster))].map((cluster) => ({
      cluster,
      gateways: [],
      stale: false,
      services: 0,
    }));
  }
  onChange(l: (c: readonly CatalogChange[]) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  /** `cluster` offers `svc` behind the gateway at `gateway` (host:port), by default in a region of its own. */
  offer(
    cluster: string,
    svc: LocalService,
    gateway: string,
    locality?: { region: string; zone: string },
  ): void {
    const instance: RemoteServiceInstance = {
      namespace: svc.namespace,
      name: svc.name,
      cluster,
      ports: svc.ports,
      locality: locality ?? { region: `${cluster}-region`, zone: `${cluster}-zone` },
      weight: 1,
      gateways: [{ name: `${cluster}-gw`, address: gateway }],
      revision: 1,
      expiresAt: Date.now() + 3_600_000,
      stale: false,
    };
    this.list = this.list.filter(
      (i) => !(i.cluster === cluster && i.namespace === svc.namespace && i.name === svc.name),
    );
    this.list.push(instance);
    for (const l of this.listeners) l([{ type: 'upsert', instance }]);
  }
}

/** An EndpointSource double holding this cluster's services. */
export class TestSource implements EndpointSource {
  readonly name = 'test';
  private services: LocalService[] = [];
  private readonly listeners = new Set<(s: readonly LocalService[]) => void>();
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  current(): readonly LocalService[] {
    return this.services;
  }
  onChange(l: (s: readonly LocalService[]) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  set(services: LocalService[]): void {
    this.services = services;
    for (const l of this.listeners) l(services);
  }
}

/** A local HTTP backend that answers with what it saw, as JSON (on `port`, or a free one). */
export async function echoServer(label: string, port = 0): Promise<{ server: http.Server; address: string }> {
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/status/')) {
      res.writeHead(Number(req.url.slice(8)));
      res.end();
      return;
    }
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
    });
    req.on('end', () => {
      const body = JSON.stringify({ label, method: req.method, url: req.url, headers: req.headers, size });
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': label });
      res.end(body);
    });
  });
  server.listen(port, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

export function httpService(
  namespace: string,
  name: string,
  addresses: string[],
  exported = true,
  protocol: 'http' | 'tcp' | 'tls' | 'grpc' = 'http',
): LocalService {
  return {
    namespace,
    name,
    ports: [{ name: protocol, port: 8080, protocol }],
    endpoints: addresses.map((a) => ({
      host: a.slice(0, a.lastIndexOf(':')),
      ports: { [protocol]: Number(a.slice(a.lastIndexOf(':') + 1)) },
      healthy: true,
    })),
    exported,
    source: 'test',
  };
}

export interface TestGateway {
  cluster: string;
  gateway: Gateway;
  balancers: Balancers;
  catalog: TestCatalog;
  source: TestSource;
  registry: Registry;
  identity: CertificateSource;
  eastWest: string;
  egress: string;
  admin: string;
  close(): Promise<void>;
}

export interface Mesh {
  root: CaMaterial;
  bundle: TrustBundle;
  intermediate(cluster: string): Promise<CaMaterial>;
  gateway(
    cluster: string,
    o?: {
      authorize?: (o: { caller: string }) => boolean;
      tracer?: Tracer;
      config?: Record<string, unknown>;
      /** balancer settings on top of the harness defaults (slow health checks, a generous retry budget) */
      balancer?: Record<string, unknown>;
      metricLimits?: GoldenLimits;
      /** the other clusters' link reports the dashboard draws (a LinkReportView double) */
      linkReports?: LinkReportView;
      /** the federated policy this gateway enforces (a PolicyView double: test/gateway/policy-view.ts) */
      policy?: PolicyView;
      /** the random source of splits and faults */
      random?: () => number;
      /** the rate limits' clock */
      rateLimitClock?: () => number;
    },
  ): Promise<TestGateway>;
}

/**
 * The mesh of one test file, made before its tests (beforeAll), and what they ask to close after them, last
 * first (afterAll): `mesh()` once the tests run, `closing(fn)` from a test or a helper.
 */
export function meshOfFile(): { mesh: () => Mesh; closing: (fn: () => unknown) => void } {
  let made: Mesh | undefined;
  const closers: (() => unknown)[] = [];
  beforeAll(async () => {
    made = await createMesh();
  }, 30_000);
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });
  return {
    mesh: () => {
      if (!made) throw new Error('meshOfFile: the mesh is made in beforeAll; ask for it from a test');
      return made;
    },
    closing: (fn) => closers.push(fn),
  };
}

/** A federation on loopback; pass `root` to let several threads or processes share one trust root. */
export async function createMesh(o: { root?: CaMaterial } = {}): Promise<Mesh> {
  const root = o.root ?? (await createRoot({ trustDomain: TRUST_DOMAIN }));
  const bundle = TrustBundle.fromPem(root.certPem);
  const cas = new Map<string, CaMaterial>();
  const intermediate = async (cluster: string) => {
    let ca = cas.get(cluster);
    if (!ca) {
      ca = await issueIntermediate(root, { cluster });
      cas.set(cluster, ca);
    }
    return ca;
  };
  return {
    root,
    bundle,
    intermediate,
    async gateway(cluster, o = {}) {
      const ca = await intermediate(cluster);
      const identity = new CertificateSource({
        logger: silentLogger(),
        issue: () => issueLeaf(ca, { kind: 'gateway', name: `${cluster}-gw` }),
        bundle: () => bundle,
      });
      await identity.start();
      const catalog = new TestCatalog();
      const source = new TestSource();
      const registry = createRegistry();
      const logger = silentLogger();
      const balancerConfig = balancerConfigSchema.parse({
        healthCheck: { interval: 60_000 },
        retry: { attempts: 2, budgetPercent: 100, minRetriesPerSecond: 100 },
        ...o.balancer,
      });
      const locality = { region: `${cluster}-region`, zone: `${cluster}-zone` };
      const balancers = new Balancers({
        cluster,
        locality,
        catalog,
        local: source,
        config: balancerConfig,
        registry,
        logger,
      });
      const config = gatewayConfigSchema.parse({
        listeners: { eastWest: '127.0.0.1:0', egress: '127.0.0.1:0', admin: '127.0.0.1:0' },
        limits: { headersTimeout: 1_000, helloTimeout: 1_000 },
        fastPath: FAST_PATH,
        ...o.config,
      });
      const gateway = new Gateway({
        config,
        cluster,
        name: `${cluster}-gw`,
        trustDomain: TRUST_DOMAIN,
        locality,
        identity,
        bundle: () => bundle,
        catalog,
        local: source,
        balancers,
        balancerConfig,
        registry,
        logger,
        ...(o.authorize ? { authorize: o.authorize } : {}),
        ...(o.tracer ? { tracer: o.tracer } : {}),
        ...(o.metricLimits ? { metricLimits: o.metricLimits } : {}),
        ...(o.linkReports ? { linkReports: o.linkReports } : {}),
        ...(o.policy ? { policy: o.policy } : {}),
        ...(o.random ? { random: o.random } : {}),
        ...(o.rateLimitClock ? { rateLimitClock: o.rateLimitClock } : {}),
      });
      await gateway.start();
      const a = gateway.addresses();
      return {
        cluster,
        gateway,
        balancers,
        catalog,
        source,
        registry,
        identity,
        eastWest: a.eastWest!,
        egress: a.egress!,
        admin: a.admin!,
        async close() {
          await gateway.stop();
          balancers.close();
          identity.stop();
        },
      };
    },
  };
}

/**
 * The smallest cross-cluster hop: gateways of east and west, where only west serves hello.shop (an echo
 * backend) and east's catalog offers it behind west's gateway. `close` stops all three.
 */
export async function helloAcross(
  mesh: Mesh,
  o: Parameters<Mesh['gateway']>[1] = {},
): Promise<{ east: TestGateway; west: TestGateway; hello: LocalService; close(): Promise<void> }> {
  const west = await mesh.gateway('west', o);
  const backend = await echoServer('west-hello');
  const hello = httpService('shop', 'hello', [backend.address]);
  west.source.set([hello]);
  const east = await mesh.gateway('east', o);
  east.catalog.offer('west', hello, west.eastWest);
  return {
    east,
    west,
    hello,
    async close() {
      await east.close();
      await west.close();
      backend.server.close();
    },
  };
}

/** One HTTP/1.1 request; resolves with status, headers and the whole body. */
export function request(
  address: string,
  o: {
    host: string;
    path?: string;
    method?: string;
    headers?: Record<string, string>;
    body?: Buffer | string;
    /** speak TLS (https) with these options instead of plain HTTP */
    tls?: https.RequestOptions;
  },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = (o.tls ? https : http).request(
      {
        host: address.slice(0, i),
        port: Number(address.slice(i + 1)),
        method: o.method ?? 'GET',
        path: o.path ?? '/',
        headers: { host: o.host, ...o.headers },
        agent: false,
        ...o.tls,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

// the stand-in remote gateways and the peer-side clients of the east-west listener
export * from './stand-ins.ts';
