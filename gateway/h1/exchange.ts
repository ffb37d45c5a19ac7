import type { Socket } from 'node:net';
import { Readable, Writable } from 'node:stream';
import type { AnswerSink } from '../answers.ts';
import { DRAINING_HEADER } from '../drain.ts';
import type { Req, Res } from '../http-request.ts';
import type { NodeIo } from '../pipeline.ts';
import { http } from '../node-http.ts';
import type { RequestHead } from './head.ts';
import { TurnCork } from './turn-cork.ts';

/** Where a request body goes once a codec asks for it; `write` returning false pauses the client. */
export interface BodySink {
  /** `payloadBytes`: how much of `chunk` is the body's payload (all of it, unless it carries chunked framing) */
  write(chunk: Buffer, payloadBytes: number): boolean;
  end(): void;
}

/** The client connection an exchange belongs to (gateway/h1/entry.ts). */
export interface ClientConnection {
  readonly socket: Socket;
  /** the connection closes after the response being written (drain, or its peer no longer verifies) */
  readonly closing: boolean;
  /** the client is a peer gateway to tell that this gateway drains (DRAINING_HEADER) */
  readonly tellsDrain: boolean;
  /** the request body, which nobody began to read, has wholly arrived (it can be dropped after the answer) */
  bodyInHand(): boolean;
  /** starts reading the request body: its framed bytes as sent (`decoded: false`) or its payload */
  startBody(sink: BodySink, decoded: boolean): void;
  /** the sink drained: read on */
  resumeBody(): void;
  /** the response is complete: the connection reads the next request or closes */
  responseDone(ex: Exchange): void;
}

type Mode = 'none' | 'length' | 'raw-chunked' | 'encode';

/**
 * Payload of a request body that a try began to send and left unfinished (it failed or timed out), which
 * the connection reads and drops after the answer so that it stays usable, as the answer's head promised;
 * past it the connection closes.
 */
export const MAX_DISCARD_BYTES = 64 * 1024;

/**
 * A character a field value must not carry out: anything but HTAB, SP, VCHAR and obs-text (node's own
 * rule). That refuses line breaks and NUL (injection) and anything past U+00FF, which latin1 cannot write
 * as one byte (U+010A would become an LF). A negated class of bytes: the class [\r\n\0\u0100-\uffff] cost
 * 3 % of the fast path's CPU.
 */
const NOT_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/** status line and fields, for a response meshfed writes itself or forwards */
function serializeHead(status: number, headers: Record<string, unknown>, close: boolean): string {
  let s = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) {
      for (const x of v) if (!NOT_FIELD_VALUE.test(String(x))) s += `${name}: ${x}\r\n`;
    } else if (!NOT_FIELD_VALUE.test(String(v))) {
      s += `${name}: ${v}\r\n`;
    }
  }
  if (close) s += 'connection: close\r\n';
  return `${s}\r\n`;
}

/**
 * One request and its response on a client connection of the HTTP/1.1 codec. It is what the forward
 * dispatch answers through (writeHead/write/end, like node's response, with the body's framing chosen by
 * the headers given: content-length, `transfer-encoding: chunked` for bytes already chunk-encoded, else
 * meshfed encodes chunks), and it hands node-shaped request and response objects to a codec that needs
 * them (the HTTP/2 tunnel to a gateway without the fast path), created only then.
 */
export class Exchange implements AnswerSink {
  readonly head: RequestHead;
  readonly conn: ClientConnection;
  headersSent = false;
  /** the response was completely written */
  finished = false;
  /** the client went away (or the exchange was cut) before the response was complete */
  gone = false;
  #mode: Mode = 'none';
  #close: (() => void)[] = [];
  #trailers: Record<string, string | string[]> | undefined;
  #io: NodeIo | undefined;
  #bodyStarted = false;
  /** the response head, until the first body bytes (or the end) leave with it in one write */
  #pendingHead: string | undefined;
  /** set when the connection must close after this response (a body left unread, an upstream close) */
  closeAfter = false;
  /** holds the body pieces of a turn, for a body that arrives in several (made on the first) */
  #cork: TurnCork | undefined;

  constructor(conn: ClientConnection, head: RequestHead) {
    this.conn = conn;
    this.head = head;
  }

  get keepAlive(): boolean {
    return this.head.keepAlive && !this.closeAfter;
  }

