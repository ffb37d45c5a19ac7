import { MeshfedError } from '../../core/index.ts';
import type { BalancerTarget } from '../balancer/index.ts';
import { responseHeadersForClient } from '../headers.ts';
import { chainHeaderOf, type Identities } from '../identity.ts';
import type { GatewayRequest } from '../pipeline.ts';
import type { CircuitBreakers } from '../resilience/index.ts';
import type { UpstreamAttempt, UpstreamCodec } from '../upstream/attempt.ts';
import { BodyReplay } from '../upstream/body-replay.ts';
import { notReplayable } from '../upstream/h2.ts';
import { upstreamHeaders } from '../upstream/request-headers.ts';
import { type BodyFramer, bodyFramer } from './body.ts';
import type { Exchange } from './exchange.ts';
import { HeadParseError, headEnd, parseResponseHead, type ResponseHead } from './head.ts';
import { type H1Pool, type PooledConnection, TunnelOnly } from './pool.ts';

export interface FastUpstreamOptions {
  pool: H1Pool;
  breakers: CircuitBreakers;
  identities: Identities;
  /** the HTTP/2 tunnel, for a remote gateway that has no fast path */
  tunnel: UpstreamCodec;
  /** a connection with no bytes for this long is cut (timeouts.idle) */
  idleTimeoutMs: number;
  maxHeadBytes: number;
  maxHeaders: number;
}

const EMPTY = Buffer.alloc(0);
const NO_INJECTION = /[\r\n\0]/;

