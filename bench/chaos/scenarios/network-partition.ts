// A network partition between two clusters: every cluster (its gateway, backend and nats-server) runs in a
// network namespace of its own (bench/chaos/netns.ts), and the link between east (the load's source) and
// west is cut mid-load, then restored. Both the east-west data path and the NATS gateway connection between
// the two go silent, as in a real partition; eu still reaches both. East must move west's share of the load
// to eu within 3 s, send it back to west after the heal, and no request may hang past its deadline.
import { join } from 'node:path';
import { waitFor } from '../../../core/index.ts';
import { round } from '../../figures.ts';
import { Federation, threeClusters } from '../federation.ts';
import { type Outcome, settleMs } from '../load.ts';
import { NetLab, netnsUnavailable } from '../netns.ts';
import { settledWindow, settleVerdict } from '../settle.ts';
import {
  connectFigures,
  loadFigures,
  lossCheck,
  lossNotes,
  type Scenario,
  sourceLoad,
  summarize,
  withFederation,
} from '../scenario.ts';

/** when the link is cut, ms into the load */
const CUT_AT_MS = 10_000;
/** how long it stays cut: longer than east's staleAfter (5 s), so the catalog's own reaction is part of it */
const PARTITION_MS = 15_000;
/** the load after the heal, at least */
const AFTER_HEAL_MS = 30_000;
/** every request's deadline (the load's default) */
const DEADLINE_MS = 5000;
/** a request that took longer than this had not failed over yet (at least; see slowAfterCutMs) */
const SLOW_MS = 1000;

/** how long after `from` the load took to settle: the due time of the last bad request in [from, to) */
function settledAfter(outcomes: readonly Outcome[], from: number, to: number): number {
  let last = from;
  for (const o of outcomes)
    if (o.due >= from && o.due < to && (!o.ok || o.latency > SLOW_MS)) last = Math.max(last, o.due);
  return round(last - from);
}

function badPerSecond(outcomes: readonly Outcome[], from: number, to: number): number[] {
  const bins = Array.from({ length: Math.ceil((to - from) / 1000) }, () => 0);
  for (const o of outcomes)
    if (o.due >= from && o.due < to && (!o.ok || o.latency > SLOW_MS))
      bins[Math.floor((o.due - from) / 1000)]!++;
  return bins;
}

/** per second since `from`, the requests that failed (by kind and error) or took over 1 s (by kind) */
function badBySecond(outcomes: readonly Outcome[], from: number, to: number): Record<string, number>[] {
  const bins = Array.from({ length: Math.ceil((to - from) / 1000) }, (): Record<string, number> => ({}));
  for (const o of outcomes) {
    if (o.due < from || o.due >= to || (o.ok && o.latency <= SLOW_MS)) continue;
    const bin = bins[Math.floor((o.due - from) / 1000)]!;
    const key = o.ok ? `${o.kind}: slow` : `${o.kind}: ${o.error}`;
    bin[key] = (bin[key] ?? 0) + 1;
  }
  return bins;
}

function servedBy(outcomes: readonly Outcome[], from: number, to: number): Record<string, number> {
  const by: Record<string, number> = {};
  for (const o of outcomes)
    if (o.due >= from && o.due < to && o.cluster) by[o.cluster] = (by[o.cluster] ?? 0) + 1;
  return by;
}

/** west as a /debug/catalog body lists it: 'stale', 'live' or 'absent' */
function westAt(catalogText: string): string {
  try {
    const body = JSON.parse(catalogText) as { clusters?: { cluster: string; stale: boolean }[] };
    const west = body.clusters?.find((c) => c.cluster === 'west');
    return west ? (west.stale ? 'stale' : 'live') : 'absent';
  } catch {
    return 'unknown (east did not answer)';
  }
}

