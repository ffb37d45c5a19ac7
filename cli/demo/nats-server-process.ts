import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshfedError, waitFor } from '../../core/index.ts';

/**
 * A real nats-server process for the demo, the tests and the benchmarks (production users point
 * meshfed at their own NATS). nats-server binds every port itself (`-1`) and writes the ones it got
 * to a ports file: nothing picks a port and hopes it is still free when the server binds it.
 * Readiness is the ports file, then a TCP connect to the client port, then the health endpoint,
 * all under one deadline and raced against the process exiting.
 */

export interface NatsServerOptions {
  /** unique server name */
  name: string;
  /** enable JetStream (KV); its store lives in the server's work directory */
  jetstream?: boolean;
  /** NATS cluster (route) membership: the route URLs of members already running (none for the first) */
  cluster?: { name: string; routes: string[] };
  /** NATS gateway (supercluster) membership: the gateway URLs of clusters already running */
  gateway?: { name: string; remotes: { name: string; url: string }[] };
  /** routes and outbound gateways meshed() waits for (others may join after this server) */
  expect?: { routes: number; gateways: number };
  /** where config, logs, the ports file and JetStream data go; a temp dir by default */
  workDir?: string;
  /** more nats-server configuration (e.g. an `authorization` block) */
  extraConfig?: string;
  /** the server's environment (config files may read variables with `$NAME`) */
  env?: NodeJS.ProcessEnv;
  /** the address every listener binds and every URL names; 127.0.0.1 by default */
  host?: string;
  /** a command the server runs under, e.g. `ip netns exec NAME` to start it in a network namespace */
  wrap?: string[];
}

/** The ports the server bound, as it reported them. */
export interface NatsPorts {
  client: number;
  monitor: number;
  cluster?: number;
  gateway?: number;
}

