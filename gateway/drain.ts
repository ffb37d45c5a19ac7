import { constants as h2c, type Http2Session } from 'node:http2';
import { monotonicNow } from '../core/index.ts';
import type { H1Entry } from './h1/entry.ts';
import { closeSessionWithin } from './session-close.ts';
import type { InFlight } from './layers/metrics.ts';

/**
 * How a draining gateway tells its peers, in band, that it is going away: the opaque data of the GOAWAY it
 * sends on its HTTP/2 sessions, and a header on the HTTP/1.1 responses of the fast path (`meshfed-h1/1`). A
 * peer that reads either stops choosing that gateway (Balancers.peerDraining) until a health probe finds a
 * gateway there that is not draining. The catalog says the same: the daemon withdraws the gateway by name
 * before the drain starts (the peers of older versions, which do not read withdrawals, have this notice).
 */
export const DRAIN_GOAWAY_DATA = Buffer.from('meshfed-drain');
/**
 * On a fast-path response: the connection closes after it and the gateway is draining. On an interim (1xx)
 * answer written to an idle fast-path connection just before it is closed: nothing sent on this connection
 * after the last response was read, so a request that crossed the close may be sent again, whatever its
 * method. A meshfed gateway reads nothing on a connection once it wrote that.
 */
export const DRAINING_HEADER = 'x-meshfed-draining';
/** the interim answer that closes an idle fast-path connection between gateways (see DRAINING_HEADER) */
export const CLOSING_NOTICE = `HTTP/1.1 100 Continue\r\n${DRAINING_HEADER}: closed\r\n\r\n`;

/** whether the opaque data of a GOAWAY says the peer is draining */
export function isDrainNotice(data: Buffer | undefined): boolean {
  return data?.equals(DRAIN_GOAWAY_DATA) === true;
}

/** how long a request-free spell ends the drain notice early: the peers have moved */
const QUIET_MS = 500;

/**
 * A gateway's drain, in two phases. Notice: it still accepts and serves everything, but tells every peer
 * and client it is leaving (GOAWAY on each HTTP/2 session, with DRAIN_GOAWAY_DATA; `connection: close` on
 * HTTP/1.1 responses) so they move elsewhere without losing a request. Closing: once no request arrived
 * for QUIET_MS, or the notice bound passed, it stops accepting, and the gateway waits for what is in flight.
 */
export class Drain {
  #phase: 'serving' | 'notice' | 'closing' = 'serving';
  readonly #sessions = new Set<Http2Session>();
  readonly #inFlight: InFlight;

  constructor(inFlight: InFlight) {
    this.#inFlight = inFlight;
  }

  get draining(): boolean {
    return this.#phase !== 'serving';
  }

  /** the listeners stop accepting new connections */
  get closing(): boolean {
    return this.#phase === 'closing';
  }

  /** every HTTP/2 session a server of this gateway accepts: one accepted while draining is told at once */
  track(session: Http2Session): void {
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
    if (this.draining) goAway(session);
  }

  /**
   * The whole drain: the notice (up to `noticeMs`, ending early after a quiet spell), then no new connection,
   * idle ones closed, and up to `timeoutMs` for what is in flight: requests, response bodies still streaming
   * on the HTTP/1.1 codec, and HTTP/2 sessions whose streams (gRPC, CONNECT) have not ended.
   */
  async run(o: {
    timeoutMs: number;
    noticeMs: number;
    /** the HTTP/1.1 codec's entries (fast path) */
    entries: readonly H1Entry[];
    /** the listeners stop accepting; node's HTTP/1.1 server closes its idle connections */
    stopAccepting: () => void;
  }): Promise<void> {
    for (const e of o.entries) e.drain();
    await this.#notice(o.noticeMs);
    o.stopAccepting();
    for (const e of o.entries) e.closeIdle();
    const deadline = monotonicNow() + o.timeoutMs;
    const busy = () =>
      this.#inFlight.count + this.#sessions.size + o.entries.reduce((n, e) => n + e.busy(), 0);
    while (busy() > 0 && monotonicNow() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const e of o.entries) e.closeIdle();
  }

  /** The notice phase; resolves when the gateway may stop accepting. */
  async #notice(noticeMs: number): Promise<void> {
    if (this.#phase !== 'serving') return;
    this.#phase = 'notice';
    for (const s of this.#sessions) goAway(s);
    const start = performance.now();
    const quiet = () => performance.now() - Math.max(start, this.#inFlight.lastStart) >= QUIET_MS;
    while (performance.now() - start < noticeMs && !quiet()) await new Promise((r) => setTimeout(r, 50));
    this.#phase = 'closing';
  }

  /** stops accepting at once (a stop without a drain) */
  close(): void {
    this.#phase = 'closing';
  }
}

/**
 * GOAWAY with the last stream the session processed (node's default for 0), so streams the peer opened
 * after it are refused and provably unprocessed; the session closes once its open streams end, and with
 * `graceMs` is cut that long after the GOAWAY if it has not (closeSessionWithin: node leaves some sessions
 * stuck after their GOAWAY). A drain passes none: the gateway's stop, at the latest drainTimeout later,
 * destroys every socket its listeners accepted. With `drainNotice` false the peer only moves to a new session
 * (LeafCycle), without taking this gateway for a leaving one.
 */
export function goAway(session: Http2Session, drainNotice = true, graceMs?: number): void {
  if (session.closed || session.destroyed) return;
  if (drainNotice) session.goaway(h2c.NGHTTP2_NO_ERROR, 0, DRAIN_GOAWAY_DATA);
  else session.goaway(h2c.NGHTTP2_NO_ERROR, 0);
  if (graceMs === undefined) session.close();
  else closeSessionWithin(session, graceMs);
}
