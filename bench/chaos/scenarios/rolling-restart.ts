// Rolling restart of every gateway of a cluster: west's two gateways are stopped with SIGTERM (they
// drain), started again and seen by east, one after the other, while the load runs. Nothing may fail.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../../../core/index.ts';
import { sleep } from '../../figures.ts';
import { Federation, threeClusters } from '../federation.ts';
import type { GatewayProc } from '../processes.ts';
import {
  loadFigures,
  lossCheck,
  lossNotes,
  type Scenario,
  summarize,
  withFederation,
  sourceLoad,
} from '../scenario.ts';

export const rollingRestart: Scenario = {
  name: 'rolling-restart',
  criterion:
    '0 non-2xx (and 0 failed gRPC/TCP) while every gateway of a cluster is restarted in turn with SIGTERM',
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), threeClusters({ westGateways: 2 }));
    return withFederation(fed, ctx, async () => {
      const src = fed.source;
      const load = sourceLoad(fed, ctx);
      const done = load.run();
      const west = fed.gatewaysOf('west');
      const listing = sampleListing(fed, src, () => load.now() < ctx.durationMs);
      const steps: { gateway: string; atMs: number; drainMs: number; backMs: number; failed?: number }[] = [];
      await sleep(ctx.durationMs * 0.15);
      for (const g of west) {
        const t0 = performance.now();
        const atMs = Math.round(load.now());
        ctx.log(`SIGTERM ${g.name} at ${atMs} ms`);
        await g.stop();
        const drainMs = performance.now() - t0;
        g.start();
        await g.ready();
        // east must have heard its announcement again before the next one goes down
        await waitFor(async () => (await fed.catalogText(src)).includes(g.addresses.eastWest), {
          timeoutMs: 30_000,
          intervalMs: 100,
          what: `east to see ${g.name} again`,
        });
        steps.push({
          gateway: g.name,
          atMs,
          drainMs: Math.round(drainMs),
          backMs: Math.round(performance.now() - t0),
        });
      }
      const restartsDoneAt = load.now();
      const outcomes = await done;
      const listed = await listing;
      await load.close();
      const s = summarize(outcomes);
      // which step each failure fell in: due from its SIGTERM until the next one (or the end)
      for (const [i, step] of steps.entries()) {
        const until = steps[i + 1]?.atMs ?? Number.POSITIVE_INFINITY;
        step.failed = outcomes.filter((o) => !o.ok && o.due >= step.atMs && o.due < until).length;
      }
      writeFileSync(join(ctx.dir, 'outcomes.json'), JSON.stringify(outcomes));
      const loss = await lossCheck(fed, load, west);
      const notes = lossNotes(loss);
      if (s.failed > 0) notes.push(`${s.failed} requests failed`);
      if (restartsDoneAt > ctx.durationMs) notes.push('the restarts outlasted the load; raise --duration');
      return {
        pass: notes.length === 0,
        figures: {
          failed: s.failed,
          steps,
          restartsDoneMs: Math.round(restartsDoneAt),
          eastListsWest: listed,
          ...loadFigures(s),
        },
        notes,
      };
    });
  },
};

/**
 * How east's view lists west's gateways for `hello` while the load runs, sampled every 250 ms: how many
 * samples listed both, one or none, and how often the listed set changed. Before issue #15 was fixed, east
 * listed one gateway at a time, the one that published last, and the set changed at every republish.
 */
async function sampleListing(fed: Federation, east: GatewayProc, running: () => boolean) {
  const out = { samples: 0, both: 0, one: 0, none: 0, switches: 0 };
  let last: string | undefined;
  // bounded by the load's duration, and by a count in case the clock stalls
  for (let i = 0; i < 10_000 && running(); i++) {
    const names = (await fed.gatewaysListed(east, 'west', 'hello')) ?? [];
    out.samples++;
    if (names.length >= 2) out.both++;
    else if (names.length === 1) out.one++;
    else out.none++;
    const key = names.join();
    if (last !== undefined && key !== last) out.switches++;
    last = key;
    await sleep(250);
  }
  return out;
}
