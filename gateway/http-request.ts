import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { TLSSocket } from 'node:tls';

/** A request as either of node's servers hands it over: HTTP/1.1 or HTTP/2 (through the compat layer). */
export type Req = IncomingMessage | Http2ServerRequest;
export type Res = ServerResponse | Http2ServerResponse;

/** Methods a retry may send twice (RFC 9110 9.2.2); a body must also be replayable (upstream/body-replay.ts). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** The authority a request names: `:authority` for HTTP/2, `Host` for HTTP/1.1; '' when it names none. */
export function authorityOf(req: Req): string {
  const h2 = req.headers[':authority'];
  if (typeof h2 === 'string' && h2 !== '') return h2;
  return req.headers.host ?? '';
}

/**
 * Whether the request carries a body. HTTP/1.1 frames a body only by Transfer-Encoding or a non-zero
 * Content-Length (RFC 9112 6.3); an HTTP/2 request has none when its HEADERS frame ended the stream.
 */
export function hasBody(req: Req): boolean {
  const stream = (req as Http2ServerRequest).stream;
  if (stream) return !stream.endAfterHeaders;
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = Number(req.headers['content-length'] ?? 0);
  return Number.isNaN(length) || length > 0;
}

/**
 * An idempotent method: safe to send again to another target once it may have reached the application,
 * provided its body (if any) can be sent again whole (upstream/body-replay.ts canResend).
 */
export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

/**
 * The request target is origin-form (`/path?query`), or `*` for OPTIONS (RFC 9112 3.2). meshfed is not a
 * forward proxy: an absolute-form or authority-form target is the client's mistake, never the upstream's.
 */
export function isOriginForm(method: string, target: string): boolean {
  if (target.startsWith('/')) return true;
  return target === '*' && method === 'OPTIONS';
}

/** The TLS (or plain) socket a request arrived on, for HTTP/1.1 and HTTP/2 alike. */
export function socketOf(req: Req): TLSSocket {
  return ((req as Http2ServerRequest).stream?.session?.socket ?? req.socket) as TLSSocket;
}

/** A gRPC request (its errors are answered with a gRPC status, not only an HTTP one). */
export function isGrpc(headers: IncomingHttpHeaders): boolean {
  return String(headers['content-type'] ?? '').startsWith('application/grpc');
}
