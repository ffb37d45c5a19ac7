import type { IncomingMessage, Server } from 'node:http';
import http2, { type Http2SecureServer, type Http2Server } from 'node:http2';
import net, { type Socket } from 'node:net';
import type tls from 'node:tls';
import type { IssuedLeaf } from '../ca/index.ts';
import { Counter, Gauge, type Logger, type ServiceRef, serviceKey } from '../core/index.ts';
import { Acceptors } from './acceptors.ts';
import { gatewayAdminServer } from './admin-endpoint.ts';
import { refusedCounter } from './answers.ts';
import { Drain } from './drain.ts';
import { LeafCycle } from './leaf-cycle.ts';
import { forward } from './forward.ts';
import type { GatewayOptions } from './gateway-options.ts';
import type { H1Entry } from './h1/entry.ts';
import { type H1Pool, ROTATION_SPREAD_MS } from './h1/pool.ts';
import { fastPathServers } from './h1/servers.ts';
import { type H2Pool, STREAM_WINDOW_BYTES } from './h2-pool.ts';
import type { Req, Res } from './http-request.ts';
import { Identities } from './identity.ts';
import { GoldenMetrics } from './golden-metrics.ts';
import { InFlight } from './layers/metrics.ts';
import { type PolicyMetrics, policyMetrics } from './layers/policy-facts.ts';
import { Listeners } from './listeners.ts';
import { http } from './node-http.ts';
import { PeerLiveness } from './peer-liveness.ts';
import { PeerRevalidation } from './peer-revalidation.ts';
import { LocalServices } from './local-services.ts';
import { type Handler, fromNode } from './pipeline.ts';
import { requestPipelines } from './pipelines.ts';
import { PolicyIndex, type PolicySummary } from './policy/index.ts';
import { budgetPerService, CircuitBreakers, resilienceMetrics } from './resilience/index.ts';
import { TcpPorts } from './tcp-port.ts';
import { TcpRelay } from './tcp-relay.ts';
import type { UpstreamConnections } from './upstream-connections.ts';
import { createUpstreams } from './upstreams.ts';
import type { TrafficSnapshot } from './traffic-window.ts';
import { guardSession } from './h2-session-guard.ts';
import { secureServer, tlsContextOptions } from './tls-servers.ts';
import { LocalAgent } from './upstream/local-agent.ts';

export type { AuthorizeHook, GatewayOptions } from './gateway-options.ts';

/**
 * The east-west gateway's data plane: the egress listener for local apps, the east-west listener (mTLS
 * tunnel, SNI passthrough, or terminated mTLS for exported services) and the admin listener. It wires the
 * parts together once: listeners and limits, the protocol entry, and three request pipelines built from
 * small layers (egress, east-west requests, east-west CONNECT) that end in the forward dispatch or a
 * TCP relay. Each job lives in a file named for it; this class only composes them.
 */
export class Gateway {
  readonly #options: GatewayOptions;
  readonly #log: Logger;
  readonly #pool: H2Pool;
  /** re-verifies the peers of established mTLS connections (timer, trust changes) and closes the failing */
  readonly #revalidation: PeerRevalidation;
  /** undici's pool to local HTTP/1.1 endpoints, made by the first request that needs it */
  readonly #agent: LocalAgent;
  readonly #listeners: Listeners;
  readonly #local: LocalServices;
  readonly #identities: Identities;
  readonly #relay: TcpRelay;
  readonly #refused: Counter;
  readonly #inFlight = new InFlight();
  /** the golden metrics and their recent window: the recording API of every codec and relay */
  readonly golden: GoldenMetrics;
  readonly #policy: { index: PolicyIndex; metrics: PolicyMetrics } | undefined;
  readonly #egress: Handler;
  readonly #eastWest: Handler;
  readonly #connect: Handler;
  /** the HTTP/1.1 fast path (config.fastPath): its pool, its two entries and its east-west TLS server */
  readonly #fastPool: H1Pool;
  readonly #connections: UpstreamConnections;
  #fastEgress: H1Entry | undefined;
  #fastEastWest: H1Entry | undefined;
  #fastTls: tls.Server | undefined;
  #egressH1!: Server;
  #egressH2!: Http2Server;
  /** workload mTLS on the egress listener (clientAuth optional/required) */
  #egressTls: Http2SecureServer | undefined;
  #tls!: Http2SecureServer;
  #admin: Server | undefined;
  readonly #drain = new Drain(this.#inFlight);
  /** after our leaf rotates, the east-west connections peers hold to us are cycled */
  readonly #leafCycle: LeafCycle;
  /** what the listeners do with a new connection before a server sees it */
  readonly #accept: Acceptors;
  #started = false;

