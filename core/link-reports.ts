/**
 * What gateways tell each other about the calls they send: per destination cluster, the golden figures of
 * their outbound calls over a recent window. Federation carries the reports (signed, on NATS); the dashboard
 * draws the links between other clusters from them, so one gateway's page shows the whole federation.
 */

/** The most links one report carries (the golden metrics' default cap on clusters): a report stays small. */
export const MAX_REPORTED_LINKS = 64;

/** One gateway's outbound calls to one cluster over the report's window. */
export interface LinkFigures {
  /** the destination cluster */
  to: string;
  requests: number;
  /** calls that ended with a 5xx, no response, or a gRPC status other than 0 */
  failures: number;
  /** interpolated in the latency histogram's buckets, as `histogram_quantile` does */
  p99Ms: number;
}

/** One gateway's report, as received (verified) from another cluster. */
export interface LinkReport {
  cluster: string;
  gateway: string;
  /** the window the figures cover, ending at `issuedAt` */
  windowMs: number;
  issuedAt: number;
  links: readonly LinkFigures[];
}

/** The latest report of every gateway of the other clusters, as this gateway holds them. */
export interface LinkReportView {
  linkReports(): readonly LinkReport[];
}
