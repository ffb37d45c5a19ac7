import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { IssuedLeaf, TrustBundle } from '../ca/index.ts';
import { MeshfedError, type StallSafeTimer, stallSafeTimeout } from '../core/index.ts';
import { TUNNEL_ALPN } from './config.ts';
import { ClientContext, gatewayExpectation, type VerifiedPeer, verifyGatewayPeer } from './peer-dial.ts';
import { isDrainNotice } from './drain.ts';
import { ROTATION_SPREAD_MS } from './h1/pool.ts';
import { CLOSE_GRACE_MS, msUntilRevalidationCut, type PeerRevalidation } from './peer-revalidation.ts';
import { closeAfterNextStream, closeSessionWithin } from './session-close.ts';
import { SessionTickets, type TicketedDial } from './session-tickets.ts';
import type { UpstreamConnections } from './upstream-connections.ts';

/** Flow-control windows of a tunnel session: per stream, and for the whole connection. */
export const STREAM_WINDOW_BYTES = 1 << 20;
export const SESSION_WINDOW_BYTES = 8 << 20;

/**
 * Whether the remote refused `stream` before anything read it, so that it may be sent again whatever its
 * method: REFUSED_STREAM, or ENHANCE_YOUR_CALM on a stream reset alone before any answer. node's HTTP/2 server
 * refuses a stream it cannot take at its creation (its concurrent streams or session memory at the limit,
 * which after a stalled loop still counts streams already cancelled) with a RST_STREAM of that code, before its
 * application sees it. The same code on a GOAWAY (a peer's rapid-reset guard) ends the session, and the streams
 * it had already processed are closed with that code too: a stream of a destroyed `session` is not counted here.
 */
export function refusedUnread(
  stream: ClientHttp2Stream,
  session: ClientHttp2Session,
  answered: boolean,
): boolean {
  if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) return true;
  // (node has let go of stream.session by the stream's error and close: the session is the caller's)
  return stream.rstCode === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM && !answered && !session.destroyed;
}

/**
 * HTTP/2's connection window starts at 64 KiB for all streams together: one 64 KiB response then
 * stalls every other stream for a WINDOW_UPDATE round trip. Per-stream windows still bound memory.
 * False when the session was destroyed before its 'connect' listener ran (the connect timer fired,
 * or the peer went away): node throws ERR_HTTP2_INVALID_SESSION from inside that listener then, and
 * an exception there used to end the whole gateway process.
 */
export function widenConnectionWindow(session: ClientHttp2Session): boolean {
  if (session.destroyed) return false;
  session.setLocalWindowSize(SESSION_WINDOW_BYTES);
  return true;
}

export interface TunnelCredentials {
  leaf: () => IssuedLeaf;
  bundle: () => TrustBundle;
  trustDomain: string;
}

interface Entry {
  sessions: (ClientHttp2Session | undefined)[];
  connecting: (Promise<ClientHttp2Session> | undefined)[];
  next: number;
}

/**
 * Pooled, multiplexed HTTP/2 sessions: a few per upstream (a remote gateway over mTLS, or a local
 * h2c endpoint), never one per request. A session that closes or errors leaves the pool and the next
 * request dials again. Remote gateways must prove a gateway identity of the cluster we meant to reach.
 */
export class H2Pool {
  private readonly entries = new Map<string, Entry>();
  private readonly size: number;
  private readonly connectTimeoutMs: number;
  private readonly creds: TunnelCredentials | undefined;
  private readonly maxRequests: number;
  /** requests handed out per tunnel session (with maxRequestsPerConnection) */
  private readonly uses = new WeakMap<ClientHttp2Session, number>();
  /** the last TLS session ticket per tunnel upstream (none without creds: h2c only) */
  private readonly tickets: SessionTickets | undefined;
  private readonly revalidation: PeerRevalidation | undefined;
  private closed = false;
  private readonly context = new ClientContext();
  /** bumped when our certificate rotates: dials started before do not enter the pool */
  private generation = 0;
  /** pooled tunnel sessions that present our previous leaf: each is replaced, then closed */
  private readonly stale = new WeakSet<ClientHttp2Session>();
  private readonly keepaliveOptions: { intervalMs: number; timeoutMs: number } | undefined;
  /** our leaf on each tunnel session, as its peer saw it (chainHeaderOf) */
  private readonly leaves = new WeakMap<ClientHttp2Session, IssuedLeaf>();
  /** tunnel sessions whose remote gateway said it drains (gateway/drain.ts) */
  private readonly drained = new WeakSet<ClientHttp2Session>();
  private readonly onPeerDraining: ((address: string) => void) | undefined;
  /** per remote gateway address, the smoothed round trip of the health checks' PINGs (ms) */
  private readonly rtts = new Map<string, number>();
  private readonly connections: UpstreamConnections | undefined;

