import type { Scenario } from '../scenario.ts';
import { baseline } from './baseline.ts';
import { clockSkew } from './clock-skew.ts';
import { flood } from './flood.ts';
import { gatewayKill } from './gateway-kill.ts';
import { natsOutage } from './nats-outage.ts';
import { networkPartition } from './network-partition.ts';
import { rollingRestart } from './rolling-restart.ts';
import { rootRotation } from './root-rotation.ts';
import { slowCluster } from './slow-cluster.ts';
import { stateDiskFull } from './state-disk-full.ts';

/** every scenario, in the order `npm run chaos` runs them */
export const SCENARIOS: Scenario[] = [
  baseline,
  gatewayKill,
  rollingRestart,
  natsOutage,
  slowCluster,
  flood,
  stateDiskFull,
  clockSkew,
  rootRotation,
  networkPartition,
];
