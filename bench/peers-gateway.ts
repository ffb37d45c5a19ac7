// The peers-harness candidate: runs the real meshfed Gateway (real identity checks) in the topology
// the harness asks for, from its environment (see /work/shared/bench/peers/README.md), with the Node flags
// of `meshfed gateway` (./gateway-flags.ts, imported first).
import './gateway-flags.ts';
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { CertificateSource, TrustBundle } from '../ca/index.ts';
import {
  buildPolicySet,
  type CatalogView,
  createRegistry,
  type EndpointSource,
  type LocalService,
  parseClustersetHost,
  parsePolicyDocuments,
  type PolicyView,
  type RemoteServiceInstance,
  silentLogger,
  staticPolicyView,
} from '../core/index.ts';
import { Balancers, balancerConfigSchema } from '../gateway/balancer/index.ts';
import { Gateway, gatewayConfigSchema } from '../gateway/index.ts';
import { allocSamplingOnSignal } from './alloc-sampling.ts';
import { env, hostPort } from './bench-env.ts';
import { recordPauses } from './pause-stats.ts';

const topology = env('BENCH_TOPOLOGY');
// the harness's topologies (terminate-reuse and terminate-noreuse arrive as terminate, BENCH_REUSE says which) and
// this project's two TCP-port ones (bench/passthrough-spread.sh)
const TOPOLOGIES = ['passthrough', 'terminate', 'tcp-port', 'tcp-tunnel'];
if (!TOPOLOGIES.includes(topology)) {
  // exit 3: the harness's "unsupported" (it skips the case rather than calling it a failure to start)
  process.stderr.write(`BENCH_TOPOLOGY must be one of ${TOPOLOGIES.join(', ')}, got ${topology}\n`);
  process.exit(3);
}
// BENCH_PAUSE_STATS=<file>: event-loop delay, GC pauses and accepted connections, written there on SIGTERM;
// SIGUSR2 starts the window again (after a warm-up)
const pauses = process.env.BENCH_PAUSE_STATS ? recordPauses(process.env.BENCH_PAUSE_STATS) : undefined;
if (pauses) process.on('SIGUSR2', () => pauses.reset());
// BENCH_ALLOC_PROFILE=<file>: where the process allocates (bench/alloc-sampling.ts), from SIGUSR2 to SIGTERM
const allocs = allocSamplingOnSignal(process.env.BENCH_ALLOC_PROFILE);
// multi-core mode (BENCH_WORKERS=N > 1): N processes, each running the gateways, share the ports with
// SO_REUSEPORT as `meshfed gateway --workers N` does; the default is the harness's one event loop
const workers = Number(env('BENCH_WORKERS', '1'));
if (!Number.isInteger(workers) || workers < 1)
  throw new Error(`BENCH_WORKERS must be a positive integer, got ${workers}`);
if (workers > 1 && cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', (m) => {
      if (m === 'ready' && ++ready === workers)
        process.stdout.write(`meshfed gateway candidate ready (${topology}, ${workers} worker processes)\n`);
    });
  }
  cluster.on('exit', (_w, code) => {
    process.stderr.write(`a worker exited (code ${code})\n`);
    process.exit(1);
  });
  process.once('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
    process.exit(0);
  });
  await new Promise(() => undefined);
}
/**
 * BENCH_ROLE=a or b: only gw-A or only gw-B of the terminate topology in this process, so the two gateways
 * run as two processes (each gateway its own event loop and no other's, as deployed and as the peers run
 * them); `both` (the default, the harness's rule) runs them together in one event loop
 */
const role = env('BENCH_ROLE', 'both');
if (role !== 'both' && role !== 'a' && role !== 'b')
  throw new Error(`BENCH_ROLE must be both, a or b, got ${role}`);
const td = env('BENCH_TRUST_DOMAIN', 'mesh.example');
const reuse = env('BENCH_REUSE', 'reuse');
if (reuse !== 'reuse' && reuse !== 'noreuse')
  throw new Error(`BENCH_REUSE must be reuse or noreuse, got ${reuse}`);
