import type { Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { IssuedLeaf } from '../../ca/index.ts';
import { FAST_ALPN, TUNNEL_ALPN } from '../config.ts';
import type { TunnelCredentials } from '../h2-pool.ts';
import { ClientContext, type VerifiedPeer, verifyGatewayPeer } from '../peer-dial.ts';

/** A ticket kept from a verified connection, with what was verified (a resumed handshake shows no chain). */
interface Ticket extends VerifiedPeer {
  ticket: Buffer;
  /** our leaf on the connection it came from: a resumed session presents that leaf again */
  leaf: IssuedLeaf;
}

/**
 * The mTLS side of the fast path's dials to remote gateways: one TLS context per leaf and bundle version, the
 * last session ticket per gateway (offered only while our leaf is the one it came with), and the proof the
 * remote gateway must give (a gateway identity of its cluster, the tunnel's rule).
 */
export class GatewayTls {
  readonly #creds: TunnelCredentials;
  /**
   * The last TLS session ticket per gateway, from a connection whose peer we verified, and how long that
   * peer's certificate is valid: a resumed handshake shows the client no certificate to check.
   */
  readonly #tickets = new Map<string, Ticket>();
  /** our leaf on each mTLS connection, as its peer saw it (chainHeaderOf) */
  readonly #leafOf = new WeakMap<Socket, IssuedLeaf>();
  readonly #context = new ClientContext();

  constructor(creds: TunnelCredentials) {
    this.#creds = creds;
  }

  /**
   * Opens an mTLS connection to `cluster`'s gateway at host:port, offering the fast-path ALPN first (a gateway
   * without it picks the tunnel from the same offer). `verifyPeer`, called once the handshake is done, returns
   * what the peer proved, or throws; a ticket from this connection is kept only after it.
   */
  connect(
    address: string,
    host: string,
    port: number,
    cluster: string,
  ): { socket: TLSSocket; leaf: IssuedLeaf; verifyPeer: () => VerifiedPeer } {
    const ticketKey = `${cluster}|${address}`;
    const saved = this.#tickets.get(ticketKey);
    const leaf = this.#creds.leaf();
    // a ticket is offered only while our leaf is the one it came with
    const offered = saved && saved.notAfter > Date.now() && saved.leaf === leaf ? saved : undefined;
    let verified: VerifiedPeer | undefined;
    const t = tls.connect({
      ...(offered ? { session: offered.ticket } : {}),
      host,
      port,
      secureContext: this.#context.get(leaf, this.#creds.bundle()),
      ALPNProtocols: [FAST_ALPN, TUNNEL_ALPN, 'h2'],
      servername: `gateway.${cluster}.meshfed.internal`,
      // the SPIFFE identity is checked by verifyPeer with ca/verify; the hostname means nothing here
      checkServerIdentity: () => undefined,
    });
    this.#leafOf.set(t, leaf);
    t.setNoDelay(true);
    // TLS 1.3 tickets arrive after the handshake; kept only once the peer is verified
    t.on('session', (ticket: Buffer) => {
      // not kept when our leaf rotated meanwhile (the session would present the old leaf, while our
      // requests carry the new chain)
      if (verified && this.#creds.leaf() === leaf)
        this.#tickets.set(ticketKey, { ...verified, ticket, leaf });
    });
    const verifyPeer = (): VerifiedPeer => {
      verified =
        t.isSessionReused() && offered
          ? offered
          : verifyGatewayPeer(t, this.#creds.bundle(), this.#creds.trustDomain, cluster);
      return verified;
    };
    return { socket: t, leaf, verifyPeer };
  }

  /** The leaf we presented on mTLS connection `s` (a dial under way when it rotated presents the old one). */
  leafOf(s: Socket): IssuedLeaf | undefined {
    return this.#leafOf.get(s);
  }

  /** our certificate rotated: a resumed session would present the old one again */
  rotated(): void {
    this.#tickets.clear();
  }

  /** the trust bundle changed: no session is resumed from a ticket verified against the old one */
  trustChanged(): void {
    this.#tickets.clear();
    this.#context.clear();
  }
}
