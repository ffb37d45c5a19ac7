import type { ResilienceOverrideSpec, RetryOn } from '../../core/index.ts';
import type { UpstreamFailure } from '../resilience/index.ts';

const GATEWAY_ERRORS = new Set([502, 503, 504]);

/**
 * Whether a failed try is one of the retry-on conditions, read as Envoy reads them: `5xx` is any 5xx
 * answer or no answer (connect failure, reset, timeout); `gateway-error` is 502/503/504 or no answer;
 * `connect-failure` never reached the application; `reset` is a reset or a try that timed out;
 * `refused-stream` a refused connection or stream. The gRPC conditions (`unavailable`,
 * `deadline-exceeded`, `resource-exhausted`) need the grpc-status of a trailers-only answer, which the
 * forward path does not classify yet: alone they retry nothing.
 */
export function retryOnMatches(conditions: readonly RetryOn[], err: UpstreamFailure): boolean {
  const f = err.failure;
  const status = (err.response as { status?: number } | undefined)?.status;
  for (const c of conditions) {
    switch (c) {
      case '5xx':
        return true;
      case 'gateway-error':
        if (f !== '5xx' || (status !== undefined && GATEWAY_ERRORS.has(status))) return true;
        break;
      case 'connect-failure':
        if (f === 'connect' || f === 'refused' || f === 'overflow') return true;
        break;
      case 'reset':
        if (f === 'reset' || f === 'timeout') return true;
        break;
      case 'refused-stream':
        if (f === 'refused') return true;
        break;
      default:
        break;
    }
  }
  return false;
}

/** Whether a service's retry-on lets a 5xx answer be retried (else the first 5xx passes straight through). */
export function retries5xx(spec: ResilienceOverrideSpec | undefined): boolean {
  const on = spec?.retry?.retryOn;
  return !on || on.includes('5xx') || on.includes('gateway-error');
}
