import { LATENCY_BUCKETS } from '../core/index.ts';

/** One second of one label tuple's calls. */
interface Slot {
  /** the second (ms / 1000, floored) this slot holds; a slot of an older second is reset before use */
  second: number;
  requests: number;
  failures: number;
  bytesIn: number;
  bytesOut: number;
  /** latency counts per LATENCY_BUCKETS upper bound, the last one for anything slower (+Inf) */
  latency: Float64Array;
}

/** The seconds of history kept per tuple: the longest window `meshfed stat` and the dashboard ask for. */
export const WINDOW_SECONDS = 300;

/** A requested window in seconds (a query parameter, a gRPC field), clamped to 1..WINDOW_SECONDS; else 60 s. */
export function windowMsOf(seconds: unknown): number {
  const n = Math.round(Number(seconds ?? 60));
  return Number.isFinite(n) && n > 0 ? Math.min(n, WINDOW_SECONDS) * 1000 : 60_000;
}

/** The label tuple every golden series carries (see docs/observability.md). */
export interface TrafficKey {
  direction: 'outbound' | 'inbound';
  protocol: string;
  source_cluster: string;
  source_workload: string;
  destination_cluster: string;
  destination_service: string;
}

/**
 * One tuple's calls over a window: counts only (no ratios, no percentiles), so the windows of several
 * worker processes add up by plain sums before anything is derived from them.
 */
export interface TrafficRow extends TrafficKey {
  requests: number;
  failures: number;
  bytesIn: number;
  bytesOut: number;
  /** counts per LATENCY_BUCKETS bound, then +Inf */
  latency: number[];
}

export interface TrafficSnapshot {
  windowMs: number;
  /** when the window ends (ms since the epoch) */
  atMs: number;
  /** LATENCY_BUCKETS in seconds, the bounds of every row's latency counts */
  buckets: number[];
  rows: TrafficRow[];
}

/**
 * The recent calls of one label tuple, a ring of one-second slots. Recording touches one slot and
 * allocates nothing.
 */
export class TupleWindow {
  readonly key: TrafficKey;
  readonly #slots: Slot[] = [];
  constructor(key: TrafficKey) {
    this.key = key;
  }

  #slot(second: number): Slot {
    const i = second % WINDOW_SECONDS;
    let s = this.#slots[i];
    if (!s) {
      s = {
        second,
        requests: 0,
        failures: 0,
        bytesIn: 0,
        bytesOut: 0,
        latency: new Float64Array(LATENCY_BUCKETS.length + 1),
      };
      this.#slots[i] = s;
    } else if (s.second !== second) {
      s.second = second;
      s.requests = 0;
      s.failures = 0;
      s.bytesIn = 0;
      s.bytesOut = 0;
      s.latency.fill(0);
    }
    return s;
  }

  record(nowMs: number, failed: boolean, seconds: number, bytesIn: number, bytesOut: number): void {
    const s = this.#slot(Math.floor(nowMs / 1000));
    s.requests++;
    if (failed) s.failures++;
    s.bytesIn += bytesIn;
    s.bytesOut += bytesOut;
    s.latency[bucketIndex(seconds)]!++;
  }

  /** The calls whose second lies in the last `windowMs` before `nowMs`; undefined when there were none. */
  sum(nowMs: number, windowMs: number): TrafficRow | undefined {
    const now = Math.floor(nowMs / 1000);
    const from = now - Math.max(1, Math.ceil(windowMs / 1000)) + 1;
    let row: TrafficRow | undefined;
    for (const s of this.#slots) {
      if (!s || s.second < from || s.second > now || s.requests === 0) continue;
      row ??= {
        ...this.key,
        requests: 0,
        failures: 0,
        bytesIn: 0,
        bytesOut: 0,
        latency: new Array(s.latency.length).fill(0),
      };
      row.requests += s.requests;
      row.failures += s.failures;
      row.bytesIn += s.bytesIn;
      row.bytesOut += s.bytesOut;
      for (let i = 0; i < s.latency.length; i++) row.latency[i]! += s.latency[i]!;
    }
    return row;
  }
}

function bucketIndex(seconds: number): number {
  for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]!) return i;
  return LATENCY_BUCKETS.length;
}

export function tupleId(k: TrafficKey): string {
  return `${k.direction}|${k.protocol}|${k.source_cluster}|${k.source_workload}|${k.destination_cluster}|${k.destination_service}`;
}

/** Several processes' snapshots of the same window as one: rows of the same tuple are added up. */
export function mergeSnapshots(list: readonly TrafficSnapshot[], windowMs: number): TrafficSnapshot {
  const rows = new Map<string, TrafficRow>();
  for (const snap of list) {
    for (const r of snap.rows) {
      const id = tupleId(r);
      const have = rows.get(id);
      if (!have) {
        rows.set(id, { ...r, latency: [...r.latency] });
        continue;
      }
      have.requests += r.requests;
      have.failures += r.failures;
      have.bytesIn += r.bytesIn;
      have.bytesOut += r.bytesOut;
      r.latency.forEach((n, i) => {
        have.latency[i] = (have.latency[i] ?? 0) + n;
      });
    }
  }
  return {
    windowMs,
    atMs: Math.max(0, ...list.map((s) => s.atMs)),
    buckets: [...LATENCY_BUCKETS],
    rows: [...rows.values()],
  };
}

/**
 * The q-quantile (0..1) of a latency histogram in seconds, interpolated linearly inside its bucket as
 * Prometheus' histogram_quantile does; the +Inf bucket answers with the highest finite bound.
 */
export function quantile(
  q: number,
  counts: readonly number[],
  bounds: readonly number[] = LATENCY_BUCKETS,
): number {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i]!;
    if (seen + n >= rank && n > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1]!;
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      return lower + (bounds[i]! - lower) * ((rank - seen) / n);
    }
    seen += n;
  }
  return bounds[bounds.length - 1]!;
}

/** What `meshfed stat`, `top` and the dashboard show for a group of rows. */
export interface TrafficSummary {
  requests: number;
  failures: number;
  /** 0..1; 1 when there were no requests */
  successRate: number;
  rps: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  bytesIn: number;
  bytesOut: number;
}

export function summarize(rows: readonly TrafficRow[], windowMs: number): TrafficSummary {
  const latency: number[] = new Array(LATENCY_BUCKETS.length + 1).fill(0);
  let requests = 0;
  let failures = 0;
  let bytesIn = 0;
  let bytesOut = 0;
  for (const r of rows) {
    requests += r.requests;
    failures += r.failures;
    bytesIn += r.bytesIn;
    bytesOut += r.bytesOut;
    r.latency.forEach((n, i) => {
      latency[i]! += n;
    });
  }
  const ms = (q: number) => Math.round(quantile(q, latency) * 1e6) / 1e3;
  return {
    requests,
    failures,
    successRate: requests === 0 ? 1 : (requests - failures) / requests,
    rps: Math.round((requests / Math.max(windowMs / 1000, 1)) * 100) / 100,
    p50Ms: ms(0.5),
    p95Ms: ms(0.95),
    p99Ms: ms(0.99),
    bytesIn,
    bytesOut,
  };
}
