import type { LinkFigures, LinkReport } from '../../core/index.ts';
import { summarize, type TrafficSnapshot } from '../traffic-window.ts';
import { OTHER, UNKNOWN } from '../golden-metrics.ts';

/**
 * This gateway's outbound calls per destination cluster over a window: what it reports to the other
 * gateways (federation's links subject), so their dashboards can draw the links it carries. Calls no cluster
 * answered (`unknown`) and the overflow label (`other`) name no cluster, so they make no link.
 */
export function outboundLinks(snap: TrafficSnapshot): LinkFigures[] {
  const byCluster = new Map<string, TrafficSnapshot['rows']>();
  for (const r of snap.rows) {
    if (r.direction !== 'outbound' || r.destination_cluster === UNKNOWN || r.destination_cluster === OTHER)
      continue;
    const rows = byCluster.get(r.destination_cluster);
    if (rows) rows.push(r);
    else byCluster.set(r.destination_cluster, [r]);
  }
  return [...byCluster].map(([to, rows]) => {
    const s = summarize(rows, snap.windowMs);
    return { to, requests: s.requests, failures: s.failures, p99Ms: s.p99Ms };
  });
}

/** A link another cluster's gateways report: their figures added up (p99: the highest of theirs). */
export interface ReportedLink {
  from: string;
  to: string;
  requests: number;
  rps: number;
  successRate: number;
  p99Ms: number;
  reportedBy: { gateways: number; ageMs: number };
}

/**
 * The links between clusters as the other clusters' gateways report them, one per (from, to), summed over
 * the gateways of `from` that reported it. A p99 cannot be added up, so the highest of the gateways' p99s
 * stands for the link (an upper bound of the link's own).
 */
export function reportedLinks(reports: readonly LinkReport[], self: string, nowMs: number): ReportedLink[] {
  const out = new Map<string, ReportedLink & { failures: number; oldest: number }>();
  for (const report of reports) {
    if (report.cluster === self) continue;
    for (const l of report.links) {
      if (l.to === report.cluster || l.requests === 0) continue;
      const key = `${report.cluster}|${l.to}`;
      const rps = l.requests / (report.windowMs / 1000);
      const have = out.get(key);
      if (!have) {
        out.set(key, {
          from: report.cluster,
          to: l.to,
          requests: l.requests,
          failures: l.failures,
          rps,
          successRate: 1,
          p99Ms: l.p99Ms,
          reportedBy: { gateways: 1, ageMs: 0 },
          oldest: report.issuedAt,
        });
        continue;
      }
      have.requests += l.requests;
      have.failures += l.failures;
      have.rps += rps;
      have.p99Ms = Math.max(have.p99Ms, l.p99Ms);
      have.reportedBy.gateways++;
      have.oldest = Math.min(have.oldest, report.issuedAt);
    }
  }
  return [...out.values()].map(({ failures, oldest, ...l }) => ({
    ...l,
    rps: Math.round(l.rps * 100) / 100,
    successRate: (l.requests - failures) / l.requests,
    reportedBy: { ...l.reportedBy, ageMs: Math.max(0, nowMs - oldest) },
  }));
}
