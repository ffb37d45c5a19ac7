import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import { createRegistry, type LinkFigures, MAX_REPORTED_LINKS, waitFor } from '../../core/index.ts';
import {
  type FederationNode,
  LinkReports,
  type LinksMessage,
  SCHEMA_VERSION,
  toReported,
} from '../../federation/index.ts';
import { counterValue, makePki, type Pki, signerOf, startNode } from './helpers.ts';

// Link reports: every gateway publishes its outbound golden figures per destination cluster on
// links.<cluster>, signed like the catalog; every other gateway holds the latest one of each gateway, so a
// dashboard can draw the links between clusters other than its own.

let nats: NatsServerProcess;
let pki: Pki;
let raw: NatsConnection;
const nodes: FederationNode[] = [];

beforeAll(async () => {
  [nats, pki] = await Promise.all([startNatsServer({ name: 'links' }), makePki(['east', 'west', 'eu'])]);
  raw = await connect({ servers: nats.url });
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await raw?.close();
  await nats?.stop();
});

function linksMessage(o: Partial<LinksMessage> = {}): LinksMessage {
  const now = Date.now();
  return {
    v: SCHEMA_VERSION,
    type: 'links',
    cluster: 'east',
    gateway: 'gw-1',
    issuedAt: now,
    expiresAt: now + 10_000,
    windowMs: 3_000,
    links: [{ to: 'west', requests: 1, failures: 0, p99Ms: 1 }],
    ...o,
  };
}

test('a gateway reports its links; the other clusters hold them, verified, and drop them when it stops', async () => {
  let figures: LinkFigures[] = [
    { to: 'west', requests: 30, failures: 3, p99Ms: 12.345 },
    // calls within its own cluster and links without calls are no link
    { to: 'east', requests: 99, failures: 0, p99Ms: 1 },
    { to: 'eu', requests: 0, failures: 0, p99Ms: 0 },
  ];
  const windows: number[] = [];
  const east = await startNode({
    pki,
    cluster: 'east',
    servers: [nats.url],
    links: async (windowMs) => {
      windows.push(windowMs);
      return figures;
    },
  });
  nodes.push(east);
  // a report is dropped once its expiry is maxClockSkew past (the reporter's clock may run behind ours)
  const viewer = { servers: [nats.url], config: { maxClockSkew: '1s' } };
  const west = await startNode({ pki, cluster: 'west', ...viewer });
  const eu = await startNode({ pki, cluster: 'eu', ...viewer });
  nodes.push(west, eu);
  for (const view of [west, eu]) {
    const [report] = await waitFor(() => (view.linkReports().length > 0 ? view.linkReports() : undefined), {
      timeoutMs: 10_000,
      what: "east's link report to arrive",
    });
    expect(report).toMatchObject({
      cluster: 'east',
      gateway: 'gw-1',
      // a heartbeat of 200 ms reports over the dashboard's live window at least
      windowMs: 3_000,
      links: [{ to: 'west', requests: 30, failures: 3, p99Ms: 12.35 }],
    });
  }
  expect(new Set(windows)).toEqual(new Set([3_000]));
  // east holds no report of its own
  expect(east.linkReports()).toEqual([]);

  // an idle gateway says so once (the receivers drop its figures at once), then stays quiet
  figures = [];
  const sub = raw.subscribe('meshfed.links.east');
  let received = 0;
  void (async () => {
    for await (const _ of sub) received++;
  })();
  await waitFor(() => west.linkReports()[0]?.links.length === 0, {
    timeoutMs: 10_000,
    what: "east's idle report",
  });
  const asked = windows.length;
  await waitFor(() => windows.length >= asked + 5, { timeoutMs: 10_000, what: 'five more heartbeats' });
  expect(received).toBeLessThanOrEqual(1);
  sub.unsubscribe();

  // a gateway that stops reporting stops showing links (its report expires after three heartbeats)
  figures = [{ to: 'eu', requests: 5, failures: 0, p99Ms: 2 }];
  await waitFor(() => west.linkReports()[0]?.links[0]?.to === 'eu', {
    timeoutMs: 10_000,
    what: 'a busy report',
  });
  await east.stop();
  await waitFor(() => west.linkReports().length === 0 && eu.linkReports().length === 0, {
    timeoutMs: 10_000,
    what: "east's report to expire",
  });
}, 60_000);

