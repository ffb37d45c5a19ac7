import { Counter, Gauge, type Registry } from '../core/index.ts';

/**
 * What a connection a gateway dials speaks: to a remote gateway, `fast-path` (HTTP/1.1 over mTLS, ALPN
 * `meshfed-h1/1`) or `tunnel` (HTTP/2 over mTLS); to a local endpoint, `http1` (the fast path's plain connections)
 * or `h2c`.
 */
export type UpstreamProtocol = 'fast-path' | 'tunnel' | 'http1' | 'h2c';

/**
 * How a dial ended: `new` (a full TLS handshake, or a plain connect), `resumed` (a TLS session resumed from a
 * ticket), `failed` (refused, timed out, the peer not verified), `tunnel-only` (the fast path was offered and the
 * gateway chose the tunnel: a gateway without the fast path, or with `fastPath: false`).
 */
export type ConnectResult = 'new' | 'resumed' | 'failed' | 'tunnel-only';

interface Families {
  connects: Counter<'source_cluster' | 'destination_cluster' | 'protocol' | 'result'>;
  sources: Set<UpstreamConnections>;
}

const byRegistry = new WeakMap<Registry, Families>();

function families(registry: Registry): Families {
  let f = byRegistry.get(registry);
  if (f) return f;
  const sources = new Set<UpstreamConnections>();
  f = {
    connects: new Counter({
      name: 'meshfed_upstream_connects_total',
      help: 'connections dialled to remote gateways and local endpoints, by what they are for (fast-path, tunnel, http1, h2c) and how the dial ended (new, resumed, failed, tunnel-only)',
      labelNames: ['source_cluster', 'destination_cluster', 'protocol', 'result'],
      registers: [registry],
    }),
    sources,
  };
  new Gauge({
    name: 'meshfed_upstream_connections',
    help: 'open connections this gateway dialled, by destination cluster and the protocol they speak',
    labelNames: ['source_cluster', 'destination_cluster', 'protocol'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sources)
        for (const [key, n] of s.open) {
          const [cluster, protocol] = key.split('\n') as [string, string];
          this.set({ source_cluster: s.source, destination_cluster: cluster, protocol }, n);
        }
    },
  });
  // the fast path's pools, read at each scrape: requests waiting for a connection, connections waiting for one
  const pools = (
    name: string,
    help: string,
    field: 'waiting' | 'idle',
  ): Gauge<'source_cluster' | 'destination_cluster'> =>
    new Gauge({
      name,
      help,
      labelNames: ['source_cluster', 'destination_cluster'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of sources) {
          const sum = new Map<string, number>();
          for (const u of s.poolUsage()) {
            const cluster = u.cluster ?? s.source;
            sum.set(cluster, (sum.get(cluster) ?? 0) + u[field]);
          }
          for (const [cluster, n] of sum)
            this.set({ source_cluster: s.source, destination_cluster: cluster }, n);
        }
      },
    });
  pools(
    'meshfed_upstream_requests_pending',
    'requests waiting for a fast-path connection: none idle, and a dial under way or the dials per address at their limit',
    'waiting',
  );
  pools(
    'meshfed_upstream_connections_idle',
    'fast-path connections open and waiting for a request (of meshfed_upstream_connections)',
    'idle',
  );
  byRegistry.set(registry, f);
  return f;
}

/** what a pool of the fast path holds for one destination (h1/pool.ts, usage) */
export interface PoolUsage {
  /** a remote gateway's cluster; undefined: a local endpoint */
  cluster: string | undefined;
  waiting: number;
  idle: number;
}

/**
 * The connections one gateway's pools dial, counted per destination cluster and protocol: the dials by how they
 * ended, and the connections open now. Counted per dial and per close, never per request. A local endpoint's
 * destination cluster is this gateway's own.
 */
export class UpstreamConnections {
  readonly source: string;
  /** open connections by `cluster \n protocol`; a pair once seen stays (at 0), as a counter's series would */
  readonly open = new Map<string, number>();
  readonly #families: Families;
  #usage: () => Iterable<PoolUsage> = () => [];

  constructor(registry: Registry, source: string) {
    this.source = source;
    this.#families = families(registry);
    this.#families.sources.add(this);
  }

  /** a dial to `cluster` (undefined: a local endpoint) ended without a connection */
  failed(
    cluster: string | undefined,
    protocol: UpstreamProtocol,
    result: Exclude<ConnectResult, 'new' | 'resumed'>,
  ): void {
    this.#families.connects.inc({
      source_cluster: this.source,
      destination_cluster: cluster ?? this.source,
      protocol,
      result,
    });
  }

  /** a connection to `cluster` opened; the function returned is called once, when it closes */
  opened(cluster: string | undefined, protocol: UpstreamProtocol, resumed = false): () => void {
    const destination = cluster ?? this.source;
    this.#families.connects.inc({
      source_cluster: this.source,
      destination_cluster: destination,
      protocol,
      result: resumed ? 'resumed' : 'new',
    });
    const key = `${destination}\n${protocol}`;
    this.open.set(key, (this.open.get(key) ?? 0) + 1);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      this.open.set(key, (this.open.get(key) ?? 1) - 1);
    };
  }

  /** where the pending and idle gauges read the fast path's pool */
  watchPool(usage: () => Iterable<PoolUsage>): void {
    this.#usage = usage;
  }

  poolUsage(): Iterable<PoolUsage> {
    return this.#usage();
  }

  /** this gateway stopped: its connections leave the gauge */
  close(): void {
    this.#families.sources.delete(this);
  }
}