const ref = parseClustersetHost(env('BENCH_SERVICE_HOST', 'echo.bench.svc.clusterset.local'))!;
/**
 * BENCH_POLICIES=N: N AuthorizationPolicies in force at both gateways (one for the bench service that lets
 * cluster-a in, the others for other services), to measure what enforcing policy costs a request.
 */
function benchPolicy(n: number): PolicyView | undefined {
  if (n <= 0) return undefined;
  const docs = Array.from({ length: n }, (_, i) => {
    const service = i === 0 ? `${ref.namespace}/${ref.name}` : `${ref.namespace}/other-${i}`;
    return [
      'apiVersion: meshfed.io/v1alpha1',
      'kind: AuthorizationPolicy',
      `metadata: { name: bench-${i} }`,
      'spec:',
      `  target: { service: ${service} }`,
      '  rules:',
      '    - { name: no-legacy, action: DENY, from: [{ namespace: legacy }] }',
      '    - { name: from-a, action: ALLOW, from: [{ cluster: cluster-a }] }',
    ].join('\n');
  });
  const documents = parsePolicyDocuments(docs.join('\n---\n'), 'BENCH_POLICIES');
  return staticPolicyView(buildPolicySet(documents, { revision: 1, scopes: [] }));
}
const policy = benchPolicy(Number(env('BENCH_POLICIES', '0')));

class Static implements EndpointSource, CatalogView {
  readonly name = 'bench';
  private readonly local: LocalService[];
  private readonly remote: RemoteServiceInstance[];
  constructor(local: LocalService[], remote: RemoteServiceInstance[]) {
    this.local = local;
    this.remote = remote;
  }
  async start() {}
  async stop() {}
  current() {
    return this.local;
  }
  onChange(_l: (x: never) => void) {
    return () => undefined;
  }
  services() {
    return this.remote.map((r) => ({ namespace: r.namespace, name: r.name }));
  }
  instances(ns: string, n: string) {
    return this.remote.filter((r) => r.namespace === ns && r.name === n);
  }
  clusters() {
    return [];
  }
}

async function start(o: {
  cluster: string;
  cert: string;
  key: string;
  listeners: Record<string, string>;
  local: LocalService[];
  remote: RemoteServiceInstance[];
  tcpPorts?: { listen: string; service: string }[];
}) {
  const identity = CertificateSource.fromFiles({
    logger: silentLogger(),
    certFile: o.cert,
    keyFile: o.key,
    bundleFile: env('BENCH_CA'),
  });
  await identity.start();
  const bundle = TrustBundle.fromPem(readFileSync(env('BENCH_CA'), 'utf8'));
  // clients that are not meshfed gateways (the harness's curl check) send no x-meshfed-chain header, and
  // node's TLS server exposes only their leaf: the operator tells the bundle about the clusters' intermediates
  for (const ca of ['cluster-a-ca.crt', 'cluster-b-ca.crt']) {
    bundle.addIntermediates(readFileSync(`${env('BENCH_CERTS_DIR')}/${ca}`, 'utf8'));
  }
  const src = new Static(o.local, o.remote);
  const registry = createRegistry();
  const logger = silentLogger();
  const locality = { region: o.cluster, zone: o.cluster };
  const balancerConfig = balancerConfigSchema.parse({ healthCheck: { interval: 3_600_000 } });
  const balancers = new Balancers({
    cluster: o.cluster,
    locality,
    catalog: src as unknown as CatalogView,
    local: src,
    config: balancerConfig,
    registry,
    logger,
  });
  const gw = new Gateway({
    config: gatewayConfigSchema.parse({
      listeners: o.listeners,
      ...(o.tcpPorts ? { tcpPorts: o.tcpPorts } : {}),
      // BENCH_REUSE=noreuse: a new TCP+TLS connection from gw-A to gw-B per request (TLS sessions resumed)
      ...(reuse === 'noreuse' ? { tunnelMaxRequestsPerConnection: 1 } : {}),
    }),
    cluster: o.cluster,
    name: `${o.cluster}-gw`,
    trustDomain: td,
    locality,
    identity,
    bundle: () => bundle,
    catalog: src as unknown as CatalogView,
    local: src,
    balancers,
    balancerConfig,
    registry,
    logger,
    reusePort: workers > 1,
    ...(policy ? { policy } : {}),
  });
  await gw.start();
  return gw;
}

