import type { CatalogView, EndpointSource, LinkReport, Locality } from '../../core/index.ts';
import { summarize, type TrafficRow, type TrafficSnapshot, type TrafficSummary } from '../traffic-window.ts';
import { type ExposedSample, samplesOf } from './exposition.ts';
import { reportedLinks } from './links.ts';

/** The policy in force, as the dashboard shows it (the policy layers fill this in through the hook). */
export interface PolicySummary {
  revision: string;
  splits?: { service: string; weights: Record<string, number> }[];
}

/** What the dashboard is built from: the same views the admin listener already has. */
export interface DashboardSources {
  self: { cluster: string; gateway: string; locality: Locality };
  catalog: CatalogView;
  local: EndpointSource;
  traffic: (windowMs: number) => Promise<TrafficSnapshot>;
  metrics: () => Promise<{ text: string }>;
  /** the policy revision in force and its splits; undefined while no policy is configured */
  policy?: () => PolicySummary | undefined;
  /** the other clusters' gateways' latest link reports (federation); without it only this gateway's links show */
  links?: () => readonly LinkReport[];
}

/** The live figures of a link or a service × cluster pair over the dashboard's window. */
export type Figures = Pick<TrafficSummary, 'requests' | 'rps' | 'successRate' | 'p99Ms'>;

export interface DashboardCluster {
  name: string;
  region: string;
  zone: string;
  stale: boolean;
  self: boolean;
  gateways: { name: string; address: string }[];
}

export interface DashboardLink extends Figures {
  from: string;
  to: string;
  /**
   * absent: measured by this gateway. Else the link is between other clusters (or reaches this cluster
   * through another of its gateways), as `from`'s gateways report it over their last window: how many
   * reported it and how old the oldest report is
   */
  reportedBy?: { gateways: number; ageMs: number };
}

export interface DashboardOffer {
  cluster: string;
  region: string;
  zone: string;
  weight: number;
  stale: boolean;
  local: boolean;
  /** from this gateway's load balancer: 'healthy', 'ejected' (outlier detection or failed health checks), or 'unused' (never picked yet) */
  health: 'healthy' | 'ejected' | 'unused';
  /** calls this gateway sent to this cluster for the service */
  traffic: Figures & { share: number };
}

export interface DashboardService {
  service: string;
  exported: boolean;
  offers: DashboardOffer[];
}

export interface Counted {
  what: string;
  reason: string;
  count: number;
}

export interface DashboardState {
  atMs: number;
  windowSeconds: number;
  self: DashboardSources['self'];
  clusters: DashboardCluster[];
  links: DashboardLink[];
  services: DashboardService[];
  /** refusal counters since the gateway started: local refusals, forged or stale catalog messages, refused certificates */
  refusals: Counted[];
  policy: PolicySummary | null;
}

/** the window of the live figures: short, so a failover shows within seconds */
export const LIVE_WINDOW_MS = 3_000;

export const FAMILIES = new Set([
  'meshfed_refused_total',
  'meshfed_catalog_rejected_total',
  'meshfed_egress_client_certs_total',
  'meshfed_outlier_ejections_total',
  'meshfed_upstream_healthy',
  'meshfed_requests_total',
]);

function figures(rows: readonly TrafficRow[], windowMs: number): Figures {
  const s = summarize(rows, windowMs);
  return { requests: s.requests, rps: s.rps, successRate: s.successRate, p99Ms: s.p99Ms };
}

function group<T>(list: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const t of list) {
    const k = key(t);
    const l = out.get(k);
    if (l) l.push(t);
    else out.set(k, [t]);
  }
  return out;
}

function healthOf(
  samples: readonly ExposedSample[],
  service: string,
  cluster: string,
): DashboardOffer['health'] {
  const mine = samples.filter(
    (s) => s.labels.service === service && s.labels.destination_cluster === cluster,
  );
  if (mine.length === 0) return 'unused';
  // summed over workers: a target is ejected where any worker's balancer holds it out
  return mine.some((s) => s.value === 0) ? 'ejected' : 'healthy';
}

function offeredLocality(catalog: CatalogView, cluster: string): Locality | undefined {
  for (const ref of catalog.services()) {
    const offer = catalog.instances(ref.namespace, ref.name).find((i) => i.cluster === cluster);
    if (offer) return offer.locality;
  }
  return undefined;
}

export interface BuiltState {
  state: DashboardState;
  /** the raw counters, for the feed's events */
  samples: Map<string, ExposedSample[]>;
  /** the outbound rows of the last LIVE_WINDOW_MS, for the feed's failover detection */
  rows: TrafficRow[];
}

