// A slow remote cluster among four: ap answers every request after 2 s; with a 1 s per-try timeout,
// retries and outlier ejection, east must keep ≥ 99.9% of its requests succeeding.
import { join } from 'node:path';
import { Federation } from '../federation.ts';
import {
  loadFigures,
  lossCheck,
  lossNotes,
  type Scenario,
  summarize,
  withFederation,
  sourceLoad,
} from '../scenario.ts';

export const slowCluster: Scenario = {
  name: 'slow-cluster',
  criterion: '≥ 99.9% success with a 1 s per-try timeout while one of three serving clusters answers in 2 s',
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), [
      { name: 'east', region: 'us-east', gateways: 1, serves: false },
      { name: 'west', region: 'us-west', gateways: 1, serves: true },
      { name: 'eu', region: 'eu-central', gateways: 1, serves: true },
      { name: 'ap', region: 'ap-south', gateways: 1, serves: true, delayMs: 2000 },
    ]);
    return withFederation(fed, ctx, async () => {
      const _src = fed.source;
      const load = sourceLoad(fed, ctx);
      const outcomes = await load.run();
      await load.close();
      const s = summarize(outcomes);
      const loss = await lossCheck(fed, load);
      const notes = lossNotes(loss);
      if (s.successPct < 99.9) notes.push(`success ${s.successPct}% < 99.9%`);
      return { pass: notes.length === 0, figures: { successPct: s.successPct, ...loadFigures(s) }, notes };
    });
  },
};
