import { once } from 'node:events';
import type net from 'node:net';
import { type BlockList, createServer, type Server, type Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { type Counter, cidrBlockList, MeshfedError, type Registry } from '../core/index.ts';
import { acceptQueueGauge } from './accept-queue.ts';
import type { GatewayConfig } from './config.ts';
import { HandshakeAdmission } from './handshake-admission.ts';
import { PeerConnections } from './peer-connections.ts';

/**
 * The gateway's listening sockets and its connection limits: every data-plane listener (not admin) gets
 * the per-listener limit, every client connection counts against the gateway-wide one, and the TLS
 * handshakes of the terminating listeners are admitted by their HandshakeAdmission.
 */
export class Listeners {
  readonly #limits: GatewayConfig['limits'];
  readonly #refused: Counter;
  readonly #reusePort: boolean;
  readonly #trusted: BlockList;
  readonly servers: Server[] = [];
  /** open client connections of every listener */
  readonly sockets = new Set<Socket>();
  /** open client connections per data-plane listener (limits.maxConnections), over all its sockets */
  readonly #counts = new Map<string, number>();
  readonly bound: Record<string, string> = {};
  /** TLS handshake admission of the terminating listeners (limits.maxHandshakes, handshakesPerSecond) */
  readonly handshakes: Record<'eastWest' | 'egress', HandshakeAdmission>;
  /** east-west connections per authenticated peer (limits.maxConnectionsPerPeer) */
  readonly #peerConnections: PeerConnections;

  constructor(options: {
    limits: GatewayConfig['limits'];
    trustedNetworks: readonly string[];
    refused: Counter;
    reusePort: boolean;
    /** where meshfed_listener_accept_queue is reported (none: not reported) */
    registry?: Registry;
  }) {
    this.#limits = options.limits;
    this.#refused = options.refused;
    this.#reusePort = options.reusePort;
    this.#trusted = cidrBlockList(options.trustedNetworks);
    const admission = (listener: string) =>
      new HandshakeAdmission({
        maxInProgress: options.limits.maxHandshakes,
        perSecond: options.limits.handshakesPerSecond,
        maxInProgressPerSource: options.limits.maxHandshakesPerSource,
        perSecondPerSource: options.limits.handshakesPerSecondPerSource,
        refused: options.refused,
        listener,
      });
    this.handshakes = { eastWest: admission('eastWest'), egress: admission('egress') };
    this.#peerConnections = new PeerConnections({
      max: options.limits.maxConnectionsPerPeer,
      refused: options.refused,
      listener: 'eastWest',
    });
    if (options.registry) acceptQueueGauge(options.registry, () => this.bound);
  }

  /**
   * The east-west limits on a terminating TLS server (the HTTP/2 tunnel's, the fast path's): its handshakes
   * end in admission's count, and each completed connection counts against its peer's share.
   */
  watchEastWest(server: TlsServer): void {
    this.handshakes.eastWest.watch(server);
    this.#peerConnections.watch(server);
  }

  /**
   * Binds a listener. A data-plane one (not admin) listens on several sockets bound together with SO_REUSEPORT
   * (`limits.acceptSockets`; a TCP port, `tcp:<service>`, `limits.tcpPortAcceptSockets`): node's event loop
   * accepts one connection per listening socket per turn, so a busy loop (a turn of 20 ms is 50 accepts a
   * second) queues new connections in the kernel until its backlog overflows and SYNs are dropped; with n
   * sockets it accepts up to n a turn, the kernel spreading them.
   * `make` builds one server (called once per socket, each with the same connection handler).
   */
  async bind(
    make: Server | (() => Server),
    addr: { host: string; port: number },
    name: string,
  ): Promise<void> {
    const dataPlane = name !== 'admin';
    const perListener = isTcpPort(name) ? this.#limits.tcpPortAcceptSockets : this.#limits.acceptSockets;
    const count = dataPlane && typeof make === 'function' ? perListener : 1;
    const one = () => (typeof make === 'function' ? make() : make);
    const shared = dataPlane && (this.#reusePort || count > 1);
    // several sockets on one port (or workers sharing it) would also share it with another process of this
    // user that listens with SO_REUSEPORT: a plain bind first finds the port taken, as a single socket would
    if (shared && !this.#reusePort && addr.port !== 0)
      await this.#listenOn(createServer(), addr, name, false, true);
    if (dataPlane) this.#counts.set(name, 0);
    let port = addr.port;
    for (let i = 0; i < count; i++) {
      const srv = one();
      await this.#listenOn(srv, { host: addr.host, port }, name, shared, false);
      const a = srv.address() as net.AddressInfo;
      port = a.port;
      if (i === 0) this.bound[name] = `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
      this.servers.push(srv);
    }
  }

  async #listenOn(
    srv: Server,
    addr: { host: string; port: number },
    name: string,
    shared: boolean,
    probe: boolean,
  ): Promise<void> {
    srv.listen({
      port: addr.port,
      host: addr.host,
      backlog: this.#limits.listenBacklog,
      ...(shared ? { exclusive: true, reusePort: true } : {}),
    });
    try {
      await Promise.race([once(srv, 'listening'), once(srv, 'error').then(([e]) => Promise.reject(e))]);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const setting = isTcpPort(name) ? 'tcpPortAcceptSockets' : 'acceptSockets';
      const hint =
        shared && e.code === 'ENOTSUP'
          ? ` (this platform has no SO_REUSEPORT: set limits.${setting} to 1)`
          : '';
      throw new MeshfedError(
        'MESHFED_GATEWAY_LISTEN',
        `listener ${name} cannot bind ${addr.host}:${addr.port}: ${e.message}${hint}`,
        { cause: err },
      );
    } finally {
      if (probe) await new Promise((r) => srv.close(r));
    }
  }

  /**
   * Counts a new client connection against its listener's limit (limits.maxConnections, over all the
   * listener's sockets) and the gateway-wide one (every listener together): past either it is closed at
   * once and counted.
   */
  admit(s: Socket, listener: string): boolean {
    s.on('error', () => undefined);
    const open = this.#counts.get(listener) ?? 0;
    const reason =
      open >= this.#limits.maxConnections
        ? 'listener-connection-limit'
        : this.sockets.size >= this.#limits.maxTotalConnections
          ? 'global-connection-limit'
          : undefined;
    if (reason) {
      this.#refused.inc({ listener, reason });
      s.destroy();
      return false;
    }
    this.sockets.add(s);
    this.#counts.set(listener, open + 1);
    s.once('close', () => {
      this.sockets.delete(s);
      this.#counts.set(listener, (this.#counts.get(listener) ?? 1) - 1);
    });
    return true;
  }

  /** open client connections per data-plane listener, every bound one (0 when none is open) */
  connectionsByListener(): ReadonlyMap<string, number> {
    return this.#counts;
  }

  /** Whether a local caller's address is in egress.trustedNetworks (egress and the TCP ports). */
  trusted(s: Socket): boolean {
    const addr = s.remoteAddress ?? '';
    const mapped = addr.startsWith('::ffff:');
    const family = addr.includes(':') && !mapped ? 'ipv6' : 'ipv4';
    return this.#trusted.check(mapped ? addr.slice(7) : addr, family);
  }
}

/**
 * A per-service TCP port's listener (named `tcp:<service>`): every call to it is a new connection, so it
 * accepts many more a turn than the egress and east-west listeners, whose callers keep theirs open.
 */
function isTcpPort(name: string): boolean {
  return name.startsWith('tcp:');
}
