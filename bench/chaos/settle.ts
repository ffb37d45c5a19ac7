// How long the load took to settle after a fault, as a settled window: the disturbance that began at the
// fault ends at the due time of its last bad request before a quiet window (no bad request for quietMs),
// and a bad request after that window is reported apart, against the rate at which the load had such
// requests before the fault, instead of stretching the failover to its due time.
import { percentile, round } from '../figures.ts';
import type { Outcome } from './load.ts';

export interface SettleOptions {
  /** the fault, ms since the load started */
  at: number;
  /** only requests due before this count (e.g. the heal that ends a partition); the load's end otherwise */
  until?: number;
  /** requests due before this are the control (default `at`; e.g. the cut, for the settling after a heal) */
  controlUntil?: number;
  /** no bad request for this long ends the disturbance */
  quietMs?: number;
  /** a request is slow past the pre-fault percentile of latencies, and never under this */
  floorMs?: number;
  /** the pre-fault percentile (0-100) a slow request is past */
  pct?: number;
}

export interface Settled {
  /** false when the load never had a quiet window after the fault: settleMs is then null */
  settled: boolean;
  /** from the fault to the due time of the disturbance's last bad request; 0 when there was none */
  settleMs: number | null;
  /** slower than this (ms) is slow: the pre-fault percentile, at least floorMs */
  slowMs: number;
  /** bad requests (failed or slow) in the disturbance */
  bad: number;
  /** bad requests due after the disturbance ended, and their due times (ms after the fault, the first 20) */
  slowAfterSettled: number;
  slowAfterSettledAtMs: number[];
  /** bad requests per 1,000 before the fault, and after the disturbance ended */
  badPerMilleBefore: number;
  badPerMilleAfterSettled: number;
  /** how many bad requests after the disturbance the pre-fault rate allows (see allowedAfter) */
  allowedAfterSettled: number;
  /** the quiet window that ends a disturbance (ms) */
  quietMs: number;
}

/**
 * Bad requests a stretch of `n` requests may have at a rate of `perRequest` with no fault at all: twice the
 * expected count, and at least one (a single slow request is what a quiet load has now and then).
 */
export function allowedAfter(n: number, perRequest: number): number {
  return Math.max(1, Math.ceil(2 * perRequest * n));
}

/**
 * The settled window after a fault at `o.at`. Bad = failed, or slower than the pre-fault `pct` percentile
 * of latencies (99.9 by default, floor 1 s): requests before the fault are the control, since on a loaded
 * host requests of over a second happen with no fault at all. The disturbance starts at the fault and
 * runs while bad requests follow each other less than `quietMs` (2 s) apart; it has ended once a quiet
 * window of `quietMs` follows its last bad request before `until` (or the load's last request). When none
 * does, the load has not settled (`settled: false`, which fails a failover criterion).
 */
export function settledWindow(outcomes: readonly Outcome[], o: SettleOptions): Settled {
  const quietMs = o.quietMs ?? 2000;
  const floorMs = o.floorMs ?? 1000;
  const before = outcomes.filter((x) => x.due < (o.controlUntil ?? o.at));
  const pre = before.map((x) => x.latency).sort((a, b) => a - b);
  const slowMs = Math.max(floorMs, pre.length ? percentile(pre, o.pct ?? 99.9) : 0);
  const isBad = (x: Outcome) => !x.ok || x.latency > slowMs;
  const window = outcomes.filter((x) => x.due >= o.at && x.due < (o.until ?? Number.POSITIVE_INFINITY));
  // the window's end: the heal, or the last request the load sent
  const end = o.until ?? window.reduce((m, x) => Math.max(m, x.due), o.at);
  const bad = window.filter(isBad).sort((a, b) => a.due - b.due);
  let last = o.at;
  let n = 0;
  while (n < bad.length && bad[n]!.due - last < quietMs) last = bad[n++]!.due;
  const settled = n < bad.length || end - last >= quietMs;
  const after = bad.slice(n);
  const afterCount = window.filter((x) => x.due > last).length;
  const perRequestBefore = before.length ? before.filter(isBad).length / before.length : 0;
  return {
    settled,
    settleMs: settled ? round(last - o.at) : null,
    slowMs: round(slowMs),
    bad: n,
    slowAfterSettled: settled ? after.length : 0,
    slowAfterSettledAtMs: settled ? after.slice(0, 20).map((x) => round(x.due - o.at)) : [],
    badPerMilleBefore: round(1000 * perRequestBefore),
    badPerMilleAfterSettled: settled && afterCount ? round((1000 * after.length) / afterCount) : 0,
    allowedAfterSettled: allowedAfter(afterCount, perRequestBefore),
    quietMs,
  };
}

/** What a failover criterion says of a settled window: undefined when it holds, else why not. */
export function settleVerdict(s: Settled, what: string, maxMs: number): string | undefined {
  if (!s.settled)
    return `${what} never settled: no ${s.quietMs} ms without a failed or slow request (over ${s.slowMs} ms) before the end`;
  if (s.settleMs! > maxMs) return `${what} took ${s.settleMs} ms`;
  if (s.slowAfterSettled > s.allowedAfterSettled)
    return `${s.slowAfterSettled} failed or slow requests after ${what} settled, more than the ${s.allowedAfterSettled} the pre-fault rate allows`;
  return undefined;
}
