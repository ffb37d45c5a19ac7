import { join } from 'node:path';
import { MeshfedError, waitFor } from '../../core/index.ts';
import { NatsServerProcess, type NatsServerOptions } from './nats-server-process.ts';

/**
 * NATS clusters and superclusters of real nats-server processes on ports they choose themselves.
 * A server can only be told where its peers are once they have bound, so members start in waves:
 * the first server of a cluster, then the others with a route to it (routes gossip into a full
 * mesh); the first cluster of a supercluster, then each next one with gateways to those before it
 * (gateways gossip the other direction).
 */

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
  /** where its servers listen and the command they run under (NatsServerOptions' host and wrap) */
  host?: string;
  wrap?: string[];
}

async function startOrKill(servers: NatsServerProcess[], timeoutMs: number): Promise<void> {
  const started = await Promise.allSettled(servers.map((s) => s.start(timeoutMs)));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * Starts one NATS cluster: its first server, then the rest with a route to it. `gateway` makes
 * every member part of a supercluster, dialling the clusters already running.
 */
async function startCluster(
  spec: ClusterSpec,
  o: {
    jetstream: boolean;
    baseDir: string | undefined;
    timeoutMs: number;
    gateway?: { remotes: { name: string; url: string }[]; clusters: number };
  },
  all: NatsServerProcess[],
): Promise<NatsCluster> {
  const size = spec.size ?? 1;
  const make = (i: number, routes: string[]) => {
    const name = size === 1 ? spec.name : `${spec.name}-${i + 1}`;
    const opts: NatsServerOptions = {
      name,
      jetstream: o.jetstream,
      expect: { routes: size - 1, gateways: o.gateway ? o.gateway.clusters - 1 : 0 },
    };
    if (o.baseDir) opts.workDir = join(o.baseDir, name);
    if (spec.host) opts.host = spec.host;
    if (spec.wrap) opts.wrap = spec.wrap;
    // a gateway-joined server needs a cluster name (its gateway name), even alone
    if (size > 1 || o.gateway) opts.cluster = { name: spec.name, routes };
    if (o.gateway) opts.gateway = { name: spec.name, remotes: o.gateway.remotes };
    const server = new NatsServerProcess(opts);
    all.push(server);
    return server;
  };
  const first = make(0, []);
  await first.start(o.timeoutMs);
  const rest = Array.from({ length: size - 1 }, (_, i) => make(i + 1, [first.routeUrl]));
  await startOrKill(rest, o.timeoutMs);
  return new NatsCluster(spec.name, [first, ...rest]);
}

async function killAll(servers: NatsServerProcess[]): Promise<void> {
  await Promise.all(servers.map((s) => s.kill()));
}

/** One standalone server. */
export async function startNatsServer(
  options: { name?: string; jetstream?: boolean; workDir?: string; timeoutMs?: number } = {},
): Promise<NatsServerProcess> {
  const opts: NatsServerOptions = { name: options.name ?? 'nats', jetstream: options.jetstream ?? false };
  if (options.workDir) opts.workDir = options.workDir;
  const server = new NatsServerProcess(opts);
  await server.start(options.timeoutMs ?? 15_000);
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
  const timeoutMs = options.timeoutMs ?? 20_000;
  const all: NatsServerProcess[] = [];
  try {
    const cluster = await startCluster(
      options,
      { jetstream: options.jetstream ?? false, baseDir: options.baseDir, timeoutMs },
      all,
    );
    await waitFor(() => cluster.meshed(), { timeoutMs, what: `NATS cluster ${options.name} to form` });
    return cluster;
  } catch (err) {
    await killAll(all);
    throw err;
  }
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
 * Resolves once every route and every outbound gateway connection is up.
 */
export async function startNatsSupercluster(options: {
  clusters: ClusterSpec[];
  jetstream?: boolean;
  baseDir?: string;
  timeoutMs?: number;
}): Promise<NatsSupercluster> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const all: NatsServerProcess[] = [];
  const clusters = new Map<string, NatsCluster>();
  try {
    for (const spec of options.clusters) {
      // a cluster dials every cluster started before it; those learn of it when it connects
      const remotes = [...clusters.values()].map((c) => ({ name: c.name, url: c.servers[0]!.gatewayUrl }));
      const cluster = await startCluster(
        spec,
        {
          jetstream: options.jetstream ?? false,
          baseDir: options.baseDir,
          timeoutMs,
          gateway: { remotes, clusters: options.clusters.length },
        },
        all,
      );
      clusters.set(spec.name, cluster);
    }
    const sc = new NatsSupercluster(clusters);
    await waitFor(() => sc.meshed(), { timeoutMs, what: 'NATS supercluster to form' });
    return sc;
  } catch (err) {
    await killAll(all);
    throw err;
  }
}