const svc = (addr: string, protocol: 'http' | 'tls' | 'tcp'): LocalService => ({
  ...ref,
  ports: [{ name: protocol, port: hostPort(addr).port, protocol }],
  endpoints: [{ host: hostPort(addr).host, ports: { [protocol]: hostPort(addr).port }, healthy: true }],
  exported: true,
  source: 'bench',
});

const gwB = env('BENCH_GW_B_ADDR', '127.0.0.22:25443');
const spare = (n: number) => `127.0.0.${n}:0`;
if (topology === 'passthrough') {
  await start({
    cluster: 'cluster-b',
    cert: env('BENCH_GW_B_CERT'),
    key: env('BENCH_GW_B_KEY'),
    listeners: { eastWest: gwB, egress: spare(22), admin: spare(22) },
    local: [svc(env('BENCH_BACKEND_TLS'), 'tls')],
    remote: [],
  });
} else if (topology === 'tcp-port') {
  // not a harness topology: a per-service TCP port at gw-B's address to the plain backend, a local endpoint
  // (bench/passthrough-spread.sh -t tcp-port)
  await start({
    cluster: 'cluster-b',
    cert: env('BENCH_GW_B_CERT'),
    key: env('BENCH_GW_B_KEY'),
    listeners: { eastWest: spare(22), egress: spare(22), admin: spare(22) },
    tcpPorts: [{ listen: gwB, service: `${ref.name}.${ref.namespace}` }],
    local: [svc(env('BENCH_BACKEND_HTTP'), 'tcp')],
    remote: [],
  });
} else {
  // terminate: gw-A's egress listener, HTTP/1.1 through gw-B to the backend; tcp-tunnel (not a harness topology,
  // bench/passthrough-spread.sh -t tcp-tunnel): a per-service TCP port of gw-A at its address instead, over the
  // tunnel's CONNECT to gw-B, whose terminal relays to the backend's plain port
  const tunnel = topology === 'tcp-tunnel';
  const local = svc(env('BENCH_BACKEND_HTTP'), tunnel ? 'tcp' : 'http');
  if (role !== 'a')
    await start({
      cluster: 'cluster-b',
      cert: env('BENCH_GW_B_CERT'),
      key: env('BENCH_GW_B_KEY'),
      listeners: { eastWest: gwB, egress: spare(22), admin: spare(22) },
      local: [local],
      remote: [],
    });
  if (role !== 'b')
    await start({
      cluster: 'cluster-a',
      cert: env('BENCH_GW_A_CERT'),
      key: env('BENCH_GW_A_KEY'),
      listeners: {
        eastWest: spare(21),
        egress: tunnel ? spare(21) : env('BENCH_GW_A_ADDR'),
        admin: spare(21),
      },
      ...(tunnel
        ? { tcpPorts: [{ listen: env('BENCH_GW_A_ADDR'), service: `${ref.name}.${ref.namespace}` }] }
        : {}),
      local: [],
      remote: [
        {
          ...ref,
          cluster: 'cluster-b',
          ports: local.ports,
          locality: { region: 'cluster-b', zone: 'cluster-b' },
          weight: 1,
          gateways: [{ name: 'gw-b', address: gwB }],
          revision: 1,
          expiresAt: 0,
          stale: false,
        },
      ],
    });
}
if (workers > 1) process.send?.('ready');
else process.stdout.write(`meshfed gateway candidate ready (${topology}, one event loop)\n`);
// the harness stops candidates with SIGTERM; exiting normally lets `--cpu-prof` write its profile. `on`, not
// `once`: the harness's `timeout` wrapper passes the signal on a second time while a large profile is written
process.on('SIGTERM', () => {
  pauses?.write();
  void allocs.stop().finally(() => process.exit(0));
});
