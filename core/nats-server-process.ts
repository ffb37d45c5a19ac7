import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshfedError } from './errors.ts';
import { waitFor } from './wait.ts';

/**
 * Starts real nats-server processes on free loopback ports: one server, a cluster, or a
 * supercluster (one NATS cluster per mesh cluster, joined by NATS gateways). Used by the tests,
 * the benchmarks and `meshfed demo`; production users point meshfed at their own NATS.
 * Readiness is probed through the monitoring endpoint (routes and gateways connected), never slept.
 */

export interface NatsServerOptions {
  /** unique server name */
  name: string;
  /** enable JetStream (KV); its store lives in the server's work directory */
  jetstream?: boolean;
  /** NATS cluster (route) membership */
  cluster?: { name: string; port: number; routes: number[] };
  /** NATS gateway (supercluster) membership: this server's gateway port and the other clusters' */
  gateway?: { name: string; port: number; remotes: { name: string; port: number }[] };
  /** where config, logs and JetStream data go; a temp dir by default */
  workDir?: string;
  /** fixed client port (default: a free one) */
  port?: number;
}

export function natsServerInstalled(): boolean {
  const r = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

/** Finds a free TCP port on 127.0.0.1 (bind to 0, read it, close). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  srv.close();
  await once(srv, 'close');
  return port;
}

export class NatsServerProcess {
  readonly options: NatsServerOptions;
  readonly workDir: string;
  readonly port: number;
  /** the monitoring port (health, routes, gateways); picked again if another process took it first */
  monitorPort: number;
  private child: ChildProcess | undefined;
  private readonly ownsWorkDir: boolean;
  private expectedRoutes = 0;
  private expectedGateways = 0;

  private constructor(
    options: NatsServerOptions,
    workDir: string,
    ownsWorkDir: boolean,
    port: number,
    monitorPort: number,
  ) {
    this.options = options;
    this.workDir = workDir;
    this.ownsWorkDir = ownsWorkDir;
    this.port = port;
    this.monitorPort = monitorPort;
    this.expectedRoutes = options.cluster?.routes.length ?? 0;
    this.expectedGateways = options.gateway?.remotes.length ?? 0;
  }

  static async create(options: NatsServerOptions): Promise<NatsServerProcess> {
    const ownsWorkDir = options.workDir === undefined;
    const workDir = options.workDir ?? mkdtempSync(join(tmpdir(), `meshfed-nats-${options.name}-`));
    mkdirSync(workDir, { recursive: true });
    const port = options.port ?? (await freePort());
    const monitorPort = await freePort();
    return new NatsServerProcess(options, workDir, ownsWorkDir, port, monitorPort);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private config(): string {
    const o = this.options;
    const lines = [
      `server_name: ${JSON.stringify(o.name)}`,
      'host: 127.0.0.1',
      `port: ${this.port}`,
      'http: 127.0.0.1:' + this.monitorPort,
      'max_payload: 1048576',
    ];
    if (o.jetstream) {
      lines.push(
        `jetstream { store_dir: ${JSON.stringify(join(this.workDir, 'js'))}, max_mem: 256MB, max_file: 1GB }`,
      );
    }
    if (o.cluster) {
      lines.push(
        `cluster { name: ${JSON.stringify(o.cluster.name)}, listen: "127.0.0.1:${o.cluster.port}", routes: [${o.cluster.routes
          .map((p) => JSON.stringify(`nats-route://127.0.0.1:${p}`))
          .join(', ')}] }`,
      );
    }
    if (o.gateway) {
      lines.push(
        `gateway { name: ${JSON.stringify(o.gateway.name)}, listen: "127.0.0.1:${o.gateway.port}", gateways: [${o.gateway.remotes
          .map(
            (r) =>
              `{ name: ${JSON.stringify(r.name)}, url: ${JSON.stringify(`nats://127.0.0.1:${r.port}`)} }`,
          )
          .join(', ')}] }`,
      );
    }
    return `${lines.join('\n')}\n`;
  }

  /** Starts the process and waits until it accepts clients (routes/gateways are checked by the group). */
  async start(timeoutMs = 15_000): Promise<void> {
    // the monitoring port was free when picked, but another process may bind it before nats-server does;
    // nothing else refers to it, so pick another and try again (client, route and gateway ports are fixed)
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startOnce(timeoutMs);
        return;
      } catch (err) {
        const taken =
          err instanceof MeshfedError &&
          err.code === 'MESHFED_NATS_START_FAILED' &&
          err.message.includes(`:${this.monitorPort}`) &&
          err.message.includes('address already in use');
        if (!taken || attempt >= 3) throw err;
        this.monitorPort = await freePort();
      }
    }
  }

  private async startOnce(timeoutMs: number): Promise<void> {
    if (this.running) return;
    const conf = join(this.workDir, 'nats.conf');
    writeFileSync(conf, this.config());
    const child = spawn('nats-server', ['-c', conf, '-l', join(this.workDir, 'nats.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const spawnError = new Promise<never>((_, reject) => {
      child.once('error', (err) =>
        reject(
          new MeshfedError(
            'MESHFED_NATS_SERVER_MISSING',
            'nats-server could not be started; install it (Debian: apt-get install nats-server, or run scripts/ensure-nats.sh)',
            { cause: err },
          ),
        ),
      );
    });
    this.child = child;
    const exited = once(child, 'exit').then(([code]) => {
      throw new MeshfedError(
        'MESHFED_NATS_START_FAILED',
        `nats-server ${this.options.name} exited with code ${code} during start: ${stderr.trim() || this.logTail() || `see ${join(this.workDir, 'nats.log')}`}`,
      );
    });
    const ready = waitFor(() => this.healthy(), {
      timeoutMs,
      what: `nats-server ${this.options.name} to accept clients`,
    });
    await Promise.race([ready, exited, spawnError]);
    exited.catch(() => undefined);
    spawnError.catch(() => undefined);
  }

  /** The end of nats-server's log (its fatal start-up errors go there, not to stderr). */
  private logTail(): string {
    try {
      return readFileSync(join(this.workDir, 'nats.log'), 'utf8').slice(-1024).trim();
    } catch {
      return '';
    }
  }

  private async monitor(path: string): Promise<Record<string, unknown> | undefined> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.monitorPort}${path}`, {
        signal: AbortSignal.timeout(1000),
      });
      if (!res.ok) return undefined;
      return (await res.json()) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }

  /** true when the server answers its health endpoint (and JetStream is up, if enabled). */
  async healthy(): Promise<boolean> {
    const h = await this.monitor(this.options.jetstream ? '/healthz?js-enabled-only=true' : '/healthz');
    return h !== undefined && h.status === 'ok';
  }

  /** true when every configured route and gateway is connected. */
  async meshed(): Promise<boolean> {
    if (this.expectedRoutes > 0) {
      const r = await this.monitor('/routez');
      if (!r || Number(r.num_routes) < this.expectedRoutes) return false;
    }
    if (this.expectedGateways > 0) {
      const g = await this.monitor('/gatewayz');
      if (!g) return false;
      const out = g.outbound_gateways as Record<string, unknown> | undefined;
      // every server dials one server of each remote cluster; inbound counts vary by server
      if (!out || Object.keys(out).length < this.expectedGateways) return false;
    }
    return true;
  }

  /** Stops the process by PID (SIGTERM, then SIGKILL after `graceMs`). */
  async stop(graceMs = 5000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Simulates a crash: SIGKILL, no goodbye to clients. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  /** Removes the work directory if this object created it. */
  cleanup(): void {
    if (this.ownsWorkDir) rmSync(this.workDir, { recursive: true, force: true });
  }
}

