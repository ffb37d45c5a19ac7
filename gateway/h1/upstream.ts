import { MeshfedError } from '../../core/index.ts';
import type { BalancerTarget } from '../balancer/index.ts';
import { DRAINING_HEADER } from '../drain.ts';
import { responseHeadersForClient } from '../headers.ts';
import { chainHeaderOf, type Identities } from '../identity.ts';
import type { GatewayRequest } from '../pipeline.ts';
import type { CircuitBreakers } from '../resilience/index.ts';
import type { UpstreamAttempt, UpstreamCodec } from '../upstream/attempt.ts';
import { BodyReplay } from '../upstream/body-replay.ts';
import { notReplayable } from '../upstream/h2.ts';
import { upstreamHeaders } from '../upstream/request-headers.ts';
import { type BodyFramer, bodyFramer } from './body.ts';
import type { BodySink, Exchange } from './exchange.ts';
import {
  type Framing,
  peerHeadLimits,
  type HeadLimits,
  headEnd,
  parseResponseHead,
  type ResponseHead,
  stateFraming,
} from './head.ts';
import { HeadParseError } from './head-error.ts';
import { TurnCork } from './turn-cork.ts';
import {
  type ConnectionUser,
  type H1Pool,
  type PooledConnection,
  SharedDialFailure,
  TunnelOnly,
} from './pool.ts';

export interface FastUpstreamOptions {
  pool: H1Pool;
  breakers: CircuitBreakers;
  identities: Identities;
  /** the HTTP/2 tunnel, for a remote gateway that has no fast path */
  tunnel: UpstreamCodec;
  maxHeadBytes: number;
  maxHeaders: number;
  /** a remote gateway said it drains (DRAINING_HEADER on a response): stop choosing it */
  onPeerDraining: (address: string) => void;
}

/** the options, and the head limits of a response from a remote gateway (what it added: peerHeadLimits) */
type UpstreamOptions = FastUpstreamOptions & { peerLimits: HeadLimits };

const EMPTY = Buffer.alloc(0);
/**
 * A client that leaves after its whole request went out: the rest of the response is read and dropped, and
 * the connection kept, when it ends within these bounds (else it closes, as it did before). A connection
 * closed instead costs a new one later, to a gateway a TLS handshake on this event loop: clients that time
 * out during a stall (a load client stopping, say) closed pooled connections, and the next burst dialled.
 */
const DRAIN_MS = 2_000;
const DRAIN_MAX_BYTES = 64 * 1024;
/**
 * A character a field value must not carry out: anything but HTAB, SP, VCHAR and obs-text (node's own
 * rule). That refuses line breaks and NUL (injection) and anything past U+00FF, which latin1 cannot write
 * as one byte (U+010A would become an LF). A negated class of bytes: the class [\r\n\0\u0100-\uffff] cost
 * 3 % of the fast path's CPU.
 */
const NOT_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * The request head sent upstream: what the layers left of the client's, plus meshfed's own headers, and the
 * fields that state the body's framing (stateFraming).
 */
