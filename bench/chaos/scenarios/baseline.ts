// No fault at all: the same federation and load as the other scenarios, so that a reader can tell
// what a scenario's fault cost from what the host could carry at that rate in the first place.
import { join } from 'node:path';
import { Federation, threeClusters } from '../federation.ts';
import { explainedRun } from '../breakdown.ts';
import { loadFigures, lossCheck, lossNotes, type Scenario, sourceLoad, withFederation } from '../scenario.ts';

export const baseline: Scenario = {
  name: 'baseline',
  criterion: 'no fault: ≥ 99.9% success (what the host carries at this rate)',
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), threeClusters());
    return withFederation(fed, async () => {
      const load = sourceLoad(fed, ctx);
      // where the host's CPU goes at this rate: the load client (this process) against the federation
      const { s, why: all } = await explainedRun(fed, load);
      const { cpuMsPerRequest, ...why } = all;
      const notes = lossNotes(await lossCheck(fed, load));
      if (s.successPct < 99.9)
        notes.push(`success ${s.successPct}% < 99.9% with no fault: the host cannot carry this rate`);
      return {
        pass: notes.length === 0,
        figures: { successPct: s.successPct, p99Ms: s.p99Ms, ...loadFigures(s), cpuMsPerRequest, why },
        notes,
      };
    });
  },
};
