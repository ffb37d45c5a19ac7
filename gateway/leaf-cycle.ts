import type { Http2Session } from 'node:http2';
import { goAway } from './drain.ts';
import type { H1Entry } from './h1/entry.ts';

/**
 * After this gateway's own leaf rotates, the connections its peers opened to it still present the old
 * leaf: a peer closes them at once when that leaf's root is retired (peer-revalidation.ts), cutting what
 * is in flight on them. So each east-west connection is cycled at a random moment of the next `spreadMs`,
 * the way a client's pool retires its own dials (h1/pool.ts ROTATION_SPREAD_MS): an HTTP/2 tunnel session
 * gets a GOAWAY with no drain notice (the peer dials a new session and does not take this gateway for a
 * leaving one; streams it opened after the GOAWAY are refused unprocessed and sent again), and a fast-path
 * connection answers its next response with `connection: close` (an idle one is left to its peer, which
 * retires it, since closing it here could cross a request on its way).
 */
export class LeafCycle {
  readonly #sessions = new Set<Http2Session>();
  readonly #spreadMs: number;
  #fast: H1Entry | undefined;

  constructor(spreadMs: number) {
    this.#spreadMs = spreadMs;
  }

  /** an HTTP/2 session of the east-west listener, cycled on the next rotation while it lives */
  track(session: Http2Session): void {
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
  }

  /** the fast path's east-west entry, whose connections are cycled too */
  fastPath(entry: H1Entry | undefined): void {
    this.#fast = entry;
  }

  /** our leaf rotated: every east-west connection open now is cycled within the spread */
  rotated(): void {
    for (const s of this.#sessions)
      setTimeout(() => goAway(s, false), Math.random() * this.#spreadMs).unref();
    this.#fast?.cycle(this.#spreadMs);
  }
}
