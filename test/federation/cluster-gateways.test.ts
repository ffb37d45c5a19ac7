import { createServer } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import { createRegistry, type Registry, waitFor } from '../../core/index.ts';
import {
  type AnnounceMessage,
  type EntryMessage,
  type FederationConfigInput,
  type FederationNode,
  SCHEMA_VERSION,
  type WithdrawMessage,
} from '../../federation/index.ts';
import {
  announceMessage,
  counterValue,
  entryMessage,
  ListSource,
  makePki,
  type Pki,
  service,
  signerOf,
  startNode,
  tempDir,
} from './helpers.ts';

// Issue #15 (chaos suite): the view kept, per cluster and service, the gateway list of the gateway that
// published last, so east sent west's share to one of west's two gateways at a time, switching at every
// republish. Each gateway now announces itself; a view lists every live gateway of the cluster.

let nats: NatsServerProcess;
let pki: Pki;
let spy: NatsConnection;
const started: FederationNode[] = [];

const GW_A = { name: 'gw-a', address: '127.0.0.1:15443' };
const GW_B = { name: 'gw-b', address: '127.0.0.2:15443' };
/** west's gateways republish their whole set every 400 ms: a round is quick to wait for */
const WEST: Partial<FederationConfigInput> = { republishInterval: '400ms' };

beforeAll(async () => {
  [nats, pki] = await Promise.all([
    startNatsServer({ name: 'cluster-gws' }),
    makePki(['east', 'west', 'north']),
  ]);
  spy = await connect({ servers: nats.url });
}, 30_000);

// every test starts its own gateways and views on the one NATS server
afterEach(async () => {
  await Promise.all(started.splice(0).map((n) => n.stop()));
});

afterAll(async () => {
  await spy?.close();
  await nats?.stop();
});

async function node(o: Parameters<typeof startNode>[0]): Promise<FederationNode> {
  const n = await startNode(o);
  started.push(n);
  return n;
}

/** one gateway of west: a node of its own, publishing `services` (default shop/orders with 2 endpoints) */
function westGateway(
  gateway: { name: string; address: string },
  services = [service('shop', 'orders', 2)],
): Promise<FederationNode> {
  return node({
    pki,
    cluster: 'west',
    servers: [nats.url],
    source: new ListSource(services),
    gateway,
    config: WEST,
  });
}

/** The two gateways of west, publishing the same services. */
async function westPair(): Promise<{ a: FederationNode; b: FederationNode }> {
  const services = [service('shop', 'orders', 2), service('shop', 'carts', 1)];
  return { a: await westGateway(GW_A, services), b: await westGateway(GW_B, services) };
}

/** east's view, letting a silent gateway (or cluster) go stale only after 120 s: longer than any test here */
function patientView(
  registry: Registry,
  config: Partial<FederationConfigInput> = {},
): Promise<FederationNode> {
  return node({
    pki,
    cluster: 'east',
    servers: [nats.url],
    registry,
    config: { staleAfter: '120s', ...config },
  });
}

/** the gateway names a view lists for west's `name` */
function listed(view: FederationNode, name = 'orders'): string[] {
  const inst = view.instances('shop', name).find((i) => i.cluster === 'west');
  return inst ? inst.gateways.map((g) => g.name) : [];
}

async function accepted(registry: Registry, type: string): Promise<number> {
  const m = await registry.getSingleMetric('meshfed_catalog_accepted_total')?.get();
  return m?.values.find((v) => v.labels.type === type)?.value ?? 0;
}

async function stopped(n: FederationNode): Promise<void> {
  await n.stop();
  started.splice(started.indexOf(n), 1);
}

/** what an old-version gateway publishes (the same v1 messages, listing itself), or a forger, signed as `by` */
async function publishSigned(subject: string, by: string, msg: object): Promise<void> {
  spy.publish(subject, signerOf(pki, by).sign(msg));
  await spy.flush();
}

test('regression: a view lists both gateways of a cluster, steadily across republish rounds', async () => {
  await westPair();
  const registry = createRegistry();
  // staleness is not what this is about: a loaded host must not make a heartbeat look missed
  const view = await patientView(registry);
  await waitFor(() => listed(view).join() === 'gw-a,gw-b' && listed(view, 'carts').join() === 'gw-a,gw-b', {
    timeoutMs: 15_000,
    what: 'east to list both of west’s gateways',
  });
  // an answer to the view's first "announce yourselves" may overtake a heartbeat sent before it: count from here
  const refusedBefore = await counterValue(registry, 'stale_revision');
  const lists = new Set<string>();
  const off = view.onChange((changes) => {
    for (const c of changes)
      if (c.type === 'upsert') lists.add(c.instance.gateways.map((g) => g.name).join());
  });
  // six pushed snapshots: three republish rounds of each gateway, polled as they come
  const from = await accepted(registry, 'snapshot');
  await waitFor(
    async () => {
      lists.add(listed(view).join());
      return (await accepted(registry, 'snapshot')) >= from + 6;
    },
    { timeoutMs: 20_000, what: 'three republish rounds of both gateways' },
  );
  off();
  expect([...lists]).toEqual(['gw-a,gw-b']);
  expect(
    view
      .clusters()
      .find((c) => c.cluster === 'west')
      ?.gateways.map((g) => g.name),
  ).toEqual(['gw-a', 'gw-b']);
  // each gateway's announcements and entries are ordered on their own: the other's are not "older"
  expect(await counterValue(registry, 'stale_revision')).toBe(refusedBefore);
}, 60_000);