/** The request head sent upstream: what the layers left of the client's, plus meshfed's own headers. */
function requestHead(
  r: GatewayRequest,
  host: string,
  headers: Record<string, unknown>,
  chunked: boolean,
): string {
  let s = `${r.method} ${r.target} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) {
      const value = String(x);
      if (NO_INJECTION.test(value))
        throw new MeshfedError('MESHFED_GATEWAY_BAD_REQUEST', `header ${name} has a line break`);
      s += `${name}: ${value}\r\n`;
    }
  }
  if (chunked) s += 'transfer-encoding: chunked\r\n';
  return `${s}\r\n`;
}

/**
 * The fast path's upstream codec: the request head written to a pooled HTTP/1.1 connection (mTLS with
 * the fast-path ALPN to a remote gateway, TCP to a local endpoint), the body streamed as the client
 * framed it, and the response head parsed and its body streamed back by its framing, unchanged. A
 * connection returns to the pool only after a clean exchange.
 */
export class FastUpstream implements UpstreamCodec {
  readonly #o: FastUpstreamOptions;
  constructor(o: FastUpstreamOptions) {
    this.#o = o;
  }

  send(r: GatewayRequest, t: BalancerTarget, a: UpstreamAttempt): void {
    const ex = r.fast;
    if (!ex || (!t.local && this.#o.pool.tunnelOnly(t.address))) {
      this.#o.tunnel.send(r, t, a);
      return;
    }
    const release = this.#o.breakers.acquirePending(t);
    if (!release) {
      a.fail('overflow', undefined);
      return;
    }
    this.#o.pool.acquire(t.address, t.local ? undefined : t.cluster).then(
      (c) => {
        release();
        // the per-try timeout or the caller may have ended the try while the connection was dialled
        if (!a.open) this.#o.pool.release(c, false);
        else this.#exchange(r, ex, t, a, c);
      },
      (err: unknown) => {
        release();
        if (!a.open) return;
        if (err instanceof TunnelOnly) this.#o.tunnel.send(r, t, a);
        else {
          const identity = err instanceof MeshfedError && err.code.startsWith('MESHFED_CA_');
          a.fail(identity ? 'refused' : 'connect', err);
        }
      },
    );
  }

  #exchange(
    r: GatewayRequest,
    ex: Exchange,
    t: BalancerTarget,
    a: UpstreamAttempt,
    c: PooledConnection,
  ): void {
    const o = this.#o;
    const s = c.socket;
    const headers = upstreamHeaders(r, t, o.identities);
    // the client's `Expect: 100-continue` is answered by this gateway when the body is asked for
    delete headers.expect;
    // a remote gateway verifies our chain once per connection and keeps the identity with it: only the
    // first request of a connection (one that was never reused) needs to carry it
    if (!t.local) {
      // the chain of the leaf this connection presented, which is not the current one when it was dialled
      // as our leaf rotated
      const leaf = o.pool.leafOf(s);
      if (leaf) headers['x-meshfed-chain'] = chainHeaderOf(leaf);
    }
    if (c.reused && !t.local) delete headers['x-meshfed-chain'];
    if (r.hasBody && r.replay && !r.replay.replayable) {
      o.pool.release(c, true);
      a.fail('cancelled', notReplayable());
      return;
    }
    let head: string;
    try {
      head = requestHead(r, r.authority || t.address, headers, ex.head.framing.kind === 'chunked');
    } catch (err) {
      o.pool.release(c, false);
      a.fail('cancelled', err);
      return;
    }
    let buf: Buffer = EMPTY;
    let res: ResponseHead | undefined;
    let framer: BodyFramer | undefined;
    let bodySent = !r.hasBody;
    let over = false;
    const end = (reuse: boolean) => {
      if (over) return;
      over = true;
      s.off('data', onData);
      s.off('close', onClose);
      ex.off('close', onClientGone);
      if (reuse && !ex.gone) o.pool.release(c);
      else s.destroy();
    };
    const onClientGone = () => {
      if (!ex.finished) end(false);
    };
    const complete = (extra: boolean) => {
      end(!extra && bodySent && res!.keepAlive);
      ex.end();
    };
    const failed = (err: unknown) => {
      end(false);
      a.fail('reset', err);
    };
    const feed = (d: Buffer) => {
      const before = framer!.payloadBytes;
      let used: number;
      try {
        used = framer!.feed(d, 0);
      } catch (err) {
        ex.destroy();
        failed(err);
        return;
      }
      r.bytesOut += framer!.payloadBytes - before;
      if (
        res!.framing.kind !== 'close' &&
        used > 0 &&
        !ex.write(used === d.length ? d : d.subarray(0, used))
      ) {
        s.pause();
        ex.onceDrain(() => s.resume());
      }
      if (framer!.done) complete(used < d.length);
    };
    const onHead = (): boolean => {
      for (let guard = 0; guard < 16; guard++) {
        const e = headEnd(buf, o.maxHeadBytes);
        if (e === -1) return false;
        const h = parseResponseHead(buf.subarray(0, e), o, r.method);
        buf = buf.subarray(e);
        // interim responses (100 Continue, 103) end here: this gateway answered the client's Expect itself
        if (h.status >= 200) {
          res = h;
          return true;
        }
        if (h.status === 101) throw new HeadParseError('invalid-status-line', 'an upgrade nobody asked for');
      }
      throw new HeadParseError('invalid-status-line', 'too many interim responses');
    };
    const onData = (d: Buffer) => {
      try {
        read(d);
      } catch (err) {
        ex.destroy();
        failed(err);
      }
    };
    const read = (d: Buffer) => {
      if (res) {
        feed(d);
        return;
      }
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      try {
        if (!onHead()) return;
      } catch (err) {
        failed(err);
        return;
      }
      const h = res!;
      const out = responseHeadersForClient(h.headers);
      if (h.framing.kind === 'chunked') out['transfer-encoding'] = 'chunked';
      if (!a.respond(h.status, out)) {
        // a 5xx held back for a retry, or a try already settled: this connection's state is unknown
        end(false);
        return;
      }
      framer = bodyFramer(h.framing, {
        maxTrailerBytes: o.maxHeadBytes,
        ...(h.framing.kind === 'close' ? { onData: (b: Buffer) => ex.write(b) } : {}),
      });
      if (framer.done) complete(buf.length > 0);
      else if (buf.length > 0) feed(buf);
    };
    const onClose = () => {
      if (res?.framing.kind === 'close') {
        ex.end();
        end(false);
        return;
      }
      failed(new MeshfedError('MESHFED_GATEWAY_UPSTREAM', `${t.address} closed the connection mid-exchange`));
    };
    a.onCancel(() => end(false));
    ex.once('close', onClientGone);
    s.on('data', onData);
    s.on('close', onClose);
    s.setTimeout(o.idleTimeoutMs, () => {
      if (!res) a.fail('timeout', new MeshfedError('MESHFED_GATEWAY_TIMEOUT', `${t.address} sent nothing`));
      else ex.destroy();
      end(false);
    });
    s.write(head);
    if (!r.hasBody) return;
    if (r.replay) {
      // a retry: the payload an earlier try recorded (the retry layer checked it is whole), framed as
      // this head says: as it is for a length, as one chunk for chunked
      const chunked = ex.head.framing.kind === 'chunked';
      const size = r.replay.chunks.reduce((n, c) => n + c.length, 0);
      if (chunked && size > 0) s.write(`${size.toString(16)}\r\n`);
      for (const chunk of r.replay.chunks) s.write(chunk);
      if (chunked) s.write(size > 0 ? '\r\n0\r\n\r\n' : '0\r\n\r\n');
      bodySent = true;
      return;
    }
    // the framed bytes are the payload only for a length-delimited body: only that one is recorded
    const recorder = ex.head.framing.kind === 'length' ? new BodyReplay() : BodyReplay.unrecorded();
    r.replay = recorder;
    ex.startBody(
      {
        write: (b, payloadBytes) => {
          if (over) return true;
          // forwarded as the client framed it, counted by its payload (as every other path counts it)
          r.bytesIn += payloadBytes;
          recorder.record(b);
          if (s.write(b)) return true;
          s.once('drain', () => ex.resumeBody());
          return false;
        },
        end: () => {
          bodySent = true;
          recorder.end();
        },
      },
      false,
    );
  }
}
