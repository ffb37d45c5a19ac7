import type { Socket } from 'node:net';

/** A remote gateway answered our ALPN offer with the HTTP/2 tunnel: it has no fast path. */
export class TunnelOnly extends Error {}

/** fast-path connections dialled at once to one remote gateway; requests past them wait for one to settle */
export const MAX_DIALS_PER_GATEWAY = 4;

/**
 * A request that waited on a dial which failed, other than the one request the dial counts against: it
 * fails over without counting against the target (one slow handshake on a busy host, counted once per
 * request waiting on it, ejected the very cluster traffic was failing over to: network-partition).
 */
export class SharedDialFailure extends Error {
  readonly dialError: Error;
  constructor(dialError: Error) {
    super(dialError.message);
    this.dialError = dialError;
  }
}

/** What uses a pooled connection for one exchange: the connection's events go to it, and only to it. */
export interface ConnectionUser {
  onData(d: Buffer): void;
  onClose(): void;
  /** no byte either way for the exchange idle timeout */
  onTimeout(): void;
}

/**
 * One connection of the pool, with the listeners it got once, at its dial: they hand its events to the
 * exchange using it, or close it when it speaks, ends or times out while idle. Nothing is added or removed
 * per exchange.
 */
export class PooledConnection {
  readonly socket: Socket;
  readonly key: string;
  /** it carried a whole exchange before (the peer knows our identity on it; its idle close may race us) */
  reused = false;
  /** exchanges carried, against maxRequestsPerConnection */
  uses = 0;
  /** when it went back to the pool (0: in use) */
  idleSince = 0;
  /** the remote gateway's address, for an mTLS connection to one */
  get remote(): string | undefined {
    return this.key.startsWith('tls|') ? this.key.slice(this.key.indexOf('|', 4) + 1) : undefined;
  }
  /** its peer no longer verifies, or our certificate rotated: it carries no new exchange */
  retired = false;
  user: ConnectionUser | undefined;

  readonly #spokeIdle: (c: PooledConnection, d: Buffer) => void;

  /**
   * What `socket` reads goes to `received`, as its dialler wires it: through its `onread` callback
   * (socket-reads.ts, sharedReads).
   */
  constructor(
    socket: Socket,
    key: string,
    exchangeIdleMs: number,
    closed: (c: PooledConnection) => void,
    spokeIdle: (c: PooledConnection, d: Buffer) => void,
  ) {
    this.socket = socket;
    this.key = key;
    this.#spokeIdle = spokeIdle;
    socket.on('end', () => {
      if (!this.user) socket.destroy();
    });
    socket.on('close', () => {
      closed(this);
      this.user?.onClose();
    });
    // one timer per connection, refreshed by node on every read and write; it matters only in use
    socket.setTimeout(exchangeIdleMs, () => this.user?.onTimeout());
  }

  /** bytes the connection read: the exchange's, or, while idle, the reason to close it */
  readonly received = (d: Buffer): void => {
    if (this.user) this.user.onData(d);
    else {
      // an idle connection that speaks is closed: nothing is owed on it
      this.#spokeIdle(this, d);
      this.socket.destroy();
    }
  };

  /** the exchange `u` uses the connection until it calls detach() */
  attach(u: ConnectionUser): void {
    this.user = u;
  }

  detach(): void {
    this.user = undefined;
    // a connection paused for backpressure must read again, to notice a close while idle
    if (this.socket.isPaused()) this.socket.resume();
  }
}
