import type { Socket } from 'node:net';
import type { TLSSocket, Server as TlsServer } from 'node:tls';
import type { Counter } from '../core/index.ts';

/**
 * Admission of TLS handshakes on one terminating listener (east-west, egress mTLS). A handshake is the
 * dearest thing a client can make the gateway do before it has proved anything (an ECDSA signature and a
 * client chain to verify, on the event loop that serves every request), and a client that holds
 * connections idle until they are closed and dials again can ask for one after another. So a connection
 * is admitted to its handshake only while fewer than `maxInProgress` are under way and the listener's
 * token bucket (`perSecond` handshakes a second, a burst of as many) has a token; past either it is closed
 * at once, before any TLS byte is written, and counted as refused{reason="handshake-limit"} or
 * {reason="handshake-rate"}. A refused peer gateway dials again (its pool backs off); passthrough
 * connections never handshake here and are not counted.
 *
 * A handshake that resumed a session (a peer gateway presenting a ticket this gateway issued after a full,
 * verified handshake) costs RESUMED_COST of a token: no certificate is signed or verified. It is charged a
 * whole token when admitted, since a ClientHello that offers a ticket may still end in a full handshake,
 * and refunded the rest once it completed resumed. Without that, a peer that dials per request
 * (tunnelMaxRequestsPerConnection: 1) was held to perSecond requests a second.
 */
export const RESUMED_COST = 0.05;

export class HandshakeAdmission {
  readonly #maxInProgress: number;
  readonly #perSecond: number;
  readonly #refused: Counter;
  readonly #listener: string;
  readonly #now: () => number;
  /** handshakes under way, by the connection's remote address and port (the TLS socket has the same) */
  readonly #inProgress = new Map<string, Socket>();
  #tokens: number;
  #refilledAt: number;

  constructor(options: {
    maxInProgress: number;
    perSecond: number;
    refused: Counter;
    listener: string;
    now?: () => number;
  }) {
    this.#maxInProgress = options.maxInProgress;
    this.#perSecond = options.perSecond;
    this.#refused = options.refused;
    this.#listener = options.listener;
    this.#now = options.now ?? (() => performance.now());
    this.#tokens = options.perSecond;
    this.#refilledAt = this.#now();
  }

  get inProgress(): number {
    return this.#inProgress.size;
  }

  /**
   * Whether `socket` may start its handshake now; when not, it has been destroyed and counted. An admitted
   * one counts as in progress until `secured()` names its TLS socket, or it closes.
   */
  admit(socket: Socket): boolean {
    const reason = this.#refusal();
    if (reason) {
      this.#refused.inc({ listener: this.#listener, reason });
      socket.destroy();
      return false;
    }
    this.#tokens--;
    const key = keyOf(socket);
    // a connection already gone has no address left to key it by, and nothing to handshake
    if (socket.remotePort === undefined) {
      socket.destroy();
      return false;
    }
    this.#inProgress.set(key, socket);
    socket.once('close', () => {
      if (this.#inProgress.get(key) === socket) this.#inProgress.delete(key);
    });
    return true;
  }

  /** the handshake of this TLS socket completed: its slot is free, and a resumed one most of its token */
  secured(tls: TLSSocket): void {
    if (this.#inProgress.delete(keyOf(tls)) && tls.isSessionReused())
      this.#tokens = Math.min(this.#perSecond, this.#tokens + 1 - RESUMED_COST);
  }

  /** frees the slot of every handshake `server` completes (a server this admission hands connections to) */
  watch(server: TlsServer): void {
    server.on('secureConnection', (s: TLSSocket) => this.secured(s));
  }

  #refusal(): 'handshake-limit' | 'handshake-rate' | undefined {
    if (this.#inProgress.size >= this.#maxInProgress) return 'handshake-limit';
    const now = this.#now();
    this.#tokens = Math.min(
      this.#perSecond,
      this.#tokens + ((now - this.#refilledAt) / 1000) * this.#perSecond,
    );
    this.#refilledAt = now;
    return this.#tokens < 1 ? 'handshake-rate' : undefined;
  }
}

/** one TCP connection of a listener: its remote address and port, the same on the raw and the TLS socket */
function keyOf(s: Socket): string {
  return `${s.remoteAddress}|${s.remotePort}`;
}
