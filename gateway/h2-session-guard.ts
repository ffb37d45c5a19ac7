import { constants as h2c, type ServerHttp2Session } from 'node:http2';
import { type Counter, MAX_TIMER_MS, monotonicNow } from '../core/index.ts';
import type { GatewayConfig } from './config.ts';
import { SESSION_WINDOW_BYTES } from './h2-pool.ts';
import { closeSessionWithin } from './session-close.ts';

/**
 * A stream the client resets sooner than this after opening it is a premature reset (half a second, not
 * more): a peer gateway cancelling a stream when its own per-try timeout fires is not an attack, and
 * closing its session would fail every other stream it carries.
 */
export const PREMATURE_RESET_MS = 500;

type ResetLimits = Pick<GatewayConfig['limits'], 'maxResetsPerSecond' | 'maxPrematureResets'>;

/**
 * Counts one session's streams and premature resets (RST_STREAM from the client within PREMATURE_RESET_MS
 * of the stream's HEADERS) and says when the session must go, the way servers mitigated HTTP/2 rapid
 * reset (CVE-2023-44487): more than `maxResetsPerSecond` in one second, or `maxPrematureResets` over the
 * session's life, once they are at least half of its streams (a session that carries mostly answered
 * streams keeps its cancels: after this gateway stalled for seconds, a client's cancels at its deadline
 * arrive with their streams' HEADERS and look premature). `perSecondOnly`: only the per-second limit, and
 * whatever the share (a tunnel session lives for hours and relays its callers' cancels).
 */
export class ResetCounter {
  readonly #limits: ResetLimits;
  readonly #perSecondOnly: boolean;
  opened = 0;
  premature = 0;
  #windowStart = 0;
  #inWindow = 0;

  constructor(limits: ResetLimits, o: { perSecondOnly?: boolean } = {}) {
    this.#limits = limits;
    this.#perSecondOnly = o.perSecondOnly === true;
  }

  /** a stream was opened */
  stream(): void {
    this.opened++;
  }

