import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { createRoot, issueIntermediate } from '../../ca/index.ts';
import { endsWait, MeshfedError, waitFor } from '../../core/index.ts';
import { freePort } from './free-port.ts';
import { type NatsSupercluster, startNatsSupercluster } from './nats-topology.ts';
import { projectFile } from '../project-file.ts';
import {
  DEMO_CLUSTERS,
  DEMO_NAMESPACE,
  DEMO_SERVICES,
  DEMO_TRUST_DOMAIN,
  type DemoClusterSpec,
} from './demo-layout.ts';

const BIN = projectFile('bin/meshfed.js');

export interface DemoServiceProcess {
  name: string;
  kind: string;
  cluster: string;
  port: number;
  pid: number;
  child: ChildProcess;
}

export interface DemoClusterState {
  name: string;
  locality: DemoClusterSpec['locality'];
  dir: string;
  configFile: string;
  servicesFile: string;
  natsUrl: string;
  addresses: { eastWest: string; egress: string; admin: string };
  adminSocket: string;
  gateway?: ChildProcess;
  services: DemoServiceProcess[];
}

function writeSecret(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
}

async function spawnService(o: {
  name: string;
  kind: string;
  cluster: string;
  port?: number;
}): Promise<DemoServiceProcess> {
  const args = [
    BIN,
    'demo-service',
    '--kind',
    o.kind,
    '--cluster',
    o.cluster,
    '--service',
    `${o.name}.${DEMO_NAMESPACE}`,
  ];
  if (o.port) args.push('--port', String(o.port));
  const version = DEMO_SERVICES.find((s) => s.name === o.name)?.version;
  if (version) args.push('--version', version);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 2000) stderr += d.toString();
  });
  const rl = createInterface({ input: child.stdout! });
  const line = await Promise.race([
    once(rl, 'line').then(([l]) => l as string),
    once(child, 'exit').then(() => {
      throw new MeshfedError(
        'MESHFED_INTERNAL',
        `demo service ${o.name} in ${o.cluster} exited: ${stderr.trim()}`,
      );
    }),
  ]);
  rl.close();
  const info = JSON.parse(line) as { port: number; pid: number };
  return { name: o.name, kind: o.kind, cluster: o.cluster, port: info.port, pid: child.pid!, child };
}

/** The dashboard a demo gateway serves on its (loopback) admin listener. */
export function dashboardUrl(admin: string): string {
  return `http://${admin}/ui`;
}

/** where a cluster's gateway writes its log */
function gatewayLog(c: DemoClusterState): string {
  return join(c.dir, 'gateway.log');
}

/**
 * A gateway that exited during start-up is reported with its log, not as a readiness timeout: the error
 * ends the readiness wait (endsWait) at once. Every gateway, not only the one waited on: one that exits while
 * an earlier one is waited on ends the wait too.
 */
function assertGatewaysRunning(clusters: readonly DemoClusterState[]): void {
  for (const c of clusters) {
    const child = c.gateway;
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      const how = child.exitCode !== null ? `code ${child.exitCode}` : `signal ${child.signalCode}`;
      throw endsWait(
        new MeshfedError(
          'MESHFED_INTERNAL',
          `the gateway of ${c.name} exited with ${how}; see ${gatewayLog(c)}`,
        ),
      );
    }
  }
}

/** a line of a gateway's JSON log, as far as logWarnings reads it */
interface LogLine {
  level?: string;
  time?: string;
  component?: string;
  msg?: string;
  err?: { message?: string };
}

function parseLogLine(line: string): LogLine | undefined {
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return undefined;
  }
}

/** The last warnings and errors of a gateway's JSON log, one line each (level, component, message). */
function logWarnings(file: string, count = 12): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return `  (cannot read it: ${(err as Error).message})`;
  }
  const lines = text
    .split('\n')
    .map(parseLogLine)
    .filter((e): e is LogLine => e?.level === 'warn' || e?.level === 'error' || e?.level === 'fatal')
    .slice(-count)
    .map(
      (e) =>
        `  ${e.time ?? ''} ${e.level} ${e.component ?? ''}: ${e.msg ?? ''}${e.err?.message ? ` (${e.err.message})` : ''}`,
    );
  return lines.length > 0 ? lines.join('\n') : '  (none)';
}

/** What one gateway sees: service name → the clusters that offer it (its local exports and the catalog), and the catalog's clusters. */
interface CatalogSeen {
  offers: Map<string, Set<string>>;
  clusters: { cluster: string; stale: boolean; services: number; gateways: unknown[] }[];
}

async function catalogSeen(admin: string, self: string): Promise<CatalogSeen> {
  const res = await fetch(`http://${admin}/debug/catalog`, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`${admin}/debug/catalog: HTTP ${res.status}`);
  const view = (await res.json()) as {
    clusters: CatalogSeen['clusters'];
    services: { namespace: string; name: string; instances: { cluster: string }[] }[];
    local: { namespace: string; name: string; exported: boolean }[];
  };
  const offers = new Map<string, Set<string>>();
  const add = (name: string, cluster: string) =>
    offers.set(name, (offers.get(name) ?? new Set()).add(cluster));
  for (const s of view.services)
    if (s.namespace === DEMO_NAMESPACE) for (const i of s.instances) add(s.name, i.cluster);
  for (const s of view.local) if (s.namespace === DEMO_NAMESPACE && s.exported) add(s.name, self);
  return { offers, clusters: view.clusters };
}

