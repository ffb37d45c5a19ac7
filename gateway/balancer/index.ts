export {
  type BalancerTarget,
  Balancers,
  type BalancersOptions,
  type Failure,
  type PickOptions,
  type PickResult,
  type ResolvedService,
  type RouteExplanation,
} from './balancers.ts';
export { type BalancerConfig, balancerConfigSchema } from './config.ts';
export { type LevelPlan, levelLoads, levelPlan, localityLevel } from './priority.ts';
