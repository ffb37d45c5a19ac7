// Where a scenario's failures and CPU went: failed requests by phase, kind and error; the counters of
// every gateway that say why (refusals, outlier ejections, retries); CPU per request per process. A
// scenario that fails at a rate the baseline carries is read from these, not guessed at.
import type { Federation } from './federation.ts';
import { type LoadClient, type LoadSummary, type Outcome, summarize } from './load.ts';

/** failed requests per phase (named by `phaseOf(due)`), then per `kind: error` */
export function failuresByPhase(
  outcomes: readonly Outcome[],
  phaseOf: (dueMs: number) => string,
): Record<string, { sent: number; failed: number; errors: Record<string, number> }> {
  const out: Record<string, { sent: number; failed: number; errors: Record<string, number> }> = {};
  for (const o of outcomes) {
    const p = phaseOf(o.due);
    out[p] ??= { sent: 0, failed: 0, errors: {} };
    const row = out[p];
    row.sent++;
    if (o.ok) continue;
    row.failed++;
    const key = `${o.kind}: ${o.error}`;
    row.errors[key] = (row.errors[key] ?? 0) + 1;
  }
  return out;
}

/** a phase per `stepMs` of load: "0-5s", "5-10s"… */
export function byStep(stepMs: number): (dueMs: number) => string {
  return (due) => {
    const from = Math.floor(due / stepMs) * stepMs;
    return `${from / 1000}-${(from + stepMs) / 1000}s`;
  };
}

/** the counters that say why requests failed at a gateway */
const WHY = [
  'meshfed_refused_total',
  'meshfed_outlier_ejections_total',
  'meshfed_upstream_retries_total',
  'meshfed_upstream_retry_budget_exhausted_total',
  'meshfed_upstream_circuit_breaker_open_total',
  'meshfed_catalog_rejected_total',
  'meshfed_catalog_sync_refused_total',
];

/** every non-zero sample of the counters above, per gateway (`cluster/name`) */
export async function failureCounters(fed: Federation): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const g of fed.gateways) {
    let text: string;
    try {
      text = await g.metrics();
    } catch (err) {
      out[`${g.cluster}/${g.name}`] = [`metrics unreadable: ${(err as Error).message}`];
      continue;
    }
    out[`${g.cluster}/${g.name}`] = text
      .split('\n')
      .filter((l) => WHY.some((n) => l.startsWith(n)) && !/ 0$/.test(l));
  }
  return out;
}

/** a mark taken before the load, for cpuPerRequest */
export function cpuMark(fed: Federation): { self: NodeJS.CpuUsage; fed: Record<string, number> } {
  return { self: process.cpuUsage(), fed: fed.cpuSeconds() };
}

/**
 * CPU time per request during the load, in ms, per process (user + system, from the mark to now):
 * `loadClient` is this process, which runs nothing else meanwhile; the others are the federation's
 * processes. A time per request, not a share of the host: on a shared host the wall time stretches, the
 * work per request does not.
 */
export function cpuPerRequest(
  before: { self: NodeJS.CpuUsage; fed: Record<string, number> },
  fed: Federation,
  requests: number,
): Record<string, number> {
  const self = process.cpuUsage(before.self);
  const perRequest = (cpuSeconds: number) => Math.round((cpuSeconds * 1e5) / Math.max(requests, 1)) / 100;
  const out: Record<string, number> = { loadClient: perRequest((self.user + self.system) / 1e6) };
  for (const [k, v] of Object.entries(fed.cpuSeconds())) out[k] = perRequest(v - (before.fed[k] ?? 0));
  return out;
}

/**
 * Runs `load` against `fed` to its end and closes it: the outcomes, their summary, and why they failed (CPU per
 * request per process, failures per 5 s phase, the gateways' counters).
 */
export async function explainedRun(
  fed: Federation,
  load: LoadClient,
): Promise<{
  outcomes: Outcome[];
  s: LoadSummary;
  why: {
    cpuMsPerRequest: Record<string, number>;
    failuresByPhase: ReturnType<typeof failuresByPhase>;
    counters: Record<string, string[]>;
  };
}> {
  const cpu = cpuMark(fed);
  const outcomes = await load.run();
  const s = summarize(outcomes);
  const why = {
    cpuMsPerRequest: cpuPerRequest(cpu, fed, s.sent),
    failuresByPhase: failuresByPhase(outcomes, byStep(5000)),
    counters: await failureCounters(fed),
  };
  await load.close();
  return { outcomes, s, why };
}
