export {
  type BalancerTarget,
  Balancers,
  type BalancersOptions,
  IDLE_STATE_MS,
  type Failure,
  type PickOptions,
  type PickResult,
  type ResolvedService,
  type RouteExplanation,
} from './balancers.ts';
export { type BalancerConfig, balancerConfigSchema } from './config.ts';
export { type LevelPlan, levelLoads, levelPlan, localityLevel } from './priority.ts';
