import type { ServerResponse } from 'node:http';
import { type ErrorCode, MeshfedError } from '../core/index.ts';
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

export type RefusalReason = keyof typeof REFUSALS;

/** A request refused by one of the gateway's own checks; the `answer` layer turns it into a response. */
export class Refusal extends MeshfedError {
  readonly reason: RefusalReason;
  readonly status: number;
  /** the connection the request came on is closed after the answer */
  readonly closesConnection: boolean;
  constructor(reason: RefusalReason, message: string) {
    super(REFUSALS[reason].code, message, { details: { reason } });
    const row: { status: number; closes?: true } = REFUSALS[reason];
    this.reason = reason;
    this.status = row.status;
    this.closesConnection = row.closes === true;
  }
}

export function refuse(reason: RefusalReason, message: string): never {
  throw new Refusal(reason, message);
}

/** What the caller sees for a failure: HTTP status, gRPC status, the reason and a message. */
export interface Answer {
  status: number;
  reason: string;
  message: string;
  /** a response already under way that must not be replaced (a forwarded 5xx) */
  forwarded?: boolean;
}

/** How an upstream try failed, by the balancer's failure kind. */
const UPSTREAM_FAILURES: Record<string, { status: number; reason: string }> = {
  connect: { status: 503, reason: 'connect-failed' },
  refused: { status: 503, reason: 'connect-failed' },
  overflow: { status: 503, reason: 'overloaded' },
  timeout: { status: 504, reason: 'upstream-timeout' },
  // the caller went away: nobody reads the answer, and the target is not to blame (nginx's 499)
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
  if (err instanceof Refusal) return { status: err.status, reason: err.reason, message };
  if (err instanceof UpstreamFailure) {
    const sent = err.response as { status: number; forwarded: boolean } | undefined;
    if (sent) return { status: sent.status, reason: 'upstream-status', message, forwarded: sent.forwarded };
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
function grpcStatusOf(status: number): number {
  switch (status) {
    case 400:
      return 3; // INVALID_ARGUMENT
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 405:
      return 12;
    case 504:
      return 4; // DEADLINE_EXCEEDED
    case 503:
      return 14; // UNAVAILABLE
    default:
      return 14;
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
    out.writeHead(200, {
      'content-type': 'application/grpc',
      'grpc-status': String(grpcStatusOf(a.status)),
      'grpc-message': encodeURIComponent(a.message),
      'x-meshfed-error': a.reason,
    });
    out.end();
    return;
  }
  const body = JSON.stringify({ error: a.reason, message: a.message });
  out.writeHead(a.status, {
    'content-type': 'application/json',
    'x-meshfed-error': a.reason,
    'content-length': Buffer.byteLength(body),
  });
  out.end(body);
}