export class NatsCluster {
  readonly name: string;
  readonly servers: NatsServerProcess[];

  constructor(name: string, servers: NatsServerProcess[]) {
    this.name = name;
    this.servers = servers;
  }

  /** client URLs of every server in the cluster */
  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  async meshed(): Promise<boolean> {
    const all = await Promise.all(this.servers.map((s) => s.meshed()));
    return all.every(Boolean);
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }

  cleanup(): void {
    for (const s of this.servers) s.cleanup();
  }
}

export interface ClusterSpec {
  name: string;
  size?: number;
}

async function buildServers(
  spec: ClusterSpec,
  jetstream: boolean,
  gateway: { port: number; remotes: { name: string; port: number }[] } | undefined,
  baseDir: string | undefined,
): Promise<NatsServerProcess[]> {
  const size = spec.size ?? 1;
  const routePorts: number[] = [];
  for (let i = 0; i < size; i++) routePorts.push(await freePort());
  const servers: NatsServerProcess[] = [];
  for (let i = 0; i < size; i++) {
    const name = size === 1 ? spec.name : `${spec.name}-${i + 1}`;
    const opts: NatsServerOptions = { name, jetstream };
    if (baseDir) opts.workDir = join(baseDir, name);
    if (size > 1) {
      opts.cluster = { name: spec.name, port: routePorts[i]!, routes: routePorts.filter((_, j) => j !== i) };
    } else if (gateway) {
      // a gateway-joined server needs a cluster name (its gateway name); routes stay empty
      opts.cluster = { name: spec.name, port: routePorts[i]!, routes: [] };
    }
    if (gateway) {
      // every server of a cluster takes part in the gateway mesh; only the first listens on the advertised port
      const port = i === 0 ? gateway.port : await freePort();
      opts.gateway = { name: spec.name, port, remotes: gateway.remotes };
    }
    servers.push(await NatsServerProcess.create(opts));
  }
  return servers;
}