export function natsServerInstalled(): boolean {
  const r = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

function portOf(url: string | undefined): number | undefined {
  if (url === undefined) return undefined;
  const port = Number(new URL(url).port);
  return Number.isInteger(port) && port > 0 ? port : undefined;
}

function tcpReachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class NatsServerProcess {
  readonly options: NatsServerOptions;
  readonly workDir: string;
  private readonly ownsWorkDir: boolean;
  private child: ChildProcess | undefined;
  #ports: NatsPorts | undefined;

  constructor(options: NatsServerOptions) {
    this.options = options;
    this.ownsWorkDir = options.workDir === undefined;
    this.workDir = options.workDir ?? mkdtempSync(join(tmpdir(), `meshfed-nats-${options.name}-`));
    mkdirSync(this.workDir, { recursive: true });
  }

  /** The ports of the last start; a restart binds the same ones, so clients reconnect to the same URL. */
  get ports(): NatsPorts {
    if (!this.#ports) {
      throw new MeshfedError('MESHFED_INTERNAL', `nats-server ${this.options.name} has not started yet`);
    }
    return this.#ports;
  }

  get port(): number {
    return this.ports.client;
  }

  get host(): string {
    return this.options.host ?? '127.0.0.1';
  }

  get url(): string {
    return `nats://${this.host}:${this.ports.client}`;
  }

  /** where other members of its NATS cluster dial it */
  get routeUrl(): string {
    return `nats-route://${this.host}:${this.ports.cluster}`;
  }

  /** where other clusters of a supercluster dial it */
  get gatewayUrl(): string {
    return `nats://${this.host}:${this.ports.gateway}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private get portsDir(): string {
    return join(this.workDir, 'ports');
  }

  private config(): string {
    const o = this.options;
    // -1: nats-server picks; after the first start the reported ports are asked for again
    const p = (port: number | undefined) => port ?? -1;
    const lines = [
      `server_name: ${JSON.stringify(o.name)}`,
      `host: ${JSON.stringify(this.host)}`,
      `port: ${p(this.#ports?.client)}`,
      `http: "${this.host}:${p(this.#ports?.monitor)}"`,
      `ports_file_dir: ${JSON.stringify(this.portsDir)}`,
      'max_payload: 1048576',
    ];
    if (o.jetstream) {
      lines.push(
        `jetstream { store_dir: ${JSON.stringify(join(this.workDir, 'js'))}, max_mem: 256MB, max_file: 1GB }`,
      );
    }
    if (o.cluster) {
      const routes = o.cluster.routes.map((r) => JSON.stringify(r)).join(', ');
      lines.push(
        `cluster { name: ${JSON.stringify(o.cluster.name)}, listen: "${this.host}:${p(this.#ports?.cluster)}", routes: [${routes}] }`,
      );
    }
    if (o.gateway) {
      const remotes = o.gateway.remotes
        .map((r) => `{ name: ${JSON.stringify(r.name)}, url: ${JSON.stringify(r.url)} }`)
        .join(', ');
      lines.push(
        `gateway { name: ${JSON.stringify(o.gateway.name)}, listen: "${this.host}:${p(this.#ports?.gateway)}", gateways: [${remotes}] }`,
      );
    }
    if (o.extraConfig) lines.push(o.extraConfig);
    return `${lines.join('\n')}\n`;
  }

  /**
   * Starts the process and resolves once it accepts clients (routes and gateways are checked by the
   * group, with meshed()). Rejects when the process exits first or the deadline passes.
   */
  async start(timeoutMs = 15_000): Promise<void> {
    if (this.running) return;
    rmSync(this.portsDir, { recursive: true, force: true });
    mkdirSync(this.portsDir, { recursive: true });
    const conf = join(this.workDir, 'nats.conf');
    writeFileSync(conf, this.config());
    const argv = [
      ...(this.options.wrap ?? []),
      'nats-server',
      '-c',
      conf,
      '-l',
      join(this.workDir, 'nats.log'),
    ];
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: this.options.env ?? process.env,
    });
    this.child = child;
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (err) =>
        reject(
          new MeshfedError(
            'MESHFED_NATS_SERVER_MISSING',
            'nats-server could not be started; install it (Debian: apt-get install nats-server, or run scripts/ensure-nats.sh)',
            { cause: err },
          ),
        ),
      );
      child.once('exit', (code) =>
        reject(
          new MeshfedError(
            'MESHFED_NATS_START_FAILED',
            `nats-server ${this.options.name} exited with code ${code} during start: ${stderr.trim() || this.logTail() || `see ${join(this.workDir, 'nats.log')}`}`,
          ),
        ),
      );
    });
    failed.catch(() => undefined);
    // the readiness polls stop when the race is lost (the child exited), not at their deadline
    const stop = new AbortController();
    const ready = this.ready(timeoutMs, stop.signal);
    ready.catch(() => undefined);
    try {
      await Promise.race([ready, failed]);
    } catch (err) {
      stop.abort(err);
      if (this.running) await this.kill();
      throw err;
    }
  }

  private async ready(timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const what = (s: string) => `nats-server ${this.options.name}: ${s}`;
    const ports = await waitFor(() => this.readPortsFile(), {
      timeoutMs: left(),
      what: what(`its ports file in ${this.portsDir}`),
      signal,
    });
    if (this.options.gateway) {
      // nats-server 2.9 leaves the gateway port out of the ports file; the monitoring endpoint has it
      ports.gateway = await waitFor(
        async () => {
          const port = (await this.monitor('/gatewayz', ports.monitor))?.port;
          return typeof port === 'number' && port > 0 ? port : undefined;
        },
        { timeoutMs: left(), what: what('its gateway port'), signal },
      );
    }
    this.#ports = ports;
    await waitFor(() => tcpReachable(this.host, ports.client), {
      timeoutMs: left(),
      what: what('a TCP connect'),
      signal,
    });
    await waitFor(() => this.healthy(), { timeoutMs: left(), what: what('to accept clients'), signal });
  }

  /** `<binary>_<pid>.ports`, written once every listener is bound. */
  private readPortsFile(): NatsPorts | undefined {
    const name = readdirSync(this.portsDir).find((f) => f.endsWith(`_${this.child?.pid}.ports`));
    if (!name) return undefined;
    let json: Record<string, string[] | undefined>;
    try {
      json = JSON.parse(readFileSync(join(this.portsDir, name), 'utf8'));
    } catch {
      return undefined; // still being written
    }
    const client = portOf(json.nats?.[0]);
    const monitor = portOf(json.monitoring?.[0]);
    if (client === undefined || monitor === undefined) return undefined;
    const cluster = portOf(json.cluster?.[0]);
    if (this.options.cluster && cluster === undefined) return undefined;
    return cluster === undefined ? { client, monitor } : { client, monitor, cluster };
  }

  /** The end of nats-server's log (its fatal start-up errors go there, not to stderr). */
  private logTail(): string {
    try {
      return readFileSync(join(this.workDir, 'nats.log'), 'utf8').slice(-1024).trim();
    } catch {
      return '';
    }
  }

  private async monitor(
    path: string,
    port = this.#ports?.monitor,
  ): Promise<Record<string, unknown> | undefined> {
    if (port === undefined) return undefined;
    try {
      const res = await fetch(`http://${this.host}:${port}${path}`, { signal: AbortSignal.timeout(1000) });
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

  /** true when the routes and outbound gateways in `options.expect` are connected. */
  async meshed(): Promise<boolean> {
    const routes = this.options.expect?.routes ?? 0;
    const gateways = this.options.expect?.gateways ?? 0;
    if (routes > 0) {
      const r = await this.monitor('/routez');
      if (!r || Number(r.num_routes) < routes) return false;
    }
    if (gateways > 0) {
      const g = await this.monitor('/gatewayz');
      const out = g?.outbound_gateways as Record<string, unknown> | undefined;
      // every server dials one server of each remote cluster; inbound counts vary by server
      if (!out || Object.keys(out).length < gateways) return false;
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
