import type { Http2Session } from 'node:http2';
import type { Socket } from 'node:net';
import { type TrustBundle, type VerifyExpectations, verify } from '../ca/index.ts';
import { type Logger, MAX_TIMER_MS, MeshfedError } from '../core/index.ts';
import { closeSessionWithin } from './session-close.ts';

/** Why an established connection was closed: its peer's certificate expired, or no longer verifies. */
export type RevalidationReason = 'peer-cert-expired' | 'peer-cert-untrusted';

/**
 * A server-side h2 session (or an HTTP/1.1 socket) that got GOAWAY is destroyed after this long if streams
 * are still open: an expired peer may finish what is in flight, not keep a CONNECT stream for ever.
 */
export const CLOSE_GRACE_MS = 10_000;

/**
 * How long from now until a connection made with a leaf that expires at `notAfterMs` would be cut by its peer's
 * revalidation of that leaf: until the expiry, then CLOSE_GRACE_MS. A graceful close bounded by it never cuts a
 * stream sooner than the peer would (leaf-cycle.ts, h2-pool.ts).
 */
export function msUntilRevalidationCut(notAfterMs: number, now = Date.now()): number {
  return Math.max(0, notAfterMs - now) + CLOSE_GRACE_MS;
}

/**
 * How to close an HTTP/1.1 connection gracefully, set by whoever serves it (the fast path's H1Connection):
 * the exchange under way finishes first. Ending the socket at once would cut a request whose answer is
 * still being fetched, and the caller would see a reset (a POST is not retried).
 */
export const gracefulClosers = new WeakMap<Socket, () => void>();

/** What a connection needs to be tracked: it tells when it closes. */
interface Closable {
  once(event: 'close', listener: () => void): unknown;
}

interface Tracked {
  listener: string;
  /** what verify() was given when the connection's peer was first checked (leaf first) */
  chain: readonly Buffer[];
  expect: VerifyExpectations;
  peer: string;
  /**
   * the leaf's notAfter (ms) as the verification that admitted the peer read it (parsing the certificate again here
   * cost a new connection more than its own verification, which is cached)
   */
  notAfter: number;
  /** closes the connection gracefully */
  close: () => void;
}

export interface PeerRevalidationOptions {
  bundle: () => TrustBundle;
  /** how often every tracked connection's peer is verified again; 0: only when sweep() is called */
  intervalMs: number;
  /** one call per connection closed (a metric) */
  onClosed: (listener: string, reason: RevalidationReason) => void;
  logger: Logger;
}

/**
 * Identity is verified when a connection's first request (or a tunnel dial) checks its peer; a connection
 * can then live for hours. This re-verifies every established mTLS connection's peer chain on a timer and
 * at once on a trust-bundle change, and closes the connections whose peer certificate has
 * expired or no longer chains to the bundle (a root removed): gracefully, GOAWAY first for HTTP/2.
 * A leaf counts as expired at its notAfter exactly, as a new handshake would refuse it then; the clock skew
 * verify() allows applies to everything else.
 */
export class PeerRevalidation {
  private readonly o: PeerRevalidationOptions;
  private readonly tracked = new Map<Closable, Tracked>();
  private timer: NodeJS.Timeout | undefined;

  constructor(o: PeerRevalidationOptions) {
    this.o = o;
  }

  /** connections tracked now */
  get size(): number {
    return this.tracked.size;
  }

  /**
   * Tracks a server-side connection whose peer `chain` just verified with `expect`: an h2 session (closed
   * with GOAWAY) or an HTTP/1.1 socket (ended after the response being written). One already tracked is
   * left as it is.
   */
  trackConnection(
    listener: string,
    connection: Http2Session | Socket,
    chain: readonly Buffer[],
    expect: VerifyExpectations,
    peer: string,
    /** the leaf's notAfter (ms), as the verification that admitted the peer read it */
    notAfter: number,
  ): void {
    if (this.tracked.has(connection)) return;
    if ('goaway' in connection) {
      const session = connection;
      this.track(session, {
        listener,
        chain,
        expect,
        peer,
        notAfter,
        close: () => closeSessionWithin(session, CLOSE_GRACE_MS),
      });
      return;
    }
    const socket = connection;
    this.track(socket, {
      listener,
      chain,
      expect,
      peer,
      notAfter,
      // HTTP/1.1 has no GOAWAY: the exchange under way is let finish, then the connection ends
      close: () => {
        const graceful = gracefulClosers.get(socket);
        if (graceful) graceful();
        else socket.end();
        setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
      },
    });
  }

