import net, { type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { type IssuedLeaf, peerCertificateChain, type TrustBundle, verify } from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { FAST_ALPN, TUNNEL_ALPN } from '../config.ts';
import type { TunnelCredentials } from '../h2-pool.ts';

/** A remote gateway answered our ALPN offer with the HTTP/2 tunnel: it has no fast path. */
export class TunnelOnly extends Error {}

export interface PooledConnection {
  readonly socket: Socket;
  readonly key: string;
  /** it carried a whole exchange before (the peer knows our identity on it; its idle close may race us) */
  readonly reused: boolean;
}

export interface H1PoolOptions {
  connectTimeoutMs: number;
  /** an idle connection closes after this, shorter than a backend's own keep-alive timeout */
  idleTimeoutMs: number;
  maxIdlePerKey: number;
  /** mTLS connections to gateways serve at most this many requests (tunnelMaxRequestsPerConnection); 0: no limit */
  maxRequestsPerConnection: number;
  creds: TunnelCredentials;
}

interface Key {
  idle: Socket[];
}

/** how long a gateway that answered with the tunnel ALPN is sent the tunnel without asking again */
const TUNNEL_ONLY_MS = 60_000;

/**
 * Pooled HTTP/1.1 connections of the fast path: plain TCP to local endpoints, mTLS with the fast-path
 * ALPN to remote gateways. A connection carries one request at a time and goes back to the pool only
 * when its response ended cleanly; idle ones close before the peer's own keep-alive timeout would.
 */
export class H1Pool {
  readonly #keys = new Map<string, Key>();
  readonly #tunnelOnly = new Map<string, number>();
  /** requests served per mTLS connection, against maxRequestsPerConnection */
  readonly #uses = new WeakMap<Socket, number>();
  /** connections that carried a whole exchange (a dial whose try ended first carried none) */
  readonly #carried = new WeakSet<Socket>();
  /**
   * The last TLS session ticket per gateway, from a connection whose peer we verified, how long that peer's
   * certificate is valid (a resumed handshake shows the client no certificate to check), and our leaf on that
   * connection: a resumed session presents that leaf again, so a ticket is offered only while it is current.
   */
  readonly #tickets = new Map<string, { ticket: Buffer; notAfter: number; leaf: IssuedLeaf }>();
  /** our leaf on each mTLS connection, as its peer saw it (chainHeaderOf) */
  readonly #leafOf = new WeakMap<Socket, IssuedLeaf>();
  readonly #o: H1PoolOptions;
  #context: { leaf: IssuedLeaf; bundle: TrustBundle; version: number; ctx: tls.SecureContext } | undefined;
  #closed = false;

  constructor(o: H1PoolOptions) {
    this.#o = o;
  }

  /** the remote gateway at `address` spoke only the HTTP/2 tunnel when last asked */
  tunnelOnly(address: string): boolean {
    const until = this.#tunnelOnly.get(address);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.#tunnelOnly.delete(address);
    return false;
  }

  /** An idle connection to `address` (mTLS to a gateway of `cluster` when given), or a new one. */
  acquire(address: string, cluster?: string): Promise<PooledConnection> {
    if (this.#closed)
      return Promise.reject(new MeshfedError('MESHFED_GATEWAY_UPSTREAM', 'the gateway is stopping'));
    const key = cluster === undefined ? `tcp|${address}` : `tls|${cluster}|${address}`;
    const idle = this.#keys.get(key)?.idle;
    while (idle && idle.length > 0) {
      const s = idle.pop()!;
      if (s.destroyed || !s.readable || !s.writable) continue;
      this.#wake(s);
      return Promise.resolve({ socket: s, key, reused: this.#carried.has(s) });
    }
    return this.#dial(address, cluster).then((socket) => ({ socket, key, reused: false }));
  }

  /**
   * A connection whose exchange ended cleanly goes back to the pool (most recently used first);
   * `carried: false` for one dialled for a try that ended before using it.
   */
  release(c: PooledConnection, carried = true): void {
    const s = c.socket;
    if (this.#closed || s.destroyed) return;
    if (carried) this.#carried.add(s);
    const max = this.#o.maxRequestsPerConnection;
    if (max > 0 && c.key.startsWith('tls|')) {
      const n = (this.#uses.get(s) ?? 0) + 1;
      this.#uses.set(s, n);
      if (n >= max) {
        s.end();
        return;
      }
    }
    let k = this.#keys.get(c.key);
    if (!k) {
      k = { idle: [] };
      this.#keys.set(c.key, k);
    }
    if (k.idle.length >= this.#o.maxIdlePerKey) {
      s.destroy();
      return;
    }
    // an idle connection that speaks, ends or errs is closed: nothing is owed on it
    s.removeAllListeners('data');
    s.removeAllListeners('end');
    s.removeAllListeners('close');
    s.removeAllListeners('error');
    s.removeAllListeners('timeout');
    s.removeAllListeners('drain');
    s.on('error', () => undefined);
    const gone = () => {
      s.destroy();
      const i = k.idle.indexOf(s);
      if (i !== -1) k.idle.splice(i, 1);
    };
    s.once('data', gone);
    s.once('end', gone);
    s.once('close', gone);
    s.setTimeout(this.#o.idleTimeoutMs, gone);
    s.resume();
    k.idle.push(s);
  }

  #wake(s: Socket): void {
    s.removeAllListeners('data');
    s.removeAllListeners('end');
    s.removeAllListeners('close');
    s.removeAllListeners('timeout');
    s.setTimeout(0);
  }

  #dial(address: string, cluster: string | undefined): Promise<Socket> {
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(colon + 1));
    return new Promise<Socket>((resolve, reject) => {
      let socket: Socket;
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(
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
      if (cluster === undefined) {
        socket = net.connect({ host, port, noDelay: true });
        socket.once('error', onError);
        socket.once('connect', () => {
          clearTimeout(timer);
          socket.off('error', onError);
          socket.on('error', () => undefined);
          resolve(socket);
        });
        return;
      }
      const ticketKey = `${cluster}|${address}`;
      const leaf = this.#o.creds.leaf();
      const saved = this.#tickets.get(ticketKey);
      const offered = saved && saved.notAfter > Date.now() && saved.leaf === leaf ? saved : undefined;
      let verifiedUntil = 0;
      const t = tls.connect({
        ...(offered ? { session: offered.ticket } : {}),
        host,
        port,
        secureContext: this.#secureContext(),
        // the fast path first; a gateway without it picks the tunnel (h2) from the same offer
        ALPNProtocols: [FAST_ALPN, TUNNEL_ALPN, 'h2'],
        servername: `gateway.${cluster}.meshfed.internal`,
        // the SPIFFE identity is checked below with ca/verify; the hostname means nothing here
        checkServerIdentity: () => undefined,
      });
      socket = t;
      this.#leafOf.set(t, leaf);
      t.setNoDelay(true);
      // TLS 1.3 tickets arrive after the handshake; kept only once the peer is verified, and not when our leaf
      // rotated meanwhile (the session would present the old leaf, while our requests carry the new chain)
      t.on('session', (ticket: Buffer) => {
        if (verifiedUntil > 0 && this.#o.creds.leaf() === leaf)
          this.#tickets.set(ticketKey, { ticket, notAfter: verifiedUntil, leaf });
      });
      t.once('error', onError);
      t.once('secureConnect', () => {
        clearTimeout(timer);
        if (t.alpnProtocol !== FAST_ALPN) {
          this.#tunnelOnly.set(address, Date.now() + TUNNEL_ONLY_MS);
          t.destroy();
          reject(new TunnelOnly(`${address} speaks only the HTTP/2 tunnel`));
          return;
        }
        try {
          verifiedUntil = t.isSessionReused() && offered ? offered.notAfter : this.#checkPeer(t, cluster);
        } catch (err) {
          fail(err as Error);
          return;
        }
        t.off('error', onError);
        t.on('error', () => undefined);
        resolve(t);
      });
    });
  }

  /**
   * The remote gateway must prove a gateway identity of `cluster` (the tunnel's rule); returns its
   * certificate's notAfter (ms), how long a ticket from this connection may be offered again.
   */
  #checkPeer(socket: TLSSocket, cluster: string): number {
    const creds = this.#o.creds;
    const id = verify(peerCertificateChain(socket), creds.bundle(), {
      trustDomain: creds.trustDomain,
      cluster,
      kinds: ['gateway'],
    });
    return id.notAfter.getTime();
  }

  /** one TLS context per leaf and bundle version: building one parses the PEMs and loads the CA store */
  #secureContext(): tls.SecureContext {
    const leaf = this.#o.creds.leaf();
    const bundle = this.#o.creds.bundle();
    let c = this.#context;
    if (!c || c.leaf !== leaf || c.bundle !== bundle || c.version !== bundle.version) {
      c = {
        leaf,
        bundle,
        version: bundle.version,
        ctx: tls.createSecureContext({
          cert: leaf.chainPem,
          key: leaf.keyPem,
          ca: bundle.toPem(),
          minVersion: 'TLSv1.3',
        }),
      };
      this.#context = c;
    }
    return c.ctx;
  }

  /** The leaf we presented on mTLS connection `s` (a dial under way when it rotated presents the old one). */
  leafOf(s: Socket): IssuedLeaf | undefined {
    return this.#leafOf.get(s);
  }

  /** Our certificate or the trust bundle changed: idle mTLS connections close; new ones use the new context. */
  rotate(): void {
    // a resumed session would present our old certificate again
    this.#tickets.clear();
    for (const [key, k] of this.#keys) {
      if (!key.startsWith('tls|')) continue;
      for (const s of k.idle.splice(0)) s.destroy();
    }
  }

  close(): void {
    this.#closed = true;
    for (const k of this.#keys.values()) for (const s of k.idle.splice(0)) s.destroy();
    this.#keys.clear();
  }
}