test('a draining gateway is withdrawn by name; the other stays', async () => {
  const { a } = await westPair();
  const registry = createRegistry();
  // only the withdrawal can remove gw-a within this test
  const view = await patientView(registry);
  await waitFor(() => listed(view).join() === 'gw-a,gw-b', { timeoutMs: 15_000, what: 'both listed' });
  await a.withdrawGateway();
  await waitFor(() => listed(view).join() === 'gw-b' && listed(view, 'carts').join() === 'gw-b', {
    timeoutMs: 10_000,
    what: 'gw-a to be withdrawn',
  });
  expect(await accepted(registry, 'withdraw')).toBe(1);
  expect(view.instances('shop', 'orders')[0]).toMatchObject({ cluster: 'west', weight: 2, stale: false });
  // gw-b republishes and gw-a stays out: a withdrawn gateway publishes nothing more of its cluster
  const from = await accepted(registry, 'snapshot');
  await waitFor(
    async () => {
      expect(listed(view)).toEqual(['gw-b']);
      return (await accepted(registry, 'snapshot')) >= from + 2;
    },
    { timeoutMs: 10_000, what: 'two more rounds of gw-b' },
  );
}, 60_000);

test('a gateway that vanishes silently expires after its TTL; the other stays', async () => {
  await westGateway(GW_B);
  // staleness cannot hide gw-a in this test: only its expiry can remove it
  const view = await patientView(createRegistry(), { maxClockSkew: '1s' });
  await waitFor(() => listed(view).join() === 'gw-b', { timeoutMs: 15_000, what: 'gw-b listed' });
  // gw-a says it offers orders, valid for 3 s, announces once, then never speaks again (SIGKILL)
  const now = Date.now();
  const ttl = { issuedAt: now, expiresAt: now + 3_000, revision: now * 1000 };
  await publishSigned(
    'meshfed.catalog.west',
    'west',
    entryMessage({ cluster: 'west', gateways: [GW_A], ...ttl }),
  );
  await publishSigned(
    'meshfed.announce.west',
    'west',
    announceMessage({ cluster: 'west', gateways: [GW_A], ...ttl }),
  );
  await waitFor(() => listed(view).join() === 'gw-a,gw-b', { timeoutMs: 10_000, what: 'gw-a listed' });
  await waitFor(() => listed(view).join() === 'gw-b', { timeoutMs: 15_000, what: 'gw-a to expire' });
  expect(Date.now()).toBeGreaterThan(now + 3_000);
  expect(view.instances('shop', 'orders')).toHaveLength(1);
}, 60_000);

test('a gateway of one cluster can neither withdraw nor add another cluster’s gateways (refused, counted)', async () => {
  await westPair();
  const registry = createRegistry();
  const view = await node({ pki, cluster: 'east', servers: [nats.url], registry });
  await waitFor(() => listed(view).join() === 'gw-a,gw-b', { timeoutMs: 15_000, what: 'both listed' });
  const before = await counterValue(registry, 'wrong_cluster');
  const now = Date.now();
  const withdraw = (cluster: string): WithdrawMessage => ({
    v: SCHEMA_VERSION,
    type: 'withdraw',
    cluster,
    gateway: 'gw-b',
    revision: now * 1000 + 1,
    issuedAt: now,
    expiresAt: now + 60_000,
  });
  const forged: [string, object][] = [
    // north's identity signing a withdrawal of west's gw-b, on west's subject and on its own
    ['meshfed.withdraw.west', withdraw('west')],
    ['meshfed.withdraw.north', withdraw('west')],
    // north's own withdrawal published on west's subject
    ['meshfed.withdraw.west', withdraw('north')],
    // north adding a gateway to west's offer, or announcing one for west
    [
      'meshfed.catalog.west',
      entryMessage({ cluster: 'west', gateways: [{ name: 'gw-evil', address: '127.0.0.9:1' }] }),
    ],
    [
      'meshfed.announce.west',
      announceMessage({ cluster: 'west', gateways: [{ name: 'gw-evil', address: '127.0.0.9:1' }] }),
    ],
  ];
  for (const [subject, msg] of forged) await publishSigned(subject, 'north', msg);
  await waitFor(async () => (await counterValue(registry, 'wrong_cluster')) >= before + forged.length, {
    timeoutMs: 10_000,
    what: 'every forgery refused',
  });
  // north may name its own gateways as it likes: that changes north's offers only
  await publishSigned(
    'meshfed.catalog.north',
    'north',
    entryMessage({ cluster: 'north', gateways: [{ name: 'gw-b', address: '127.0.0.9:1' }] }),
  );
  await waitFor(() => view.instances('shop', 'orders').some((i) => i.cluster === 'north'), {
    what: 'north’s own entry',
  });
  const west = view.instances('shop', 'orders').find((i) => i.cluster === 'west')!;
  expect(west.gateways).toEqual([
    { name: 'gw-a', address: GW_A.address },
    { name: 'gw-b', address: GW_B.address },
  ]);
  expect(await accepted(registry, 'withdraw')).toBe(0);
}, 60_000);

