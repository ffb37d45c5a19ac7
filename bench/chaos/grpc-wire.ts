// The chaos load's gRPC client: the Greeter calls on one node:http2 session, its two small messages
// encoded by hand. @grpc/grpc-js spent more CPU per call than the gateway that carried it (interceptor
// chain, filters, metadata objects, a deadline timer and a call stream object per call), and on this
// 2-core host the load client competes with the processes it measures. The outcome of a call is read the
// way grpc-js reads it, so a gateway answer grpc-js would reject is still a failure here: the status
// must come in trailers or in a trailers-only HEADERS frame (else INTERNAL, "call ended without status"),
// an HTTP status other than 200 and a reset stream map to the codes grpc-js gives them.
import http2, { constants as h2 } from 'node:http2';

export interface GreeterReply {
  message: string;
  cluster: string;
  seq: number;
}

export type CallResult = { ok: true; replies: GreeterReply[] } | { ok: false; code: number };

const STATUS = { cancelled: 1, unknown: 2, deadlineExceeded: 4, resourceExhausted: 8, internal: 13 } as const;
const UNAVAILABLE = 14;

/** grpc-js's reading of a non-200 HTTP status (the gRPC spec's HTTP-to-gRPC mapping) */
function codeOfHttp(status: number): number {
  switch (status) {
    case 400:
      return STATUS.internal;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return 12;
    case 429:
    case 502:
    case 503:
    case 504:
      return UNAVAILABLE;
    default:
      return STATUS.unknown;
  }
}

/** grpc-js's reading of a stream reset before a status */
function codeOfReset(rst: number): number {
  switch (rst) {
    case h2.NGHTTP2_REFUSED_STREAM:
      return UNAVAILABLE;
    case h2.NGHTTP2_CANCEL:
      return STATUS.cancelled;
    case h2.NGHTTP2_ENHANCE_YOUR_CALM:
      return STATUS.resourceExhausted;
    case h2.NGHTTP2_INADEQUATE_SECURITY:
      return 7;
    default:
      return STATUS.internal;
  }
}

/** HelloRequest { string name = 1; int32 count = 2; } (count < 128) */
function helloRequest(name: string, count: number): Buffer {
  const n = Buffer.from(name);
  const body = Buffer.concat([
    Buffer.from([0x0a, n.length]),
    n,
    count ? Buffer.from([0x10, count]) : Buffer.alloc(0),
  ]);
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

function varint(b: Buffer, at: number): [number, number] {
  let v = 0;
  let shift = 0;
  for (let i = at; i < b.length && shift < 35; i++) {
    v |= (b[i]! & 0x7f) << shift;
    shift += 7;
    if ((b[i]! & 0x80) === 0) return [v >>> 0, i + 1];
  }
  throw new Error('bad varint');
}

/** HelloReply { string message = 1; string cluster = 2; int32 seq = 3; } */
function helloReply(b: Buffer): GreeterReply {
  const r: GreeterReply = { message: '', cluster: '', seq: 0 };
  for (let i = 0; i < b.length; ) {
    const [key, at] = varint(b, i);
    if ((key & 7) === 0) {
      const [v, next] = varint(b, at);
      if (key >>> 3 === 3) r.seq = v;
      i = next;
    } else if ((key & 7) === 2) {
      const [len, start] = varint(b, at);
      const s = b.toString('utf8', start, start + len);
      if (key >>> 3 === 1) r.message = s;
      else if (key >>> 3 === 2) r.cluster = s;
      i = start + len;
    } else throw new Error(`unexpected wire type ${key & 7}`);
  }
  return r;
}

/** length-prefixed messages out of the DATA received; throws on a compressed or truncated one */
function messages(data: Buffer): GreeterReply[] {
  const out: GreeterReply[] = [];
  for (let i = 0; i < data.length; ) {
    if (i + 5 > data.length || data[i] !== 0) throw new Error('a compressed or truncated message');
    const len = data.readUInt32BE(i + 1);
    if (i + 5 + len > data.length) throw new Error('a truncated message');
    out.push(helloReply(data.subarray(i + 5, i + 5 + len)));
    i += 5 + len;
  }
  return out;
}

export class GreeterWire {
  readonly #url: string;
  readonly #authority: string;
  #session: http2.ClientHttp2Session | undefined;

  constructor(egress: string, authority: string) {
    this.#url = `http://${egress}`;
    this.#authority = authority;
  }

  /** one session for every call, opened again once it is gone (grpc-js reconnects the same way) */
  #connect(): http2.ClientHttp2Session {
    const s = this.#session;
    if (s && !s.closed && !s.destroyed) return s;
    const next = http2.connect(this.#url);
    next.on('error', () => {});
    next.once('close', () => {
      if (this.#session === next) this.#session = undefined;
    });
    this.#session = next;
    return next;
  }

  /** SayHello (count 0) or SayHelloStream (count > 0), ended at the deadline as grpc-js would end it */
  call(
    method: 'SayHello' | 'SayHelloStream',
    name: string,
    count: number,
    deadlineMs: number,
  ): Promise<CallResult> {
    return new Promise((resolve) => {
      let stream: http2.ClientHttp2Stream;
      try {
        stream = this.#connect().request({
          ':method': 'POST',
          ':path': `/meshfed.demo.Greeter/${method}`,
          ':authority': this.#authority,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${deadlineMs}m`,
        });
      } catch {
        resolve({ ok: false, code: UNAVAILABLE });
        return;
      }
      const chunks: Buffer[] = [];
      let http = 0;
      let status: number | undefined;
      let done = false;
      const finish = (r: CallResult) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        stream.close(h2.NGHTTP2_CANCEL);
        finish({ ok: false, code: STATUS.deadlineExceeded });
      }, deadlineMs);
      const statusOf = (h: http2.IncomingHttpHeaders) => {
        const s = h['grpc-status'];
        if (s !== undefined) status = Number(s);
      };
      stream.on('response', (h, flags) => {
        http = Number(h[':status']);
        if ((flags & h2.NGHTTP2_FLAG_END_STREAM) !== 0) statusOf(h);
      });
      stream.on('trailers', statusOf);
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('error', () => {});
      stream.on('close', () => {
        if (http !== 0 && http !== 200) return finish({ ok: false, code: codeOfHttp(http) });
        if (status === undefined) {
          const rst = stream.rstCode ?? h2.NGHTTP2_NO_ERROR;
          // a session lost under the call is UNAVAILABLE to grpc-js; a reset stream by its code
          if (http === 0 && rst === h2.NGHTTP2_NO_ERROR) return finish({ ok: false, code: UNAVAILABLE });
          return finish({
            ok: false,
            code: rst === h2.NGHTTP2_NO_ERROR ? STATUS.internal : codeOfReset(rst),
          });
        }
        if (status !== 0) return finish({ ok: false, code: status });
        try {
          finish({ ok: true, replies: messages(Buffer.concat(chunks)) });
        } catch {
          finish({ ok: false, code: STATUS.internal });
        }
      });
      stream.end(helloRequest(name, count));
    });
  }

  close(): void {
    this.#session?.close();
  }
}
