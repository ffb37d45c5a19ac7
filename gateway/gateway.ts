import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, {
  type ClientHttp2Stream,
  constants as h2c,
  type Http2SecureServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type IncomingHttpHeaders as H2Headers,
} from 'node:http2';
import net, { BlockList, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Agent } from 'undici';
import UndiciAgent from 'undici/lib/dispatcher/agent.js';
import {
  type CertificateSource,
  type IssuedLeaf,
  parseCertificates,
  parseSpiffeId,
  peerCertificateChain,
  type TrustBundle,
  type VerifiedIdentity,
  verify,
} from '../ca/index.ts';
import {
  type CatalogView,
  Counter,
  type EndpointSource,
  Gauge,
  Histogram,
  LATENCY_BUCKETS,
  type Locality,
  type LocalService,
  type Logger,
  MeshfedError,
  parseClustersetHost,
  type Registry,
  serviceKey,
} from '../core/index.ts';
import type { BalancerConfig, Balancers, BalancerTarget, Failure, PickResult } from './balancer/index.ts';
import { type HelloResult, MAX_HELLO_BYTES, parseClientHello } from './client-hello.ts';
import { adminHandler } from './admin-endpoint.ts';
import { type GatewayConfig, TUNNEL_ALPN } from './config.ts';
import { H2Pool, SESSION_WINDOW_BYTES, STREAM_WINDOW_BYTES } from './h2-pool.ts';
import { PeerRevalidation } from './peer-revalidation.ts';
import { requestHeadersForUpstream, responseHeadersForClient } from './headers.ts';
import {
  balancedDispatch,
  budgetPerService,
  type CallContext,
  CircuitBreakers,
  callContext,
  compose,
  type Dispatch,
  deadline,
  grpcTimeoutMs,
  perTryTimeout,
  resilienceMetrics,
  retry,
  UpstreamFailure,
} from './resilience/index.ts';

// W3C trace context directly, so traceparent works whether or not a global propagator is installed
const W3C = new W3CTraceContextPropagator();

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** a stream reset by the client sooner than this after it opened counts toward the rapid-reset limit */
const PREMATURE_RESET_MS = 500;
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Decides whether an authenticated caller may reach a service; throw or return false to refuse. */
export type AuthorizeHook = (o: {
  peer: string;
  caller: string;
  service: string;
  cluster: string;
}) => boolean;

export interface GatewayOptions {
  config: GatewayConfig;
  cluster: string;
  trustDomain: string;
  locality: Locality;
  identity: CertificateSource;
  bundle: () => TrustBundle;
  catalog: CatalogView;
  local: EndpointSource;
  balancers: Balancers;
  balancerConfig: BalancerConfig;
  registry: Registry;
  logger: Logger;
  tracer?: Tracer;
  authorize?: AuthorizeHook;
  /** the gateway's name in spans and metrics */
  name?: string;
  /**
   * bind the data-plane listeners with SO_REUSEPORT (exclusive, outside node:cluster's sharing): several
   * worker processes listen on the same ports and the kernel spreads connections among them
   */
  reusePort?: boolean;
  /** default true; a multi-process gateway's supervisor serves the admin listener instead */
  adminListener?: boolean;
}

/** What the innermost send of a proxied request needs: the request, its response, its span. */
interface Exchange {
  req: Req;
  res: Res;
  /** the service the request was routed by (parsed once, at the edge) */
  service: { namespace: string; name: string };
  span: Span | undefined;
  caller: string | undefined;
}

/** A try whose response headers arrived; `forwarded: false` is a 5xx held back for a retry. */
interface Sent {
  status: number;
  cluster: string;
  forwarded: boolean;
}

/** What viaH2/viaHttp1 report to the one place that settles a try (send). */
interface UpstreamAttempt {
  /** false once the try is settled (answered, failed, timed out, or the caller left) */
  readonly open: boolean;
  /** how to stop the upstream request when the try is abandoned */
  onCancel(fn: () => void): void;
  /** response headers arrived: forwards them and returns true, or false when the upstream must be dropped */
  respond(
    status: number,
    headers: http.OutgoingHttpHeaders,
    trailers?: Record<string, string | string[]>,
  ): boolean;
  /** the upstream failed: before a response the try fails; after a forwarded one the response is cut */
  fail(failure: Failure, err: unknown): void;
}

/** Maps the error that ended a proxied request to what the caller sees (at the edge only). */
function errorAnswer(err: unknown): { status: number; reason: string; message: string; forwarded?: boolean } {
  const message = (err as Error).message;
  if (err instanceof UpstreamFailure) {
    const sent = err.response as Sent | undefined;
    if (sent) return { status: sent.status, reason: 'upstream-status', message, forwarded: sent.forwarded };
    const cause = err.cause;
    if (cause instanceof MeshfedError && cause.code.startsWith('MESHFED_CA_'))
      return { status: 503, reason: 'upstream-identity', message: `${message}: ${cause.message}` };
    switch (err.failure) {
      case 'connect':
      case 'refused':
        return { status: 503, reason: 'connect-failed', message };
      case 'overflow':
        return { status: 503, reason: 'overloaded', message };
      case 'timeout':
        return { status: 504, reason: 'upstream-timeout', message };
      default:
        return { status: 502, reason: 'upstream-reset', message };
    }
  }
  if (err instanceof MeshfedError) {
    if (err.code === 'MESHFED_GATEWAY_TIMEOUT') return { status: 504, reason: 'upstream-timeout', message };
    if (err.code === 'MESHFED_GATEWAY_OVERLOADED') return { status: 503, reason: 'overloaded', message };
    if (err.code === 'MESHFED_GATEWAY_NO_HEALTHY_UPSTREAM')
      return { status: 503, reason: 'no-healthy-upstream', message };
  }
  return { status: 502, reason: 'upstream-error', message };
}

function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/**
 * The east-west gateway's data plane: the egress listener for local apps, the east-west listener
 * (mTLS tunnel, SNI passthrough, or terminated mTLS for exported services) and the admin listener.
 * Every request picks a target from the locality-aware balancer and retries idempotent requests and
 * connect failures on another target within a retry budget.
 */
