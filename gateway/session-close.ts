import type { ClientHttp2Session, Http2Session } from 'node:http2';
import { Socket } from 'node:net';
import { MAX_TIMER_MS, monotonicNow } from '../core/index.ts';

/**
 * Closes a session gracefully (no new stream; the open ones may finish) and destroys it if it is still
 * open `graceMs` later. The bound is not only for slow streams: once node 24 has sent a session's GOAWAY, a
 * frame that breaks the protocol read after it leaves the session stuck. Node then reads its socket no more
 * (the client's FIN stays unread, the connection sits in CLOSE-WAIT), emits nothing, and keeps it for the life
 * of the process: before this bound, any client of the east-west listener could leave one behind with each
 * request the gateway refused by closing its connection (test/gateway/h2-close-bound.test.ts, and the
 * east-west fuzz's regression). Those refusals, the rapid-reset guard, peer revalidation and the leaf cycle
 * (bounded by the expiry of the leaf a session was opened with, leaf-cycle.ts) close sessions through here, and
 * so does the tunnel pool for its own sessions to peers (a client session gets stuck the same way: h2-pool.ts),
 * also when the gateway stops. A drain's GOAWAY needs no bound of its own: the stop that follows the drain
 * destroys every socket the listeners accepted.
 */
export function closeSessionWithin(session: Http2Session, graceMs: number): void {
  if (session.closed || session.destroyed) return;
  const tcp = tcpSocketOf(session);
  session.close();
  // a grace past setTimeout's limit (a leaf valid for more than 24.8 days) would fire at once: the limit is
  // a bound all the same
  const cut = setTimeout(
    () => {
      session.destroy();
      // node ends, but never destroys, the socket of a session that was closed gracefully, and emits the
      // session's 'close' only once that socket closes: one the client left without a FIN stayed open for good
      // (east-west fuzz, MESHFED_FUZZ_SEED=1208281). The connection goes with the session.
      tcp?.destroy();
    },
    Math.min(graceMs, MAX_TIMER_MS),
  );
  cut.unref();
  session.once('close', () => clearTimeout(cut));
}

/**
 * The TCP connection under a session on TLS (the socket the listeners count), or none (a plain session: its
 * socket is the connection, which node does not hand out). node's proxy of a session's socket passes other
 * properties through to the TLS socket, whose `_parent` is the connection it wraps.
 */
function tcpSocketOf(session: Http2Session): Socket | undefined {
  try {
    const parent = (session.socket as unknown as { _parent?: unknown } | undefined)?._parent;
    return parent instanceof Socket ? parent : undefined;
  } catch {
    // node's proxy throws once the session has let go of its socket: nothing to take along then
    return undefined;
  }
}

/**
 * Closes `s` gracefully (GOAWAY: open streams finish, no new ones) once the caller that claimed it has
 * opened its stream, which it does as soon as the session promise settles; a caller still waiting on
 * something else is given up to a second before the session closes anyway.
 */
export function closeAfterNextStream(s: ClientHttp2Session, close: () => void): void {
  const before = s.state.nextStreamID;
  const deadline = monotonicNow() + 1_000;
  const check = () => {
    if (s.closed || s.destroyed) return;
    if (s.state.nextStreamID !== before || monotonicNow() > deadline) close();
    else setTimeout(check, 5).unref();
  };
  setImmediate(check);
}
