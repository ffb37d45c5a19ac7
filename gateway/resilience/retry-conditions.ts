import type { Failure } from '../balancer/index.ts';

/**
 * How one try ended, as the retry decision reads it: the failure kind, the HTTP status of an answer,
 * and for a gRPC call the grpc-status of a trailers-only answer (an error before any message).
 */
export interface TryOutcome {
  failure: Failure;
  status?: number;
  grpcStatus?: number;
  /** the call is gRPC: its outcome is read by gRPC status, not by HTTP method */
  grpc: boolean;
}

/** The gRPC statuses the gRPC retry-on conditions name. */
export const GRPC = { cancelled: 1, deadlineExceeded: 4, resourceExhausted: 8, unavailable: 14 } as const;

/** gRPC's own mapping of a status to HTTP for what it says of the target (UNAVAILABLE is a 503). */
function httpOfGrpc(code: number): number {
  switch (code) {
    case 0:
      return 200;
    case 1:
      return 499;
    case 4:
      return 504;
    case 8:
      return 429;
    case 12:
      return 501;
    case 14:
      return 503;
    case 2:
    case 13:
    case 15:
      return 500;
    default:
      // the others (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED…) are the call's fault, not the target's
      return 400;
  }
}

/**
 * What an answer says of the target: an HTTP 5xx (not 501) or a gRPC status that maps to one is a
 * failure that counts towards ejection (outlier detection reads gRPC statuses by their HTTP mapping);
 * a gRPC CANCELLED or RESOURCE_EXHAUSTED is 'declined' (retryable when asked, counted against nobody).
 */
export function classifyAnswer(status: number, grpcStatus: number | undefined): Failure | undefined {
  if (grpcStatus === GRPC.cancelled || grpcStatus === GRPC.resourceExhausted) return 'declined';
  const http = grpcStatus === undefined ? status : httpOfGrpc(grpcStatus);
  return http >= 500 && http !== 501 ? '5xx' : undefined;
}

/**
 * The gateway's retry conditions when a service names none (its ResilienceOverride `retryOn` can only
 * narrow them):
 * - a try that never reached the application (connect failure, refused connection or stream, a full
 *   circuit breaker) is retried for every request;
 * - a gRPC call is retried, by its status, when its try timed out
 *   (the per-try timeout) or was answered DEADLINE_EXCEEDED or UNAVAILABLE before any message; a gRPC
 *   call is a POST, so its method says nothing of whether it may run twice;
 * - any other failure (timeout, reset, 5xx) only for an idempotent request.
 * A try whose body cannot be sent again (upstream/body-replay.ts) is never retried; the caller decides that.
 */
export function retriedByDefault(o: TryOutcome, idempotent: boolean): boolean {
  switch (o.failure) {
    case 'cancelled':
      return false;
    case 'connect':
    case 'refused':
    case 'overflow':
      return true;
    default:
      break;
  }
  if (o.grpc) {
    return (
      o.failure === 'timeout' || o.grpcStatus === GRPC.deadlineExceeded || o.grpcStatus === GRPC.unavailable
    );
  }
  return idempotent && o.failure !== 'declined';
}