  /** Starts the request body towards `sink` (once; a second codec try finds it started). */
  startBody(sink: BodySink, decoded: boolean): boolean {
    if (this.#bodyStarted) return false;
    this.#bodyStarted = true;
    if (this.head.expectContinue && !this.headersSent)
      this.conn.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
    this.conn.startBody(sink, decoded);
    return true;
  }

  get bodyStarted(): boolean {
    return this.#bodyStarted;
  }

  resumeBody(): void {
    this.conn.resumeBody();
  }

  writeHead(status: number, headers: Record<string, unknown>): this {
    if (this.headersSent || this.gone) return this;
    this.headersSent = true;
    const noBody = this.head.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    const out = headers;
    if (this.conn.closing) {
      this.closeAfter = true;
      if (this.conn.tellsDrain) out[DRAINING_HEADER] = 'close';
    }
    // an answer given before anyone read the request body (a try that never got a connection, a refusal):
    // the connection stays only when that body is wholly here, to be dropped after the answer; otherwise
    // the client is told that the connection ends with this answer, and sends its next request elsewhere
    if (this.head.framing.kind !== 'none' && !this.#bodyStarted && !this.conn.bodyInHand())
      this.closeAfter = true;
    if (noBody) this.#mode = 'none';
    else if (out['content-length'] !== undefined) this.#mode = 'length';
    else if (out['transfer-encoding'] === 'chunked') this.#mode = 'raw-chunked';
    else {
      this.#mode = 'encode';
      out['transfer-encoding'] = 'chunked';
    }
    // the head waits for the body bytes of this turn of the event loop, to leave with them in one write
    // (one syscall, one TLS record); a response whose body comes later gets its head at the end of the turn
    this.#pendingHead = serializeHead(status, out, !this.keepAlive);
    queueMicrotask(this.#flushHead);
    return this;
  }

  readonly #flushHead = (): void => {
    const head = this.#pendingHead;
    if (head === undefined || this.gone) return;
    this.#pendingHead = undefined;
    // latin1: every character of a head is one byte, as it was received
    this.conn.socket.write(head, 'latin1');
  };

  /** Writes `bytes` after the pending head, if any, in one write. */
  #send(bytes: Buffer): boolean {
    const head = this.#pendingHead;
    const socket = this.conn.socket;
    if (head === undefined) return socket.write(bytes);
    this.#pendingHead = undefined;
    if (bytes.length > COALESCE_MAX || socket.writableCorked > 0) {
      // one writev (a TLS socket encrypts the two as one write) rather than a write for the head alone; a
      // held socket (TurnCork) gathers them without the copy
      socket.cork();
      socket.write(head, 'latin1');
      socket.write(bytes);
      socket.uncork();
      return socket.writableLength < socket.writableHighWaterMark;
    }
    const out = Buffer.allocUnsafe(head.length + bytes.length);
    out.write(head, 0, 'latin1');
    bytes.copy(out, head.length);
    return socket.write(out);
  }

  /**
   * Writes body bytes as the mode says; false when the client is slow (wait for onceDrain). `more`: the
   * body goes on after this piece, so the pieces of this turn are held to leave in one write (TurnCork).
   */
  write(chunk: Buffer, more = false): boolean {
    if (this.gone || this.finished || chunk.length === 0 || this.#mode === 'none') return !this.gone;
    if (more) {
      this.#cork ??= new TurnCork(this.conn.socket);
      this.#cork.hold();
    }
    const ok =
      this.#mode === 'encode'
        ? this.#send(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, CRLF]))
        : this.#send(chunk);
    return ok || this.#cork === undefined ? ok : this.#cork.release();
  }

  onceDrain(fn: () => void): void {
    this.conn.socket.once('drain', fn);
  }

  addTrailers(t: Record<string, string | string[]>): void {
    this.#trailers = t;
  }

  /** Ends the response (with a last body piece, for an answer). */
  end(body?: string | Buffer): this {
    if (this.gone || this.finished) return this;
    if (!this.headersSent) this.writeHead(200, { 'content-length': 0 });
    if (body !== undefined && body.length > 0) this.write(Buffer.from(body));
    if (this.#mode === 'encode') {
      let tail = '0\r\n';
      for (const [k, v] of Object.entries(this.#trailers ?? {})) {
        for (const x of Array.isArray(v) ? v : [v]) if (!NOT_FIELD_VALUE.test(x)) tail += `${k}: ${x}\r\n`;
      }
      this.#send(Buffer.from(`${tail}\r\n`, 'latin1'));
    } else this.#flushHead();
    this.#cork?.release();
    this.finished = true;
    this.#emitClose();
    this.conn.responseDone(this);
    return this;
  }

  /** Cuts the exchange: the client connection closes (a response cut short cannot be repaired). */
  destroy(): this {
    if (!this.finished && !this.gone) {
      this.gone = true;
      this.conn.socket.destroy();
      this.#emitClose();
    }
    return this;
  }

  /** The client connection closed. */
  clientGone(): void {
    if (this.finished || this.gone) return;
    this.gone = true;
    this.#emitClose();
  }

  once(event: 'close', fn: () => void): this {
    if (event === 'close') this.#close.push(fn);
    return this;
  }

  off(event: 'close', fn: () => void): this {
    const i = this.#close.indexOf(fn);
    if (event === 'close' && i !== -1) this.#close.splice(i, 1);
    return this;
  }

  #emitClose(): void {
    const fns = this.#close;
    this.#close = [];
    for (const fn of fns) fn();
    if (this.gone && this.#io && !(this.#io.res as Writable).destroyed) (this.#io.res as Writable).destroy();
  }

  /**
   * node-shaped request body and response for the codecs built on node's streams (the HTTP/2 tunnel):
   * the body is the request's decoded payload, the response writes through this exchange.
   */
  nodeIo(): NodeIo {
    if (this.#io) return this.#io;
    const ex = this;
    let started = false;
    const req = new Readable({
      read() {
        if (started) return ex.resumeBody();
        started = true;
        ex.startBody({ write: (b) => req.push(Buffer.from(b)), end: () => req.push(null) }, true);
      },
    });
    const res = new Writable({
      write(chunk: Buffer, _enc, cb) {
        if (ex.write(chunk)) cb();
        else ex.onceDrain(() => cb());
      },
      final(cb) {
        ex.end();
        cb();
      },
      destroy(err, cb) {
        if (!ex.finished) ex.destroy();
        cb(err);
      },
    });
    Object.assign(req, { headers: this.head.headers, method: this.head.method, url: this.head.target });
    Object.assign(res, {
      writeHead: (s: number, h: Record<string, unknown>) => ex.writeHead(s, h),
      addTrailers: (t: Record<string, string | string[]>) => ex.addTrailers(t),
    });
    Object.defineProperty(res, 'headersSent', { get: () => ex.headersSent });
    // the node codecs use only the parts of IncomingMessage and ServerResponse given above
    this.#io = { req: req as unknown as Req, res: res as unknown as Res };
    return this.#io;
  }
}

const CRLF = Buffer.from('\r\n');
/** a body piece up to this size is copied behind its head, to leave in one write */
const COALESCE_MAX = 16 * 1024;
