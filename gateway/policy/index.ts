// Policy evaluation: compiled per service on each policy change, pure functions on the request path.
// `meshfed policy explain` uses the same functions as the gateway layers.
export {
  type AuthorizationCall,
  type AuthorizationCaller,
  type AuthorizationDecision,
  type AuthorizationExplanation,
  type AuthorizationReason,
  type CompiledAuthorization,
  compileAuthorization,
  evaluateAuthorization,
  explainAuthorization,
  requestCall,
} from './authorization.ts';
export { type ExplainInput, explainPolicy, type PolicyExplanation } from './explain.ts';
export {
  type CompiledFaults,
  compileFaults,
  type FaultDecision,
  faultsFor,
  matchFault,
  matchTcpFault,
  tcpFaultsFor,
} from './faults.ts';
export { grpcCall, type PolicyRequest, policyPath } from './matchers.ts';
export {
  type CompiledPolicy,
  type CompiledService,
  compilePolicy,
  PolicyIndex,
} from './policy-index.ts';
export { type PolicySummary, policySummary } from './summary.ts';
export { retryOnMatches } from './resilience-override.ts';
export { admit, MAX_BUCKETS_PER_LIMIT, RateLimiter } from './rate-limit.ts';
export {
  type CompiledSplit,
  chooseRoute,
  chooseTcpRoute,
  compileSplit,
  matchRoute,
  matchTcpRoute,
  type RouteChoice,
  type SplitTarget,
} from './routes.ts';
