import type { ServerResponse } from 'node:http';
import { Counter, type ErrorCode, MeshfedError, type Registry } from '../core/index.ts';
import { isGrpc, type Req, type Res } from './http-request.ts';
import { UpstreamFailure } from './resilience/index.ts';

/**
 * Every reason a gateway refuses a request or connection before it reaches a backend. Each is a label
 * value of `meshfed_refused_total{reason}`, the `x-meshfed-error` header of the answer, and one row of
 * the table below (its HTTP status and error code): one place maps a refusal to what the caller sees.
 */
const REFUSALS = {
  'unknown-service': { status: 503, code: 'MESHFED_GATEWAY_NO_ROUTE' },
  'not-exported': { status: 404, code: 'MESHFED_GATEWAY_NO_ROUTE' },
  'unknown-port': { status: 404, code: 'MESHFED_GATEWAY_NO_ROUTE' },
  'not-a-tcp-port': { status: 403, code: 'MESHFED_GATEWAY_NO_ROUTE' },
  'not-an-http-port': { status: 403, code: 'MESHFED_GATEWAY_NO_ROUTE' },
  'invalid-request-target': { status: 400, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'header-with-underscore': { status: 400, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'connect-over-http1': { status: 405, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  // every later request on the connection would be refused the same way: close it (gracefully)
  'peer-identity': { status: 403, code: 'MESHFED_GATEWAY_IDENTITY_REFUSED', closes: true },
  'caller-identity': { status: 403, code: 'MESHFED_GATEWAY_IDENTITY_REFUSED' },
  'client-cert-required': { status: 403, code: 'MESHFED_GATEWAY_IDENTITY_REFUSED' },
  'client-cert-expired': { status: 403, code: 'MESHFED_GATEWAY_IDENTITY_REFUSED' },
  'client-cert-foreign-cluster': { status: 403, code: 'MESHFED_GATEWAY_IDENTITY_REFUSED' },
  'client-cert-not-workload': { status: 403, code: 'MESHFED_GATEWAY_IDENTITY_REFUSED' },
  'client-cert-untrusted': { status: 403, code: 'MESHFED_GATEWAY_IDENTITY_REFUSED' },
  unauthorized: { status: 403, code: 'MESHFED_GATEWAY_IDENTITY_REFUSED' },
  /** an AuthorizationPolicy denied the caller; `x-meshfed-policy` names the deciding rule */
  'policy-denied': { status: 403, code: 'MESHFED_GATEWAY_IDENTITY_REFUSED' },
  /** a RateLimit's token bucket is empty; `retry-after` says when a token is back */
  'rate-limited': { status: 429, code: 'MESHFED_GATEWAY_OVERLOADED' },
  'no-healthy-upstream': { status: 503, code: 'MESHFED_GATEWAY_NO_HEALTHY_UPSTREAM' },
  // the HTTP/1.1 codec's refusals (gateway/h1): a message whose framing or syntax is in doubt
  'malformed-request': { status: 400, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'head-too-large': { status: 431, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'unsupported-method': { status: 501, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'unsupported-transfer-encoding': { status: 501, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'unsupported-version': { status: 505, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'expectation-failed': { status: 417, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'upgrade-not-supported': { status: 501, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'head-timeout': { status: 408, code: 'MESHFED_GATEWAY_BAD_REQUEST' },
  'circuit-breaker': { status: 503, code: 'MESHFED_GATEWAY_OVERLOADED' },
} as const satisfies Record<string, { status: number; code: ErrorCode; closes?: true }>;

/** `meshfed_refused_total{listener, reason}`: one per gateway, counted with a reason of the table above */
export function refusedCounter(registry: Registry): Counter<'listener' | 'reason'> {
  return new Counter({
    name: 'meshfed_refused_total',
    help: 'connections or requests refused before reaching a backend, by reason',
    labelNames: ['listener', 'reason'],
    registers: [registry],
  });
}

export type RefusalReason = keyof typeof REFUSALS;

/** A request refused by one of the gateway's own checks; the `answer` layer turns it into a response. */
export class Refusal extends MeshfedError {
  readonly reason: RefusalReason;
  readonly status: number;
  /** extra response headers that say more than the reason (the deciding policy rule, retry-after) */
  readonly headers: Readonly<Record<string, string>> | undefined;
  /** the connection the request came on is closed after the answer */
  readonly closesConnection: boolean;
  constructor(reason: RefusalReason, message: string, headers?: Readonly<Record<string, string>>) {
    super(REFUSALS[reason].code, message, { details: { reason } });
    const row: { status: number; closes?: true } = REFUSALS[reason];
    this.reason = reason;
    this.status = row.status;
    this.closesConnection = row.closes === true;
    this.headers = headers;
  }
}

export function refuse(
  reason: RefusalReason,
  message: string,
  headers?: Readonly<Record<string, string>>,
): never {
  throw new Refusal(reason, message, headers);
}

/** What the caller sees for a failure: HTTP status, gRPC status, the reason and a message. */
export interface Answer {
  status: number;
  reason: string;
  message: string;
  /** a response already under way that must not be replaced (a forwarded 5xx) */
  forwarded?: boolean;
  /** extra response headers (lower-case names); never one of the answer's own */
  headers?: Readonly<Record<string, string>>;
  /** the gRPC status a gRPC caller gets, when it is not the one its HTTP status maps to (an injected abort) */
  grpcStatus?: number;
}

/** How an upstream try failed, by the balancer's failure kind. */
const UPSTREAM_FAILURES: Record<string, { status: number; reason: string }> = {
  connect: { status: 503, reason: 'connect-failed' },
  refused: { status: 503, reason: 'connect-failed' },
  overflow: { status: 503, reason: 'overloaded' },
  timeout: { status: 504, reason: 'upstream-timeout' },
  // the caller went away: nobody reads the answer, and the target is not to blame (499, client closed request)
  cancelled: { status: 499, reason: 'client-cancelled' },
};

/** meshfed error codes that end a proxied request, by code. */
const CODES: Partial<Record<ErrorCode, { status: number; reason: string }>> = {
  MESHFED_GATEWAY_TIMEOUT: { status: 504, reason: 'upstream-timeout' },
  MESHFED_GATEWAY_OVERLOADED: { status: 503, reason: 'overloaded' },
  MESHFED_GATEWAY_NO_HEALTHY_UPSTREAM: { status: 503, reason: 'no-healthy-upstream' },
  MESHFED_GATEWAY_BAD_REQUEST: { status: 400, reason: 'bad-request' },
};

/** Maps the error that ended a request to what the caller sees (at the edge only), by code, never by text. */
export function answerFor(err: unknown): Answer {
  const message = (err as Error)?.message ?? String(err);
  if (err instanceof Refusal)
    return {
      status: err.status,
      reason: err.reason,
      message,
      ...(err.headers ? { headers: err.headers } : {}),
    };
  if (err instanceof UpstreamFailure) {
    const sent = err.response as { status: number; forwarded: boolean; grpcStatus?: number } | undefined;
    if (sent) {
      const a: Answer = {
        status: sent.status,
        reason: 'upstream-status',
        message,
        forwarded: sent.forwarded,
      };
      // a gRPC error held back for a retry that was not made: the caller gets the upstream's status
      if (sent.grpcStatus !== undefined) a.grpcStatus = sent.grpcStatus;
      return a;
    }
    const cause = err.cause;
    if (cause instanceof MeshfedError && cause.code.startsWith('MESHFED_CA_'))
      return { status: 503, reason: 'upstream-identity', message: `${message}: ${cause.message}` };
    if (cause instanceof MeshfedError && cause.code === 'MESHFED_GATEWAY_BAD_REQUEST')
      return { status: 400, reason: 'bad-request', message: cause.message };
    const row = UPSTREAM_FAILURES[err.failure] ?? { status: 502, reason: 'upstream-reset' };
    return { ...row, message };
  }
  if (err instanceof MeshfedError) {
    const row = CODES[err.code];
    if (row) return { ...row, message };
  }
  return { status: 502, reason: 'upstream-error', message };
}

/** gRPC status for an HTTP status meshfed answers with (gRPC's own HTTP-to-gRPC mapping, plus 504 and 403). */
export function grpcStatusOf(status: number): number {
  switch (status) {
    case 400:
      return 3; // INVALID_ARGUMENT
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 405:
      return 12;
    case 429:
      return 8; // RESOURCE_EXHAUSTED
    case 504:
      return 4; // DEADLINE_EXCEEDED
    case 503:
      return 14; // UNAVAILABLE
    default:
      return 14;
  }
}

/** The HTTP status an HTTP caller gets for a gRPC status (the gRPC-to-HTTP mapping gRPC gateways use). */
export function httpStatusOfGrpc(grpcStatus: number): number {
  switch (grpcStatus) {
    case 0:
      return 200;
    case 3:
    case 9:
    case 11:
      return 400;
    case 16:
      return 401;
    case 7:
      return 403;
    case 5:
      return 404;
    case 6:
    case 10:
      return 409;
    case 8:
      return 429;
    case 1:
      return 499;
    case 12:
      return 501;
    case 14:
      return 503;
    case 4:
      return 504;
    default:
      return 500;
  }
}

/** What an answer is written to: node's responses, and the HTTP/1.1 codec's exchange. */
export interface AnswerSink {
  readonly headersSent: boolean;
  destroy(): unknown;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(body?: string): unknown;
}

/** The status of a refusal, for a codec that answers before any request exists (a malformed head). */
export function refusalStatus(reason: RefusalReason): number {
  return REFUSALS[reason].status;
}

/**
 * gRPC's percent-encoding of grpc-message: UTF-8, with only bytes outside printable ASCII and `%` itself
 * encoded (encodeURIComponent also encodes `;`, `,` and spaces, which clients then show as `%3B`).
 */
function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out +=
      b < 0x20 || b > 0x7e || b === 0x25
        ? `%${b.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(b);
  }
  return out;
}

/**
 * Writes an answer: a JSON body with `x-meshfed-error`, or for gRPC callers a trailers-only response
 * carrying `grpc-status`. A response already started is cut instead (its status was sent).
 */
export function writeAnswer(req: Pick<Req, 'headers'>, res: Res | AnswerSink, a: Answer): void {
  if (res.headersSent) {
    // a forwarded response (a passed-through 5xx) stands; one cut short cannot be answered any more
    if (!a.forwarded) res.destroy();
    return;
  }
  const out = res as ServerResponse;
  if (isGrpc(req.headers)) {
    // a trailers-only answer: the status must travel in the one HEADERS frame that ends the stream.
    // writeHead() would send the headers at once and end the stream with a DATA frame after them, which
    // gRPC clients read as a call without a status (grpc-js: INTERNAL, "Call ended without gRPC status");
    // headers set and then end() go out together with END_STREAM.
    const headers: Record<string, string> = {
      ...a.headers,
      'content-type': 'application/grpc',
      'grpc-status': String(a.grpcStatus ?? grpcStatusOf(a.status)),
      'grpc-message': grpcMessage(a.message),
      'x-meshfed-error': a.reason,
    };
    if (typeof out.setHeader !== 'function') {
      // the HTTP/1.1 codec's exchange (a gRPC content type over HTTP/1.1): no trailers-only form there
      out.writeHead(200, headers);
    } else {
      out.statusCode = 200;
      for (const [name, value] of Object.entries(headers)) out.setHeader(name, value);
    }
    out.end();
    return;
  }
  const body = JSON.stringify({ error: a.reason, message: a.message });
  out.writeHead(a.status, {
    ...a.headers,
    'content-type': 'application/json',
    'x-meshfed-error': a.reason,
    'content-length': Buffer.byteLength(body),
  });
  out.end(body);
}
