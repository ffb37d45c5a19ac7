import net, { type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { IssuedLeaf } from '../../ca/index.ts';
import { MeshfedError, monotonicNow, stallSafeTimeout } from '../../core/index.ts';
import { FAST_ALPN } from '../config.ts';
import { DRAINING_HEADER } from '../drain.ts';
import type { TunnelCredentials } from '../h2-pool.ts';
import { CLOSE_GRACE_MS, type PeerRevalidation } from '../peer-revalidation.ts';
import { gatewayExpectation, type VerifiedPeer } from '../peer-dial.ts';
import { GatewayTls } from './gateway-tls.ts';
import { sharedReads } from '../socket-reads.ts';
import type { PoolUsage, UpstreamConnections } from '../upstream-connections.ts';
import { PooledConnection, SharedDialFailure, TunnelOnly } from './pooled-connection.ts';

export {
  type ConnectionUser,
  MAX_DIALS_PER_GATEWAY,
  PooledConnection,
  SharedDialFailure,
  TunnelOnly,
} from './pooled-connection.ts';

export interface H1PoolOptions {
  connectTimeoutMs: number;
  /** an idle connection closes after this, shorter than a backend's own keep-alive timeout */
  idleTimeoutMs: number;
  /** the same for mTLS connections to gateways, under their keep-alive timeout (65 s, h1/servers.ts): each
   * one dialled again is a TLS handshake */
  gatewayIdleTimeoutMs: number;
  /** a connection in use with no byte either way for this long is cut (timeouts.idle) */
  exchangeIdleMs: number;
  maxIdlePerKey: number;
  /** dials under way per address at once; more requests than that wait for a connection to free up */
  maxDialsPerKey: number;
  /** a remote gateway said it drains while a connection to it was idle (see gateway/drain.ts) */
  onPeerDraining?: (address: string) => void;
  /** mTLS connections to gateways serve at most this many requests (tunnelMaxRequestsPerConnection); 0: no limit */
  maxRequestsPerConnection: number;
  creds: TunnelCredentials;
  /** re-verifies the peers of the mTLS connections this pool dialled (listener `tunnel`) */
  revalidation?: PeerRevalidation;
  /** counts the dials and the connections open (meshfed_upstream_connects_total, meshfed_upstream_connections) */
  connections?: UpstreamConnections;
}

/** A request waiting for a connection of its key: the next one released or dialled, whichever comes first. */
interface Waiter {
  resolve(c: PooledConnection): void;
  reject(err: Error): void;
}

interface Key {
  /** the remote gateway's cluster (undefined: a local endpoint) */
  cluster: string | undefined;
  idle: PooledConnection[];
  /** oldest first */
  waiters: Waiter[];
  /** dials under way, at most maxDialsPerKey */
  dialling: number;
}

/** how long a gateway that answered with the tunnel ALPN is sent the tunnel without asking again */
const TUNNEL_ONLY_MS = 60_000;

/**
 * How long after our certificate rotated the mTLS connections that present the old one are all retired, each
 * at a random moment of it. Retiring them all at once had every request after a rotation dial (a burst of
 * handshakes on both gateways, requests waiting for them past their per-try timeout: root-rotation); the old
 * leaf stays valid meanwhile, and a peer that stops trusting it closes such a connection gracefully anyway.
 */
export const ROTATION_SPREAD_MS = 5_000;

/**
 * Pooled HTTP/1.1 connections of the fast path: plain TCP to local endpoints, mTLS with the fast-path
 * ALPN to remote gateways. A connection carries one request at a time and goes back to the pool only
 * when its response ended cleanly; idle ones close before the peer's own keep-alive timeout would. The
 * peers of mTLS connections are re-verified like every other established connection
 * (gateway/peer-revalidation.ts): one that no longer verifies leaves the pool, and closes once the
 * exchange on it, if any, is over.
 */
export class H1Pool {
  readonly #keys = new Map<string, Key>();
  readonly #tunnelOnly = new Map<string, number>();
  /** every open mTLS connection, to retire them when our certificate rotates */
  readonly #tls = new Set<PooledConnection>();
  /** the mTLS side of dials to gateways: context, tickets, the peer's proof */
  readonly #gateways: GatewayTls;
  readonly #o: H1PoolOptions;
  #closed = false;
  /** connections reading a response to its end for a client that left: closed with the pool */
  readonly #draining = new Set<PooledConnection>();
  #sweeper: NodeJS.Timeout | undefined;
  #idleCount = 0;

  constructor(o: H1PoolOptions) {
    this.#o = o;
    this.#gateways = new GatewayTls(o.creds);
  }

  /** the gateway is stopping: no connection is kept for later */
  get closed(): boolean {
    return this.#closed;
  }

  /** `c` reads the rest of a response nobody waits for (true), or no longer does (false) */
  draining(c: PooledConnection, on: boolean): void {
    if (on) this.#draining.add(c);
    else this.#draining.delete(c);
  }

  /** the remote gateway at `address` spoke only the HTTP/2 tunnel when last asked */
  tunnelOnly(address: string): boolean {
    const until = this.#tunnelOnly.get(address);
    if (until === undefined) return false;
    if (until > monotonicNow()) return true;
    this.#tunnelOnly.delete(address);
    return false;
  }

  /** An idle connection to `address` (mTLS to a gateway of `cluster` when given), if the pool has one. */
  takeIdle(address: string, cluster?: string): PooledConnection | undefined {
    const idle = this.#keys.get(keyOf(address, cluster))?.idle;
    while (idle && idle.length > 0) {
      const c = idle.pop()!;
      this.#idleCount--;
      c.idleSince = 0;
      const s = c.socket;
      if (s.destroyed || !s.readable || !s.writable) continue;
      return c;
    }
    return undefined;
  }

  /**
   * Per destination: the requests waiting for a connection (none idle, a dial under way or maxDialsPerKey
   * reached) and the idle connections; read when metrics are scraped, never per request.
   */
  *usage(): Generator<PoolUsage> {
    for (const k of this.#keys.values())
      yield { cluster: k.cluster, waiting: k.waiters.length, idle: k.idle.length };
  }

  /** The remote gateway at `address` is unresponsive: its idle connections close (busy ones stay theirs). */
  dropIdle(address: string): void {
    for (const [key, k] of this.#keys) {
      if (!key.startsWith('tls|') || !key.endsWith(`|${address}`)) continue;
      for (const c of k.idle.splice(0)) {
        this.#idleCount--;
        c.idleSince = 0;
        c.socket.destroy();
      }
    }
  }

  /**
   * An idle connection to `address` (mTLS to a gateway of `cluster` when given), else the first one that
   * is released or dialled for it. A dial starts only while fewer are under way than requests wait, and
   * at most maxDialsPerKey at once: in a burst, requests take the connections that free up meanwhile
   * instead of each paying a handshake (a TLS one costs milliseconds of the event loop that serves every
   * other request, which made a burst longer and called for more dials: docs/performance.md, "The latency
   * tail"). `onCancel` registers what stops the wait when the try ends first.
   */
  acquire(
    address: string,
    cluster?: string,
    onCancel?: (stop: () => void) => void,
  ): Promise<PooledConnection> {
    if (this.#closed)
      return Promise.reject(new MeshfedError('MESHFED_GATEWAY_UPSTREAM', 'the gateway is stopping'));
    const c = this.takeIdle(address, cluster);
    if (c) return Promise.resolve(c);
    const k = this.#key(keyOf(address, cluster));
    return new Promise<PooledConnection>((resolve, reject) => {
      const w: Waiter = { resolve, reject };
      k.waiters.push(w);
      onCancel?.(() => {
        const i = k.waiters.indexOf(w);
        if (i === -1) return;
        k.waiters.splice(i, 1);
        reject(new MeshfedError('MESHFED_GATEWAY_UPSTREAM', 'the request stopped waiting for a connection'));
      });
      this.#dialIfNeeded(k, address, cluster);
    });
  }

  #key(key: string): Key {
    let k = this.#keys.get(key);
    if (!k) {
      k = { cluster: clusterOfKey(key), idle: [], waiters: [], dialling: 0 };
      this.#keys.set(key, k);
    }
    return k;
  }

  #dialIfNeeded(k: Key, address: string, cluster: string | undefined): void {
    if (k.dialling >= k.waiters.length || k.dialling >= this.#o.maxDialsPerKey || this.#closed) return;
    k.dialling++;
    this.#dial(address, cluster).then(
      (c) => {
        k.dialling--;
        if (this.#closed || c.socket.destroyed) c.socket.destroy();
        else this.#handOff(k, c);
        this.#dialIfNeeded(k, address, cluster);
      },
      (err: Error) => {
        k.dialling--;
        // the requests that no other dial under way would serve fail with it and fail over: a target that
        // refused one connection is not waited on (a gateway without the fast path: all go to the tunnel)
        const keep = err instanceof TunnelOnly ? 0 : k.dialling;
        const failed = k.waiters.splice(0, Math.max(0, k.waiters.length - keep));
        // the dial counts against the target once, for the first of them; the others just fail over
        for (const [i, w] of failed.entries())
          w.reject(i === 0 || err instanceof TunnelOnly ? err : new SharedDialFailure(err));
      },
    );
  }

  /** `c` goes to the oldest request waiting for its key, else to the idle list */
  #handOff(k: Key, c: PooledConnection): void {
    const w = k.waiters.shift();
    if (w) {
      w.resolve(c);
      return;
    }
    if (k.idle.length >= this.#o.maxIdlePerKey) {
      c.socket.destroy();
      return;
    }
    c.idleSince = monotonicNow();
    k.idle.push(c);
    this.#idleCount++;
    // one timer for every idle connection of the pool, running only while there are some (0: idle ones stay)
    if (this.#o.idleTimeoutMs > 0)
      this.#sweeper ??= setInterval(() => this.#sweep(), this.#sweepMs()).unref();
  }

  /**
   * A connection whose exchange ended cleanly goes to a request waiting for one, else back to the pool
   * (most recently used first); `carried: false` for one dialled for a try that ended before using it.
   */
  release(c: PooledConnection, carried = true): void {
    const s = c.socket;
    c.detach();
    // an exchange that ended after the pool closed: nothing else would close its connection
    if (this.#closed || s.destroyed) return void s.destroy();
    if (c.retired) {
      s.end();
      return;
    }
    if (carried) c.reused = true;
    const max = this.#o.maxRequestsPerConnection;
    if (max > 0 && this.#tls.has(c) && ++c.uses >= max) {
      s.end();
      return;
    }
    this.#handOff(this.#key(c.key), c);
  }

  #sweepMs(): number {
    return Math.max(10, Math.min(1_000, Math.floor(this.#o.idleTimeoutMs / 4)));
  }

  /**
   * Idle connections close once they have been idle for idleTimeoutMs less one sweep interval, so none
   * outlives the bound by the timer's coarseness (a backend's own keep-alive close would race our reuse).
   */
  #sweep(): void {
    const { gatewayIdleTimeoutMs: gateway, idleTimeoutMs: local } = this.#o;
    const now = monotonicNow() + this.#sweepMs();
    for (const [key, k] of this.#keys) {
      const cutoff = now - (key.startsWith('tls|') ? gateway : local);
      // most recently used last: the stale ones are at the front
      let n = 0;
      while (n < k.idle.length && k.idle[n]!.idleSince <= cutoff) n++;
      if (n === 0) continue;
      for (const c of k.idle.splice(0, n)) {
        this.#idleCount--;
        c.idleSince = 0;
        c.socket.destroy();
      }
    }
    if (this.#idleCount === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  /**
   * An idle connection spoke: a draining remote gateway closing it says so (CLOSING_NOTICE), and a peer
   * that had nothing in flight to it learns it there.
   */
  readonly #spokeIdle = (c: PooledConnection, d: Buffer): void => {
    if (c.remote !== undefined && d.includes(DRAINING_HEADER, 0, 'latin1'))
      this.#o.onPeerDraining?.(c.remote);
  };

  /** a connection closed: out of the idle list it was in */
  readonly #closedConnection = (c: PooledConnection): void => {
    this.#tls.delete(c);
    if (c.idleSince === 0) return;
    c.idleSince = 0;
    const idle = this.#keys.get(c.key)?.idle;
    const i = idle ? idle.indexOf(c) : -1;
    if (i !== -1) {
      idle!.splice(i, 1);
      this.#idleCount--;
    }
  };

  /** No new exchange is given `c`: idle, it closes now; in use, once its exchange is over. */
  #retire(c: PooledConnection): void {
    c.retired = true;
    if (c.idleSince !== 0) c.socket.destroy();
    // an exchange that never ends must not keep a connection the peer may no longer hold
    else setTimeout(() => c.socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  #dial(address: string, cluster: string | undefined): Promise<PooledConnection> {
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(colon + 1));
    const key = keyOf(address, cluster);
    return new Promise<PooledConnection>((resolve, reject) => {
      let socket: Socket;
      /** what the dial is for: the fast path to a gateway, plain HTTP/1.1 to a local endpoint */
      const protocol = cluster === undefined ? 'http1' : 'fast-path';
      let settled = false;
      const fail = (err: Error, result: 'failed' | 'tunnel-only' = 'failed') => {
        timer.cancel();
        socket.destroy();
        if (settled) return;
        settled = true;
        this.#o.connections?.failed(cluster, protocol, result);
        reject(err);
      };
      // a handshake that completed during a stall of the loop is read before this gives up on it
      const timer = stallSafeTimeout(
        () =>
          fail(
            new MeshfedError('MESHFED_GATEWAY_TIMEOUT', `connect to ${address} timed out`, {
              retryable: true,
            }),
          ),
        this.#o.connectTimeoutMs,
      );
      const onError = (err: Error) =>
        fail(
          new MeshfedError('MESHFED_GATEWAY_UPSTREAM', `connect to ${address}: ${err.message}`, {
            cause: err,
            retryable: true,
          }),
        );
      const connected = (): PooledConnection => {
        timer.cancel();
        settled = true;
        socket.off('error', onError);
        socket.on('error', () => undefined);
        const closed = this.#o.connections?.opened(
          cluster,
          protocol,
          cluster !== undefined && (socket as TLSSocket).isSessionReused(),
        );
        if (closed) socket.once('close', closed);
        return new PooledConnection(
          socket,
          key,
          this.#o.exchangeIdleMs,
          this.#closedConnection,
          this.#spokeIdle,
        );
      };
      if (cluster === undefined) {
        // a local endpoint: read into the shared read buffer (sharedReads); nothing is read before 'connect'
        let conn: PooledConnection | undefined;
        socket = net.connect({
          host,
          port,
          noDelay: true,
          onread: sharedReads((d) => void conn?.received(d)),
        });
        socket.once('error', onError);
        socket.once('connect', () => {
          conn = connected();
          resolve(conn);
        });
        return;
      }
      // a remote gateway: its cleartext is read into the same buffer; a byte before the handshake is done
      // and the peer verified is one nothing asked for, and closes the connection
      let conn: PooledConnection | undefined;
      const {
        socket: t,
        leaf,
        verifyPeer,
      } = this.#gateways.connect(
        address,
        host,
        port,
        cluster,
        sharedReads((d) => {
          if (conn) conn.received(d);
          else t.destroy();
        }),
      );
      socket = t;
      t.once('error', onError);
      t.once('secureConnect', () => {
        if (t.alpnProtocol !== FAST_ALPN) {
          this.#tunnelOnly.set(address, monotonicNow() + TUNNEL_ONLY_MS);
          fail(new TunnelOnly(`${address} speaks only the HTTP/2 tunnel`), 'tunnel-only');
          return;
        }
        let verified: VerifiedPeer;
        try {
          verified = verifyPeer();
        } catch (err) {
          fail(err as Error);
          return;
        }
        const c = connected();
        conn = c;
        // dialled with the leaf that rotated meanwhile: it serves the request it was dialled for, then closes
        if (leaf !== this.#o.creds.leaf()) c.retired = true;
        this.#tls.add(c);
        this.#o.revalidation?.track(t, {
          listener: 'tunnel',
          chain: verified.chain,
          expect: gatewayExpectation(this.#o.creds.trustDomain, cluster),
          peer: verified.spiffeId,
          notAfter: verified.notAfter,
          close: () => this.#retire(c),
        });
        resolve(c);
      });
    });
  }

  /** The leaf we presented on mTLS connection `s` (a dial under way when it rotated presents the old one). */
  leafOf(s: Socket): IssuedLeaf | undefined {
    return this.#gateways.leafOf(s);
  }

  /**
   * Our certificate rotated: new connections use the new context, and each mTLS connection dialled with the
   * old one is retired at a random moment of the next ROTATION_SPREAD_MS (idle, it closes then; in use, once
   * its exchange is over), so that their replacements are dialled a few at a time.
   */
  rotate(): void {
    this.#gateways.rotated();
    for (const c of this.#tls) setTimeout(() => this.#retire(c), Math.random() * ROTATION_SPREAD_MS).unref();
  }

  /**
   * The trust bundle changed: new dials verify against it (the context follows the bundle's version) and no
   * session is resumed from a ticket verified against the old one. Established connections stay; whether
   * their peer still verifies is the revalidation's decision.
   */
  trustChanged(): void {
    this.#gateways.trustChanged();
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    const stopping = new MeshfedError('MESHFED_GATEWAY_UPSTREAM', 'the gateway is stopping');
    for (const c of this.#draining) c.socket.destroy();
    this.#draining.clear();
    for (const k of this.#keys.values()) {
      for (const c of k.idle.splice(0)) c.socket.destroy();
      for (const w of k.waiters.splice(0)) w.reject(stopping);
    }
    this.#keys.clear();
    this.#idleCount = 0;
  }
}

function keyOf(address: string, cluster: string | undefined): string {
  return cluster === undefined ? `tcp|${address}` : `tls|${cluster}|${address}`;
}

/** the cluster of a key made by keyOf (cluster names are DNS labels: no `|`) */
function clusterOfKey(key: string): string | undefined {
  return key.startsWith('tls|') ? key.slice(4, key.indexOf('|', 4)) : undefined;
}