  constructor(o: {
    size: number;
    connectTimeoutMs: number;
    creds?: TunnelCredentials;
    /** tunnel sessions serve at most this many requests, then close once those finish; 0: no limit */
    maxRequestsPerConnection?: number;
    /** watches every tunnel session's remote gateway certificate for as long as the session lives */
    revalidation?: PeerRevalidation;
    /** HTTP/2 PINGs on every tunnel session (gateway.tunnelKeepalive); intervalMs 0: none */
    keepalive?: { intervalMs: number; timeoutMs: number };
    /** a remote gateway's GOAWAY said it drains: stop choosing it */
    onPeerDraining?: (address: string) => void;
    /** counts the dials and the sessions open (meshfed_upstream_connects_total, meshfed_upstream_connections) */
    connections?: UpstreamConnections;
  }) {
    this.onPeerDraining = o.onPeerDraining;
    this.connections = o.connections;
    this.revalidation = o.revalidation;
    this.keepaliveOptions = o.keepalive;
    this.size = o.size;
    this.connectTimeoutMs = o.connectTimeoutMs;
    const creds = o.creds;
    this.creds = creds;
    this.tickets = creds && new SessionTickets(() => creds.leaf());
    this.maxRequests = o.maxRequestsPerConnection ?? 0;
  }

  /** A ready session to `address`; TLS (tunnel) when `cluster` is given, h2c otherwise. */
  session(address: string, cluster?: string): Promise<ClientHttp2Session> {
    const p = this.pooled(address, cluster);
    if (cluster === undefined || this.maxRequests === 0) return p;
    // several callers may wait for the same dial: those past the limit ask again (and dial anew)
    return p.then((s) => (this.claim(s) ? s : this.session(address, cluster)));
  }

  /** Counts one request on `s`; the one that reaches the limit takes `s` out of the pool. */
  private claim(s: ClientHttp2Session): boolean {
    const n = (this.uses.get(s) ?? 0) + 1;
    this.uses.set(s, n);
    if (n > this.maxRequests) return false;
    if (n === this.maxRequests) {
      this.unpool(s);
      closeAfterNextStream(s, () => this.closeBounded(s));
    }
    return true;
  }

  private pooled(address: string, cluster?: string): Promise<ClientHttp2Session> {
    if (this.closed)
      return Promise.reject(new MeshfedError('MESHFED_GATEWAY_UPSTREAM', 'the gateway is stopping'));
    const key = cluster === undefined ? `h2c|${address}` : `tls|${cluster}|${address}`;
    let e = this.entries.get(key);
    if (!e) {
      e = { sessions: new Array(this.size), connecting: new Array(this.size), next: 0 };
      this.entries.set(key, e);
    }
    const i = e.next;
    e.next = (e.next + 1) % this.size;
    const s = e.sessions[i];
    if (s && !s.closed && !s.destroyed) {
      // dialled with our previous leaf: it serves until its replacement is ready (make before break)
      if (this.stale.has(s) && !e.connecting[i] && cluster !== undefined)
        this.connect(e, i, address, cluster).then(
          () => this.retire(s),
          () => undefined,
        );
      return Promise.resolve(s);
    }
    return e.connecting[i] ?? this.connect(e, i, address, cluster);
  }

