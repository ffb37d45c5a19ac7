import type { TLSSocket } from 'node:tls';
import type { IssuedLeaf } from '../ca/index.ts';
import type { VerifiedPeer } from './peer-dial.ts';

/** a ticket kept from a verified connection, with what was verified and the leaf we presented on it */
interface HeldTicket extends VerifiedPeer {
  ticket: Buffer;
  leaf: IssuedLeaf;
}

/**
 * The TLS session tickets of our dials to remote gateways, the last one per upstream (cluster and address), for
 * both pools that dial them (gateway/h2-pool.ts, gateway/h1/gateway-tls.ts). A resumed handshake shows the
 * client no certificate, so a resumed session is accepted only on the strength of the check its ticket came
 * with. Hence the rules:
 * - a ticket is kept only from a connection whose peer we verified; one that arrives before the check (TLS 1.3
 *   sends tickets after the handshake, in any order with our own steps) waits for it, and is dropped without it;
 * - a ticket is offered only while our leaf is the one we presented on its connection (a resumed session
 *   presents that leaf again, while our requests carry the current leaf's chain), and one that arrives after
 *   our leaf rotated is not kept;
 * - only until the peer's certificate expires (its notAfter);
 * - clear() drops every ticket (our leaf rotated, or the trust bundle changed), and a dial begun before it
 *   neither keeps its ticket nor is accepted as resumed without a full check.
 */
export class SessionTickets {
  readonly #held = new Map<string, HeldTicket>();
  readonly #currentLeaf: () => IssuedLeaf;
  /** bumped by clear(): what a dial begun before learnt no longer counts */
  #epoch = 0;

  /** `currentLeaf`: the leaf our next handshake presents */
  constructor(currentLeaf: () => IssuedLeaf) {
    this.#currentLeaf = currentLeaf;
  }

  /** A dial to the gateway of `cluster` at `address` that presents `leaf`: what to offer, and what to keep. */
  dial(cluster: string, address: string, leaf: IssuedLeaf): TicketedDial {
    const key = `${cluster}|${address}`;
    const saved = this.#held.get(key);
    const offered = saved && saved.notAfter > Date.now() && saved.leaf === leaf ? saved : undefined;
    const epoch = this.#epoch;
    return new TicketedDial(offered, {
      current: () => epoch === this.#epoch,
      keep: (ticket, peer) => {
        if (epoch === this.#epoch && this.#currentLeaf() === leaf)
          this.#held.set(key, { ...peer, ticket, leaf });
      },
    });
  }

  /** Our leaf rotated or the trust bundle changed: no session is resumed from a ticket kept until now. */
  clear(): void {
    this.#held.clear();
    this.#epoch++;
  }
}

/** One dial's side of SessionTickets. */
export class TicketedDial {
  readonly #offered: HeldTicket | undefined;
  readonly #store: { current: () => boolean; keep: (ticket: Buffer, peer: VerifiedPeer) => void };
  #pending: Buffer | undefined;
  #verified: VerifiedPeer | undefined;

  constructor(
    offered: HeldTicket | undefined,
    store: { current: () => boolean; keep: (ticket: Buffer, peer: VerifiedPeer) => void },
  ) {
    this.#offered = offered;
    this.#store = store;
  }

  /** the ticket to offer in the handshake (the `session` option of tls.connect), if any */
  get ticket(): Buffer | undefined {
    return this.#offered?.ticket;
  }

  /** A ticket arrived on the connection (its 'session' event): kept now if its peer is verified, else once it is. */
  received(ticket: Buffer): void {
    if (this.#verified) this.#store.keep(ticket, this.#verified);
    else this.#pending = ticket;
  }

  /**
   * The remote gateway's proof, once the handshake is done: a session resumed from the ticket we offered stands
   * on the check that ticket came with (while that peer's certificate is valid and no clear() came between);
   * anything else must pass `check`, which throws when the peer fails. A ticket received before is kept now.
   */
  verify(socket: Pick<TLSSocket, 'isSessionReused'>, check: () => VerifiedPeer): VerifiedPeer {
    const o = this.#offered;
    const verified =
      socket.isSessionReused() && o && o.notAfter > Date.now() && this.#store.current()
        ? { notAfter: o.notAfter, chain: o.chain, spiffeId: o.spiffeId }
        : check();
    this.#verified = verified;
    if (this.#pending) this.#store.keep(this.#pending, verified);
    this.#pending = undefined;
    return verified;
  }
}