export const networkPartition: Scenario = {
  name: 'network-partition',
  criterion:
    'the link between east (the load) and west cut for 15 s (data path and NATS; eu reaches both), then restored: failover to eu ≤ 3 s and the load settled after the heal (settled windows: the last failed or slow request before 2 s without one); west serves again after the heal; no request hangs past its 5 s deadline',
  async run(ctx) {
    const why = netnsUnavailable();
    if (why) return { pass: false, figures: {}, notes: [why], skipped: why };
    const lab = NetLab.create(['east', 'west', 'eu']);
    try {
      const plans = threeClusters().map((p) => ({
        ...p,
        // west shares east's locality, so that east sends it everything while it is reachable: the whole
        // load fails over to eu at the cut, and comes back at the heal
        region: p.name === 'west' ? 'us-east' : p.region,
        net: lab.net(p.name),
        config: {
          gateway: {
            // the load comes from the suite's own address on its link into east
            egress: { trustedNetworks: [`${lab.suiteAddress(p.name)}/32`] },
            // a session cut off is found within 3 s, inside the load's 5 s deadline (the default is 10 s + 5 s)
            tunnelKeepalive: { interval: '1s', timeout: '2s' },
          },
        },
      }));
      const fed = new Federation(join(ctx.dir, 'fed'), plans);
      return await withFederation(fed, ctx, async () => {
        const src = fed.source;
        const durationMs = Math.max(ctx.durationMs, CUT_AT_MS + PARTITION_MS + AFTER_HEAL_MS);
        const load = sourceLoad(fed, ctx, durationMs);
        const done = load.run();
        const at = (ms: number, what: string) =>
          waitFor(() => load.now() >= ms, { timeoutMs: ms + 10_000, intervalMs: 20, what });
        await at(CUT_AT_MS, 'the time of the cut');
        // the cut counts from when `ip` is asked to take the link down
        const cutAt = load.now();
        await lab.cut('east', 'west');
        const cutDone = load.now();
        ctx.log(
          `link east-west cut at ${Math.round(cutAt)} ms (ip took ${Math.round(load.now() - cutAt)} ms)`,
        );
        await at(cutAt + PARTITION_MS - 1000, 'the end of the partition');
        // what east's catalog says of west late in the partition (stale after 5 s without its heartbeats)
        const westLate = westAt(await fed.catalogText(src));
        // eu still hears west: a partition between two clusters, not west cut off from everyone
        const westLateAtEu = westAt(await fed.catalogText(fed.gatewaysOf('eu')[0]!));
        await at(cutAt + PARTITION_MS, 'the end of the partition');
        const healAt = load.now();
        await lab.heal('east', 'west');
        ctx.log(
          `link east-west restored at ${Math.round(healAt)} ms (ip took ${Math.round(load.now() - healAt)} ms)`,
        );
        const outcomes = await done;
        await load.close();
        const s = summarize(outcomes);
        const end = durationMs;
        // failover as gateway-kill measures it: a settled window after the cut (until the heal) and one after
        // the heal; the measures before them beside them for one release (the last request slower than every
        // one before the cut, and the last one over a fixed 1 s)
        const failover = settledWindow(outcomes, { at: cutAt, until: healAt, floorMs: SLOW_MS });
        const afterHeal = settledWindow(outcomes, { at: healAt, controlUntil: cutAt, floorMs: SLOW_MS });
        const { settleMs: failoverLastSlowMs, slowMs: slowAfterCutMs } = settleMs(
          outcomes,
          cutAt,
          SLOW_MS,
          healAt,
        );
        const failoverFixed1sMs = settledAfter(outcomes, cutAt, healAt);
        const afterHealFixed1sMs = settledAfter(outcomes, healAt, end);
        const westBack = outcomes
          .filter((o) => o.due >= healAt && o.cluster === 'west')
          .reduce((m, o) => Math.min(m, o.due), Number.POSITIVE_INFINITY);
        const returnMs = Number.isFinite(westBack) ? round(westBack - healAt) : null;
        const during = outcomes.filter((o) => o.due >= cutAt && o.due < healAt);
        const inFlightAtCut = outcomes.filter((o) => o.due < cutAt && o.due + o.latency >= cutAt);
        const hung = outcomes.filter((o) => o.error === 'timeout').length;
        const loss = await lossCheck(fed, load);
        const notes = lossNotes(loss);
        const beforeCut = servedBy(outcomes, 0, cutAt);
        if (!beforeCut.west) notes.push('west served nothing before the cut: the scenario proves nothing');
        const duringBy = servedBy(outcomes, cutAt, healAt);
        // proof that the cut cut: west answered nothing sent once the link was down that had to end before the
        // heal (due before heal − deadline; a loaded host sends requests late, so later ones may reach it)
        const westWhileCut = servedBy(outcomes, cutDone, healAt - DEADLINE_MS).west ?? 0;
        if (westWhileCut > 0)
          notes.push(`west served ${westWhileCut} requests while cut off: the cut did not cut`);
        if (westLateAtEu !== 'live') notes.push(`eu saw west as ${westLateAtEu} during the partition`);
        for (const v of [
          settleVerdict(failover, 'failover', 3000),
          settleVerdict(afterHeal, 'the return after the heal', Number.POSITIVE_INFINITY),
        ])
          if (v) notes.push(v);
        if (returnMs === null)
          notes.push(`west served nothing in the ${end - Math.round(healAt)} ms after the heal`);
        if (hung > 0) notes.push(`${hung} requests hung past their deadline`);
        return {
          pass: notes.length === 0,
          figures: {
            failoverMs: failover.settleMs,
            failoverSettled: failover.settled,
            slowMs: failover.slowMs,
            slowAfterSettled: failover.slowAfterSettled,
            slowAfterSettledAtMs: failover.slowAfterSettledAtMs,
            afterHealSettleMs: afterHeal.settleMs,
            afterHealSettled: afterHeal.settled,
            slowAfterHealSettled: afterHeal.slowAfterSettled,
            slowAfterHealSettledAtMs: afterHeal.slowAfterSettledAtMs,
            failoverLastSlowMs,
            slowAfterCutMs,
            failoverFixed1sMs,
            returnMs,
            hungPastDeadline: hung,
            // when they were due: a stall of a loaded host before the cut hangs requests too
            hungByPhase: {
              beforeCut: outcomes.filter((o) => o.error === 'timeout' && o.due < cutAt).length,
              duringPartition: during.filter((o) => o.error === 'timeout').length,
              afterHeal: outcomes.filter((o) => o.error === 'timeout' && o.due >= healAt).length,
            },
            failedDuringPartition: during.filter((o) => !o.ok).length,
            failedInFlightAtCut: inFlightAtCut.filter((o) => !o.ok).length,
            sent: s.sent,
            failed: s.failed,
            successPct: s.successPct,
            maxMsDuringPartition: round(during.reduce((m, o) => Math.max(m, o.latency), 0)),
            afterHealFixed1sMs,
            partitionMs: round(healAt - cutAt),
            westAtEastLateInPartition: westLate,
            westAtEuLateInPartition: westLateAtEu,
            // per second since the cut: requests that failed or took over 1 s
            badPerSecondSinceCut: badPerSecond(outcomes, cutAt, end),
            // the same, for the partition, by kind and error (a slow one is `kind: slow`)
            badBySecondDuringPartition: badBySecond(outcomes, cutAt, healAt),
            // every failed request, and those around and after the cut that took over 1 s (the first 40)
            badSample: outcomes
              .filter((o) => !o.ok || (o.due >= cutAt - SLOW_MS && o.latency > SLOW_MS))
              .sort((a, b) => a.due - b.due)
              .slice(0, 40)
              .map(
                (o) =>
                  `${o.kind} due ${round(o.due - cutAt)} ms after the cut: ${o.ok ? `ok in ${round(o.latency)} ms from ${o.cluster}` : `${o.error} after ${round(o.latency)} ms`}`,
              ),
            // requests past the load's deadline: which kind, when, and how late they were sent (the load
            // client's own lag), the first 20
            hungSample: outcomes
              .filter((o) => o.error === 'timeout')
              .sort((a, b) => a.due - b.due)
              .slice(0, 20)
              .map((o) => {
                const lag = load.sendLag[Math.round((o.due * ctx.rate) / 1000)] ?? 0;
                return `${o.kind} due ${round(o.due - cutAt)} ms after the cut, sent ${round(lag)} ms late`;
              }),
            // per second since the cut, the most HTTP requests queued in the load client for a connection
            clientQueuedPerSecondSinceCut: Array.from(
              load.queuedPerSecond.slice(Math.floor(cutAt / 1000)),
              (q) => q ?? 0,
            ),
            ...connectFigures(load.connectMs),
            servedByBeforeCut: beforeCut,
            servedByDuringPartition: duringBy,
            servedByAfterHeal: servedBy(outcomes, healAt, end),
            ...loadFigures(s),
          },
          notes,
        };
      });
    } finally {
      lab.destroy();
    }
  },
};