  constructor(options: GatewayOptions) {
    this.#options = options;
    this.#leafCycle = new LeafCycle(ROTATION_SPREAD_MS, () => options.identity.current().notAfter.getTime());
    this.#agent = new LocalAgent(options.balancerConfig, options.config.limits.maxHeaderBytes);
    this.#log = options.logger;
    const c = options.config;
    const bc = options.balancerConfig;
    this.#revalidation = new PeerRevalidation({
      bundle: options.bundle,
      intervalMs: c.peerRevalidationInterval,
      onClosed: (listener, reason) => this.#refused.inc({ listener, reason }),
      logger: options.logger,
    });
    this.#refused = refusedCounter(options.registry);
    this.#listeners = new Listeners({
      limits: c.limits,
      trustedNetworks: c.egress.trustedNetworks,
      refused: this.#refused,
      reusePort: options.reusePort === true,
      registry: options.registry,
    });
    this.#local = new LocalServices(options.local);
    this.#identities = new Identities({
      cluster: options.cluster,
      trustDomain: options.trustDomain,
      identity: options.identity,
      bundle: options.bundle,
      clientAuth: c.egress.clientAuth,
      revalidation: this.#revalidation,
      clientCerts: new Counter({
        name: 'meshfed_egress_client_certs_total',
        help: 'egress requests by the outcome of the workload certificate check (verified, or why it was refused)',
        labelNames: ['result'],
        registers: [options.registry],
      }),
    });
    this.golden = new GoldenMetrics({
      registry: options.registry,
      ...(options.metricLimits ? { limits: options.metricLimits } : {}),
    });
    const metrics = resilienceMetrics(options.registry);
    const breakers = new CircuitBreakers(bc.circuitBreaker, { metrics, sourceCluster: options.cluster });
    const upstreams = createUpstreams({
      options,
      revalidation: this.#revalidation,
      breakers,
      identities: this.#identities,
      agent: () => this.#agent.get(),
    });
    this.#pool = upstreams.pool;
    this.#fastPool = upstreams.fastPool;
    this.#connections = upstreams.connections;
    const index = options.policy
      ? new PolicyIndex(options.policy, {
          cluster: options.cluster,
          onError: (err) =>
            this.#log.error({ err }, 'policy set not compiled; the previous one stays in force'),
        })
      : undefined;
    this.#policy = index ? { index, metrics: policyMetrics(options.registry, index) } : undefined;
    // one retry budget per service, for its HTTP requests and its TCP connections alike
    const budgetFor = budgetPerService({
      budgetPercent: bc.retry.budgetPercent,
      minRetriesPerSecond: bc.retry.minRetriesPerSecond,
      windowMs: bc.retry.budgetWindow,
    });
    const relayOptions = {
      balancers: options.balancers,
      breakers,
      pool: this.#pool,
      identities: this.#identities,
      config: bc,
      refused: this.#refused,
      log: this.#log,
      cluster: options.cluster,
      golden: this.golden,
      policy: this.#policy && { ...this.#policy, random: options.random ?? Math.random },
      budgetFor,
      metrics,
    };
    this.#relay = new TcpRelay(relayOptions);
    const ports = new TcpPorts(relayOptions);
    // a service's ResilienceOverride replaces the gateway-wide retry, timeout and outlier settings
    const resilience = index ? (s: ServiceRef) => index.service(serviceKey(s))?.resilience : undefined;
    options.balancers.outlierOverrides(resilience && ((s) => resilience(s)?.outlier));
    const send = forward({
      balancers: options.balancers,
      breakers,
      config: bc,
      metrics,
      budgetFor,
      cluster: options.cluster,
      codec: upstreams.codec,
      ...(resilience ? { resilience } : {}),
      liveness: new PeerLiveness(options, this.#pool, this.#fastPool),
    });
    const pipelines = requestPipelines({
      options,
      send,
      connect: this.#relay.connect,
      refused: this.#refused,
      log: this.#log,
      identities: this.#identities,
      local: this.#local,
      golden: this.golden,
      inFlight: this.#inFlight,
      policy: this.#policy,
    });
    this.#egress = pipelines.egress;
    this.#eastWest = pipelines.eastWest;
    this.#connect = pipelines.connect;

    const self = this;
    new Gauge({
      name: 'meshfed_active_connections',
      help: 'open client connections per data-plane listener (egress, eastWest, tcp:<service>)',
      labelNames: ['listener'],
      registers: [options.registry],
      collect() {
        this.reset();
        for (const [listener, open] of self.#listeners.connectionsByListener()) this.set({ listener }, open);
      },
    });
    new Gauge({
      name: 'meshfed_active_requests',
      help: 'requests in flight',
      registers: [options.registry],
      collect() {
        this.set(self.#inFlight.count);
      },
    });
    this.#accept = new Acceptors({
      config: options.config,
      listeners: this.#listeners,
      refused: this.#refused,
      drain: this.#drain,
      local: this.#local,
      relay: this.#relay,
      ports,
      policy: this.#policy,
    });
  }

  /** Runs a pipeline for one request; the answer layer answers every failure, this catches the rest. */
  #serve(pipeline: Handler, listener: 'egress' | 'eastWest') {
    return (req: Req, res: Res) => {
      // node's HTTP/1.1 server (egress upgrades, HTTP/1.0, fastPath off): the client is told to go elsewhere;
      // and after an Upgrade it did not take, node reads nothing more on the connection: it closes after the answer
      // rather than leave a keep-alive client waiting for its timeouts
      if (
        res instanceof http.ServerResponse &&
        (this.#drain.draining || (req as IncomingMessage).headers.upgrade)
      )
        res.shouldKeepAlive = false;
      pipeline(fromNode(listener, req, res, this.#options.cluster)).catch((err: unknown) => {
        this.#log.warn({ err, listener }, 'request pipeline failed');
        res.destroy();
      });
    };
  }

  // ---------------------------------------------------------------- listeners

  async start(): Promise<void> {
    const c = this.#options.config;
    const limits = c.limits;
    this.#egressH1 = http.createServer(
      {
        maxHeaderSize: limits.maxHeaderBytes,
        headersTimeout: limits.headersTimeout,
        requestTimeout: 0,
        keepAliveTimeout: 65_000,
        connectionsCheckingInterval: Math.min(1_000, limits.headersTimeout),
      },
      this.#serve(this.#egress, 'egress'),
    );
    // this server never listens (sockets arrive by 'connection' after the h2c sniff), but node only
    // tracks connections for headersTimeout (slowloris) once 'listening' fires: start that tracking
    this.#egressH1.emit('listening');
    this.#egressH2 = http2.createServer({
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderBytes,
        initialWindowSize: STREAM_WINDOW_BYTES,
      },
      maxSessionInvalidFrames: 100,
      maxSessionRejectedStreams: 100,
    });
    this.#egressH2.on('request', this.#serve(this.#egress, 'egress'));
    this.#egressH2.on('session', (s) => {
      guardSession(s, { listener: 'egress', limits, refused: this.#refused, graceful: false });
      this.#drain.track(s);
    });

    const context = tlsContextOptions(this.#options.identity.current(), this.#options.bundle());
    this.#tls = secureServer({
      listener: 'eastWest',
      limits,
      context,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      refused: this.#refused,
    });
    this.#listeners.watchEastWest(this.#tls);
    this.#tls.on('session', (s) => {
      this.#drain.track(s);
      this.#leafCycle.track(s);
    });
    this.#tls.on('request', this.#serve(this.#eastWest, 'eastWest'));
    const connect = this.#serve(this.#connect, 'eastWest');
    // HTTP/2 CONNECT is a tunnel stream (compat: req, res); HTTP/1.1 CONNECT hands over the raw socket
    this.#tls.on('connect', (req: Req, resOrSocket: Res | Socket) => {
      if ((req as IncomingMessage).httpVersionMajor === 2) connect(req, resOrSocket as Res);
      else this.#accept.refuseHttp1Connect(resOrSocket as Socket);
    });
    if (c.egress.clientAuth !== 'none') {
      // the handshake accepts any client certificate (or none): each request is then checked with
      // ca/verify and refused with a status that says why, which a failed handshake cannot do
      this.#egressTls = secureServer({
        listener: 'egress',
        limits,
        context,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        refused: this.#refused,
      });
      this.#listeners.handshakes.egress.watch(this.#egressTls);
      this.#egressTls.on('session', (s) => this.#drain.track(s));
      this.#egressTls.on('request', this.#serve(this.#egress, 'egress'));
      this.#egressTls.on('connect', (_req: Req, resOrSocket: Res | Socket) => {
        if (resOrSocket instanceof net.Socket) this.#accept.refuseHttp1Connect(resOrSocket, 'egress');
        else (resOrSocket as Res).destroy();
      });
    }
    if (c.fastPath) {
      const fast = fastPathServers({
        config: c,
        cluster: this.#options.cluster,
        egress: this.#egress,
        eastWest: this.#eastWest,
        egressH1: this.#egressH1,
        context,
        refused: this.#refused,
        log: this.#log,
      });
      this.#fastEgress = fast.egress;
      this.#fastEastWest = fast.eastWest;
      this.#leafCycle.fastPath(fast.eastWest);
      this.#fastTls = fast.tls;
      this.#listeners.watchEastWest(fast.tls);
    }
    this.#options.identity.on('rotated', this.#onRotated);

    this.#accept.serveWith({
      egressH1: this.#egressH1,
      egressH2: this.#egressH2,
      egressTls: this.#egressTls,
      fastEgress: this.#fastEgress,
      tls: this.#tls,
      fastTls: this.#fastTls,
    });
    const egress = () =>
      net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.#accept.egress(s));
    const eastWest = () =>
      net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.#accept.eastWest(s));
    await this.#listeners.bind(egress, c.listeners.egress, 'egress');
    await this.#listeners.bind(eastWest, c.listeners.eastWest, 'eastWest');
    if (this.#options.adminListener !== false) {
      const admin = gatewayAdminServer(this.#options, {
        state: () => (this.#drain.draining ? 'draining' : this.#started ? 'ready' : 'starting'),
        traffic: (windowMs) => this.traffic(windowMs),
        ...(this.#policy ? { policySummary: () => this.policySummary() } : {}),
      });
      await this.#listeners.bind(admin, c.listeners.admin, 'admin');
      this.#admin = admin;
    }
    for (const t of c.tcpPorts) {
      const listener = `tcp:${t.service}`;
      const srv = () =>
        net.createServer({ noDelay: true }, (s) => this.#accept.tcp(s, listener, t.service, t.port));
      await this.#listeners.bind(srv, t.listen, listener);
    }
    this.#started = true;
    this.#options.balancers.healthChecks((t) =>
      t.local ? Promise.resolve(true) : this.#pool.probe(t.address, t.cluster),
    );
  }

  /** certificates rotate without dropping connections: new handshakes, and new tunnel sessions, use the new leaf */
  readonly #onRotated = (leaf: IssuedLeaf) => {
    const context = tlsContextOptions(leaf, this.#options.bundle());
    this.#tls.setSecureContext(context);
    this.#egressTls?.setSecureContext(context);
    this.#fastTls?.setSecureContext(context);
    this.#pool.rotate();
    this.#fastPool.rotate();
    this.#leafCycle.rotated();
  };

  /**
   * The trust bundle changed (a root added or retired): new handshakes on every listener and new tunnel
   * sessions verify against it; established connections stay.
   */
  trustChanged(): void {
    // before start() built the TLS servers there is nothing to re-apply: they read the bundle then
    if (!this.#tls) return;
    const context = tlsContextOptions(this.#options.identity.current(), this.#options.bundle());
    this.#tls.setSecureContext(context);
    this.#egressTls?.setSecureContext(context);
    this.#fastTls?.setSecureContext(context);
    this.#pool.trustChanged();
    this.#fastPool.trustChanged();
    // a root removed: established connections whose peer chained only to it close now
    this.#revalidation.sweep();
  }

  /** Every golden tuple's calls over the last `windowMs`: what `meshfed stat`, `top` and /ui read. */
  traffic(windowMs: number): TrafficSnapshot {
    return this.golden.traffic(windowMs);
  }

  /** The requests through this gateway's pipelines: how many are in flight, when the last one started. */
  get requestActivity(): Readonly<InFlight> {
    return this.#inFlight;
  }

  /** What this gateway enforces (/debug/policy); undefined when it runs without a PolicyView. */
  policySummary(): PolicySummary | undefined {
    return this.#policy?.index.summary();
  }

  addresses(): Record<string, string> {
    return { ...this.#listeners.bound };
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * The graceful drain (SIGTERM): /readyz answers 503 and for up to `noticeMs` (less once no request came for
   * a moment) every peer and client is told to move (GOAWAY, `connection: close`) while everything is still
   * served; then the listeners stop accepting, idle connections close, and in-flight requests (with their
   * response bodies, gRPC streams and CONNECT streams) get up to `timeoutMs` to finish.
   */
  async drain(timeoutMs: number, noticeMs = 0): Promise<void> {
    await this.#drain.run({
      timeoutMs,
      noticeMs,
      entries: [this.#fastEgress, this.#fastEastWest].filter((e) => e !== undefined),
      stopAccepting: () => {
        for (const s of this.#listeners.servers) if (s !== this.#admin) s.close();
        this.#egressH1?.closeIdleConnections();
      },
    });
  }

  async stop(): Promise<void> {
    this.#drain.close();
    this.#options.balancers.healthChecks(undefined);
    this.#options.balancers.outlierOverrides(undefined);
    this.#local.stop();
    this.#policy?.index.stop();
    this.#options.identity.off('rotated', this.#onRotated);
    this.#pool.close();
    this.#fastPool.close();
    this.#connections.close();
    this.#fastEgress?.stop();
    this.#fastEastWest?.stop();
    this.#agent.close();
    for (const s of this.#listeners.sockets) s.destroy();
    // dashboards' event streams never end on their own
    this.#admin?.closeAllConnections();
    await Promise.all(
      this.#listeners.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.listening) return resolve();
            s.close(() => resolve());
          }),
      ),
    );
  }
}
