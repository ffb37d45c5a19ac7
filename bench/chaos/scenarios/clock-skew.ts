// Clock skew of ±5 min on one cluster: west's processes run 5 min ahead, eu's 5 min behind
// (libfaketime where installed, else bench/chaos/clock-offset.ts). With maxClockSkew set above the skew,
// everything must work; with the default (30 s allowed) west's catalog must be refused, counted and logged
// at east.
import { join } from 'node:path';
import { explainedRun } from '../breakdown.ts';
import { Federation } from '../federation.ts';
import { CLOCK_INJECTION, metricSum } from '../processes.ts';
import { loadFigures, lossCheck, lossNotes, type Scenario, withFederation, sourceLoad } from '../scenario.ts';

const FIVE_MIN = 5 * 60_000;
// only the allowed skew is raised: entries keep the default 60 s lifetime, so a cluster 5 min behind is
// kept by the allowance alone (with entryTtl raised above the skew, as this scenario once set it, the
// store's missing allowance went unseen)
const TOLERANT = { federation: { maxClockSkew: '10m' } };

export const clockSkew: Scenario = {
  name: 'clock-skew',
  criterion:
    'west +5 min and eu −5 min within an allowed skew of 10 min: 0 failed requests, both serve; west +5 min against the default 30 s: its catalog refused, meshfed_catalog_rejected_total counts it, a log line names it',
  async run(ctx) {
    const notes: string[] = [];
    const figures: Record<string, unknown> = { clockInjection: CLOCK_INJECTION };
    const within = new Federation(join(ctx.dir, 'within'), [
      { name: 'east', region: 'us-east', gateways: 1, serves: false, config: TOLERANT },
      {
        name: 'west',
        region: 'us-west',
        gateways: 1,
        serves: true,
        clockOffsetMs: FIVE_MIN,
        config: TOLERANT,
      },
      {
        name: 'eu',
        region: 'eu-central',
        gateways: 1,
        serves: true,
        clockOffsetMs: -FIVE_MIN,
        config: TOLERANT,
      },
    ]);
    try {
      await withFederation(within, ctx, async () => {
        const load = sourceLoad(within, ctx, ctx.durationMs / 2);
        const { s, why } = await explainedRun(within, load);
        figures.withinWhy = why;
        const loss = await lossCheck(within, load);
        notes.push(...lossNotes(loss));
        let syncRefused = 0;
        for (const g of within.gateways) {
          syncRefused += metricSum(await g.metrics(), 'meshfed_catalog_sync_refused_total');
        }
        if (syncRefused > 0) {
          notes.push(
            `within the allowed skew ${syncRefused} anti-entropy sync requests were refused as expired (a request's expiry allows no clock skew)`,
          );
        }
        if (s.failed > 0) notes.push(`within the allowed skew ${s.failed} requests failed`);
        if (!s.servedBy.west || !s.servedBy.eu)
          notes.push(
            `within the allowed skew not both skewed clusters served: ${JSON.stringify(s.servedBy)}`,
          );
        figures.within = { syncRefused, ...loadFigures(s) };
      });
    } catch (err) {
      // a gateway that refuses to start on a skewed clock is a finding, not a crash of the scenario
      const refusals = within.gateways
        .map((g) => g.log.split('\n').find((l) => l.startsWith('meshfed:')))
        .filter(Boolean);
      notes.push(
        `within the allowed skew the federation did not come up: ${refusals.join(' | ') || (err as Error).message.slice(0, 300)}`,
      );
    }
    const beyond = new Federation(join(ctx.dir, 'beyond'), [
      { name: 'east', region: 'us-east', gateways: 1, serves: false },
      { name: 'west', region: 'us-west', gateways: 1, serves: true, clockOffsetMs: FIVE_MIN, refused: true },
      { name: 'eu', region: 'eu-central', gateways: 1, serves: true },
    ]);
    await withFederation(beyond, ctx, async () => {
      const src = beyond.source;
      const load = sourceLoad(beyond, ctx, ctx.durationMs / 2);
      const { s, why } = await explainedRun(beyond, load);
      figures.beyondWhy = why;
      const metrics = await src.metrics();
      const rejected = metricSum(metrics, 'meshfed_catalog_rejected_total');
      const rejectedLines = metrics
        .split('\n')
        .filter((l) => l.startsWith('meshfed_catalog_rejected_total') && !l.endsWith(' 0'));
      const logLines = src.log
        .split('\n')
        .filter((l) => l.includes('catalog message rejected') && l.includes('west'));
      const westOffered = (await beyond.offers(src, 'hello')).includes('west');
      const loss = await lossCheck(beyond, load);
      notes.push(...lossNotes(loss));
      if (rejected === 0)
        notes.push('beyond the allowed skew nothing was counted in meshfed_catalog_rejected_total');
      if (logLines.length === 0) notes.push('beyond the allowed skew no rejection was logged naming west');
      if (westOffered) notes.push('beyond the allowed skew west was still offered');
      if (s.failed > 0)
        notes.push(`beyond the allowed skew ${s.failed} requests failed (eu should serve them all)`);
      figures.beyond = {
        rejected,
        rejectedSeries: rejectedLines,
        rejectionLogLines: logLines.length,
        firstRejectionLog: logLines[0]?.slice(0, 400),
        westOffered,
        ...loadFigures(s),
      };
    });
    return { pass: notes.length === 0, figures, notes };
  },
};
