export { balancedDispatch, type BalancedDispatchOptions, type TryObserver } from './balanced-dispatch.ts';
export { type BreakerConfig, type BreakerLimit, CircuitBreakers } from './circuit-breaker.ts';
export {
  type CallContext,
  callContext,
  compose,
  type Dispatch,
  isRetryable,
  type Layer,
  UpstreamFailure,
} from './dispatch.ts';
export { type ResilienceMetrics, resilienceMetrics } from './metrics.ts';
export { classifyAnswer, GRPC, retriedByDefault, type TryOutcome } from './retry-conditions.ts';
export {
  backoffMs,
  budgetPerService,
  type RetryBudgetOptions,
  type RetryOptions,
  RetryBudget,
  retry,
} from './retry.ts';
export {
  type Clock,
  deadline,
  grpcTimeoutMs,
  isTimeoutReason,
  perTryTimeout,
  TIMEOUT_REASON,
} from './timeouts.ts';
export { NEVER_ABORTED, TryAbort, type TrySignal } from './try-signal.ts';