export class Gateway {
  private readonly o: GatewayOptions;
  private readonly log: Logger;
  private readonly pool: H2Pool;
  /** re-verifies the peers of established mTLS connections (timer, trust changes) and closes the failing */
  private readonly revalidation: PeerRevalidation;
  private readonly upstream: Agent;
  private readonly servers: Server[] = [];
  private egressH1!: http.Server;
  private egressH2!: Http2Server;
  /** workload mTLS on the egress listener (clientAuth optional/required) */
  private egressTls: Http2SecureServer | undefined;
  private tls!: Http2SecureServer;
  private admin: http.Server | undefined;
  private localIndex = new Map<string, LocalService>();
  private readonly unsubscribe: () => void;
  private readonly trusted = new BlockList();
  private readonly peers = new WeakMap<object, VerifiedIdentity>();
  private readonly callers = new WeakMap<object, string | { reason: string; message: string }>();
  private readonly sockets = new Set<Socket>();
  private active = 0;
  private draining = false;
  private started = false;
  private bound: Record<string, string> = {};
  private readonly requests: Counter;
  private readonly duration: Histogram;
  private readonly refused: Counter;
  private readonly clientCerts: Counter;
  private readonly breakers: CircuitBreakers;
  /** pick → circuit breaker → send, inside retry (budget per service) and a per-try timeout */
  private readonly dispatch: Dispatch<Sent, Exchange>;

  constructor(o: GatewayOptions) {
    this.o = o;
    this.log = o.logger;
    const creds = { leaf: () => o.identity.current(), bundle: o.bundle, trustDomain: o.trustDomain };
    this.revalidation = new PeerRevalidation({
      bundle: o.bundle,
      intervalMs: o.config.peerRevalidationInterval,
      onClosed: (listener, reason) => this.refused.inc({ listener, reason }),
      logger: o.logger,
    });
    this.pool = new H2Pool({
      size: o.config.tunnelConnectionsPerGateway,
      maxRequestsPerConnection: o.config.tunnelMaxRequestsPerConnection,
      connectTimeoutMs: o.balancerConfig.timeouts.connect,
      creds,
      revalidation: this.revalidation,
    });
    const bc = o.balancerConfig;
    this.upstream = new UndiciAgent({
      // circuitBreaker.maxConnections per local endpoint; requests past it wait (circuitBreaker.maxPending)
      connections: bc.circuitBreaker.maxConnections,
      connect: { timeout: bc.timeouts.connect },
      headersTimeout: bc.timeouts.request,
      bodyTimeout: bc.timeouts.idle,
      keepAliveTimeout: bc.timeouts.idle,
    });
    for (const cidr of o.config.egress.trustedNetworks) {
      const [addr, bits] = cidr.split('/');
      const type = addr!.includes(':') ? 'ipv6' : 'ipv4';
      this.trusted.addSubnet(addr!, Number(bits ?? (type === 'ipv4' ? 32 : 128)), type);
    }
    const reindex = (s: readonly LocalService[]) => {
      this.localIndex = new Map(s.map((x) => [serviceKey(x), x]));
    };
    reindex(o.local.current());
    this.unsubscribe = o.local.onChange(reindex);
    const labels = ['listener', 'source_cluster', 'destination_cluster', 'service', 'code'];
    this.requests = new Counter({
      name: 'meshfed_requests_total',
      help: 'proxied requests',
      labelNames: labels,
      registers: [o.registry],
    });
    this.duration = new Histogram({
      name: 'meshfed_request_duration_seconds',
      help: 'proxied request latency, first byte in to response headers out',
      labelNames: ['listener', 'source_cluster', 'destination_cluster', 'service'],
      buckets: LATENCY_BUCKETS,
      registers: [o.registry],
    });
    this.refused = new Counter({
      name: 'meshfed_refused_total',
      help: 'connections or requests refused before reaching a backend, by reason',
      labelNames: ['listener', 'reason'],
      registers: [o.registry],
    });
    this.clientCerts = new Counter({
      name: 'meshfed_egress_client_certs_total',
      help: 'egress requests by the outcome of the workload certificate check (verified, or why it was refused)',
      labelNames: ['result'],
      registers: [o.registry],
    });
    const metrics = resilienceMetrics(o.registry);
    this.breakers = new CircuitBreakers(bc.circuitBreaker, { metrics, sourceCluster: o.cluster });
    this.dispatch = compose<Sent, Exchange>(
      balancedDispatch<Sent, Exchange>({
        balancers: o.balancers,
        breakers: this.breakers,
        send: (t, ctx) => this.send(t, ctx),
        classify: (s) => (s.status >= 500 && s.status !== 501 ? '5xx' : undefined),
      }),
      // a gRPC caller's deadline bounds all tries together, as Envoy honours grpc-timeout
      deadline<Sent, Exchange>({ ms: (ctx) => grpcTimeoutMs(ctx.payload.req.headers['grpc-timeout']) }),
      retry<Sent, Exchange>({
        attempts: bc.retry.attempts,
        budgetFor: budgetPerService({
          budgetPercent: bc.retry.budgetPercent,
          minRetriesPerSecond: bc.retry.minRetriesPerSecond,
          windowMs: bc.retry.budgetWindow,
        }),
        backoffBase: bc.retry.backoffBase,
        backoffMax: bc.retry.backoffMax,
        metrics,
        sourceCluster: o.cluster,
      }),
      perTryTimeout<Sent, Exchange>({ ms: bc.timeouts.request }),
    );
    const self = this;
    new Gauge({
      name: 'meshfed_active_connections',
      help: 'open client connections on the egress and east-west listeners',
      registers: [o.registry],
      collect() {
        this.set(self.sockets.size);
      },
    });
    new Gauge({
      name: 'meshfed_active_requests',
      help: 'requests in flight',
      registers: [o.registry],
      collect() {
        this.set(self.active);
      },
    });
  }

  // ---------------------------------------------------------------- listeners

