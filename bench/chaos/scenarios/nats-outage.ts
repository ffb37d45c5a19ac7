// NATS of the load's source cluster goes down for --nats-outage seconds (60 by default) under load:
// east must keep routing on its last verified catalog; meanwhile west withdraws a service, which east
// cannot hear; once NATS is back east must resynchronise within 10 s and drop the withdrawn service.
import { join } from 'node:path';
import { waitFor } from '../../../core/index.ts';
import { round, sleep } from '../../figures.ts';
import { Federation, threeClusters } from '../federation.ts';
import { metricSum } from '../processes.ts';
import {
  loadFigures,
  lossCheck,
  lossNotes,
  type Scenario,
  summarize,
  withFederation,
  sourceLoad,
} from '../scenario.ts';

export const natsOutage: Scenario = {
  name: 'nats-outage',
  criterion:
    "routing continues on the last verified catalog while the source cluster's NATS is down (60 s); resync ≤ 10 s after it returns; a service withdrawn during the outage is withdrawn everywhere after it",
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), threeClusters());
    return withFederation(fed, ctx, async () => {
      const src = fed.source;
      const lead = 5000;
      const load = sourceLoad(fed, ctx, lead + ctx.natsOutageMs + 15_000);
      const done = load.run();
      await sleep(lead);
      const nats = fed.nats!.cluster('east').servers[0]!;
      const downAt = load.now();
      ctx.log(`stopping east's nats-server at ${Math.round(downAt)} ms for ${ctx.natsOutageMs} ms`);
      await nats.stop();
      // west withdraws `extra` while east cannot hear it; eu sees it go
      fed.setServices('west', ['hello', 'greeter', 'echo']);
      const euSawWithdrawal = await waitFor(
        async () => !(await fed.offers(fed.gatewaysOf('eu')[0]!, 'extra')).includes('west'),
        { timeoutMs: 20_000, intervalMs: 200, what: 'eu to see extra withdrawn by west' },
      )
        .then(() => true)
        .catch(() => false);
      await sleep(Math.max(0, downAt + ctx.natsOutageMs - load.now()));
      const upAt = load.now();
      await nats.start();
      const connectedAfter = performance.now();
      const resynced = await waitFor(
        async () =>
          metricSum(await src.metrics(), 'meshfed_nats_connected') >= 1 &&
          !(await fed.offers(src, 'extra')).includes('west') &&
          (await fed.offers(src, 'hello')).length === 2,
        { timeoutMs: 30_000, intervalMs: 100, what: 'east to resync' },
      )
        .then(() => round(performance.now() - connectedAfter))
        .catch(() => Number.POSITIVE_INFINITY);
      const outcomes = await done;
      await load.close();
      const s = summarize(outcomes);
      const during = summarize(outcomes.filter((o) => o.due >= downAt && o.due < upAt));
      const loss = await lossCheck(fed, load);
      const notes = lossNotes(loss);
      if (during.failed > 0) notes.push(`${during.failed} requests failed during the outage`);
      if (!(resynced <= 10_000)) notes.push(`resync took ${resynced} ms`);
      if (!euSawWithdrawal) notes.push('eu did not see the withdrawal during the outage');
      return {
        pass: notes.length === 0,
        figures: {
          outageMs: Math.round(upAt - downAt),
          resyncMs: resynced,
          failedDuringOutage: during.failed,
          servedByDuringOutage: during.servedBy,
          ...loadFigures(s),
        },
        notes,
      };
    });
  },
};
