// No fault at all: the same federation and load as the other scenarios, so that a reader can tell
// what a scenario's fault cost from what the host could carry at that rate in the first place.
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { percentile, round } from '../../figures.ts';
import { Federation, threeClusters } from '../federation.ts';
import { explainedRun } from '../breakdown.ts';
import {
  connectFigures,
  loadFigures,
  lossCheck,
  lossNotes,
  type Scenario,
  sourceLoad,
  withFederation,
} from '../scenario.ts';

export const baseline: Scenario = {
  name: 'baseline',
  criterion: 'no fault: ≥ 99.9% success (what the host carries at this rate)',
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), threeClusters());
    return withFederation(fed, ctx, async () => {
      const load = sourceLoad(fed, ctx);
      // where the host's CPU goes at this rate: the load client (this process) against the federation
      // whether the client kept its rate: its own event loop's delay and how late it sent (a late send
      // still counts from its due time, so this is what the client's stalls add to every kind alike)
      const loop = monitorEventLoopDelay({ resolution: 10 });
      loop.enable();
      const { s, why: all } = await explainedRun(fed, load);
      loop.disable();
      const { cpuMsPerRequest, ...why } = all;
      const lag = [...load.sendLag].sort((a, b) => a - b);
      const loadClient = {
        loopDelayP99Ms: round(loop.percentile(99) / 1e6),
        loopDelayMaxMs: round(loop.max / 1e6),
        sendLagP99Ms: round(percentile(lag, 99)),
        sendLagMaxMs: round(lag.at(-1) ?? 0),
        ...connectFigures(load.connectMs),
      };
      const notes = lossNotes(await lossCheck(fed, load));
      if (s.successPct < 99.9)
        notes.push(`success ${s.successPct}% < 99.9% with no fault: the host cannot carry this rate`);
      return {
        pass: notes.length === 0,
        figures: {
          successPct: s.successPct,
          p99Ms: s.p99Ms,
          ...loadFigures(s),
          cpuMsPerRequest,
          loadClient,
          why,
        },
        notes,
      };
    });
  },
};
