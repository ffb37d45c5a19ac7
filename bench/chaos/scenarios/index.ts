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

/**
 * every scenario, in the order `npm run chaos` runs them. The flood runs last: on this 2-core host the
 * scenario right after it failed where it passed alone (gateway-kill: 299 and 375 idempotent failures in
 * two runs after the flood, 0–1 in five alone; root-rotation lost 1.5 % in the suite, nothing alone), and
 * what lingers after it (thousands of attack connections closing, the runner's own heap) is not established.
 */
export const SCENARIOS: Scenario[] = [
  baseline,
  gatewayKill,
  rollingRestart,
  natsOutage,
  slowCluster,
  stateDiskFull,
  clockSkew,
  rootRotation,
  networkPartition,
  flood,
];