test('a forged or oversized link report is refused, counted, and changes nothing', async () => {
  const registry = createRegistry();
  const west = await startNode({ pki, cluster: 'west', servers: [nats.url], registry });
  nodes.push(west);
  // a good report, until west holds it: west's subscription is in place
  await waitFor(
    () => {
      raw.publish('meshfed.links.eu', signerOf(pki, 'eu').sign(linksMessage({ cluster: 'eu' })));
      return west.linkReports().length === 1;
    },
    { timeoutMs: 10_000, intervalMs: 100, what: "west to hold eu's report" },
  );
  const before = {
    wrongCluster: await counterValue(registry, 'wrong_cluster'),
    badPayload: await counterValue(registry, 'bad_payload'),
  };
  // west's own key cannot speak for east, east cannot speak on eu's subject, and 65 links is past the bound
  raw.publish('meshfed.links.east', signerOf(pki, 'west').sign(linksMessage({ cluster: 'west' })));
  raw.publish('meshfed.links.eu', signerOf(pki, 'east').sign(linksMessage()));
  const many = Array.from({ length: MAX_REPORTED_LINKS + 1 }, (_, i) => ({
    to: `c${i}`,
    requests: 1,
    failures: 0,
    p99Ms: 1,
  }));
  raw.publish('meshfed.links.east', signerOf(pki, 'east').sign(linksMessage({ links: many })));
  // a catalog entry on the links subject is not a report
  raw.publish(
    'meshfed.links.eu',
    signerOf(pki, 'eu').sign({ ...linksMessage({ cluster: 'eu' }), type: 'tombstone' }),
  );
  await waitFor(
    async () =>
      (await counterValue(registry, 'wrong_cluster')) === before.wrongCluster + 2 &&
      (await counterValue(registry, 'bad_payload')) === before.badPayload + 2,
    { timeoutMs: 10_000, what: 'the four refusals to be counted' },
  );
  // west still holds eu's good report, and nothing of the forged ones
  expect(west.linkReports().map((r) => r.cluster)).toEqual(['eu']);
}, 30_000);

describe('LinkReports: the latest report per gateway, bounded', () => {
  test("only a newer report replaces a gateway's, failures never exceed requests, and expired ones go", () => {
    const store = new LinkReports(0);
    const t = Date.now();
    expect(store.apply(linksMessage({ issuedAt: t, expiresAt: t + 1_000 }))).toBe(true);
    expect(store.apply(linksMessage({ issuedAt: t - 1, links: [] }))).toBe(false);
    expect(
      store.apply(
        linksMessage({
          issuedAt: t + 1,
          expiresAt: t + 1_000,
          links: [{ to: 'west', requests: 2, failures: 9, p99Ms: 1 }],
        }),
      ),
    ).toBe(true);
    expect(store.reports(t)).toEqual([
      {
        cluster: 'east',
        gateway: 'gw-1',
        windowMs: 3_000,
        issuedAt: t + 1,
        links: [{ to: 'west', requests: 2, failures: 2, p99Ms: 1 }],
      },
    ]);
    expect(store.reports(t + 2_000)).toEqual([]);
    store.expire(t + 2_000);
    expect(store.size).toBe(0);
  });

  test('one cluster inventing gateway names holds at most 64 of them, its oldest dropped first', () => {
    const store = new LinkReports(0);
    for (let i = 0; i < 100; i++) store.apply(linksMessage({ gateway: `gw-${i}` }));
    store.apply(linksMessage({ cluster: 'west', gateway: 'gw-w' }));
    const held = store.reports(Date.now());
    expect(held.filter((r) => r.cluster === 'east')).toHaveLength(64);
    expect(held.some((r) => r.gateway === 'gw-0')).toBe(false);
    expect(held.some((r) => r.gateway === 'gw-99')).toBe(true);
    expect(held.some((r) => r.cluster === 'west')).toBe(true);
  });

  test('a report keeps the busiest links, at most MAX_REPORTED_LINKS, without its own cluster', () => {
    const measured = Array.from({ length: 100 }, (_, i) => ({
      to: `c${i}`,
      requests: i,
      failures: 0,
      p99Ms: 1.23456,
    }));
    const links = toReported([...measured, { to: 'east', requests: 1_000, failures: 0, p99Ms: 1 }], 'east');
    expect(links).toHaveLength(MAX_REPORTED_LINKS);
    expect(links[0]).toEqual({ to: 'c99', requests: 99, failures: 0, p99Ms: 1.23 });
    expect(links.at(-1)!.to).toBe(`c${100 - MAX_REPORTED_LINKS}`);
  });
});