  async start(): Promise<void> {
    const c = this.o.config;
    const limits = c.limits;
    const h1opts = {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeout,
      requestTimeout: 0,
      keepAliveTimeout: 65_000,
    };
    const h2settings = {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderBytes,
      initialWindowSize: STREAM_WINDOW_BYTES,
    };

    this.egressH1 = http.createServer(
      { ...h1opts, connectionsCheckingInterval: Math.min(1_000, limits.headersTimeout) },
      (req, res) => void this.onEgress(req, res),
    );
    // this server never listens (sockets arrive by 'connection' after the h2c sniff), but node only
    // tracks connections for headersTimeout (slowloris) once 'listening' fires: start that tracking
    this.egressH1.emit('listening');
    this.egressH2 = http2.createServer({
      settings: h2settings,
      maxSessionInvalidFrames: 100,
      maxSessionRejectedStreams: 100,
    });
    this.egressH2.on('request', (req, res) => void this.onEgress(req, res));
    this.egressH2.on('session', (s) => this.guardSession(s, 'egress'));

    this.tls = this.secureServer('eastWest', (req, res) => void this.onIngress(req, res), {
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    });
    // node's compat layer answers CONNECT with 405 unless someone listens for 'connect'
    this.tls.on(
      'connect',
      (req: Http2ServerRequest, res: Http2ServerResponse) => void this.onIngress(req, res),
    );
    if (c.egress.clientAuth !== 'none') {
      // the handshake accepts any client certificate (or none): each request is then checked with
      // ca/verify and refused with a status that says why, which a failed handshake cannot do
      this.egressTls = this.secureServer('egress', (req, res) => void this.onEgress(req, res), {
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
      });
    }
    this.o.identity.on('rotated', this.onRotated);

    const egress = net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.acceptEgress(s));
    const eastWest = net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.acceptEastWest(s));
    const o = this.o;
    const admin = http.createServer(
      adminHandler({
        state: () => (this.draining ? 'draining' : this.started ? 'ready' : 'starting'),
        metrics: async () => ({ contentType: o.registry.contentType, text: await o.registry.metrics() }),
        balancers: o.balancers,
        catalog: o.catalog,
        local: o.local,
        config: () => ({
          cluster: o.cluster,
          locality: o.locality,
          gateway: o.config,
          balancer: o.balancerConfig,
        }),
      }),
    );
    await this.listen(egress, c.listeners.egress, 'egress');
    await this.listen(eastWest, c.listeners.eastWest, 'eastWest');
    if (this.o.adminListener !== false) {
      await this.listen(admin, c.listeners.admin, 'admin');
      this.admin = admin;
    }
    for (const t of c.tcpPorts) {
      const srv = net.createServer({ noDelay: true }, (s) => this.acceptTcp(s, t.service, t.port));
      await this.listen(srv, t.listen, `tcp:${t.service}`);
    }
    this.started = true;
    this.o.balancers.healthChecks((t) => this.probe(t));
  }

  /** A TLS server asking for client certificates, serving HTTP/1.1 and h2 with this gateway's limits. */
  private secureServer(
    listener: string,
    onRequest: (req: Req, res: Res) => void,
    o: { rejectUnauthorized: boolean; minVersion: 'TLSv1.2' | 'TLSv1.3' },
  ): Http2SecureServer {
    const limits = this.o.config.limits;
    const srv = http2.createSecureServer({
      ...this.tlsContextOptions(this.o.identity.current()),
      ...o,
      allowHTTP1: true,
      requestCert: true,
      ALPNProtocols: ['h2', 'http/1.1'],
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderBytes,
      },
      maxSessionInvalidFrames: 100,
      maxSessionRejectedStreams: 100,
      ...{ maxHeaderSize: limits.maxHeaderBytes },
    });
    srv.on('request', onRequest);
    srv.on('session', (s) => this.guardSession(s, listener));
    srv.on('tlsClientError', (err) => this.refused.inc({ listener, reason: tlsReason(err) }));
    return srv;
  }

  /** certificates rotate without dropping connections: new handshakes, and new tunnel sessions, use the new leaf */
  private readonly onRotated = (l: IssuedLeaf) => {
    this.tls.setSecureContext(this.tlsContextOptions(l));
    this.egressTls?.setSecureContext(this.tlsContextOptions(l));
    this.pool.rotate();
  };

  /**
   * The trust bundle changed (a root added or removed, intermediates learnt): new handshakes on every TLS
   * listener and new tunnel dials use it at once; connections already established are not dropped.
   */
  trustChanged(): void {
    // before start() built the TLS servers there is nothing to re-apply: they will read the bundle then
    if (!this.tls) return;
    const leaf = this.o.identity.current();
    this.tls.setSecureContext(this.tlsContextOptions(leaf));
    this.egressTls?.setSecureContext(this.tlsContextOptions(leaf));
    this.pool.trustChanged();
    // a root removed: established connections whose peer only chained to it close now
    this.revalidation.sweep();
  }

  private tlsContextOptions(leaf: IssuedLeaf) {
    return { cert: leaf.chainPem, key: leaf.keyPem, ca: this.o.bundle().toPem() };
  }

  /** Binds a listener; every data-plane one (not admin) gets the per-listener connection limit. */
  private async listen(srv: Server, addr: { host: string; port: number }, name: string): Promise<void> {
    const dataPlane = name !== 'admin';
    if (dataPlane) {
      srv.maxConnections = this.o.config.limits.maxConnections;
      // node closes a connection past maxConnections itself and tells us with 'drop'
      srv.on('drop', () => this.refused.inc({ listener: name, reason: 'listener-connection-limit' }));
    }
    const shared = this.o.reusePort === true && dataPlane;
    srv.listen({
      port: addr.port,
      host: addr.host,
      backlog: this.o.config.limits.listenBacklog,
      ...(shared ? { exclusive: true, reusePort: true } : {}),
    });
    try {
      await Promise.race([once(srv, 'listening'), once(srv, 'error').then(([e]) => Promise.reject(e))]);
    } catch (err) {
      throw new MeshfedError(
        'MESHFED_GATEWAY_LISTEN',
        `listener ${name} cannot bind ${addr.host}:${addr.port}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const a = srv.address() as net.AddressInfo;
    this.bound[name] = `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
    this.servers.push(srv);
  }

  addresses(): Record<string, string> {
    return { ...this.bound };
  }

  /**
   * Counts a new client connection against the gateway-wide limit (every listener together, as Envoy's
   * global downstream connection limit): past it the connection is closed at once and counted.
   */
  private admit(s: Socket, listener: string): boolean {
    s.on('error', () => undefined);
    if (this.sockets.size >= this.o.config.limits.maxTotalConnections) {
      this.refused.inc({ listener, reason: 'global-connection-limit' });
      s.destroy();
      return false;
    }
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    return true;
  }

  /**
   * HTTP/2 session guards: a client that resets streams faster than the limit loses the session
   * (rapid reset); a session that opens no stream within headersTimeout is closed (it holds a TLS
   * connection and memory for nothing); one idle for sessionIdleTimeout is closed gracefully.
   */
  private guardSession(session: http2.ServerHttp2Session, listener: string): void {
    const limits = this.o.config.limits;
    // uploads through the tunnel: the whole-connection window must not serialise concurrent streams
    session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    const silent = setTimeout(() => {
      this.refused.inc({ listener, reason: 'no-request' });
      session.goaway(h2c.NGHTTP2_NO_ERROR);
      session.destroy();
    }, limits.headersTimeout);
    session.once('stream', () => clearTimeout(silent));
    session.once('close', () => clearTimeout(silent));
    if (limits.sessionIdleTimeout > 0) session.setTimeout(limits.sessionIdleTimeout, () => session.close());
    let resets = 0;
    let windowStart = Date.now();
    session.on('stream', (stream) => {
      const opened = Date.now();
      stream.on('aborted', () => {
        const now = Date.now();
        // only premature resets count (Envoy's rule): a peer gateway cancelling a stream when its own
        // per-try timeout fires is not an attack, and killing its session would fail every stream
        // it carries (the bench saw a slow cluster's timeouts take healthy requests down with it)
        if (now - opened >= PREMATURE_RESET_MS) return;
        if (now - windowStart > 1000) {
          windowStart = now;
          resets = 0;
        }
        if (++resets > this.o.config.limits.maxResetsPerSecond) {
          this.refused.inc({ listener, reason: 'rapid-reset' });
          session.goaway(h2c.NGHTTP2_ENHANCE_YOUR_CALM);
          session.destroy();
        }
      });
    });
    session.on('error', () => undefined);
  }

  private acceptEgress(socket: Socket): void {
    if (!this.admit(socket, 'egress')) return;
    const addr = socket.remoteAddress ?? '';
    const family = addr.includes(':') && !addr.startsWith('::ffff:') ? 'ipv6' : 'ipv4';
    const plain = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
    if (this.draining || !this.trusted.check(plain, family)) {
      this.refused.inc({ listener: 'egress', reason: this.draining ? 'draining' : 'untrusted-network' });
      socket.destroy();
      return;
    }
    const timer = setTimeout(() => socket.destroy(), this.o.config.limits.headersTimeout);
    let buf: Buffer = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      // almost always one chunk decides: copy only when the sniff needs a second
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      // a TLS record starts with content type 22 (handshake); plain HTTP never does
      if (this.egressTls && buf[0] === 0x16) return done('tls');
      const n = Math.min(buf.length, H2_PREFACE.length);
      if (!buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return done('h1');
      if (buf.length >= H2_PREFACE.length) done('h2');
    };
    const done = (kind: 'h1' | 'h2' | 'tls') => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      socket.unshift(buf);
      // the servers take the unshifted bytes over themselves; resuming here would lose them to nobody
      if (kind === 'tls') this.egressTls!.emit('connection', socket);
      else if (kind === 'h2') this.egressH2.emit('connection', socket);
      else {
        this.egressH1.emit('connection', socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
    socket.resume();
  }

  private acceptEastWest(socket: Socket): void {
    if (!this.admit(socket, 'eastWest')) return;
    if (this.draining) {
      this.refused.inc({ listener: 'eastWest', reason: 'draining' });
      socket.destroy();
      return;
    }
    const timer = setTimeout(() => {
      this.refused.inc({ listener: 'eastWest', reason: 'hello-timeout' });
      socket.destroy();
    }, this.o.config.limits.helloTimeout);
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (d: Buffer) => {
      chunks.push(d);
      size += d.length;
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const hello = parseClientHello(buf);
      if (!hello.ok && hello.reason === 'incomplete' && size < MAX_HELLO_BYTES) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      this.routeHello(socket, buf, hello);
    };
    socket.on('data', onData);
    socket.resume();
  }

  /** Tunnel by ALPN; passthrough by SNI for services with a TLS port; terminate for exported HTTP services; else close. */
  private routeHello(socket: Socket, buf: Buffer, hello: HelloResult): void {
    if (!hello.ok) {
      this.refused.inc({
        listener: 'eastWest',
        reason: hello.reason === 'not-tls' ? 'not-tls' : 'malformed-hello',
      });
      socket.destroy();
      return;
    }
    const toTls = () => {
      socket.unshift(buf);
      // TLSSocket reads the unshifted ClientHello and then the handle itself: no resume() here
      this.tls.emit('connection', socket);
    };
    if (hello.alpn.includes(TUNNEL_ALPN)) {
      toTls();
      return;
    }
    const ref = hello.serverName ? parseClustersetHost(hello.serverName) : undefined;
    const svc = ref ? this.localIndex.get(serviceKey(ref)) : undefined;
    if (!svc?.exported) {
      this.refused.inc({ listener: 'eastWest', reason: hello.serverName ? 'not-exported' : 'no-sni' });
      socket.destroy();
      return;
    }
    const tlsPorts = svc.ports.filter((p) => p.protocol === 'tls');
    const port = ref?.portName
      ? tlsPorts.find((p) => p.name === ref.portName || String(p.port) === ref.portName)
      : tlsPorts[0];
    if (!port) {
      if (ref?.portName) {
        this.refused.inc({ listener: 'eastWest', reason: 'unknown-port' });
        socket.destroy();
        return;
      }
      toTls();
      return;
    }
    this.passthrough(socket, buf, svc, port.name);
  }

  private passthrough(
    client: Socket,
    hello: Buffer,
    svc: LocalService,
    portName: string,
    attempt = 0,
    exclude = new Set<string>(),
  ): void {
    const pick = this.o.balancers.pick(svc.namespace, svc.name, { scope: 'local', portName, exclude });
    if (!pick) {
      this.refused.inc({ listener: 'eastWest', reason: 'no-healthy-upstream' });
      client.destroy();
      return;
    }
    const upstream = this.dialEndpoint(pick);
    // node clears `connecting` before it reports a failed connect: this flag is what says it failed
    let connected = false;
    upstream.once('error', (err) => {
      if (!connected) {
        exclude.add(pick.target.id);
        if (attempt < this.o.balancerConfig.retry.attempts && !client.destroyed) {
          this.passthrough(client, hello, svc, portName, attempt + 1, exclude);
          return;
        }
      }
      this.log.debug({ err }, 'passthrough upstream error');
      client.destroy();
    });
    upstream.once('connect', () => {
      connected = true;
      upstream.write(hello);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    });
  }

  // ---------------------------------------------------------------- requests

  private startSpan(
    name: string,
    headers: Record<string, unknown>,
    attrs: Record<string, string>,
  ): Span | undefined {
    if (!this.o.tracer) return undefined;
    const parent = W3C.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    return this.o.tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: attrs }, parent);
  }

  private injectTrace(span: Span | undefined, headers: Record<string, unknown>): void {
    if (!span) return;
    delete headers.traceparent;
    delete headers.tracestate;
    W3C.inject(trace.setSpan(ROOT_CONTEXT, span), headers, defaultTextMapSetter);
  }

  private fail(res: Res, status: number, reason: string, message: string): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ error: reason, message });
    (res as ServerResponse).writeHead(status, {
      'content-type': 'application/json',
      'x-meshfed-error': reason,
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  private async onEgress(req: Req, res: Res): Promise<void> {
    const authority = (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '';
    const ref = parseClustersetHost(authority);
    const svcName = ref ? `${ref.name}.${ref.namespace}` : authority;
    if (!ref) {
      this.refused.inc({ listener: 'egress', reason: 'unknown-service' });
      return this.fail(
        res,
        503,
        'unknown-service',
        `${authority || '(no host)'} is not a <service>.<namespace>.svc.clusterset.local name`,
      );
    }
    const known =
      this.localIndex.has(serviceKey(ref)) || this.o.catalog.instances(ref.namespace, ref.name).length > 0;
    if (!known) {
      this.refused.inc({ listener: 'egress', reason: 'unknown-service' });
      return this.fail(
        res,
        503,
        'unknown-service',
        `no cluster offers ${svcName}; is it exported? (meshfed services)`,
      );
    }
    const caller = this.egressCaller(req);
    if (typeof caller === 'object') {
      this.refused.inc({ listener: 'egress', reason: caller.reason });
      return this.fail(res, 403, caller.reason, caller.message);
    }
    const span = this.startSpan(`egress ${svcName}`, req.headers, {
      'meshfed.listener': 'egress',
      'meshfed.cluster': this.o.cluster,
      'meshfed.gateway': this.o.name ?? this.o.cluster,
      'meshfed.service': svcName,
    });
    await this.proxy(req, res, ref, {
      scope: 'any',
      listener: 'egress',
      span,
      ...(caller ? { caller } : {}),
      ...(ref.port ? { port: ref.port } : {}),
      ...(ref.portName ? { portName: ref.portName } : {}),
    });
  }

  /**
   * The calling workload's SPIFFE ID from its verified certificate (undefined: a plain or anonymous
   * caller that clientAuth lets in), or why the request is refused. Verified once per connection.
   */
  private egressCaller(req: Req): string | undefined | { reason: string; message: string } {
    const mode = this.o.config.egress.clientAuth;
    if (mode === 'none') return undefined;
    const socket = ((req as Http2ServerRequest).stream?.session?.socket ?? req.socket) as TLSSocket;
    let outcome = this.callers.get(socket);
    if (!outcome) {
      outcome = this.checkWorkload(socket, req) ?? (mode === 'optional' ? 'anonymous' : 'required');
      this.callers.set(socket, outcome);
      this.clientCerts.inc({
        result:
          typeof outcome === 'object'
            ? outcome.reason
            : outcome.startsWith('spiffe://')
              ? 'verified'
              : outcome,
      });
    }
    if (outcome === 'anonymous') return undefined;
    if (outcome === 'required') {
      return {
        reason: 'client-cert-required',
        message: `this egress listener requires a workload certificate of cluster ${this.o.cluster} (mTLS); connect with TLS and present one`,
      };
    }
    return outcome;
  }

  /** undefined: no certificate was presented */
  private checkWorkload(
    socket: TLSSocket,
    req: Req,
  ): string | { reason: string; message: string } | undefined {
    if (!socket.encrypted) return undefined;
    const chain = peerCertificateChain(socket);
    if (chain.length === 0) return undefined;
    try {
      // the TLS server exposes only the leaf: our own intermediates complete a chain of this cluster
      const full = [...chain, ...this.intermediates().raw];
      const expect = {
        trustDomain: this.o.trustDomain,
        kinds: ['workload' as const],
        usage: 'client' as const,
      };
      const id = verify(full, this.o.bundle(), expect);
      if (id.cluster !== this.o.cluster) {
        return {
          reason: 'client-cert-foreign-cluster',
          message: `${id.spiffeId} belongs to cluster ${id.cluster}; this gateway speaks only for workloads of cluster ${this.o.cluster}`,
        };
      }
      this.revalidation.trackRequest(
        'egress',
        req,
        full,
        { ...expect, cluster: this.o.cluster },
        id.spiffeId,
      );
      return id.spiffeId;
    } catch (err) {
      const code = err instanceof MeshfedError ? err.code : 'MESHFED_CA_MALFORMED';
      return {
        reason:
          code === 'MESHFED_CA_EXPIRED'
            ? 'client-cert-expired'
            : code === 'MESHFED_CA_WRONG_CLUSTER'
              ? 'client-cert-foreign-cluster'
              : code === 'MESHFED_CA_WRONG_KIND'
                ? 'client-cert-not-workload'
                : 'client-cert-untrusted',
        message: `workload certificate refused (${code}): ${(err as Error).message}`,
      };
    }
  }

  private peerIdentity(req: Req): VerifiedIdentity {
    const socket = ((req as Http2ServerRequest).stream?.session?.socket ?? req.socket) as TLSSocket;
    const cached = this.peers.get(socket);
    if (cached) return cached;
    const chain = peerCertificateChain(socket);
    const extra = String(req.headers['x-meshfed-chain'] ?? '')
      .split(',')
      .filter(Boolean)
      .slice(0, 3)
      .map((b) => Buffer.from(b, 'base64'));
    const full = chain.length > 1 ? chain : [...chain, ...extra];
    const expect = { trustDomain: this.o.trustDomain, kinds: ['gateway' as const], usage: 'client' as const };
    const id = verify(full, this.o.bundle(), expect);
    this.peers.set(socket, id);
    this.revalidation.trackRequest('eastWest', req, full, expect, id.spiffeId);
    return id;
  }

  private async onIngress(req: Req, res: Res): Promise<void> {
    let peer: VerifiedIdentity;
    try {
      peer = this.peerIdentity(req);
    } catch (err) {
      const e = err as MeshfedError;
      this.refused.inc({ listener: 'eastWest', reason: 'peer-identity' });
      return this.fail(res, 403, 'peer-identity', `peer certificate refused: ${e.message}`);
    }
    if (req.method === 'CONNECT' && 'stream' in req) {
      this.handleConnect(req, res as Http2ServerResponse, peer);
      return;
    }
    const tunnelled = req.headers['x-meshfed-service'];
    let ref: ReturnType<typeof parseClustersetHost>;
    if (typeof tunnelled === 'string') {
      const [namespace, name, port] = tunnelled.split('/');
      ref = namespace && name ? { namespace, name, ...(port ? { portName: port } : {}) } : undefined;
    } else {
      ref = parseClustersetHost((req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '');
    }
    const svc = ref ? this.localIndex.get(serviceKey(ref)) : undefined;
    if (!ref || !svc?.exported) {
      this.refused.inc({ listener: 'eastWest', reason: 'not-exported' });
      return this.fail(res, 404, 'not-exported', 'no exported service of this cluster has that name');
    }
    // a gateway may speak only for callers of its own cluster
    let caller = peer.spiffeId;
    const asserted = req.headers['x-meshfed-caller'];
    if (typeof asserted === 'string' && asserted !== '') {
      let ok = false;
      try {
        const id = parseSpiffeId(asserted);
        ok = id.trustDomain === this.o.trustDomain && id.cluster === peer.cluster;
      } catch {
        ok = false;
      }
      if (!ok) {
        this.refused.inc({ listener: 'eastWest', reason: 'caller-identity' });
        return this.fail(
          res,
          403,
          'caller-identity',
          `gateway ${peer.spiffeId} may not assert caller ${asserted}`,
        );
      }
      caller = asserted;
    }
    if (this.o.authorize) {
      let allowed = false;
      try {
        allowed = this.o.authorize({
          peer: peer.spiffeId,
          caller,
          service: `${ref.name}.${ref.namespace}`,
          cluster: this.o.cluster,
        });
      } catch {
        allowed = false;
      }
      if (!allowed) {
        this.refused.inc({ listener: 'eastWest', reason: 'unauthorized' });
        return this.fail(res, 403, 'unauthorized', `${caller} may not call ${ref.name}.${ref.namespace}`);
      }
    }
    const span = this.startSpan(`ingress ${ref.name}.${ref.namespace}`, req.headers, {
      'meshfed.listener': 'eastWest',
      'meshfed.cluster': this.o.cluster,
      'meshfed.gateway': this.o.name ?? this.o.cluster,
      'meshfed.service': `${ref.name}.${ref.namespace}`,
      'meshfed.peer': peer.spiffeId,
    });
    await this.proxy(req, res, ref, {
      scope: 'local',
      listener: 'eastWest',
      span,
      caller,
      sourceCluster: peer.cluster ?? '',
      ...(ref.portName ? { portName: ref.portName } : {}),
    });
  }

  private async proxy(
    req: Req,
    res: Res,
    ref: { namespace: string; name: string },
    o: {
      scope: 'any' | 'local';
      listener: string;
      span: Span | undefined;
      caller?: string;
      sourceCluster?: string;
      port?: number;
      portName?: string;
    },
  ): Promise<void> {
    const t0 = performance.now();
    const service = `${ref.name}.${ref.namespace}`;
    const method = req.method ?? 'GET';
    const bodyless =
      (method === 'GET' || method === 'HEAD' || method === 'OPTIONS') &&
      !req.headers['content-length'] &&
      !req.headers['transfer-encoding'];
    this.active++;
    let destination = '';
    let status = 0;
    try {
      const sent = await this.dispatch(
        callContext(
          {
            namespace: ref.namespace,
            name: ref.name,
            // a body already streamed to a failed try cannot be sent again
            idempotent: IDEMPOTENT.has(method) && bodyless,
            scope: o.scope,
            port: o.port,
            portName: o.portName,
          },
          { req, res, service: ref, span: o.span, caller: o.caller },
        ),
      );
      destination = sent.cluster;
      status = sent.status;
    } catch (err) {
      const answer = errorAnswer(err);
      if (err instanceof UpstreamFailure) destination = err.target.cluster;
      status = answer.status;
      // a response already under way (a passed-through 5xx, or a body cut short) is not replaced
      if (!res.headersSent) this.fail(res, answer.status, answer.reason, answer.message);
      else if (!answer.forwarded) res.destroy();
    } finally {
      this.active--;
      const labels = {
        listener: o.listener,
        source_cluster: o.sourceCluster ?? this.o.cluster,
        destination_cluster: destination,
        service,
      };
      this.requests.inc({ ...labels, code: String(status) });
      this.duration.observe(labels, (performance.now() - t0) / 1000);
      if (o.span) {
        o.span.setAttribute('http.response.status_code', status);
        if (status >= 500) o.span.setStatus({ code: SpanStatusCode.ERROR });
        o.span.end();
      }
    }
  }

  /**
   * One try against one target, the innermost step of `this.dispatch`. Resolves once the response
   * headers are forwarded (the body then streams on its own, cut after `timeouts.idle` without data),
   * or with `forwarded: false` for a 5xx that the retry layer may still replace. Rejects with an
   * UpstreamFailure that says how the try failed, or with the abort reason of the per-try timeout.
   */
  private send(t: BalancerTarget, ctx: CallContext<Exchange> & { signal: AbortSignal }): Promise<Sent> {
    const { req, res } = ctx.payload;
    // the last allowed try (and any try of a request that will not be retried) passes a 5xx through
    const forward5xx = !ctx.idempotent || ctx.attempt >= this.o.balancerConfig.retry.attempts;
    return new Promise<Sent>((resolve, reject) => {
      let settled = false;
      let forwarded = false;
      let cancel = () => {};
      const finish = () => {
        settled = true;
        ctx.signal.removeEventListener('abort', onAbort);
        res.off('close', onClientGone);
      };
      const onAbort = () => {
        if (settled) return;
        finish();
        cancel();
        reject(ctx.signal.reason);
      };
      const onClientGone = () => {
        if (settled) return;
        finish();
        cancel();
        reject(new UpstreamFailure('cancelled', t));
      };
      const attempt: UpstreamAttempt = {
        get open() {
          return !settled;
        },
        onCancel: (fn) => {
          cancel = fn;
        },
        respond: (status, headers, trailers) => {
          if (settled) return false;
          finish();
          if (status >= 500 && status !== 501 && !forward5xx) {
            resolve({ status, cluster: t.cluster, forwarded: false });
            return false;
          }
          const out = res as ServerResponse;
          out.writeHead(status, headers);
          if (trailers) out.addTrailers(trailers);
          forwarded = true;
          resolve({ status, cluster: t.cluster, forwarded: true });
          return true;
        },
        fail: (failure, err) => {
          if (!settled) {
            finish();
            reject(new UpstreamFailure(failure, t, { cause: err }));
          } else if (forwarded) res.destroy();
        },
      };
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      res.once('close', onClientGone);
      const useH2 = !t.local || t.port.protocol === 'grpc' || t.port.protocol === 'http2';
      if (useH2) this.viaH2(req, res, t, ctx.payload, attempt);
      else this.viaHttp1(req, res, t, ctx.payload, attempt);
    });
  }

  /**
   * Active health check of a remote gateway: a tunnel session to it (mTLS, its gateway identity for
   * the cluster checked) answers an HTTP/2 PING. The balancer bounds it with healthCheck.timeout.
   */
  private async probe(t: BalancerTarget): Promise<boolean> {
    if (t.local) return true;
    const session = await this.pool.session(t.address, t.cluster);
    return new Promise<boolean>((resolve) => {
      if (!session.ping((err) => resolve(!err))) resolve(false);
    });
  }

  /** Waits for a circuit-breaker 'pending' slot's worth of time: until `ready` settles. */
  private async pending<T>(t: BalancerTarget, ready: () => Promise<T>): Promise<T> {
    const release = this.breakers.acquirePending(t);
    if (!release) throw new UpstreamFailure('overflow', t);
    try {
      return await ready();
    } finally {
      release();
    }
  }

  /** The request's headers for `t`, without host (HTTP/1 adds it, h2 sends :authority). */
  private upstreamHeaders(req: Req, t: BalancerTarget, x: Exchange): Record<string, unknown> {
    const headers = requestHeadersForUpstream(req.headers) as Record<string, unknown>;
    this.injectTrace(x.span, headers);
    if (t.local) {
      if (x.caller) headers['x-meshfed-peer-identity'] = x.caller;
    } else {
      headers['x-meshfed-service'] = `${x.service.namespace}/${x.service.name}/${t.port.name}`;
      // node's TLS server only exposes our leaf: send our intermediate so the peer can check the whole chain
      headers['x-meshfed-chain'] = this.intermediatesB64();
      if (x.caller) headers['x-meshfed-caller'] = x.caller;
    }
    return headers;
  }

  private chainCache: { pem: string; raw: Buffer[]; b64: string } | undefined;
  /** our leaf's intermediates (DER), parsed once per leaf */
  private intermediates(): { raw: Buffer[]; b64: string } {
    const pem = this.o.identity.current().chainPem;
    if (this.chainCache?.pem !== pem) {
      const raw = parseCertificates(pem, 'the gateway certificate chain')
        .slice(1)
        .map((c) => c.raw);
      this.chainCache = { pem, raw, b64: raw.map((r) => r.toString('base64')).join(',') };
    }
    return this.chainCache;
  }

  private intermediatesB64(): string {
    return this.intermediates().b64;
  }

  private async viaH2(req: Req, res: Res, t: BalancerTarget, x: Exchange, a: UpstreamAttempt): Promise<void> {
    let session: http2.ClientHttp2Session;
    try {
      session = await this.pending(t, () => this.pool.session(t.address, t.local ? undefined : t.cluster));
    } catch (err) {
      if (err instanceof UpstreamFailure) return a.fail(err.failure, err.cause);
      const identity = err instanceof MeshfedError && err.code.startsWith('MESHFED_CA_');
      return a.fail(identity ? 'refused' : 'connect', err);
    }
    // the per-try timeout or the caller may have ended the try while the session was dialled
    if (!a.open) return;
    const headers = this.upstreamHeaders(req, t, x);
    // node sends pseudo-headers first wherever they stand in the object
    headers[':method'] = req.method ?? 'GET';
    headers[':path'] = req.url ?? '/';
    headers[':authority'] =
      (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? t.address;
    headers[':scheme'] = 'http';
    const bodyless = req.method === 'GET' || req.method === 'HEAD';
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers as http2.OutgoingHttpHeaders, {
        endStream: bodyless && !req.headers['content-length'],
      });
    } catch (err) {
      return a.fail('reset', err);
    }
    a.onCancel(() => stream.close(h2c.NGHTTP2_CANCEL));
    stream.setTimeout(this.o.balancerConfig.timeouts.idle, () => stream.close(h2c.NGHTTP2_CANCEL));
    stream.on('response', (h: H2Headers, flags: number) => {
      const status = Number(h[':status'] ?? 502);
      const out = responseHeadersForClient(h);
      let trailers: Record<string, string | string[]> | undefined;
      if (out['grpc-status'] !== undefined && (flags & h2c.NGHTTP2_FLAG_END_STREAM) !== 0) {
        // gRPC "trailers-only" answer (an error with no messages): its whole header block is the
        // trailers (status, message and the server's trailing metadata); only content-type stays
        trailers = {};
        for (const [k, v] of Object.entries(out)) {
          if (k === 'content-type' || v === undefined) continue;
          trailers[k] = Array.isArray(v) ? v : String(v);
          delete out[k];
        }
      }
      if (!a.respond(status, out, trailers)) {
        stream.close();
        return;
      }
      stream.on('trailers', (tr) =>
        (res as ServerResponse).addTrailers(responseHeadersForClient(tr) as Record<string, string>),
      );
      stream.pipe(res as NodeJS.WritableStream);
    });
    // before a response a lost stream is a reset; after one it cuts the client's response short,
    // but a normal close after the end must not
    stream.once('error', (err) => a.fail('reset', err));
    stream.once('close', () => {
      if (a.open || stream.rstCode !== h2c.NGHTTP2_NO_ERROR)
        a.fail('reset', new Error(`stream closed (code ${stream.rstCode})`));
    });
    res.once('close', () => {
      if (!stream.closed) stream.close(h2c.NGHTTP2_CANCEL);
    });
    if (!bodyless || req.headers['content-length']) req.pipe(stream);
  }

  /**
   * One try against a local HTTP/1.1 endpoint through undici's pooled client: its dispatch API is the
   * leanest path Node has (no ClientRequest/IncomingMessage objects), which the terminate path lives on.
   * undici writes a streamed body only once connected, so a connect failure has consumed none of it
   * and the request can go to another target whatever its method.
   */
  private viaHttp1(req: Req, res: Res, t: BalancerTarget, x: Exchange, a: UpstreamAttempt): void {
    const headers = this.upstreamHeaders(req, t, x);
    headers.host = (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '';
    // node's server has already answered `Expect: 100-continue`; the upstream gets the body directly
    delete headers.expect;
    const bodyless =
      (req.method === 'GET' || req.method === 'HEAD') &&
      !req.headers['content-length'] &&
      !req.headers['transfer-encoding'];
    const out = res as ServerResponse;
    // waiting for one of the endpoint's connections is 'pending' (circuitBreaker.maxPending)
    const releasePending = this.breakers.acquirePending(t);
    if (!releasePending) {
      a.fail('overflow', undefined);
      return;
    }
    let connected = false;
    let discard = false;
    let controller: { abort(reason: Error): void; pause(): void; resume(): void } | undefined;
    a.onCancel(() => controller?.abort(new Error('the try was abandoned')));
    res.once('close', () => {
      if (!out.writableFinished) controller?.abort(new Error('the client went away'));
    });
    const onDrain = () => controller?.resume();
    const onConnected = () => {
      connected = true;
      releasePending();
    };
    try {
      this.upstream.dispatch(
        {
          origin: `http://${t.address}`,
          path: req.url ?? '/',
          method: req.method ?? 'GET',
          headers: headers as Record<string, string | string[]>,
          body: bodyless ? null : (req as IncomingMessage),
        },
        {
          // undici calls this on a connected socket, right before it writes the request
          onRequestStart: (c) => {
            controller = c;
            onConnected();
          },
          onResponseStart: (_c, status, h) => {
            if (status < 200) return;
            discard = !a.respond(status, responseHeadersForClient(h));
          },
          onResponseData: (c, chunk) => {
            if (discard) return;
            if (!out.write(chunk)) {
              c.pause();
              out.once('drain', onDrain);
            }
          },
          onResponseEnd: () => {
            if (!discard) out.end();
          },
          onResponseError: (_c, err: Error & { code?: string }) => {
            releasePending();
            const code = err.code ?? '';
            const beforeConnect = !connected || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ECONNREFUSED';
            const timedOut = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
            if (discard) return;
            a.fail(beforeConnect ? 'connect' : timedOut ? 'timeout' : 'reset', err);
          },
        },
      );
    } catch (err) {
      // undici refuses a request it cannot send (an invalid header value, say) before any I/O
      releasePending();
      a.fail('reset', err);
    }
  }

  // ---------------------------------------------------------------- TCP over CONNECT

  private acceptTcp(socket: Socket, service: string, portName: string | undefined): void {
    if (!this.admit(socket, `tcp:${service}`)) return;
    const [name, namespace] = service.split('.') as [string, string];
    const pick = this.o.balancers.pick(namespace, name, { scope: 'any', ...(portName ? { portName } : {}) });
    if (!pick) {
      this.refused.inc({ listener: 'tcp', reason: 'no-healthy-upstream' });
      socket.destroy();
      return;
    }
    if (!this.connectionSlot(pick, 'tcp', socket)) {
      socket.destroy();
      return;
    }
    const t = pick.target;
    if (t.local) {
      const up = this.dialEndpoint(pick);
      up.once('connect', () => {
        socket.pipe(up);
        up.pipe(socket);
      });
      up.once('error', () => socket.destroy());
      socket.once('close', () => up.destroy());
      up.once('close', () => socket.destroy());
      return;
    }
    const t0 = performance.now();
    this.pool.session(t.address, t.cluster).then(
      (session) => {
        // the client may have left while the tunnel was dialled: its 'close' is past, open nothing
        if (socket.destroyed) return pick.release({ ok: true, latencyMs: 0, failure: 'cancelled' });
        let stream: ClientHttp2Stream;
        try {
          stream = session.request({
            ':method': 'CONNECT',
            ':authority': `${name}.${namespace}.svc.clusterset.local:${t.port.port}`,
            'x-meshfed-chain': this.intermediatesB64(),
          });
        } catch {
          // a session closing meanwhile (GOAWAY) refuses new streams; a throw here would be unhandled
          pick.release({ ok: false, latencyMs: performance.now() - t0, failure: 'reset' });
          socket.destroy();
          return;
        }
        stream.once('response', (h) => {
          const ok = h[':status'] === 200;
          pick.release({ ok, latencyMs: performance.now() - t0, ...(ok ? {} : { failure: '5xx' as const }) });
          if (!ok) return socket.destroy();
          socket.pipe(stream);
          stream.pipe(socket);
        });
        stream.once('error', () => socket.destroy());
        stream.once('close', () => {
          // closed before any response (a no-op after one): the target's outstanding count must drop,
          // without blame when it was the client that left
          const failure = socket.destroyed ? 'cancelled' : 'reset';
          pick.release({ ok: false, latencyMs: performance.now() - t0, failure });
          socket.destroy();
        });
        socket.once('close', () => stream.close());
      },
      () => {
        pick.release({ ok: false, latencyMs: performance.now() - t0, failure: 'connect' });
        socket.destroy();
      },
    );
  }

  /**
   * A TCP connection to the picked local endpoint (passthrough, TCP ports, CONNECT), given up after
   * timeouts.connect. It settles the pick once: ok when connected, a 'connect' failure when it cannot
   * connect, and without blame when it is destroyed first (the client left meanwhile).
   */
  private dialEndpoint(pick: PickResult): Socket {
    const { host, port } = splitHostPort(pick.target.address);
    const t0 = performance.now();
    const up = net.connect({ host, port, noDelay: true });
    const ms = this.o.balancerConfig.timeouts.connect;
    const timer = setTimeout(() => up.destroy(new Error(`no connection within ${ms} ms`)), ms);
    up.once('connect', () => {
      clearTimeout(timer);
      pick.release({ ok: true, latencyMs: performance.now() - t0 });
    });
    // after a release these are no-ops
    up.once('error', () =>
      pick.release({ ok: false, latencyMs: performance.now() - t0, failure: 'connect' }),
    );
    up.once('close', () => {
      clearTimeout(timer);
      pick.release({ ok: true, latencyMs: 0, failure: 'cancelled' });
    });
    return up;
  }

  /**
   * A TCP connection (or CONNECT stream) to the picked target holds one circuitBreaker.maxConnections
   * slot until `holder` closes; when the target has none left it is refused (counted, and the pick
   * released without blaming the target).
   */
  private connectionSlot(
    pick: PickResult,
    listener: string,
    holder: { once(e: 'close', f: () => void): unknown },
  ) {
    const release = this.breakers.acquireConnection(pick.target);
    if (!release) {
      pick.release({ ok: false, latencyMs: 0, failure: 'overflow' });
      this.refused.inc({ listener, reason: 'circuit-breaker' });
      return false;
    }
    holder.once('close', release);
    return true;
  }

  /** CONNECT on the tunnel: a raw TCP stream to a local endpoint of an exported TCP service. */
  handleConnect(req: Http2ServerRequest, res: Http2ServerResponse, peer: VerifiedIdentity): void {
    const ref = parseClustersetHost(String(req.headers[':authority'] ?? ''));
    const svc = ref ? this.localIndex.get(serviceKey(ref)) : undefined;
    if (!ref || !svc?.exported) {
      this.refused.inc({ listener: 'eastWest', reason: 'not-exported' });
      res.writeHead(404);
      res.end();
      return;
    }
    const port = svc.ports.find((p) => p.port === ref.port) ?? svc.ports[0]!;
    const pick = this.o.balancers.pick(ref.namespace, ref.name, { scope: 'local', portName: port.name });
    if (!pick || !this.connectionSlot(pick, 'eastWest', res)) {
      res.writeHead(503);
      res.end();
      return;
    }
    const up = this.dialEndpoint(pick);
    up.once('connect', () => {
      res.writeHead(200);
      req.pipe(up);
      up.pipe(res as unknown as NodeJS.WritableStream);
      this.log.debug({ peer: peer.spiffeId, service: `${ref.name}.${ref.namespace}` }, 'tcp tunnel opened');
    });
    up.once('error', () => {
      if (!res.headersSent) {
        res.writeHead(503);
        res.end();
      } else res.destroy();
    });
    res.once('close', () => up.destroy());
  }

  // ---------------------------------------------------------------- lifecycle

  /** Stops accepting, lets in-flight requests finish (bounded), then closes idle connections. */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    for (const s of this.servers) if (s !== this.admin) s.close();
    const deadline = Date.now() + timeoutMs;
    while (this.active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.egressH1?.closeIdleConnections();
  }

  async stop(): Promise<void> {
    this.draining = true;
    this.o.balancers.healthChecks(undefined);
    this.unsubscribe();
    this.o.identity.off('rotated', this.onRotated);
    this.pool.close();
    void this.upstream.destroy();
    for (const s of this.sockets) s.destroy();
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.listening) return resolve();
            s.close(() => resolve());
          }),
      ),
    );
  }
}

function tlsReason(err: Error): string {
  const m = err.message.toLowerCase();
  if (m.includes('certificate') && m.includes('expired')) return 'client-cert-expired';
  if (m.includes('peer did not return a certificate') || m.includes('certificate required'))
    return 'no-client-cert';
  if (m.includes('unknown ca') || m.includes('unable to get') || m.includes('certificate'))
    return 'client-cert-untrusted';
  if (m.includes('version')) return 'tls-version';
  return 'tls-error';
}
