// A federation of real processes for the chaos scenarios: a NATS supercluster (one nats-server per
// cluster), one backend process per serving cluster (bench/chaos/backend.ts) and any number of
// `meshfed gateway` processes per cluster, all on loopback. Cluster `east` is where the load comes
// from and serves nothing itself, so every request crosses clusters.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { type CaMaterial, createRoot, issueIntermediate } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import { freePort } from '../../cli/demo/free-port.ts';
import { type NatsSupercluster, startNatsSupercluster } from '../../cli/demo/nats-topology.ts';
import { skewedClockEnv } from '../../test/helpers/skewed-clock.ts';
import { CLOCK_INJECTION, GatewayProc, httpStatus, procCpuSeconds, track, wrapped } from './processes.ts';

const BACKEND = fileURLToPath(new URL('./backend.ts', import.meta.url));
export const NAMESPACE = 'chaos';
export const TRUST_DOMAIN = 'mesh.example';
export const HELLO = `hello.${NAMESPACE}.svc.clusterset.local`;
export const GREETER = `greeter.${NAMESPACE}.svc.clusterset.local:50051`;

/** every federation started and not yet stopped (their nats-servers are not in CHILDREN) */
export const LIVE = new Set<Federation>();

/**
 * Runs `body` with this process's wall clock an hour back, so the root and intermediates it makes are
 * valid from an hour ago, as in any federation whose CA was made before its gateways started. A cluster
 * whose clock runs behind would otherwise see a CA made seconds ago as not valid yet.
 */
async function madeAnHourAgo<T>(body: () => Promise<T>): Promise<T> {
  const realNow = Date.now;
  Date.now = () => realNow() - 3_600_000;
  try {
    return await body();
  } finally {
    Date.now = realNow;
  }
}

export interface ClusterPlan {
  name: string;
  region: string;
  gateways: number;
  /** serves hello, greeter and echo (every cluster but the load's source) */
  serves: boolean;
  /** answer delay of this cluster's backend */
  delayMs?: number;
  /** this cluster's processes run with their clock moved by this much (bench/chaos/clock-offset.ts) */
  clockOffsetMs?: number;
  /** the others are expected to refuse this cluster's catalog (start() does not wait to see it) */
  refused?: boolean;
  /** merged into every gateway config of the cluster (one level deep) */
  config?: Record<string, unknown>;
  /**
   * the address this cluster's gateways and nats-server listen on and the command its processes run under
   * (a network namespace of bench/chaos/netns.ts); loopback in the calling process's namespace by default
   */
  net?: { host: string; wrap: string[] };
}

/** east (the load's source, serving nothing), west and eu: the shape most scenarios use */
export function threeClusters(
  o: { westGateways?: number; config?: Record<string, unknown> } = {},
): ClusterPlan[] {
  const config = o.config ? { config: o.config } : {};
  return [
    { name: 'east', region: 'us-east', gateways: 1, serves: false, ...config },
    { name: 'west', region: 'us-west', gateways: o.westGateways ?? 1, serves: true, ...config },
    { name: 'eu', region: 'eu-central', gateways: 1, serves: true, ...config },
  ];
}

interface Backend {
  cluster: string;
  child: ChildProcess;
  ports: { http: number; grpc: number; tcp: number };
}

export class Federation {
  readonly dir: string;
  readonly plans: ClusterPlan[];
  root: CaMaterial | undefined;
  nats: NatsSupercluster | undefined;
  readonly gateways: GatewayProc[] = [];
  readonly backends: Backend[] = [];
  /** each cluster's intermediate CA */
  readonly intermediates = new Map<string, CaMaterial>();

  constructor(dir: string, plans: ClusterPlan[]) {
    this.dir = resolve(dir);
    this.plans = plans;
  }

  gatewaysOf(cluster: string): GatewayProc[] {
    return this.gateways.filter((g) => g.cluster === cluster);
  }

  /** the gateway the load enters through */
  get source(): GatewayProc {
    return this.gatewaysOf('east')[0]!;
  }