/** The whole federation as this gateway sees it, now. */
export async function buildState(src: DashboardSources): Promise<BuiltState> {
  const [snap, metrics] = await Promise.all([src.traffic(LIVE_WINDOW_MS), src.metrics()]);
  const samples = samplesOf(metrics.text, FAMILIES);
  const self = src.self;
  const clusters: DashboardCluster[] = [
    {
      name: self.cluster,
      region: self.locality.region,
      zone: self.locality.zone,
      stale: false,
      self: true,
      gateways: [{ name: self.gateway, address: '' }],
    },
  ];
  for (const c of src.catalog.clusters()) {
    if (c.cluster === self.cluster) continue;
    // a cluster that announced no locality of its own is placed where its offers say it is
    const locality = c.locality ?? offeredLocality(src.catalog, c.cluster);
    clusters.push({
      name: c.cluster,
      region: locality?.region ?? '',
      zone: locality?.zone ?? '',
      stale: c.stale,
      self: false,
      gateways: c.gateways.map((g) => ({ name: g.name, address: g.address })),
    });
  }

  // links: every gateway this one can reach, measured where calls crossed it
  const byPair = group(snap.rows, (r) => `${r.source_cluster}|${r.destination_cluster}`);
  const links: DashboardLink[] = [];
  const seen = new Set<string>();
  for (const c of clusters) {
    if (c.self) continue;
    for (const [from, to] of [
      [self.cluster, c.name],
      [c.name, self.cluster],
    ] as const) {
      const key = `${from}|${to}`;
      seen.add(key);
      const rows = byPair.get(key) ?? [];
      if (rows.length > 0 || from === self.cluster) links.push({ from, to, ...figures(rows, snap.windowMs) });
    }
  }
  for (const [key, rows] of byPair) {
    const [from, to] = key.split('|') as [string, string];
    if (!seen.has(key) && from !== to) {
      seen.add(key);
      links.push({ from, to, ...figures(rows, snap.windowMs) });
    }
  }
  // the rest of the federation: links this gateway does not carry, as the gateways that do report them
  for (const l of reportedLinks(src.links?.() ?? [], self.cluster, snap.atMs)) {
    const key = `${l.from}|${l.to}`;
    // what crossed this gateway is measured here; a report says nothing more about it
    if (seen.has(key) && (byPair.get(key)?.length ?? 0) > 0) continue;
    const idle = links.findIndex((x) => x.from === l.from && x.to === l.to);
    if (idle !== -1) links.splice(idle, 1);
    links.push(l);
  }

  // services: every offer of the catalog and of this cluster, with health and the traffic sent to each
  const healthy = samples.get('meshfed_upstream_healthy') ?? [];
  const outbound = snap.rows.filter((r) => r.direction === 'outbound');
  const byService = group(outbound, (r) => r.destination_service);
  const services = new Map<string, DashboardService>();
  const offer = (service: string, o: Omit<DashboardOffer, 'health' | 'traffic'>) => {
    let s = services.get(service);
    if (!s) {
      s = { service, exported: false, offers: [] };
      services.set(service, s);
    }
    const rows = (byService.get(service) ?? []).filter((r) => r.destination_cluster === o.cluster);
    const all = summarize(byService.get(service) ?? [], snap.windowMs).requests;
    const f = figures(rows, snap.windowMs);
    s.offers.push({
      ...o,
      health: healthOf(healthy, service, o.cluster),
      traffic: { ...f, share: all === 0 ? 0 : f.requests / all },
    });
    return s;
  };
  for (const svc of src.local.current()) {
    const s = offer(`${svc.name}.${svc.namespace}`, {
      cluster: self.cluster,
      region: self.locality.region,
      zone: self.locality.zone,
      weight: svc.endpoints.filter((e) => e.healthy).length,
      stale: false,
      local: true,
    });
    s.exported = svc.exported;
  }
  const refs = new Map(src.catalog.services().map((r) => [`${r.name}.${r.namespace}`, r]));
  for (const ref of refs.values()) {
    for (const i of src.catalog.instances(ref.namespace, ref.name)) {
      if (i.cluster === self.cluster) continue;
      offer(`${i.name}.${i.namespace}`, {
        cluster: i.cluster,
        region: i.locality.region,
        zone: i.locality.zone,
        weight: i.weight,
        stale: i.stale,
        local: false,
      });
    }
  }

  const refusals: Counted[] = [];
  for (const s of samples.get('meshfed_refused_total') ?? [])
    refusals.push({ what: `refused on ${s.labels.listener}`, reason: s.labels.reason ?? '', count: s.value });
  for (const s of samples.get('meshfed_catalog_rejected_total') ?? [])
    refusals.push({ what: 'catalog message rejected', reason: s.labels.reason ?? '', count: s.value });
  for (const s of samples.get('meshfed_egress_client_certs_total') ?? []) {
    if (s.labels.result === 'verified' || s.labels.result === 'anonymous') continue;
    refusals.push({ what: 'workload certificate refused', reason: s.labels.result ?? '', count: s.value });
  }
  refusals.sort((a, b) => b.count - a.count);

  return {
    state: {
      atMs: snap.atMs,
      windowSeconds: LIVE_WINDOW_MS / 1000,
      self,
      clusters,
      links,
      services: [...services.values()].sort((a, b) => a.service.localeCompare(b.service)),
      refusals,
      policy: src.policy?.() ?? null,
    },
    samples,
    rows: outbound,
  };
}
