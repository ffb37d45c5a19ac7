// A remote gateway SIGKILLed mid-load: west runs two gateways, one dies without a word; east must
// move its traffic to the survivors within 3 s, idempotent requests must not fail (retries), and
// non-idempotent ones may fail only if they were in flight on the dead gateway (sent before it was gone).
import { join } from 'node:path';
import { sleep } from '../../figures.ts';
import { Federation, threeClusters } from '../federation.ts';
import { settleMs } from '../load.ts';
import { settledWindow, settleVerdict } from '../settle.ts';
import {
  loadFigures,
  lossCheck,
  lossNotes,
  type Scenario,
  summarize,
  withFederation,
  sourceLoad,
} from '../scenario.ts';

export const gatewayKill: Scenario = {
  name: 'gateway-kill',
  criterion:
    'failover ≤ 3 s (a settled window: the last failed or slow request before 2 s without one; later ones no more than the pre-kill rate gives); 0 failed idempotent requests (HTTP GET); non-idempotent failures ≤ requests in flight at the kill',
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), threeClusters({ westGateways: 2 }));
    return withFederation(fed, ctx, async () => {
      const _src = fed.source;
      const load = sourceLoad(fed, ctx);
      const victim = fed.gatewaysOf('west')[0]!;
      const done = load.run();
      await sleep(ctx.durationMs * 0.4);
      const killAt = load.now();
      ctx.log(`SIGKILL ${victim.name} at ${Math.round(killAt)} ms`);
      await victim.kill();
      // a request sent before the process was gone may have reached it: SIGKILL is not instant
      const exitedAt = load.now();
      const outcomes = await done;
      await load.close();
      const s = summarize(outcomes);
      const inFlight = outcomes.filter(
        (o) => o.kind !== 'http-get' && o.due <= exitedAt && o.due + o.latency >= killAt,
      ).length;
      const idempotentFailed = outcomes.filter((o) => o.kind === 'http-get' && !o.ok).length;
      const nonIdempotentFailed = outcomes.filter((o) => o.kind !== 'http-get' && !o.ok).length;
      const failover = settledWindow(outcomes, { at: killAt });
      // the measure before the settled window, kept beside it for one release so tables compare
      const { settleMs: lastSlowMs, slowMs } = settleMs(outcomes, killAt);
      const loss = await lossCheck(fed, load);
      loss.unhealthy = loss.unhealthy.filter((n) => n !== `west/${victim.name}`);
      const notes = lossNotes(loss);
      const verdict = settleVerdict(failover, 'failover', 3000);
      if (verdict) notes.push(verdict);
      if (idempotentFailed > 0) notes.push(`${idempotentFailed} idempotent requests failed`);
      if (nonIdempotentFailed > inFlight)
        notes.push(`${nonIdempotentFailed} non-idempotent failures > ${inFlight} in flight`);
      return {
        pass: notes.length === 0,
        figures: {
          failoverMs: failover.settleMs,
          failoverSettled: failover.settled,
          slowMs: failover.slowMs,
          slowAfterSettled: failover.slowAfterSettled,
          slowAfterSettledAtMs: failover.slowAfterSettledAtMs,
          badPerMilleBeforeKill: failover.badPerMilleBefore,
          badPerMilleAfterSettled: failover.badPerMilleAfterSettled,
          failoverLastSlowMs: lastSlowMs,
          slowAfterKillMs: slowMs,
          idempotentFailed,
          nonIdempotentFailed,
          inFlightAtKill: inFlight,
          killToExitMs: Math.round(exitedAt - killAt),
          ...loadFigures(s),
        },
        notes,
      };
    });
  },
};
