import type { Socket } from 'node:net';
import { type Counter, type Logger, monotonicNow } from '../../core/index.ts';
import { type RefusalReason, refusalStatus, writeAnswer } from '../answers.ts';
import { CLOSING_NOTICE } from '../drain.ts';
import { gracefulClosers } from '../peer-revalidation.ts';
import type { Handler } from '../pipeline.ts';
import { type BodyFramer, bodyFramer } from './body.ts';
import { type BodySink, type ClientConnection, Exchange, MAX_DISCARD_BYTES } from './exchange.ts';
import { FastRequest } from './fast-request.ts';
import { headEnd, parseRequestHead, type RequestHead } from './head.ts';
import { HEAD_ERROR_REFUSAL, HeadParseError } from './head-error.ts';

export interface H1EntryOptions {
  listener: 'egress' | 'eastWest';
  pipeline: Handler;
  cluster: string;
  maxHeadBytes: number;
  maxHeaders: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  refused: Counter;
  log: Logger;
  /**
   * A request the fast path does not carry (an upgrade, CONNECT, HTTP/1.0) at a request boundary: the
   * connection, with its unread bytes put back, goes to node's server. Without it such a request is refused.
   */
  handover?: (socket: Socket) => void;
}

const EMPTY = Buffer.alloc(0);
/** bytes read ahead of the request being served (a pipelined request) before the client is paused */
const MAX_READ_AHEAD = 64 * 1024;

/**
 * The HTTP/1.1 codec's server side: reads each request head on a connection, builds the GatewayRequest
 * every layer sees, runs the listener's pipeline, and moves the body by its framing when the upstream
 * codec asks for it. One request at a time: a pipelined request waits, unread past a bound, until the
 * response before it is complete (RFC 9112 9.3.2).
 */
export class H1Entry {
  readonly #o: H1EntryOptions;
  readonly #connections = new Set<H1Connection>();
  #sweeper: NodeJS.Timeout | undefined;
  /** the gateway drains: every response says `connection: close` (and, between gateways, why) */
  draining = false;

  constructor(o: H1EntryOptions) {
    this.#o = o;
  }

  get options(): H1EntryOptions {
    return this.#o;
  }