/** the exported demo services, as "name in cluster", that `seen` does not offer */
function unseen(seen: CatalogSeen): string[] {
  return DEMO_SERVICES.filter((s) => s.exported).flatMap((s) =>
    s.clusters.filter((cl) => !seen.offers.get(s.name)?.has(cl)).map((cl) => `${s.name} in ${cl}`),
  );
}

/** what a gateway that is not ready was missing, from the last answer (or error) of its admin listener */
function notReadyBecause(last: CatalogSeen | Error | undefined): string {
  if (last === undefined) return 'its admin listener never answered';
  if (last instanceof Error) {
    const cause = last.cause as { code?: string; message?: string } | undefined;
    return `its admin listener did not answer: ${last.message}${cause ? ` (${cause.code ?? cause.message})` : ''}`;
  }
  const clusters = last.clusters
    .map(
      (c) =>
        `${c.cluster} (${c.stale ? 'stale' : 'live'}, ${c.services} services, ${c.gateways.length} gateways)`,
    )
    .join(', ');
  return `it does not see ${unseen(last).join(', ')}; its catalog's clusters: ${clusters || 'none'}`;
}

export class Demo {
  readonly dir: string;
  readonly clusters: DemoClusterState[] = [];
  nats: NatsSupercluster | undefined;
  private readonly log: (line: string) => void;
  private stopped = false;

  constructor(o: { dir: string; log?: (line: string) => void }) {
    this.dir = resolve(o.dir);
    this.log = o.log ?? (() => undefined);
  }

  cluster(name: string): DemoClusterState {
    const c = this.clusters.find((x) => x.name === name);
    if (!c) throw new MeshfedError('MESHFED_INTERNAL', `no demo cluster ${name}`);
    return c;
  }

  service(cluster: string, name: string): DemoServiceProcess {
    const s = this.cluster(cluster).services.find((x) => x.name === name);
    if (!s) throw new MeshfedError('MESHFED_INTERNAL', `no demo service ${name} in ${cluster}`);
    return s;
  }