  async start(): Promise<void> {
    LIVE.add(this);
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const root = await madeAnHourAgo(() => createRoot({ trustDomain: TRUST_DOMAIN }));
    this.root = root;
    writeFileSync(join(this.dir, 'root.crt'), this.root.certPem);
    writeFileSync(join(this.dir, 'root.key'), this.root.keyPem, { mode: 0o600 });
    this.nats = await startNatsSupercluster({
      clusters: this.plans.map((p) => ({
        name: p.name,
        size: 1,
        ...(p.net ? { host: p.net.host, wrap: p.net.wrap } : {}),
      })),
      baseDir: join(this.dir, 'nats'),
    });
    for (const plan of this.plans) {
      const inter = await madeAnHourAgo(() => issueIntermediate(root, { cluster: plan.name }));
      this.intermediates.set(plan.name, inter);
      const env: NodeJS.ProcessEnv = { ...process.env };
      if (plan.clockOffsetMs) {
        env.MESHFED_CHAOS_CLOCK_OFFSET_MS = String(plan.clockOffsetMs);
        if (CLOCK_INJECTION === 'libfaketime') Object.assign(env, skewedClockEnv(plan.clockOffsetMs));
      }
      const backend = plan.serves ? await this.startBackend(plan, env) : undefined;
      for (let i = 0; i < plan.gateways; i++) {
        this.gateways.push(await this.writeGateway(plan, i, inter, backend, env));
      }
    }
    for (const g of this.gateways) g.start();
    await Promise.all(this.gateways.map((g) => g.ready()));
    await this.converged();
  }