  accept(socket: Socket): void {
    const c = new H1Connection(this, socket);
    gracefulClosers.set(socket, () => c.closeIfIdle());
    this.#connections.add(c);
    socket.once('close', () => this.#connections.delete(c));
    // one timer for all connections: a head that takes too long (slowloris) and idle keep-alives
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.min(1_000, this.#o.headersTimeoutMs)).unref();
    c.start();
  }

  /** the drain's notice: connections stay, each response closes its connection and tells the client */
  drain(): void {
    this.draining = true;
  }

  /** connections with an exchange under way (its response may still stream after the headers) */
  busy(): number {
    let n = 0;
    for (const c of this.#connections) if (c.busy) n++;
    return n;
  }

  /**
   * Each connection open now answers its next response with `connection: close`, at a random moment of the
   * next `spreadMs` (LeafCycle: our leaf rotated); an idle one is left open for its client to retire.
   */
  cycle(spreadMs: number): void {
    for (const c of this.#connections) setTimeout(() => c.cycle(), Math.random() * spreadMs).unref();
  }

  /** drain: idle keep-alive connections close now, busy ones after their response */
  closeIdle(): void {
    for (const c of this.#connections) c.closeIfIdle();
  }

  stop(): void {
    clearInterval(this.#sweeper);
    for (const c of this.#connections) c.socket.destroy();
  }

  #sweep(): void {
    const now = monotonicNow();
    for (const c of this.#connections) c.sweep(now);
    if (this.#connections.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }
}

class H1Connection implements ClientConnection {
  readonly socket: Socket;
  readonly #entry: H1Entry;
  readonly #o: H1EntryOptions;
  #buf: Buffer = EMPTY;
  #ex: Exchange | undefined;
  #framer: BodyFramer | undefined;
  #sink: BodySink | undefined;
  #bodyPaused = false;
  /** the sink takes the body's payload (a bridge to HTTP/2), not its framed bytes */
  #decoded = false;
  /** when the first byte of the head being read arrived (0: none yet) */
  #headStart = 0;
  #idleSince = monotonicNow();
  /** the client half-closed: serve what is in flight, then close */
  #ended = false;
  #draining = false;
  /** its next response says `connection: close` (LeafCycle) */
  #cycling = false;

  constructor(entry: H1Entry, socket: Socket) {
    this.#entry = entry;
    this.#o = entry.options;
    this.socket = socket;
  }

  /** the next response closes the connection */
  get closing(): boolean {
    return this.#cycling || this.#closingNow;
  }

  /** the gateway closes this connection as soon as it is idle */
  get #closingNow(): boolean {
    return this.#draining || this.#entry.draining;
  }

  cycle(): void {
    this.#cycling = true;
  }

  get busy(): boolean {
    return this.#ex !== undefined;
  }

  bodyInHand(): boolean {
    const f = this.#ex?.head.framing;
    return f?.kind === 'length' && this.#framer === undefined && this.#buf.length >= f.length;
  }

  /** a peer gateway is told that this gateway drains (DRAINING_HEADER); an app is only told to close */
  get tellsDrain(): boolean {
    return this.#entry.draining && this.#o.listener === 'eastWest';
  }

  start(): void {
    const s = this.socket;
    s.on('data', this.#onData);
    s.on('error', () => undefined);
    s.on('end', this.#onEnd);
    s.on('close', this.#onClose);
    s.resume();
  }

  /** untrusted bytes never crash the process: whatever a bug throws closes this connection only */
  readonly #onData = (d: Buffer): void => {
    try {
      this.#read(d);
    } catch (err) {
      this.#o.log.warn({ err, listener: this.#o.listener }, 'HTTP/1.1 connection failed');
      this.#ex?.destroy();
      this.socket.destroy();
    }
  };

  #read(d: Buffer): void {
    if (this.#framer && !this.#framer.done) {
      this.#feedBody(d);
      return;
    }
    this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
    if (!this.#ex) this.#parse();
    else if (this.#buf.length > MAX_READ_AHEAD) this.socket.pause();
  }

  /**
   * A client that half-closes is gone, as node's HTTP server treats it (httpAllowHalfOpen: false): the
   * socket ends our side too, its 'close' cancels the request in flight, and its try is not held
   * against the target.
   */
  readonly #onEnd = (): void => {
    this.#ended = true;
    if (!this.#ex) this.socket.end();
  };

  readonly #onClose = (): void => {
    this.#ex?.clientGone();
    this.#ex = undefined;
  };

  sweep(now: number): void {
    if (this.#ex) return;
    if (this.#headStart > 0 && now - this.#headStart > this.#o.headersTimeoutMs) {
      this.#refuse('head-timeout', 'the request head did not arrive within headersTimeout');
    } else if (this.#headStart === 0 && now - this.#idleSince > this.#o.keepAliveTimeoutMs) {
      this.socket.destroy();
    }
  }

  closeIfIdle(): void {
    this.#draining = true;
    if (!this.#ex && this.#buf.length === 0) this.#closeIdle();
  }

  /**
   * Closes this idle connection, reading nothing after the decision: a request that crosses the close is
   * never served (it could not be answered). Between gateways it first writes CLOSING_NOTICE, so the peer
   * knows that such a request was never read and sends it again elsewhere whatever its method; an app
   * (egress) gets a plain close, the usual HTTP/1.1 keep-alive race.
   */
  #closeIdle(): void {
    const s = this.socket;
    s.off('data', this.#onData);
    if (this.#o.listener === 'eastWest' && s.writable) s.write(CLOSING_NOTICE, 'latin1');
    s.end();
  }

  #parse(): void {
    const o = this.#o;
    let head: RequestHead;
    try {
      const end = headEnd(this.#buf, o.maxHeadBytes);
      if (end === -1) {
        if (this.#headStart === 0 && this.#buf.length > 0) this.#headStart = monotonicNow();
        return;
      }
      // a head that is the whole read (the common case) needs no views of it
      const whole = end === this.#buf.length;
      head = parseRequestHead(whole ? this.#buf : this.#buf.subarray(0, end), o);
      if (head.upgrade || head.method === 'CONNECT' || head.minor === 0) {
        this.#handover(head);
        return;
      }
      this.#buf = whole ? EMPTY : this.#buf.subarray(end);
    } catch (err) {
      if (!(err instanceof HeadParseError)) throw err;
      this.#refuse(HEAD_ERROR_REFUSAL[err.reason], err.message);
      return;
    }
    this.#headStart = 0;
    this.#serve(head);
  }

  #serve(head: RequestHead): void {
    const ex = new Exchange(this, head);
    this.#ex = ex;
    this.#framer = undefined;
    this.#sink = undefined;
    const o = this.#o;
    const r = new FastRequest(o.listener, head, this.socket, ex, o.cluster);
    o.pipeline(r).catch((err: unknown) => {
      o.log.warn({ err, listener: o.listener }, 'request pipeline failed');
      ex.destroy();
    });
  }

  startBody(sink: BodySink, decoded: boolean): void {
    const ex = this.#ex;
    if (!ex) return;
    this.#sink = sink;
    this.#decoded = decoded;
    const framer = bodyFramer(ex.head.framing, {
      maxTrailerBytes: this.#o.maxHeadBytes,
      ...(decoded ? { onData: (d: Buffer) => this.#write(d, d.length) } : {}),
    });
    this.#framer = framer;
    if (framer.done) {
      sink.end();
      return;
    }
    const buffered = this.#buf;
    this.#buf = EMPTY;
    if (buffered.length > 0) this.#feedBody(buffered);
    if (!framer.done && !this.#bodyPaused) this.socket.resume();
  }

  resumeBody(): void {
    if (!this.#bodyPaused) return;
    this.#bodyPaused = false;
    if (this.#framer && !this.#framer.done) this.socket.resume();
  }

  #write(d: Buffer, payloadBytes: number): void {
    if (!this.#sink!.write(d, payloadBytes)) {
      this.#bodyPaused = true;
      this.socket.pause();
    }
  }

  #feedBody(d: Buffer): void {
    const framer = this.#framer!;
    const before = framer.payloadBytes;
    let used: number;
    try {
      used = framer.feed(d, 0);
    } catch (err) {
      // a body whose framing is in doubt: nothing after it can be trusted, on either connection. The
      // caller gets a 400 if no response has started; the try is then cancelled, cutting the upstream.
      const o = this.#o;
      o.refused.inc({ listener: o.listener, reason: 'malformed-request' });
      this.socket.off('data', this.#onData);
      const ex = this.#ex;
      if (ex && !ex.headersSent) {
        ex.closeAfter = true;
        const message = (err as Error).message;
        writeAnswer({ headers: {} }, ex, { status: 400, reason: 'malformed-request', message });
      } else {
        ex?.destroy();
        this.socket.destroy();
      }
      return;
    }
    if (!this.#decoded && used > 0)
      this.#write(used === d.length ? d : d.subarray(0, used), framer.payloadBytes - before);
    if (framer.done) {
      this.#sink!.end();
      if (used < d.length) this.#buf = d.subarray(used);
      // the next request is read once this response is complete
      if (this.#ex) this.socket.pause();
    }
  }

  responseDone(ex: Exchange): void {
    if (this.#ex !== ex) return;
    this.#ex = undefined;
    this.#idleSince = monotonicNow();
    const bodyLeft = ex.head.framing.kind !== 'none' && !(this.#framer?.done ?? false);
    if (!ex.keepAlive || this.#ended) {
      this.socket.end();
      // a request body nobody read leaves the connection at an unknown position
      if (bodyLeft) this.socket.destroySoon();
      return;
    }
    if (bodyLeft) {
      this.#discardBody(ex);
      return;
    }
    this.#next();
  }

  /**
   * The answer let the client keep the connection (it said nothing of a close), so the client may send its
   * next request right behind it: the rest of the request body is read and dropped first, at most
   * MAX_DISCARD_BYTES of it. Closing instead cut that next request ("other side closed" at the client).
   */
  #discardBody(ex: Exchange): void {
    const framer = this.#framer ?? bodyFramer(ex.head.framing, { maxTrailerBytes: this.#o.maxHeadBytes });
    this.#framer = framer;
    this.#decoded = false;
    let left = MAX_DISCARD_BYTES;
    this.#sink = {
      write: (_chunk, payloadBytes) => {
        left -= payloadBytes;
        if (left < 0) this.socket.destroy();
        return true;
      },
      // #feedBody keeps the bytes after the body once end() returns: the next request is read after that
      end: () => queueMicrotask(() => this.#next()),
    };
    this.#bodyPaused = false;
    const buffered = this.#buf;
    this.#buf = EMPTY;
    if (buffered.length > 0) this.#feedBody(buffered);
    if (!framer.done) this.socket.resume();
  }

  /** the response is over and the request wholly read: the next request, or the close the gateway began */
  #next(): void {
    if (this.socket.destroyed) return;
    // the response let the client keep the connection, but the gateway began to close it meanwhile
    if (this.#closingNow && this.#buf.length === 0) {
      this.#closeIdle();
      return;
    }
    this.#framer = undefined;
    this.#sink = undefined;
    if (this.#buf.length > 0) this.#parse();
    if (!this.#ex) this.socket.resume();
  }

  #handover(head: RequestHead): void {
    const o = this.#o;
    if (!o.handover) {
      this.#refuse(
        head.upgrade
          ? 'upgrade-not-supported'
          : head.method === 'CONNECT'
            ? 'connect-over-http1'
            : 'unsupported-version',
        'this listener carries HTTP/1.1 requests only',
      );
      return;
    }
    const s = this.socket;
    s.pause();
    s.off('data', this.#onData);
    s.off('end', this.#onEnd);
    s.off('close', this.#onClose);
    s.unshift(this.#buf);
    this.#buf = EMPTY;
    o.handover(s);
  }

  /** Answers a request that never became one (a refused head) and closes the connection. */
  #refuse(reason: RefusalReason, message: string): void {
    const o = this.#o;
    o.refused.inc({ listener: o.listener, reason });
    this.socket.off('data', this.#onData);
    const head: RequestHead = {
      method: 'GET',
      target: '/',
      minor: 1,
      headers: {},
      framing: { kind: 'none' },
      keepAlive: false,
      expectContinue: false,
      upgrade: false,
      size: 0,
    };
    const ex = new Exchange(this, head);
    this.#ex = ex;
    writeAnswer({ headers: {} }, ex, { status: refusalStatus(reason), reason, message });
  }
}
