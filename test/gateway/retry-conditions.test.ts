import type { RetryOn } from '../../core/index.ts';
import { retryOnMatches } from '../../gateway/policy/index.ts';
import { classifyAnswer, retriedByDefault, type TryOutcome } from '../../gateway/resilience/index.ts';

// Which try outcomes a call retries: the gateway's own conditions (by idempotency, and for gRPC by status)
// and a service's retry-on conditions read as the gateway's defaults read them.

const http = (failure: TryOutcome['failure'], status?: number): TryOutcome => ({
  failure,
  grpc: false,
  ...(status ? { status } : {}),
});
const grpcAnswer = (grpcStatus: number): TryOutcome => ({
  failure: classifyAnswer(200, grpcStatus)!,
  status: 200,
  grpcStatus,
  grpc: true,
});
const grpcTimeout: TryOutcome = { failure: 'timeout', grpc: true };

test.each([
  [200, undefined, undefined],
  [503, undefined, '5xx'],
  [501, undefined, undefined],
  [200, 0, undefined],
  [200, 14, '5xx'],
  [200, 4, '5xx'],
  [200, 13, '5xx'],
  [200, 8, 'declined'],
  [200, 1, 'declined'],
  [200, 5, undefined],
  [200, 12, undefined],
])('an answer %d with grpc-status %s is classified %s', (status, grpc, failure) => {
  expect(classifyAnswer(status, grpc)).toBe(failure);
});

test.each<[string, TryOutcome, boolean, boolean]>([
  ['connect failure of a POST', http('connect'), false, true],
  ['refused stream of a POST', http('refused'), false, true],
  ['timeout of a GET', http('timeout'), true, true],
  ['timeout of a POST', http('timeout'), false, false],
  ['503 of a POST', http('5xx', 503), false, false],
  ['reset of a gRPC call', { failure: 'reset', grpc: true }, false, false],
  ['per-try timeout of a gRPC call', grpcTimeout, false, true],
  ['gRPC UNAVAILABLE', grpcAnswer(14), false, true],
  ['gRPC DEADLINE_EXCEEDED', grpcAnswer(4), false, true],
  ['gRPC INTERNAL', grpcAnswer(13), false, false],
  ['gRPC RESOURCE_EXHAUSTED', grpcAnswer(8), false, false],
  ['a cancelled try', http('cancelled'), true, false],
])('by default: %s → retried %s', (_what, outcome, idempotent, retried) => {
  expect(retriedByDefault(outcome, idempotent)).toBe(retried);
});

test.each<[RetryOn, TryOutcome, boolean]>([
  ['5xx', http('5xx', 500), true],
  ['5xx', http('timeout'), true],
  ['5xx', grpcAnswer(14), false],
  ['gateway-error', http('5xx', 500), false],
  ['gateway-error', http('5xx', 503), true],
  ['gateway-error', grpcAnswer(14), false],
  ['connect-failure', http('connect'), true],
  ['connect-failure', http('reset'), false],
  ['reset', http('timeout'), true],
  ['refused-stream', http('refused'), true],
  ['refused-stream', http('connect'), false],
  ['unavailable', grpcAnswer(14), true],
  ['unavailable', grpcAnswer(4), false],
  ['deadline-exceeded', grpcAnswer(4), true],
  ['deadline-exceeded', grpcTimeout, true],
  ['deadline-exceeded', http('timeout'), false],
  ['resource-exhausted', grpcAnswer(8), true],
  ['cancelled', grpcAnswer(1), true],
  ['cancelled', http('cancelled'), false],
])('retryOn [%s] matches %j: %s', (condition, outcome, matches) => {
  expect(retryOnMatches([condition], outcome)).toBe(matches);
});