  private async startBackend(plan: ClusterPlan, env: NodeJS.ProcessEnv): Promise<Backend> {
    const [command, args] = wrapped(plan.net?.wrap, [
      process.execPath,
      BACKEND,
      '--cluster',
      plan.name,
      '--delay-ms',
      String(plan.delayMs ?? 0),
    ]);
    const child = track(spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'], env }));
    const rl = createInterface({ input: child.stdout! });
    const [line] = (await Promise.race([
      once(rl, 'line'),
      once(child, 'exit').then(() => {
        throw new Error(`the backend of ${plan.name} exited during start`);
      }),
    ])) as [string];
    rl.close();
    const b = { cluster: plan.name, child, ports: JSON.parse(line) as Backend['ports'] };
    this.backends.push(b);
    return b;
  }

  servicesYaml(backend: Backend | undefined, only?: string[]): string {
    if (!backend) return stringify({ services: [] });
    const ep = (name: string, port: number) => ({
      host: '127.0.0.1',
      ports: { [name]: port },
      healthy: true,
    });
    const all = [
      {
        name: 'hello',
        port: { name: 'http', port: 80, protocol: 'http' },
        ep: ep('http', backend.ports.http),
      },
      {
        name: 'greeter',
        port: { name: 'grpc', port: 50051, protocol: 'grpc' },
        ep: ep('grpc', backend.ports.grpc),
      },
      { name: 'echo', port: { name: 'tcp', port: 7, protocol: 'tcp' }, ep: ep('tcp', backend.ports.tcp) },
      // withdrawn by the NATS-outage scenario; nothing calls it
      {
        name: 'extra',
        port: { name: 'http', port: 80, protocol: 'http' },
        ep: ep('http', backend.ports.http),
      },
    ].filter((s) => !only || only.includes(s.name));
    return stringify({
      services: all.map((s) => ({
        namespace: NAMESPACE,
        name: s.name,
        exported: true,
        ports: [s.port],
        endpoints: [s.ep],
      })),
    });
  }

  /** rewrites the static services file of every gateway of `cluster` (they re-read it on change) */
  setServices(cluster: string, only: string[]): void {
    const backend = this.backends.find((b) => b.cluster === cluster);
    for (const g of this.gatewaysOf(cluster))
      writeFileSync(join(g.dir, 'services.yaml'), this.servicesYaml(backend, only));
  }

  private async writeGateway(
    plan: ClusterPlan,
    i: number,
    inter: CaMaterial,
    backend: Backend | undefined,
    env: NodeJS.ProcessEnv,
  ): Promise<GatewayProc> {
    const name = `${plan.name}-gw${i + 1}`;
    const dir = join(this.dir, name);
    mkdirSync(join(dir, 'ca'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'ca', 'ca.crt'), inter.chainPem);
    writeFileSync(join(dir, 'ca', 'ca.key'), inter.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'ca', 'bundle.crt'), this.root!.certPem);
    writeFileSync(join(dir, 'services.yaml'), this.servicesYaml(backend));
    // a port free on this namespace's loopback is free in a namespace of the chaos suite's own too
    const host = plan.net?.host ?? '127.0.0.1';
    const addresses: GatewayProc['addresses'] = {
      eastWest: `${host}:${await freePort()}`,
      egress: `${host}:${await freePort()}`,
      admin: `${host}:${await freePort()}`,
    };
    if (!plan.serves) addresses.tcpEcho = `${host}:${await freePort()}`;
    const base: Record<string, unknown> = {
      cluster: plan.name,
      trustDomain: TRUST_DOMAIN,
      name,
      locality: { region: plan.region, zone: `${plan.region}-a` },
      stateDir: 'state',
      identity: { caDir: 'ca', leafTtl: '1h' },
      drainTimeout: '10s',
      gateway: {
        listeners: addresses.tcpEcho
          ? { eastWest: addresses.eastWest, egress: addresses.egress, admin: addresses.admin }
          : { eastWest: addresses.eastWest, egress: addresses.egress, admin: addresses.admin },
        ...(addresses.tcpEcho
          ? { tcpPorts: [{ listen: addresses.tcpEcho, service: `echo.${NAMESPACE}` }] }
          : {}),
      },
      balancer: {
        outlier: { consecutiveFailures: 3, baseEjection: '5s', maxEjection: '30s', maxEjectionPercent: 100 },
        healthCheck: { interval: '1s', timeout: '500ms' },
        retry: { attempts: 2, budgetPercent: 20, minRetriesPerSecond: 50 },
        timeouts: { connect: '500ms', request: '1s' },
      },
      federation: {
        nats: { servers: this.nats!.cluster(plan.name).urls, reconnectWait: '250ms' },
        heartbeatInterval: '1s',
        staleAfter: '5s',
        stateDir: 'state/catalog',
      },
      discovery: { sources: [{ type: 'static', file: 'services.yaml' }] },
      observability: { logLevel: 'info' },
    };
    for (const [k, v] of Object.entries(plan.config ?? {})) {
      const old = base[k];
      base[k] =
        old && typeof old === 'object' && v && typeof v === 'object' && !Array.isArray(v)
          ? { ...(old as object), ...(v as object) }
          : v;
    }
    const configFile = join(dir, 'gateway.yaml');
    writeFileSync(configFile, stringify(base));
    return new GatewayProc({
      cluster: plan.name,
      name,
      dir,
      configFile,
      addresses,
      env,
      ...(plan.net ? { wrap: plan.net.wrap } : {}),
    });
  }

  /** the source cluster routes hello, greeter and echo to every serving cluster */
  async converged(
    timeoutMs = 60_000,
    clusters = this.plans.filter((p) => p.serves && !p.refused).map((p) => p.name),
  ): Promise<void> {
    await waitFor(async () => (await this.offers(this.source, 'hello')).length >= clusters.length, {
      timeoutMs,
      intervalMs: 200,
      what: `east to see hello offered by ${clusters.join(', ')}`,
    });
  }

  /** the raw /debug/catalog of `g` ('' when it does not answer) */
  async catalogText(g: GatewayProc): Promise<string> {
    try {
      const r = await fetch(`http://${g.addresses.admin}/debug/catalog`, {
        signal: AbortSignal.timeout(3000),
      });
      return await r.text();
    } catch {
      return '';
    }
  }

  /** the clusters `g` has a live offer of service `name` from, from its /debug/catalog view */
  async offers(g: GatewayProc, name: string): Promise<string[]> {
    try {
      const r = await fetch(`http://${g.addresses.admin}/debug/catalog`, {
        signal: AbortSignal.timeout(3000),
      });
      const body = (await r.json()) as unknown;
      return catalogOffers(body, name);
    } catch {
      return [];
    }
  }

