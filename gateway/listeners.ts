import { once } from 'node:events';
import type net from 'node:net';
import type { BlockList, Server, Socket } from 'node:net';
import { type Counter, cidrBlockList, MeshfedError } from '../core/index.ts';
import type { GatewayConfig } from './config.ts';
import { HandshakeAdmission } from './handshake-admission.ts';

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
  readonly bound: Record<string, string> = {};
  /** TLS handshake admission of the terminating listeners (limits.maxHandshakes, handshakesPerSecond) */
  readonly handshakes: Record<'eastWest' | 'egress', HandshakeAdmission>;

  constructor(options: {
    limits: GatewayConfig['limits'];
    trustedNetworks: readonly string[];
    refused: Counter;
    reusePort: boolean;
  }) {
    this.#limits = options.limits;
    this.#refused = options.refused;
    this.#reusePort = options.reusePort;
    this.#trusted = cidrBlockList(options.trustedNetworks);
    const admission = (listener: string) =>
      new HandshakeAdmission({
        maxInProgress: options.limits.maxHandshakes,
        perSecond: options.limits.handshakesPerSecond,
        refused: options.refused,
        listener,
      });
    this.handshakes = { eastWest: admission('eastWest'), egress: admission('egress') };
  }

  /** Binds a listener; a data-plane one (not admin) gets the per-listener connection limit. */
  async bind(srv: Server, addr: { host: string; port: number }, name: string): Promise<void> {
    const dataPlane = name !== 'admin';
    if (dataPlane) {
      srv.maxConnections = this.#limits.maxConnections;
      // node closes a connection past maxConnections itself and tells us with 'drop'
      srv.on('drop', () => this.#refused.inc({ listener: name, reason: 'listener-connection-limit' }));
    }
    const shared = this.#reusePort && dataPlane;
    srv.listen({
      port: addr.port,
      host: addr.host,
      backlog: this.#limits.listenBacklog,
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

  /**
   * Counts a new client connection against the gateway-wide limit (every listener together, as Envoy's
   * global downstream connection limit): past it the connection is closed at once and counted.
   */
  admit(s: Socket, listener: string): boolean {
    s.on('error', () => undefined);
    if (this.sockets.size >= this.#limits.maxTotalConnections) {
      this.#refused.inc({ listener, reason: 'global-connection-limit' });
      s.destroy();
      return false;
    }
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    return true;
  }

  /** Whether a local caller's address is in egress.trustedNetworks (egress and the TCP ports). */
  trusted(s: Socket): boolean {
    const addr = s.remoteAddress ?? '';
    const mapped = addr.startsWith('::ffff:');
    const family = addr.includes(':') && !mapped ? 'ipv6' : 'ipv4';
    return this.#trusted.check(mapped ? addr.slice(7) : addr, family);
  }
}