async function startAll(servers: NatsServerProcess[], what: string, timeoutMs: number): Promise<void> {
  try {
    await Promise.all(servers.map((s) => s.start(timeoutMs)));
    await waitFor(async () => (await Promise.all(servers.map((s) => s.meshed()))).every(Boolean), {
      timeoutMs,
      what,
    });
  } catch (err) {
    await Promise.all(servers.map((s) => s.kill()));
    throw err;
  }
}

/** One standalone server. */
export async function startNatsServer(
  options: { name?: string; jetstream?: boolean; workDir?: string; timeoutMs?: number } = {},
): Promise<NatsServerProcess> {
  const opts: NatsServerOptions = { name: options.name ?? 'nats', jetstream: options.jetstream ?? false };
  if (options.workDir) opts.workDir = options.workDir;
  const server = await NatsServerProcess.create(opts);
  await startAll([server], 'nats-server to start', options.timeoutMs ?? 15_000);
  return server;
}

/** A NATS cluster of `size` servers joined by routes; resolves once every route is up. */
export async function startNatsCluster(options: {
  name: string;
  size: number;
  jetstream?: boolean;
  baseDir?: string;
  timeoutMs?: number;
}): Promise<NatsCluster> {
  const servers = await buildServers(options, options.jetstream ?? false, undefined, options.baseDir);
  await startAll(servers, `NATS cluster ${options.name} to form`, options.timeoutMs ?? 20_000);
  return new NatsCluster(options.name, servers);
}

export class NatsSupercluster {
  readonly clusters: Map<string, NatsCluster>;

  constructor(clusters: Map<string, NatsCluster>) {
    this.clusters = clusters;
  }

  cluster(name: string): NatsCluster {
    const c = this.clusters.get(name);
    if (!c) throw new MeshfedError('MESHFED_INTERNAL', `no NATS cluster named ${name} in this supercluster`);
    return c;
  }

  get servers(): NatsServerProcess[] {
    return [...this.clusters.values()].flatMap((c) => c.servers);
  }

  async meshed(): Promise<boolean> {
    const all = await Promise.all(this.servers.map((s) => s.meshed()));
    return all.every(Boolean);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.clusters.values()].map((c) => c.stop()));
  }

  cleanup(): void {
    for (const c of this.clusters.values()) c.cleanup();
  }
}

/**
 * A supercluster: one NATS cluster per entry, each joined to all the others by NATS gateways.
 * Resolves once every route and every inbound and outbound gateway connection is up.
 */
export async function startNatsSupercluster(options: {
  clusters: ClusterSpec[];
  jetstream?: boolean;
  baseDir?: string;
  timeoutMs?: number;
}): Promise<NatsSupercluster> {
  const gatewayPorts = new Map<string, number>();
  for (const c of options.clusters) gatewayPorts.set(c.name, await freePort());
  const all: NatsServerProcess[] = [];
  const clusters = new Map<string, NatsCluster>();
  for (const spec of options.clusters) {
    const remotes = options.clusters
      .filter((c) => c.name !== spec.name)
      .map((c) => ({ name: c.name, port: gatewayPorts.get(c.name)! }));
    const servers = await buildServers(
      spec,
      options.jetstream ?? false,
      { port: gatewayPorts.get(spec.name)!, remotes },
      options.baseDir,
    );
    all.push(...servers);
    clusters.set(spec.name, new NatsCluster(spec.name, servers));
  }
  await startAll(all, 'NATS supercluster to form', options.timeoutMs ?? 30_000);
  return new NatsSupercluster(clusters);
}