  /** Tracks `connection` (a client session, say) until it closes; `t.close` is how to close it gracefully. */
  track(connection: Closable, t: Tracked): void {
    if (this.tracked.has(connection)) return;
    this.tracked.set(connection, t);
    connection.once('close', () => this.untrack(connection));
    if (!this.timer && this.o.intervalMs > 0) {
      this.timer = setInterval(() => this.sweep(), this.o.intervalMs);
      // a connection being watched must not keep a stopping process alive
      this.timer.unref();
    }
    this.notAfter.set(connection, t.notAfter);
    if (t.notAfter < this.nextExpiry) this.armExpiry(t.notAfter);
  }

  /** each tracked connection's peer leaf notAfter (ms): the sweep at the earliest one closes it on time */
  private readonly notAfter = new WeakMap<Closable, number>();
  private nextExpiry = Number.POSITIVE_INFINITY;
  private expiryTimer: NodeJS.Timeout | undefined;

  /**
   * A sweep at `at` (a peer leaf's notAfter): an expired peer's connection closes when its certificate
   * expires, not up to an interval later. Long delays are re-armed in steps (setTimeout's limit is ~24 days).
   */
  private armExpiry(at: number): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.nextExpiry = at;
    const delay = Math.min(Math.max(0, at - Date.now()), MAX_TIMER_MS);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.nextExpiry = Number.POSITIVE_INFINITY;
      // one reading for both decisions: a timer may fire a millisecond before the wall clock reaches `at`, and
      // had the next reading crossed it, the connection was neither swept nor armed for again
      const now = Date.now();
      if (now >= at) this.sweep();
      this.armNextExpiry(now);
    }, delay);
    this.expiryTimer.unref();
  }

  private armNextExpiry(now: number): void {
    let next = Number.POSITIVE_INFINITY;
    for (const connection of this.tracked.keys()) {
      const at = this.notAfter.get(connection) ?? Number.POSITIVE_INFINITY;
      // one already past was swept (or is being closed): the interval sweep keeps watching it
      if (at > now && at < next) next = at;
    }
    if (next !== Number.POSITIVE_INFINITY) this.armExpiry(next);
  }

  private untrack(connection: Closable): void {
    this.tracked.delete(connection);
    if (this.tracked.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    if (this.tracked.size === 0 && this.expiryTimer) {
      clearTimeout(this.expiryTimer);
      this.expiryTimer = undefined;
      this.nextExpiry = Number.POSITIVE_INFINITY;
    }
  }

  /** Verifies every tracked connection's peer again now; closes the ones that fail. Returns how many. */
  sweep(): number {
    const bundle = this.o.bundle();
    const now = Date.now();
    let closed = 0;
    for (const [connection, t] of [...this.tracked]) {
      const reason = this.failure(t, bundle, now);
      if (!reason) continue;
      this.untrack(connection);
      closed++;
      this.o.onClosed(t.listener, reason);
      this.o.logger.warn(
        { peer: t.peer, listener: t.listener, reason },
        'closing an established connection: its peer certificate no longer verifies',
      );
      t.close();
    }
    return closed;
  }

  private failure(t: Tracked, bundle: TrustBundle, now: number): RevalidationReason | undefined {
    try {
      const id = verify([...t.chain], bundle, { ...t.expect, now: new Date(now) });
      return id.notAfter.getTime() <= now ? 'peer-cert-expired' : undefined;
    } catch (err) {
      return err instanceof MeshfedError && err.code === 'MESHFED_CA_EXPIRED'
        ? 'peer-cert-expired'
        : 'peer-cert-untrusted';
    }
  }
}
