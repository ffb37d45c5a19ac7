import type { Scenario } from '../scenario.ts';
import { gatewayKill } from './gateway-kill.ts';
import { rollingRestart } from './rolling-restart.ts';
import { slowCluster } from './slow-cluster.ts';

/** every scenario, in the order `npm run chaos` runs them */
export const SCENARIOS: Scenario[] = [gatewayKill, rollingRestart, slowCluster];