  /** Dials slot `i` of `entry`; the session takes the slot unless our certificate rotated meanwhile. */
  private connect(entry: Entry, i: number, address: string, cluster?: string): Promise<ClientHttp2Session> {
    const generation = this.generation;
    const p = this.dial(address, cluster).then(
      (session) => {
        entry.connecting[i] = undefined;
        if (generation !== this.generation && cluster !== undefined) {
          // dialled with the certificate that rotated meanwhile: it serves the callers already waiting
          // for it (their streams open right away and finish after the graceful close), then no one
          setTimeout(() => this.closeBounded(session), 1_000).unref();
          return session;
        }
        entry.sessions[i] = session;
        const drop = () => {
          if (entry.sessions[i] === session) entry.sessions[i] = undefined;
        };
        session.once('close', drop);
        session.once('error', drop);
        session.once('goaway', drop);
        return session;
      },
      (err: unknown) => {
        entry.connecting[i] = undefined;
        throw err;
      },
    );
    entry.connecting[i] = p;
    return p;
  }

  private dial(address: string, cluster?: string): Promise<ClientHttp2Session> {
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(colon + 1));
    /** our leaf on this connection */
    let ours: IssuedLeaf | undefined;
    /** this dial's side of the session tickets */
    let resumption: TicketedDial | undefined;
    return new Promise((resolve, reject) => {
      let session: ClientHttp2Session;
      const protocol = cluster === undefined ? 'h2c' : 'tunnel';
      let settled = false;
      /** a dial that ends without a session is counted once, whichever way it ends */
      const failed = (err: unknown) => {
        if (!settled) this.connections?.failed(cluster, protocol, 'failed');
        settled = true;
        reject(err);
      };
      const settings = { enablePush: false, initialWindowSize: STREAM_WINDOW_BYTES };
      if (cluster !== undefined) {
        const creds = this.creds;
        if (!creds || !this.tickets)
          return reject(new MeshfedError('MESHFED_INTERNAL', 'tunnel credentials are missing'));
        const leaf = creds.leaf();
        ours = leaf;
        const tickets = this.tickets.dial(cluster, address, leaf);
        resumption = tickets;
        // http2.connect forces ALPN to ['h2']: dial TLS ourselves so the tunnel ALPN is offered
        const tlsOptions: tls.ConnectionOptions = {
          host,
          port,
          secureContext: this.context.get(leaf, creds.bundle()),
          ALPNProtocols: [TUNNEL_ALPN, 'h2'],
          servername: `gateway.${cluster}.meshfed.internal`,
          // the SPIFFE identity is checked below with ca/verify; the hostname means nothing here
          checkServerIdentity: () => undefined,
          ...(tickets.ticket ? { session: tickets.ticket } : {}),
        };
        session = http2.connect(`https://${host}:${port}`, {
          createConnection: () => {
            const socket = tls.connect(tlsOptions);
            // Nagle would hold a message's last partial segment until the peer's delayed ACK (~40 ms)
            socket.setNoDelay(true);
            // kept only once the peer is verified (below), by the rules of SessionTickets
            socket.on('session', (t: Buffer) => tickets.received(t));
            return socket;
          },
          settings,
          peerMaxConcurrentStreams: 1000,
        });
      } else {
        session = http2.connect(`http://${host}:${port}`, {
          settings,
          createConnection: () => net.connect({ host, port, noDelay: true }),
        });
      }
      if (cluster !== undefined) {
        // from the start: a gateway already draining sends its GOAWAY right after the handshake
        session.on('goaway', (_code: number, _last: number, data?: Buffer) => {
          if (!isDrainNotice(data)) return;
          this.drained.add(session);
          this.onPeerDraining?.(address);
        });
      }
      // a handshake that completed during a stall of the loop is read before this gives up on it
      const timer = stallSafeTimeout(() => {
        session.destroy();
        failed(
          new MeshfedError('MESHFED_GATEWAY_TIMEOUT', `connect to ${address} timed out`, { retryable: true }),
        );
      }, this.connectTimeoutMs);
      session.once('error', (err) => {
        timer.cancel();
        failed(
          new MeshfedError('MESHFED_GATEWAY_UPSTREAM', `connect to ${address}: ${err.message}`, {
            cause: err,
            retryable: true,
          }),
        );
      });
      session.once('connect', () => {
        timer.cancel();
        if (cluster !== undefined && resumption) {
          let verified: VerifiedPeer;
          try {
            verified = this.checkTunnelPeer(session.socket as TLSSocket, cluster, resumption);
          } catch (err) {
            session.destroy();
            failed(err);
            return;
          }
          this.revalidation?.track(session, {
            listener: 'tunnel',
            chain: verified.chain,
            expect: gatewayExpectation(this.creds!.trustDomain, cluster),
            peer: verified.spiffeId,
            notAfter: verified.notAfter,
            // an expired or distrusted peer may finish what is in flight, not keep a CONNECT stream for ever
            close: () => this.retire(session, CLOSE_GRACE_MS),
          });
        }
        session.removeAllListeners('error');
        session.on('error', () => undefined);
        if (!widenConnectionWindow(session)) {
          failed(
            new MeshfedError(
              'MESHFED_GATEWAY_UPSTREAM',
              `connect to ${address}: the session closed as it opened`,
              {
                retryable: true,
              },
            ),
          );
          return;
        }
        if (cluster !== undefined) {
          if (ours) this.leaves.set(session, ours);
          this.keepalive(session, address);
        }
        session.unref();
        settled = true;
        const closed = this.connections?.opened(
          cluster,
          protocol,
          cluster !== undefined && (session.socket as TLSSocket).isSessionReused(),
        );
        if (closed) session.once('close', closed);
        resolve(session);
      });
    });
  }

  /** the remote gateway of tunnel session `s` said it drains */
  draining(s: ClientHttp2Session): boolean {
    return this.drained.has(s);
  }

  /**
   * Active health check of a remote gateway: a tunnel session to it (mTLS, its gateway identity for the
   * cluster checked) answers an HTTP/2 PING. The balancer bounds it with healthCheck.timeout.
   */
  async probe(address: string, cluster: string): Promise<boolean> {
    const session = await this.session(address, cluster);
    const ms = await ping(session);
    if (ms === undefined) return false;
    // smoothed: a PING that waits for a loaded peer's event loop takes as long as the loop lags
    const rtt = this.rtts.get(address);
    this.rtts.set(address, rtt === undefined ? ms : 0.7 * rtt + 0.3 * ms);
    // a draining gateway still answers PINGs; its GOAWAY came before the answer
    return !this.draining(session);
  }

  /** The smoothed round trip of the health checks' PINGs to the remote gateway at `address` (ms; 0 before any). */
  rttOf(address: string): number {
    return this.rtts.get(address) ?? 0;
  }

  /** The remote gateway at `address` is unresponsive: its sessions get no new stream and close once idle. */
  forget(address: string): void {
    for (const [key, e] of this.entries)
      if (key.startsWith('tls|') && key.endsWith(`|${address}`))
        for (const s of e.sessions) if (s) this.retire(s);
  }

  /** The leaf we presented on tunnel session `s` (one dialled as it rotated keeps serving with the old one). */
  leafOf(s: ClientHttp2Session): IssuedLeaf | undefined {
    return this.leaves.get(s);
  }

  /**
   * A PING on tunnel session `session` every keepalive.intervalMs; one not answered within keepalive.timeoutMs
   * destroys the session, and with it every stream on it. A partition neither answers nor errors: without
   * this, a response under way on the session or a TCP connection relayed over it would wait on a peer that
   * is cut off until its own client gave up. Tunnel sessions only: a local gRPC server may refuse frequent
   * PINGs (GOAWAY too_many_pings), a meshfed gateway answers them.
   */
  private keepalive(session: ClientHttp2Session, address: string): void {
    const k = this.keepaliveOptions;
    if (!k || k.intervalMs <= 0) return;
    let unanswered: StallSafeTimer | undefined;
    const answered = () => {
      unanswered?.cancel();
      unanswered = undefined;
    };
    const tick = setInterval(() => {
      if (unanswered || session.closed || session.destroyed) return;
      // an answer that arrived during a stall of the loop is read before the session is given up
      unanswered = stallSafeTimeout(
        () => {
          session.destroy(
            new MeshfedError(
              'MESHFED_GATEWAY_UPSTREAM',
              `tunnel to ${address}: a PING was not answered within ${k.timeoutMs} ms, so the session is closed (gateway.tunnelKeepalive)`,
              { retryable: true },
            ),
          );
        },
        k.timeoutMs,
        { unref: true },
      );
      // false: the session cannot send one now (too many unanswered); the next tick tries again
      if (!session.ping(answered)) answered();
    }, k.intervalMs);
    tick.unref();
    session.once('close', () => {
      clearInterval(tick);
      answered();
    });
  }

  /**
   * The remote gateway must prove a gateway identity of `cluster`; returns what was verified. A resumed TLS
   * session shows the client no certificate: it stands on the check its ticket came with (SessionTickets).
   */
  private checkTunnelPeer(socket: TLSSocket, cluster: string, resumption: TicketedDial): VerifiedPeer {
    return resumption.verify(socket, () =>
      verifyGatewayPeer(socket, this.creds!.bundle(), this.creds!.trustDomain, cluster),
    );
  }

  /** No new request is given `s`. */
  private unpool(s: ClientHttp2Session): void {
    for (const e of this.entries.values()) {
      const i = e.sessions.indexOf(s);
      if (i !== -1) e.sessions[i] = undefined;
    }
  }

  /** Takes `s` out of the pool and closes it gracefully (GOAWAY: its streams finish, no new ones). */
  private retire(s: ClientHttp2Session, graceMs?: number): void {
    this.unpool(s);
    this.closeBounded(s, graceMs);
  }

  /**
   * Closes `s` gracefully, and cuts it if it is still open `graceMs` later (closeSessionWithin: node leaves a
   * session stuck for good when the peer breaks the protocol after our GOAWAY). By default a tunnel session
   * may finish its streams until the leaf we presented on it expires, and CLOSE_GRACE_MS more: when the
   * remote gateway's revalidation of that leaf would end the session anyway, so no stream is cut sooner.
   */
  private closeBounded(s: ClientHttp2Session, graceMs?: number): void {
    const leaf = this.leaves.get(s);
    const bound = graceMs ?? (leaf ? msUntilRevalidationCut(leaf.notAfter.getTime()) : undefined);
    if (bound !== undefined) closeSessionWithin(s, bound);
    else if (!s.closed && !s.destroyed) s.close();
  }

  /**
   * Our certificate rotated: each tunnel session dialled with the old one keeps serving until the next
   * request that finds it has a replacement dialled with the new one, then closes gracefully (GOAWAY: its
   * streams finish), and at the latest after ROTATION_SPREAD_MS. Closing them all at once had every request
   * wait for new sessions, and a PING of the liveness check go unanswered on a busy host (root-rotation).
   */
  rotate(): void {
    this.generation++;
    // a resumed session would present our old certificate again
    this.tickets?.clear();
    for (const [key, e] of this.entries) {
      if (!key.startsWith('tls|')) continue;
      for (const s of e.sessions) {
        if (!s) continue;
        this.stale.add(s);
        setTimeout(() => this.retire(s), ROTATION_SPREAD_MS).unref();
      }
    }
  }

  /**
   * The trust bundle changed: the next dials build their TLS context with the new bundle (as they would on
   * any bundle version change), and no TLS session is resumed from a ticket, because a resumed handshake
   * shows us no certificate and its peer was verified against the old bundle. Established sessions keep
   * serving; whether their peer still verifies is the revalidation's decision, not the pool's.
   */
  trustChanged(): void {
    this.tickets?.clear();
    this.context.clear();
  }

  /**
   * The gateway stops: every session closes gracefully and is cut if it is still open `graceMs` later. A
   * session node leaves stuck after its GOAWAY (closeSessionWithin) would otherwise keep its socket, and with
   * it the stopped process, alive for ever.
   */
  close(graceMs = CLOSE_GRACE_MS): void {
    this.closed = true;
    for (const e of this.entries.values()) for (const s of e.sessions) if (s) closeSessionWithin(s, graceMs);
    this.entries.clear();
  }
}

/** a PING's round trip on `session` (ms), or undefined when it could not be sent or was not answered */
function ping(session: ClientHttp2Session): Promise<number | undefined> {
  return new Promise<number | undefined>((resolve) => {
    if (!session.ping((err, ms) => resolve(err ? undefined : ms))) resolve(undefined);
  });
}
