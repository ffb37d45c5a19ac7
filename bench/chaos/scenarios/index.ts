import type { Scenario } from '../scenario.ts';
import { gatewayKill } from './gateway-kill.ts';

/** every scenario, in the order `npm run chaos` runs them */
export const SCENARIOS: Scenario[] = [gatewayKill];