  /**
   * The gateways `g`'s view lists for `cluster`'s offer of service `name` (its /debug/catalog), in name order;
   * undefined when the view cannot be read or holds no such offer.
   */
  async gatewaysListed(g: GatewayProc, cluster: string, name: string): Promise<string[] | undefined> {
    try {
      const r = await fetch(`http://${g.addresses.admin}/debug/catalog`, {
        signal: AbortSignal.timeout(3000),
      });
      const body = (await r.json()) as {
        services?: {
          namespace: string;
          name: string;
          instances: { cluster: string; gateways: { name: string }[] }[];
        }[];
      };
      const svc = body.services?.find((s) => s.namespace === NAMESPACE && s.name === name);
      return svc?.instances.find((i) => i.cluster === cluster)?.gateways.map((x) => x.name);
    } catch {
      return undefined;
    }
  }

  /** every gateway, backend and nats-server still answers; the names of those that do not */
  async unhealthy(): Promise<string[]> {
    const bad: string[] = [];
    for (const g of this.gateways) {
      if (!g.running || (await httpStatus(g.addresses.admin, '/healthz')) !== 200)
        bad.push(`${g.cluster}/${g.name}`);
    }
    for (const b of this.backends)
      if (b.child.exitCode !== null || b.child.signalCode !== null) bad.push(`backend ${b.cluster}`);
    for (const s of this.nats?.servers ?? [])
      if (!(await s.healthy().catch(() => false))) bad.push(`nats ${s.options.name}`);
    return bad;
  }

  /** gateways whose process was replaced although the scenario did not restart them */
  restartedUnexpectedly(expected: GatewayProc[] = []): string[] {
    return this.gateways
      .filter((g) => !expected.includes(g) && g.pids.length !== 1)
      .map((g) => `${g.cluster}/${g.name}`);
  }

  /**
   * CPU seconds (user + system) used so far by each process of the federation, from /proc: each gateway
   * by name, `backends` and `nats` summed. Linux only; an empty record elsewhere.
   */
  cpuSeconds(): Record<string, number> {
    const out: Record<string, number> = {};
    const add = (key: string, pid: number | undefined) => {
      const s = pid === undefined ? undefined : procCpuSeconds(pid);
      if (s !== undefined) out[key] = (out[key] ?? 0) + s;
    };
    for (const g of this.gateways) add(g.name, g.child?.pid);
    for (const b of this.backends) add('backends', b.child.pid);
    for (const n of this.nats?.servers ?? []) add('nats', n.pid);
    return out;
  }

  async stop(): Promise<void> {
    await Promise.all(this.gateways.map((g) => g.stop(5000)));
    // gone before the next scenario starts: a backend still exiting is not part of its host
    await Promise.all(
      this.backends.map((b) => {
        if (b.child.exitCode !== null || b.child.signalCode !== null) return undefined;
        const exited = once(b.child, 'exit');
        b.child.kill('SIGTERM');
        const kill = setTimeout(() => b.child.kill('SIGKILL'), 5_000);
        return exited.finally(() => clearTimeout(kill));
      }),
    );
    await this.nats?.stop();
    LIVE.delete(this);
  }
}

/** offers of service `name` in a /debug/catalog body: the cluster names, whatever the body's nesting */
function catalogOffers(body: unknown, name: string): string[] {
  const clusters = new Set<string>();
  const visit = (x: unknown): void => {
    if (Array.isArray(x)) {
      for (const y of x) visit(y);
      return;
    }
    if (!x || typeof x !== 'object') return;
    const o = x as Record<string, unknown>;
    if (
      o.name === name &&
      o.namespace === NAMESPACE &&
      typeof o.cluster === 'string' &&
      o.tombstone !== true
    ) {
      clusters.add(o.cluster);
    }
    for (const v of Object.values(o)) visit(v);
  };
  visit(body);
  return [...clusters];
}
