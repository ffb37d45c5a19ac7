import type { OnReadOpts, Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { IssuedLeaf } from '../../ca/index.ts';
import { GATEWAY_ALPN_OFFER } from '../config.ts';
import type { TunnelCredentials } from '../h2-pool.ts';
import { ClientContext, type VerifiedPeer, verifyGatewayPeer } from '../peer-dial.ts';
import { SessionTickets } from '../session-tickets.ts';

/**
 * The mTLS side of the fast path's dials to remote gateways: one TLS context per leaf and bundle version, the
 * last session ticket per gateway (kept and offered by the rules of SessionTickets), and the proof the
 * remote gateway must give (a gateway identity of its cluster, the tunnel's rule).
 */
export class GatewayTls {
  readonly #creds: TunnelCredentials;
  /** the last TLS session ticket per gateway */
  readonly #tickets: SessionTickets;
  /** our leaf on each mTLS connection, as its peer saw it (chainHeaderOf) */
  readonly #leafOf = new WeakMap<Socket, IssuedLeaf>();
  readonly #context = new ClientContext();

  constructor(creds: TunnelCredentials) {
    this.#creds = creds;
    this.#tickets = new SessionTickets(() => creds.leaf());
  }

  /**
   * Opens an mTLS connection to `cluster`'s gateway at host:port, offering the fast-path ALPN first (a gateway
   * without it picks the tunnel from the same offer). `verifyPeer`, called once the handshake is done, returns
   * what the peer proved, or throws; a ticket from this connection is kept only after it. What it reads goes
   * to `onread` (net.Socket's option: no 'data' events).
   */
  connect(
    address: string,
    host: string,
    port: number,
    cluster: string,
    onread: OnReadOpts,
  ): { socket: TLSSocket; leaf: IssuedLeaf; verifyPeer: () => VerifiedPeer } {
    const leaf = this.#creds.leaf();
    const tickets = this.#tickets.dial(cluster, address, leaf);
    // tls.connect takes net's `onread` (Node 15+, not in its type)
    const options: tls.ConnectionOptions & { onread: OnReadOpts } = {
      ...(tickets.ticket ? { session: tickets.ticket } : {}),
      host,
      port,
      onread,
      secureContext: this.#context.get(leaf, this.#creds.bundle()),
      ALPNProtocols: [...GATEWAY_ALPN_OFFER],
      servername: `gateway.${cluster}.meshfed.internal`,
      // the SPIFFE identity is checked by verifyPeer with ca/verify; the hostname means nothing here
      checkServerIdentity: () => undefined,
    };
    const t = tls.connect(options);
    this.#leafOf.set(t, leaf);
    t.setNoDelay(true);
    // kept only once the peer is verified (verifyPeer), by the rules of SessionTickets
    t.on('session', (ticket: Buffer) => tickets.received(ticket));
    const verifyPeer = (): VerifiedPeer =>
      tickets.verify(t, () => verifyGatewayPeer(t, this.#creds.bundle(), this.#creds.trustDomain, cluster));
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
