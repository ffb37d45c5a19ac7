import http from 'node:http';
import { waitFor } from '../../core/index.ts';
import type { LinkReport } from '../../core/index.ts';
import { isLoopback } from '../../gateway/dashboard/serve.ts';
import { outboundLinks } from '../../gateway/index.ts';
import { createMesh, helloAcross, type Mesh, request, type TestGateway } from './harness.ts';

// The dashboard's server side on a real gateway: the page and its headers, the state it is drawn from,
// and the event stream that turns counter changes into events.

const HOST = 'hello.shop.svc.clusterset.local';
let mesh: Mesh;
let hop: Awaited<ReturnType<typeof helloAcross>>;
let east: TestGateway;
const closers: (() => unknown)[] = [];

beforeAll(async () => {
  mesh = await createMesh();
  hop = await helloAcross(mesh);
  east = hop.east;
  closers.push(() => hop.close());
  for (let i = 0; i < 5; i++) expect((await request(east.egress, { host: HOST })).status).toBe(200);
}, 30_000);

afterAll(async () => {
  for (const c of closers) await c();
});

test('the page and its files are served with a strict content security policy; only GET', async () => {
  const page = await request(east.admin, { host: east.admin, path: '/ui' });
  expect(page.status).toBe(200);
  expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
  expect(page.headers['content-security-policy']).toContain("script-src 'self'");
  expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
  expect(page.body).toContain('<script type="module" src="/ui/app.js">');
  const js = await request(east.admin, { host: east.admin, path: '/ui/app.js' });
  expect([js.status, js.headers['content-type']]).toEqual([200, 'text/javascript; charset=utf-8']);
  const post = await request(east.admin, { host: east.admin, path: '/ui/state', method: 'POST' });
  expect(post.status).toBe(405);
  // the admin listener's DNS-rebinding guard covers the dashboard too
  const rebound = await request(east.admin, { host: 'evil.example', path: '/ui/state' });
  expect(rebound.status).toBe(421);
  expect((await request(east.admin, { host: east.admin, path: '/ui/nothing' })).status).toBe(404);
});

test('/ui/state: clusters, the measured link, every offer of the service', async () => {
  const r = await request(east.admin, { host: east.admin, path: '/ui/state' });
  const s = JSON.parse(r.body);
  expect(s.self).toEqual({
    cluster: 'east',
    gateway: 'east-gw',
    locality: { region: 'east-region', zone: 'east-zone' },
  });
  expect(s.clusters.map((c: { name: string }) => c.name)).toEqual(['east', 'west']);
  expect(s.links).toContainEqual(
    expect.objectContaining({ from: 'east', to: 'west', requests: 5, successRate: 1 }),
  );
  const hello = s.services.find((x: { service: string }) => x.service === 'hello.shop');
  expect(hello.offers).toEqual([
    expect.objectContaining({
      cluster: 'west',
      local: false,
      health: 'healthy',
      traffic: expect.objectContaining({ requests: 5, share: 1 }),
    }),
  ]);
  expect(s.policy).toBeNull();
});

test('the event stream sends the state each tick and turns a new refusal into an event', async () => {
  const [host, port] = east.admin.split(':') as [string, string];
  const chunks: string[] = [];
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get({ host, port: Number(port), path: '/ui/events', agent: false }, resolve);
    req.on('error', reject);
  });
  closers.unshift(() => res.destroy());
  expect(res.headers['content-type']).toBe('text/event-stream');
  res.on('data', (d: Buffer) => chunks.push(d.toString()));
  const states = () =>
    chunks
      .join('')
      .split('\n\n')
      .filter((e) => e.startsWith('event: state\ndata: '))
      .map((e) => JSON.parse(e.slice('event: state\ndata: '.length)));
  await waitFor(() => states().length >= 1, { timeoutMs: 5_000, what: 'the first state' });
  // a call to a service nobody offers is refused by east: the next tick says so
  expect((await request(east.egress, { host: 'nope.shop.svc.clusterset.local' })).status).toBe(503);
  const withEvent = await waitFor(
    () => states().find((s) => s.events.some((e: { kind: string }) => e.kind === 'refusal')),
    { timeoutMs: 5_000, what: 'a refusal event' },
  );
  expect(withEvent.events[0]).toMatchObject({
    kind: 'refusal',
    text: '1 × unknown-service refused on the egress listener',
  });
  expect(withEvent.refusals).toContainEqual({
    what: 'refused on egress',
    reason: 'unknown-service',
    count: 1,
  });
});