function requestHead(
  r: GatewayRequest,
  host: string,
  headers: Record<string, unknown>,
  framing: Framing,
): string {
  stateFraming(headers, framing);
  let s = `${r.method} ${r.target} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) {
      const value = String(x);
      if (NOT_FIELD_VALUE.test(value))
        throw new MeshfedError(
          'MESHFED_GATEWAY_BAD_REQUEST',
          `header ${name} has a character a field value cannot carry (a line break, a control character, past U+00FF)`,
        );
      s += `${name}: ${value}\r\n`;
    }
  }
  return `${s}\r\n`;
}

/**
 * The fast path's upstream codec: the request head written to a pooled HTTP/1.1 connection (mTLS with
 * the fast-path ALPN to a remote gateway, TCP to a local endpoint), the body streamed as the client
 * framed it, and the response head parsed and its body streamed back by its framing, unchanged. A
 * connection returns to the pool only after a clean exchange.
 */
export class FastUpstream implements UpstreamCodec {
  readonly #o: UpstreamOptions;
  constructor(o: FastUpstreamOptions) {
    this.#o = { ...o, peerLimits: peerHeadLimits(o) };
  }

  send(r: GatewayRequest, t: BalancerTarget, a: UpstreamAttempt): void {
    const ex = r.fast;
    const o = this.#o;
    if (!ex || (!t.local && o.pool.tunnelOnly(t.address))) {
      o.tunnel.send(r, t, a);
      return;
    }
    const cluster = t.local ? undefined : t.cluster;
    // the common case: an idle pooled connection, used at once (no dial, so nothing is pending)
    const idle = o.pool.takeIdle(t.address, cluster);
    if (idle) {
      new UpstreamExchange(o, r, ex, t, a, idle).start();
      return;
    }
    const release = o.breakers.acquirePending(t);
    if (!release) {
      a.fail('overflow', undefined);
      return;
    }
    // a try that ends while its request waits for a connection leaves the pool's queue
    const waitEnds = (stop: () => void) => a.onCancel(stop);
    a.waitsForConnection = true;
    o.pool.acquire(t.address, cluster, waitEnds).then(
      (c) => {
        release();
        a.waitsForConnection = false;
        // the per-try timeout or the caller may have ended the try while the connection was dialled
        if (!a.open) o.pool.release(c, false);
        else new UpstreamExchange(o, r, ex, t, a, c).start();
      },
      (err: unknown) => {
        release();
        a.waitsForConnection = false;
        if (!a.open) return;
        if (err instanceof TunnelOnly) o.tunnel.send(r, t, a);
        else if (err instanceof SharedDialFailure) a.fail('overflow', err.dialError);
        else {
          const identity = err instanceof MeshfedError && err.code.startsWith('MESHFED_CA_');
          a.fail(identity ? 'refused' : 'connect', err);
        }
      },
    );
  }
}

/**
 * One request and its response on one pooled connection: it gets the connection's events while it holds
 * it (ConnectionUser), takes the client's body as the client framed it (BodySink), and hands the
 * connection back to the pool only after a clean exchange.
 */
class UpstreamExchange implements ConnectionUser, BodySink {
  readonly #o: UpstreamOptions;
  readonly #r: GatewayRequest;
  readonly #ex: Exchange;
  readonly #t: BalancerTarget;
  readonly #a: UpstreamAttempt;
  readonly #c: PooledConnection;
  #buf: Buffer = EMPTY;
  #res: ResponseHead | undefined;
  #framer: BodyFramer | undefined;
  #bodySent: boolean;
  #over = false;
  /** the remote gateway closed this connection with CLOSING_NOTICE: it read nothing of this request */
  #unread = false;
  /** the client left after its whole request was sent: the response is read to its end (DRAIN_MS) */
  #draining: NodeJS.Timeout | undefined;
  #drained = 0;

  constructor(
    o: UpstreamOptions,
    r: GatewayRequest,
    ex: Exchange,
    t: BalancerTarget,
    a: UpstreamAttempt,
    c: PooledConnection,
  ) {
    this.#o = o;
    this.#r = r;
    this.#ex = ex;
    this.#t = t;
    this.#a = a;
    this.#c = c;
    this.#bodySent = !r.hasBody;
  }

  start(): void {
    const r = this.#r;
    const t = this.#t;
    const c = this.#c;
    // a remote gateway verifies our chain once per connection and keeps the identity with it: only the
    // first request of a connection (one that was never reused) carries it, the chain of the leaf this
    // connection presented (not the current one when it was dialled as our leaf rotated). Left out rather
    // than deleted: a delete turns the headers into a slow dictionary for the serialisation after it.
    let chain: string | null = null;
    if (!t.local && !c.reused) {
      const leaf = this.#o.pool.leafOf(c.socket);
      chain = leaf ? chainHeaderOf(leaf) : this.#o.identities.localChain().b64;
    }
    const headers = upstreamHeaders(r, t, this.#o.identities, chain);
    // the client's `Expect: 100-continue` is answered by this gateway when the body is asked for
    if (headers.expect !== undefined) delete headers.expect;
    if (r.hasBody && r.replay && !r.replay.replayable) {
      this.#o.pool.release(c, true);
      this.#a.fail('cancelled', notReplayable());
      return;
    }
    let head: string;
    try {
      head = requestHead(r, r.authority || t.address, headers, this.#ex.head.framing);
    } catch (err) {
      this.#o.pool.release(c, false);
      this.#a.fail('cancelled', err);
      return;
    }
    this.#a.onCancel(this.#cancel);
    this.#ex.once('close', this.#onClientGone);
    c.attach(this);
    const s = c.socket;
    if (!r.hasBody) {
      // latin1: the head's characters are its bytes as received (obs-text included), one byte each
      s.write(head, 'latin1');
      return;
    }
    // the head and the body bytes read with it leave in one write (one TLS record, one syscall)
    s.cork();
    s.write(head, 'latin1');
    if (r.replay) this.#replay(r.replay);
    else {
      // the framed bytes are the payload only for a length-delimited body: only that one is recorded
      this.#recorder = this.#ex.head.framing.kind === 'length' ? new BodyReplay() : BodyReplay.unrecorded();
      r.replay = this.#recorder;
      this.#ex.startBody(this, false);
    }
    s.uncork();
  }

  /**
   * A retry: the payload an earlier try recorded (the retry layer checked it is whole), framed as this
   * head says: as it is for a length, as one chunk for chunked.
   */
  #replay(replay: BodyReplay): void {
    const s = this.#c.socket;
    const chunked = this.#ex.head.framing.kind === 'chunked';
    const size = replay.chunks.reduce((n, c) => n + c.length, 0);
    if (chunked && size > 0) s.write(`${size.toString(16)}\r\n`);
    for (const chunk of replay.chunks) s.write(chunk);
    if (chunked) s.write(size > 0 ? '\r\n0\r\n\r\n' : '0\r\n\r\n');
    this.#bodySent = true;
  }

  #recorder: BodyReplay | undefined;

  /** BodySink: forwarded as the client framed it, counted by its payload (as every other path counts it) */
  write(b: Buffer, payloadBytes: number): boolean {
    if (this.#over) return true;
    this.#r.bytesIn += payloadBytes;
    this.#recorder?.record(b);
    const s = this.#c.socket;
    // the body's pieces of this turn leave in one write; the hold ends with the body (end) at the latest
    this.#cork ??= new TurnCork(s);
    this.#cork.hold();
    if (s.write(b) || this.#cork.release()) return true;
    // one listener at a time, removed when the exchange ends: the connection may serve another client's
    // request before it drains
    if (!this.#onDrain) {
      this.#onDrain = () => {
        this.#onDrain = undefined;
        this.#ex.resumeBody();
      };
      s.once('drain', this.#onDrain);
    }
    return false;
  }

  #onDrain: (() => void) | undefined;
  #cork: TurnCork | undefined;

  end(): void {
    this.#bodySent = true;
    this.#recorder?.end();
    this.#cork?.release();
  }

  /** the try ended before its response: the per-try timeout (the connection is closed), or the caller left */
  readonly #cancel = (): void => {
    if (!this.#drain()) this.#end(false);
  };

  readonly #onClientGone = (): void => {
    if (!this.#ex.finished && !this.#drain()) this.#end(false);
  };

  /**
   * Whether the rest of the response is read to keep the connection: only once the client is gone, after
   * the whole request went out, for a response that is not delimited by the connection's close.
   */
  #drain(): boolean {
    if (this.#draining) return true;
    if (this.#over || !this.#ex.gone || !this.#bodySent || this.#unread || this.#o.pool.closed) return false;
    if (this.#res?.framing.kind === 'close') return false;
    this.#ex.off('close', this.#onClientGone);
    this.#draining = setTimeout(() => this.#end(false), DRAIN_MS).unref();
    this.#o.pool.draining(this.#c, true);
    // paused for a client that will never drain
    this.#c.socket.resume();
    return true;
  }

  #end(reuse: boolean): void {
    if (this.#over) return;
    this.#over = true;
    this.#ex.off('close', this.#onClientGone);
    if (this.#onDrain) this.#c.socket.off('drain', this.#onDrain);
    if (this.#draining) {
      clearTimeout(this.#draining);
      this.#o.pool.draining(this.#c, false);
    }
    // nothing of this exchange stays held on a connection that goes back to the pool
    this.#cork?.release();
    if (reuse && (!this.#ex.gone || this.#draining)) this.#o.pool.release(this.#c);
    else {
      this.#c.detach();
      this.#c.socket.destroy();
    }
  }

  #complete(extra: boolean): void {
    this.#end(!extra && this.#bodySent && this.#res!.keepAlive);
    this.#ex.end();
  }

  #failed(err: unknown): void {
    this.#end(false);
    this.#a.fail('reset', err);
  }

  onTimeout(): void {
    if (!this.#res) {
      this.#a.fail('timeout', new MeshfedError('MESHFED_GATEWAY_TIMEOUT', `${this.#t.address} sent nothing`));
    } else this.#ex.destroy();
    this.#end(false);
  }

  onClose(): void {
    if (this.#over) return;
    if (this.#res?.framing.kind === 'close') {
      this.#ex.end();
      this.#end(false);
      return;
    }
    if (this.#unread) {
      // a connection closed by a draining gateway that never read this request: another may serve it
      this.#end(false);
      this.#a.fail(
        'refused',
        new MeshfedError('MESHFED_GATEWAY_UPSTREAM', `${this.#t.address} closed the connection unread`),
      );
      return;
    }
    this.#failed(
      new MeshfedError('MESHFED_GATEWAY_UPSTREAM', `${this.#t.address} closed the connection mid-exchange`),
    );
  }

  onData(d: Buffer): void {
    if (this.#over) return;
    try {
      this.#read(d);
    } catch (err) {
      this.#ex.destroy();
      this.#failed(err);
    }
  }

  /** A piece of the response body to the client; a client that does not keep up pauses the upstream. */
  #toClient(piece: Buffer, more: boolean): void {
    if (this.#ex.write(piece, more)) return;
    const s = this.#c.socket;
    s.pause();
    this.#ex.onceDrain(() => s.resume());
  }

  #feed(d: Buffer): void {
    const res = this.#res!;
    const ex = this.#ex;
    const framer = this.#framer!;
    const before = framer.payloadBytes;
    let used: number;
    try {
      used = framer.feed(d, 0);
    } catch (err) {
      ex.destroy();
      this.#failed(err);
      return;
    }
    if (this.#draining) {
      this.#drained += used;
      if (this.#drained > DRAIN_MAX_BYTES) {
        this.#end(false);
        return;
      }
    } else {
      this.#r.bytesOut += framer.payloadBytes - before;
      // a close-delimited body reaches the client through the framer's onData
      if (res.framing.kind !== 'close' && used > 0)
        this.#toClient(used === d.length ? d : d.subarray(0, used), !framer.done);
    }
    if (this.#framer!.done) this.#complete(used < d.length);
  }

  /** the response head once it is complete (interim responses skipped), else false */
  #head(): boolean {
    const o = this.#o;
    const limits = this.#t.local ? o : o.peerLimits;
    for (let guard = 0; guard < 16; guard++) {
      const e = headEnd(this.#buf, limits.maxHeadBytes);
      if (e === -1) return false;
      const whole = e === this.#buf.length;
      const h = parseResponseHead(whole ? this.#buf : this.#buf.subarray(0, e), limits, this.#r.method);
      this.#buf = whole ? EMPTY : this.#buf.subarray(e);
      // interim responses (100 Continue, 103) end here: this gateway answered the client's Expect itself
      if (h.status >= 200) {
        this.#res = h;
        if (h.headers[DRAINING_HEADER] !== undefined && !this.#t.local)
          this.#o.onPeerDraining(this.#t.address);
        return true;
      }
      if (h.headers[DRAINING_HEADER] !== undefined && !this.#t.local) {
        this.#unread = true;
        this.#o.onPeerDraining(this.#t.address);
      }
      if (h.status === 101) throw new HeadParseError('invalid-status-line', 'an upgrade nobody asked for');
      // an interim response that ends the connection (HTTP/1.0, `Connection: close`): nothing after it is a
      // response to this request (node's parser refuses what follows, HPE_CLOSED_CONNECTION)
      if (!h.keepAlive)
        throw new HeadParseError('invalid-status-line', 'an interim response that ends the connection');
    }
    throw new HeadParseError('invalid-status-line', 'too many interim responses');
  }

  #read(d: Buffer): void {
    if (this.#res) {
      this.#feed(d);
      return;
    }
    this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
    try {
      if (!this.#head()) return;
    } catch (err) {
      this.#failed(err);
      return;
    }
    const h = this.#res!;
    if (this.#draining) {
      if (h.framing.kind === 'close') {
        this.#end(false);
        return;
      }
      this.#framer = bodyFramer(h.framing, { maxTrailerBytes: this.#o.maxHeadBytes });
      const rest = this.#buf;
      this.#buf = EMPTY;
      if (this.#framer.done) this.#complete(rest.length > 0);
      else if (rest.length > 0) this.#feed(rest);
      return;
    }
    const out = responseHeadersForClient(h.headers);
    stateFraming(out, h.framing);
    if (!this.#a.respond(h.status, out)) {
      // a 5xx held back for a retry, or a try already settled: this connection's state is unknown
      this.#end(false);
      return;
    }
    this.#framer = bodyFramer(h.framing, {
      maxTrailerBytes: this.#o.maxHeadBytes,
      ...(h.framing.kind === 'close' ? { onData: (b: Buffer) => this.#toClient(b, true) } : {}),
    });
    const buf = this.#buf;
    this.#buf = EMPTY;
    if (this.#framer.done) this.#complete(buf.length > 0);
    else if (buf.length > 0) this.#feed(buf);
  }
}
