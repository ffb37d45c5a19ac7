import type { RetryOn } from '../../core/index.ts';
import { GRPC, type TryOutcome } from '../resilience/index.ts';

const GATEWAY_ERRORS = new Set([502, 503, 504]);

/** the try got no answer at all: it failed to connect, was refused, reset, or timed out */
function noAnswer(o: TryOutcome): boolean {
  return (
    o.failure === 'connect' ||
    o.failure === 'refused' ||
    o.failure === 'overflow' ||
    o.failure === 'reset' ||
    o.failure === 'timeout'
  );
}

/**
 * Whether a failed try is one of the retry-on conditions: `5xx` is any 5xx
 * answer or no answer (connect failure, reset, timeout); `gateway-error` is 502/503/504 or no answer;
 * `connect-failure` never reached the application; `reset` is a reset or a try that timed out;
 * `refused-stream` a refused connection or stream. The gRPC conditions read the grpc-status of a
 * trailers-only answer (an error before any message): `cancelled` (1), `deadline-exceeded` (4, and a gRPC
 * call's try that reached its per-try timeout), `resource-exhausted` (8), `unavailable` (14). A gRPC
 * answer is an HTTP 200, so `5xx` and `gateway-error` never match one.
 */
export function retryOnMatches(conditions: readonly RetryOn[], o: TryOutcome): boolean {
  const grpcAnswer = o.grpcStatus !== undefined;
  for (const c of conditions) {
    switch (c) {
      case '5xx':
        if (noAnswer(o) || (o.failure === '5xx' && !grpcAnswer)) return true;
        break;
      case 'gateway-error':
        if (noAnswer(o) || (!grpcAnswer && o.status !== undefined && GATEWAY_ERRORS.has(o.status)))
          return true;
        break;
      case 'connect-failure':
        if (o.failure === 'connect' || o.failure === 'refused' || o.failure === 'overflow') return true;
        break;
      case 'reset':
        if (o.failure === 'reset' || o.failure === 'timeout') return true;
        break;
      case 'refused-stream':
        if (o.failure === 'refused') return true;
        break;
      case 'cancelled':
        if (o.grpcStatus === GRPC.cancelled) return true;
        break;
      case 'deadline-exceeded':
        if (o.grpcStatus === GRPC.deadlineExceeded || (o.grpc && o.failure === 'timeout')) return true;
        break;
      case 'resource-exhausted':
        if (o.grpcStatus === GRPC.resourceExhausted) return true;
        break;
      case 'unavailable':
        if (o.grpcStatus === GRPC.unavailable) return true;
        break;
    }
  }
  return false;
}