test('what this gateway reports: its outbound calls per destination cluster, from the golden window', () => {
  const links = outboundLinks(east.gateway.traffic(60_000));
  expect(links).toEqual([{ to: 'west', requests: 5, failures: 0, p99Ms: expect.any(Number) }]);
  expect(links[0]!.p99Ms).toBeGreaterThan(0);
});

test('/ui/state: links between other clusters, as their gateways report them, beside the links measured here', async () => {
  const now = Date.now();
  const reports: LinkReport[] = [
    // two gateways of west call eu; one of them also calls north (this gateway's cluster)
    {
      cluster: 'west',
      gateway: 'west-gw-1',
      windowMs: 3_000,
      issuedAt: now - 500,
      links: [
        { to: 'eu', requests: 30, failures: 3, p99Ms: 20 },
        { to: 'north', requests: 6, failures: 0, p99Ms: 2 },
      ],
    },
    {
      cluster: 'west',
      gateway: 'west-gw-2',
      windowMs: 5_000,
      issuedAt: now - 1_500,
      links: [{ to: 'eu', requests: 10, failures: 0, p99Ms: 40 }],
    },
    // north's own cluster reports nothing the dashboard takes: north measures its own links
    {
      cluster: 'north',
      gateway: 'north-gw-2',
      windowMs: 3_000,
      issuedAt: now,
      links: [{ to: 'eu', requests: 1, failures: 1, p99Ms: 1 }],
    },
  ];
  const north = await mesh.gateway('north', { linkReports: { linkReports: () => reports } });
  closers.push(() => north.close());
  north.catalog.offer('west', hop.hello, hop.west.eastWest);
  const s = JSON.parse((await request(north.admin, { host: north.admin, path: '/ui/state' })).body);
  const link = (from: string, to: string) =>
    s.links.find((l: { from: string; to: string }) => l.from === from && l.to === to);
  expect(link('west', 'eu')).toEqual({
    from: 'west',
    to: 'eu',
    requests: 40,
    // 30 calls over 3 s and 10 over 5 s
    rps: 12,
    successRate: 37 / 40,
    // a p99 cannot be added up: the highest of the gateways' stands for the link
    p99Ms: 40,
    reportedBy: { gateways: 2, ageMs: expect.any(Number) },
  });
  expect(link('west', 'eu').reportedBy.ageMs).toBeGreaterThanOrEqual(1_500);
  // west's calls to north went through another gateway of north: the report is all north knows of them
  expect(link('west', 'north')).toMatchObject({ requests: 6, reportedBy: { gateways: 1 } });
  expect(link('north', 'eu')).toBeUndefined();
  // the link this gateway carries is its own measurement (idle here), never a report
  expect(link('north', 'west')).toEqual({
    from: 'north',
    to: 'west',
    requests: 0,
    rps: 0,
    successRate: 1,
    p99Ms: 0,
  });
});

test('only loopback addresses count as loopback', () => {
  expect(['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1'].map(isLoopback)).toEqual([
    true,
    true,
    true,
    true,
  ]);
  expect(['10.0.0.1', '0.0.0.0', '::', '::ffff:10.0.0.1', '', undefined].map(isLoopback)).toEqual([
    false,
    false,
    false,
    false,
    false,
    false,
  ]);
});