  /** the client reset a stream `ageMs` after opening it; true: the session crossed a limit and must go */
  reset(ageMs: number, now: number): boolean {
    if (ageMs >= PREMATURE_RESET_MS) return false;
    this.premature++;
    if (now - this.#windowStart > 1000) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    // a client whose streams were mostly answered is not flooding: a burst of its resets is what a stall of
    // this gateway leaves (HEADERS and the client's cancel at its deadline read in one go look premature)
    const mostlyPremature = this.premature * 2 >= this.opened;
    if (++this.#inWindow > this.#limits.maxResetsPerSecond && (this.#perSecondOnly || mostlyPremature))
      return true;
    if (this.#perSecondOnly) return false;
    return this.premature >= this.#limits.maxPrematureResets && mostlyPremature;
  }
}

/**
 * Closes `session` gracefully (GOAWAY, open streams finish) once it has had no stream open for `idleMs`: idle
 * means no request in progress, as an HTTP connection manager's idle timeout counts it. On a peer's tunnel
 * session (`graceful`) a PING counts as use: its pool keeps sessions for the health checks it sends as PINGs.
 *
 * Not Node's `session.setTimeout`: Node clears that timer only on a session that is not yet destroyed, and
 * it marks a session destroyed before it clears it, so every closed session (with its socket and TLS
 * objects) stayed referenced by its timer for the whole timeout; 1,000 h2 connections opened and closed
 * left 1,000 sessions uncollectable for 5 minutes (checked with a FinalizationRegistry). This timer is
 * cleared on 'close', and costs one check per `idleMs` per session, nothing per request but the stream count.
 */
function closeWhenIdle(session: ServerHttp2Session, idleMs: number, graceful: boolean): void {
  let open = 0;
  let lastUse = monotonicNow();
  let timer: NodeJS.Timeout;
  const arm = (ms: number) => {
    // past setTimeout's limit (~24.8 days) node would fire at once: check again then instead
    timer = setTimeout(check, Math.min(ms, MAX_TIMER_MS));
    timer.unref();
  };
  const check = () => {
    if (session.closed || session.destroyed) return;
    const quiet = monotonicNow() - lastUse;
    // no stream is open: the bound only cuts a session node leaves stuck (gateway/session-close.ts)
    if (open === 0 && quiet >= idleMs) closeSessionWithin(session, GUARD_CLOSE_GRACE_MS);
    else arm(open > 0 ? idleMs : idleMs - quiet);
  };
  arm(idleMs);
  const ended = () => {
    open--;
    lastUse = monotonicNow();
  };
  session.on('stream', (stream) => {
    open++;
    stream.once('close', ended);
  });
  if (graceful) session.on('ping', () => (lastUse = monotonicNow()));
  session.once('close', () => clearTimeout(timer));
}

/** how long a session closed gracefully by the guard may take to finish its open streams */
export const GUARD_CLOSE_GRACE_MS = 5_000;

/**
 * HTTP/2 session guards of every server session (h2c and TLS, egress and east-west): a client that resets
 * streams past the ResetCounter's limits gets GOAWAY (ENHANCE_YOUR_CALM) and loses the session (rapid
 * reset); a session that opens no stream within headersTimeout is closed (it holds a connection and
 * memory for nothing), unless it is a peer's tunnel session that it pings (health checks, keepalive); one idle
 * for sessionIdleTimeout is closed gracefully.
 *
 * `graceful`: the session is a tunnel from an authenticated peer (east-west), whose resets may be those
 * of its own callers relayed (a caller that leaves cancels its stream through every gateway on the way;
 * the peer's own guard bounds how many): only the per-second limit applies, and its GOAWAY (NO_ERROR)
 * names the last stream it took, and those still finish (within GUARD_CLOSE_GRACE_MS) while the peer
 * opens a new session for the rest, so the streams of other callers it carries are not failed.
 * Otherwise (a local client) the session is destroyed at once: nothing more of it is read, and the
 * frames still buffered (more HEADERS and resets of the same burst) are dropped with it.
 */
export function guardSession(
  session: ServerHttp2Session,
  options: { listener: string; limits: GatewayConfig['limits']; refused: Counter; graceful: boolean },
): void {
  const { listener, limits, refused } = options;
  // uploads through the tunnel: the whole-connection window must not serialise concurrent streams
  session.setLocalWindowSize(SESSION_WINDOW_BYTES);
  const silent = setTimeout(() => {
    refused.inc({ listener, reason: 'no-request' });
    session.goaway(h2c.NGHTTP2_NO_ERROR);
    session.destroy();
  }, limits.headersTimeout);
  session.once('stream', () => clearTimeout(silent));
  // a peer gateway's pool keeps its tunnel sessions for its health checks and keepalives, which are PINGs: a
  // session it pings is in use (a local client's session must still carry a request)
  if (options.graceful) session.once('ping', () => clearTimeout(silent));
  if (limits.sessionIdleTimeout > 0) closeWhenIdle(session, limits.sessionIdleTimeout, options.graceful);
  session.once('close', () => clearTimeout(silent));
  const resets = new ResetCounter(limits, { perSecondOnly: options.graceful });
  let lastStreamId = 0;
  let closing = false;
  const calm = () => {
    closing = true;
    refused.inc({ listener, reason: 'rapid-reset' });
    if (!options.graceful) {
      session.goaway(h2c.NGHTTP2_ENHANCE_YOUR_CALM, lastStreamId);
      session.destroy();
      return;
    }
    // NO_ERROR: a node client (meshfed's own pool) fails every open stream on a GOAWAY with any other code
    session.goaway(h2c.NGHTTP2_NO_ERROR, lastStreamId);
    closeSessionWithin(session, GUARD_CLOSE_GRACE_MS);
  };
  session.on('stream', (stream) => {
    const opened = monotonicNow();
    lastStreamId = Math.max(lastStreamId, stream.id ?? 0);
    resets.stream();
    const onReset = () => {
      const now = monotonicNow();
      if (!closing && !session.destroyed && resets.reset(now - opened, now)) calm();
    };
    // HEADERS and RST_STREAM read in one go: the stream may be reset before 'stream' is emitted
    if (stream.aborted) onReset();
    else stream.once('aborted', onReset);
  });
  session.on('error', () => undefined);
}
