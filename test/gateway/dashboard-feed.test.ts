import type { CatalogView, ClusterState } from '../../core/index.ts';
import { DashboardFeed } from '../../gateway/dashboard/feed.ts';
import { TestSource } from './harness.ts';

// The dashboard's events, tick by tick, from the counters and catalog a gateway exposes: what is an
// event and what is not (table-driven; each step is one tick's /metrics and cluster states).

interface Step {
  /** calls sent per destination cluster of hello.demo, cumulative */
  calls?: Record<string, number>;
  /** calls of hello.demo per destination cluster in the live window (what a page that opens learns first) */
  window?: Record<string, number>;
  refused?: number;
  rejected?: number;
  ejections?: number;
  /** meshfed_upstream_healthy of east's hello target */
  healthy?: number;
  staleWest?: boolean;
  /** the events this tick adds, oldest first */
  events: string[];
}

const cases: { name: string; steps: Step[] }[] = [
  {
    name: 'the first tick is a baseline: counts from before the page opened are not events',
    steps: [{ calls: { east: 100 }, refused: 7, rejected: 2, ejections: 1, events: [] }],
  },
  {
    name: 'east fails: an ejection, then the calls move from east to west and eu',
    steps: [
      { calls: { east: 100 }, window: { east: 40 }, healthy: 1, events: [] },
      { calls: { east: 150 }, healthy: 1, events: [] },
      {
        calls: { east: 151, west: 20, eu: 25 },
        ejections: 1,
        healthy: 0,
        events: [
          'ejection hello.demo: a target in east was ejected by outlier detection',
          'failover hello.demo: calls moved from east to eu, west',
        ],
      },
      // calls keep spreading over west and eu: no cluster holds them, so nothing more happens
      { calls: { east: 151, west: 45, eu: 40 }, healthy: 0, events: [] },
      { calls: { east: 151, west: 70, eu: 70 }, healthy: 0, events: [] },
      // east is back: the recovery, but no failover (no single cluster held the calls before)
      {
        calls: { east: 200, west: 46, eu: 70 },
        healthy: 1,
        events: ['recovery hello.demo: the target in east is back in rotation'],
      },
    ],
  },
  {
    name: 'a few calls taking turns between two clusters are not a failover',
    steps: [
      { calls: { west: 0, eu: 0 }, events: [] },
      { calls: { west: 6, eu: 0 }, events: [] },
      { calls: { west: 6, eu: 6 }, events: [] },
      { calls: { west: 12, eu: 6 }, events: [] },
      { calls: { west: 12, eu: 12 }, events: [] },
    ],
  },
  {
    name: 'a tick split by the failure keeps the home, and the next tick shows the calls gone',
    steps: [
      { calls: { east: 100 }, window: { east: 40 }, events: [] },
      { calls: { east: 110, west: 20, eu: 20 }, events: [] },
      {
        calls: { east: 110, west: 45, eu: 40 },
        events: ['failover hello.demo: calls moved from east to eu, west'],
      },
      { calls: { east: 110, west: 70, eu: 60 }, events: [] },
    ],
  },
  {
    name: 'without a window to learn from, a home takes several ticks of calls',
    steps: [
      { calls: { east: 0 }, events: [] },
      { calls: { east: 50 }, events: [] },
      { calls: { east: 51, west: 30 }, events: [] },
    ],
  },
  {
    name: 'a pause in the calls is not a failover',
    steps: [
      { calls: { east: 100 }, events: [] },
      { calls: { east: 140 }, events: [] },
      { calls: { east: 140 }, events: [] },
      { calls: { east: 190 }, events: [] },
    ],
  },
  {
    name: 'refusals, forged catalog messages and stale clusters are events as they happen',
    steps: [
      { refused: 1, rejected: 0, events: [] },
      {
        refused: 4,
        rejected: 2,
        staleWest: true,
        events: [
          'refusal 3 × unauthorized refused on the eastWest listener',
          'refusal 2 catalog message(s) rejected: bad_signature',
          'stale cluster west is stale: its heartbeats stopped, it gets no new calls',
        ],
      },
      { refused: 4, rejected: 2, staleWest: false, events: ['live cluster west is live again'] },
    ],
  },
];

function exposition(s: Step): string {
  const lines: string[] = [];
  for (const [cluster, n] of Object.entries(s.calls ?? {})) {
    lines.push(
      `meshfed_requests_total{direction="outbound",protocol="http",source_cluster="east",source_workload="unknown",destination_cluster="${cluster}",destination_service="hello.demo"} ${n}`,
    );
  }
  if (s.refused !== undefined)
    lines.push(`meshfed_refused_total{listener="eastWest",reason="unauthorized"} ${s.refused}`);
  if (s.rejected !== undefined)
    lines.push(`meshfed_catalog_rejected_total{reason="bad_signature"} ${s.rejected}`);
  if (s.ejections !== undefined) {
    lines.push(
      `meshfed_outlier_ejections_total{source_cluster="east",destination_cluster="east",service="hello.demo"} ${s.ejections}`,
    );
  }
  if (s.healthy !== undefined) {
    lines.push(
      `meshfed_upstream_healthy{source_cluster="east",destination_cluster="east",service="hello.demo",target="local|east|127.0.0.1:1"} ${s.healthy}`,
    );
  }
  return `# HELP x y\n${lines.join('\n')}\n`;
}

test.each(cases)('$name', async ({ steps }) => {
  let step = steps[0]!;
  const clusters = (): ClusterState[] => [
    { cluster: 'west', gateways: [], stale: step.staleWest === true, services: 1 },
  ];
  const catalog: CatalogView = {
    services: () => [],
    instances: () => [],
    clusters,
    onChange: () => () => undefined,
  };
  const feed = new DashboardFeed({
    self: { cluster: 'east', gateway: 'east-gw', locality: { region: 'r', zone: 'z' } },
    catalog,
    local: new TestSource(),
    traffic: async (windowMs) => ({
      windowMs,
      atMs: Date.now(),
      buckets: [],
      rows: Object.entries(step.window ?? {}).map(([cluster, requests]) => ({
        direction: 'outbound' as const,
        protocol: 'http',
        source_cluster: 'east',
        source_workload: 'unknown',
        destination_cluster: cluster,
        destination_service: 'hello.demo',
        requests,
        failures: 0,
        bytesIn: 0,
        bytesOut: 0,
        latency: [],
      })),
    }),
    metrics: async () => ({ text: exposition(step) }),
  });
  let seen = 0;
  for (const s of steps) {
    step = s;
    await feed.tick();
    const events = (await feed.snapshot()).events;
    const added = events
      .slice(0, events.length - seen)
      .reverse()
      .map((e) => `${e.kind} ${e.text}`);
    seen = events.length;
    expect(added).toEqual(s.events);
  }
});