test('a view restarted from its persisted catalog lists both gateways (no NATS)', async () => {
  await westPair();
  const state = tempDir();
  try {
    const view = await node({ pki, cluster: 'east', servers: [nats.url], stateDir: state.dir });
    await waitFor(() => listed(view).join() === 'gw-a,gw-b' && listed(view, 'carts').join() === 'gw-a,gw-b', {
      timeoutMs: 15_000,
      what: 'both listed',
    });
    await stopped(view);
    // a port nobody listens on: what the restarted view holds can only come from its file
    const closed = await freePort();
    const again = await node({
      pki,
      cluster: 'east',
      servers: [`nats://127.0.0.1:${closed}`],
      stateDir: state.dir,
    });
    await waitFor(
      () => listed(again).join() === 'gw-a,gw-b' && listed(again, 'carts').join() === 'gw-a,gw-b',
      {
        timeoutMs: 10_000,
        what: 'both listed from the file',
      },
    );
    expect(again.natsStatus().connected).toBe(false);
    await stopped(again);
  } finally {
    state.cleanup();
  }
}, 60_000);

test('mixed versions: an old gateway’s messages merge with a new one’s; old receivers never see a withdrawal', async () => {
  // what a gateway of the previous version subscribes to: entries, snapshots and announcements
  const oldTypes = new Map<string, Set<string>>();
  const sub = spy.subscribe('meshfed.*.west', {
    callback: (_err, m) => {
      const kind = m.subject.split('.')[1]!;
      if (!['catalog', 'bulk', 'announce'].includes(kind)) return;
      const payload = JSON.parse(Buffer.from(m.string().split('.')[1]!, 'base64url').toString()) as {
        type: string;
        entries?: EntryMessage[];
      };
      for (const p of [payload, ...(payload.entries ?? [])]) {
        const keys = oldTypes.get(p.type) ?? new Set();
        for (const k of Object.keys(p)) keys.add(k);
        oldTypes.set(p.type, keys);
      }
    },
  });
  await spy.flush();
  const b = await westGateway(GW_B);
  const registry = createRegistry();
  // the hand-made gw-a announces once: it stays listed
  const view = await patientView(registry);
  await waitFor(() => listed(view).join() === 'gw-b', { timeoutMs: 15_000, what: 'gw-b listed' });
  const refusedBefore = await counterValue(registry, 'stale_revision');
  // an old gw-a: its entry and heartbeat list itself, as every version did; it never withdraws by name
  const oldEntry: EntryMessage = entryMessage({ cluster: 'west', gateways: [GW_A], weight: 2 });
  const oldAnnounce: AnnounceMessage = announceMessage({ cluster: 'west', gateways: [GW_A] });
  await publishSigned('meshfed.catalog.west', 'west', oldEntry);
  await publishSigned('meshfed.announce.west', 'west', oldAnnounce);
  await waitFor(() => listed(view).join() === 'gw-a,gw-b', { timeoutMs: 10_000, what: 'old gw-a merged' });
  // the new gateway drains: its withdrawal goes where old receivers do not listen
  await b.withdrawGateway();
  await waitFor(() => listed(view).join() === 'gw-a', { timeoutMs: 10_000, what: 'gw-b withdrawn' });
  sub.unsubscribe();
  expect([...oldTypes.keys()].sort()).toEqual(['announce', 'entry', 'snapshot']);
  // exactly the fields of the version-1 schema that every earlier version accepts
  expect([...oldTypes.get('entry')!].sort()).toEqual(Object.keys(oldEntry).sort());
  expect([...oldTypes.get('announce')!].sort()).toEqual(Object.keys(oldAnnounce).sort());
  // gw-b's messages still in flight when it withdrew are not counted as replays
  expect(await counterValue(registry, 'stale_revision')).toBe(refusedBefore);
}, 60_000);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