  async start(): Promise<void> {
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });

    this.log('creating the trust root (ECDSA P-256) and one intermediate per cluster');
    const root = await createRoot({ trustDomain: DEMO_TRUST_DOMAIN });
    mkdirSync(join(this.dir, 'root'), { recursive: true });
    writeFileSync(join(this.dir, 'root', 'root.crt'), root.certPem);
    writeSecret(join(this.dir, 'root', 'root.key'), root.keyPem);

    this.log('starting three nats-servers joined as a NATS supercluster');
    this.nats = await startNatsSupercluster({
      clusters: DEMO_CLUSTERS.map((c) => ({ name: c.name, size: 1 })),
      jetstream: false,
      baseDir: join(this.dir, 'nats'),
    });

    for (const spec of DEMO_CLUSTERS) {
      const dir = join(this.dir, spec.name);
      const caDir = join(dir, 'ca');
      mkdirSync(caDir, { recursive: true, mode: 0o700 });
      const inter = await issueIntermediate(root, { cluster: spec.name });
      writeFileSync(join(caDir, 'ca.crt'), inter.chainPem);
      writeSecret(join(caDir, 'ca.key'), inter.keyPem);
      writeFileSync(join(caDir, 'bundle.crt'), root.certPem);
      const [eastWest, egress, admin] = [await freePort(), await freePort(), await freePort()];
      const state: DemoClusterState = {
        name: spec.name,
        locality: spec.locality,
        dir,
        configFile: join(dir, 'gateway.yaml'),
        servicesFile: join(dir, 'services.yaml'),
        natsUrl: this.nats.cluster(spec.name).urls[0]!,
        addresses: {
          eastWest: `127.0.0.1:${eastWest}`,
          egress: `127.0.0.1:${egress}`,
          admin: `127.0.0.1:${admin}`,
        },
        adminSocket: join(dir, 'admin.sock'),
        services: [],
      };
      this.clusters.push(state);
    }

    this.log(
      'starting the demo services (hello: HTTP, greeter and its canary greeter-v2: gRPC, ledger: HTTP, internal: not exported)',
    );
    for (const c of this.clusters) {
      for (const svc of DEMO_SERVICES.filter((s) => s.clusters.includes(c.name))) {
        c.services.push(await spawnService({ name: svc.name, kind: svc.kind, cluster: c.name }));
      }
      this.writeServicesFile(c);
      this.writeGatewayConfig(c);
    }

    this.log('starting one gateway per cluster (meshfed gateway --config …)');
    for (const c of this.clusters) this.startGateway(c);
    await this.waitReady();
  }

  writeServicesFile(c: DemoClusterState): void {
    const services = DEMO_SERVICES.filter((s) => s.clusters.includes(c.name)).map((s) => {
      const proc = c.services.find((p) => p.name === s.name)!;
      const portName = s.protocol === 'grpc' ? 'grpc' : 'http';
      return {
        namespace: DEMO_NAMESPACE,
        name: s.name,
        exported: s.exported,
        ports: [{ name: portName, port: s.port, protocol: s.protocol }],
        endpoints: [
          { host: '127.0.0.1', ports: { [portName]: proc.port }, healthy: true, zone: c.locality.zone },
        ],
      };
    });
    writeFileSync(
      c.servicesFile,
      `# Services of cluster ${c.name} (the static discovery source). Edit and save: the gateway reloads it.\n${stringify({ services })}`,
    );
  }

  writeGatewayConfig(c: DemoClusterState): void {
    const config = {
      cluster: c.name,
      trustDomain: DEMO_TRUST_DOMAIN,
      name: `${c.name}-gw`,
      locality: c.locality,
      stateDir: 'state',
      identity: { caDir: 'ca', leafTtl: '1h' },
      admin: { socket: c.adminSocket },
      drainTimeout: '2s',
      gateway: {
        listeners: { eastWest: c.addresses.eastWest, egress: c.addresses.egress, admin: c.addresses.admin },
      },
      balancer: {
        outlier: { consecutiveFailures: 2, baseEjection: '3s', maxEjection: '10s', maxEjectionPercent: 100 },
        healthCheck: { interval: '1s', timeout: '500ms' },
      },
      federation: {
        nats: { servers: [c.natsUrl] },
        heartbeatInterval: '1s',
        staleAfter: '5s',
      },
      discovery: { sources: [{ type: 'static', file: 'services.yaml' }] },
      observability: { logLevel: 'info' },
    };
    writeFileSync(
      c.configFile,
      `# meshfed gateway of cluster ${c.name}; every field: docs/config.md\n${stringify(config)}`,
    );
  }

  startGateway(c: DemoClusterState): void {
    const out = openSync(gatewayLog(c), 'a');
    c.gateway = spawn(process.execPath, [BIN, 'gateway', '--config', c.configFile], {
      stdio: ['ignore', out, out],
      cwd: c.dir,
    });
    closeSync(out);
  }

  /**
   * Every gateway is up, sees all three clusters, and every exported service from each cluster. Asked over
   * the admin listener's HTTP catalog view rather than the gRPC admin API, which a gateway loads only when
   * someone uses it: the demo's gateways stay as idle as any other (bench/idle-rss.ts measures them).
   */
  async waitReady(timeoutMs = 180_000): Promise<void> {
    for (const c of this.clusters) {
      // the admin listener's last answer, or why there was none: a timeout says what the gateway was missing
      let last: CatalogSeen | Error | undefined;
      await waitFor(
        async () => {
          assertGatewaysRunning(this.clusters);
          last = await catalogSeen(c.addresses.admin, c.name).catch((err: Error) => err);
          return !(last instanceof Error) && unseen(last).length === 0;
        },
        { timeoutMs, intervalMs: 200, what: `the gateway of ${c.name} to see the whole federation` },
      ).catch((err: Error) => {
        assertGatewaysRunning(this.clusters);
        throw new MeshfedError(
          'MESHFED_INTERNAL',
          `${err.message}: ${notReadyBecause(last)}. Its last warnings (${gatewayLog(c)}):\n${logWarnings(gatewayLog(c))}`,
        );
      });
    }
  }

  async stopService(cluster: string, name: string): Promise<void> {
    const s = this.service(cluster, name);
    if (s.child.exitCode === null && s.child.signalCode === null) {
      const exited = once(s.child, 'exit');
      s.child.kill('SIGTERM');
      await exited;
    }
  }

  async startService(cluster: string, name: string): Promise<void> {
    const c = this.cluster(cluster);
    const old = this.service(cluster, name);
    const fresh = await spawnService({ name, kind: old.kind, cluster, port: old.port });
    c.services[c.services.indexOf(old)] = fresh;
  }

  describe(): Record<string, unknown> {
    return {
      trustDomain: DEMO_TRUST_DOMAIN,
      dir: this.dir,
      clusters: this.clusters.map((c) => ({
        name: c.name,
        locality: c.locality,
        dir: c.dir,
        config: c.configFile,
        services_file: c.servicesFile,
        nats: c.natsUrl,
        addresses: c.addresses,
        dashboard: dashboardUrl(c.addresses.admin),
        adminSocket: c.adminSocket,
        pid: c.gateway?.pid,
        services: c.services.map((s) => ({
          name: `${s.name}.${DEMO_NAMESPACE}`,
          kind: s.kind,
          port: s.port,
          pid: s.pid,
        })),
      })),
    };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const waits: Promise<unknown>[] = [];
    for (const c of this.clusters) {
      for (const child of [c.gateway, ...c.services.map((s) => s.child)]) {
        if (child && child.exitCode === null && child.signalCode === null) {
          waits.push(once(child, 'exit'));
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          t.unref();
        }
      }
    }
    await Promise.all(waits);
    await this.nats?.stop();
  }
}
