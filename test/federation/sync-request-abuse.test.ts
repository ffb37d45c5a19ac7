import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createRegistry, type Registry, waitFor } from '../../core/index.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import type { FederationNode } from '../../federation/index.ts';
import {
  ListSource,
  makePki,
  type Pki,
  refusedValue,
  service,
  signedSyncRequest,
  startNode,
} from './helpers.ts';

/**
 * Issue 11 finding 6: a snapshot request named any reply subject and east published its signed snapshot there;
 * and requests from invented inbox prefixes drained east's total budget, so the real anti-entropy requests of
 * other clusters were refused.
 */
let nats: NatsServerProcess;
let pki: Pki;
let east: FederationNode;
let registry: Registry;
const conns: NatsConnection[] = [];
const nodes: FederationNode[] = [];

const refused = (reason: string) => refusedValue(registry, reason);

async function client(): Promise<NatsConnection> {
  const nc = await connect({ servers: nats.url });
  conns.push(nc);
  return nc;
}

beforeAll(async () => {
  [nats, pki] = await Promise.all([
    startNatsServer({ name: 'sync-abuse' }),
    makePki(['east', 'evil', 'west']),
  ]);
  registry = createRegistry();
  east = await startNode({
    pki,
    cluster: 'east',
    servers: [nats.url],
    source: new ListSource([service('shop', 'orders', 2)]),
    registry,
    // a long TTL: east pushes its set only at connect, so a view that starts later learns it only by asking
    config: {
      entryTtl: '10m',
      responderLimits: { perRequester: 0.5, perRequesterBurst: 3, total: 0.01, totalBurst: 20 },
    },
  });
  await waitFor(() => east.natsStatus().connected, { what: 'east to connect' });
});

afterAll(async () => {
  await Promise.all(conns.map((c) => c.close()));
  await Promise.all(nodes.map((n) => n.stop()));
  await east.stop();
  await nats.stop();
  nats.cleanup();
});

test('a request whose reply is not an inbox gets no answer there', async () => {
  const nc = await client();
  const got: string[] = [];
  nc.subscribe('victim.subject', { callback: (_e, m) => void got.push(m.subject) });
  await nc.flush();
  // the old unsigned form and a signed one, both aimed at a subject of the attacker's choosing
  nc.publish('meshfed.sync.east', JSON.stringify({ req: 'a1' }), { reply: 'victim.subject' });
  nc.publish('meshfed.sync.east', signedSyncRequest(pki, 'evil', 'a2', 'victim.subject'), {
    reply: 'victim.subject',
  });
  await nc.flush();
  await waitFor(async () => (await refused('not_inbox')) >= 2 || got.length > 0, {
    what: 'the requests to be refused or answered',
  });
  expect(got).toEqual([]);
});

test('a request signed for one inbox and sent with another, or replayed, is refused', async () => {
  const nc = await client();
  const inbox = `_INBOX.evil${Date.now()}`;
  const answered: string[] = [];
  nc.subscribe(`${inbox}.*`, { callback: (_e, m) => void answered.push(m.subject) });
  await nc.flush();
  const signed = signedSyncRequest(pki, 'evil', 'b1', `${inbox}.b1`);
  nc.publish('meshfed.sync.east', signed, { reply: `${inbox}.other` });
  nc.publish('meshfed.sync.east', signed, { reply: `${inbox}.b1` });
  nc.publish('meshfed.sync.east', signed, { reply: `${inbox}.b1` });
  await nc.flush();
  await waitFor(async () => (await refused('reply_mismatch')) === 1 && (await refused('replayed')) === 1, {
    what: 'the mismatch and the replay to be refused',
  });
  await waitFor(() => answered.length > 0, { what: 'the genuine request to be answered' });
  expect(new Set(answered)).toEqual(new Set([`${inbox}.b1`]));
});

test('requests from invented inboxes do not starve another cluster’s anti-entropy', async () => {
  const nc = await client();
  // 40 unsigned requests, each from a new inbox (the old attack), and 40 signed by evil, each from a new inbox
  for (let i = 0; i < 40; i++) {
    nc.publish('meshfed.sync.east', JSON.stringify({ req: `u${i}` }), { reply: `_INBOX.fake${i}.u${i}` });
    const reply = `_INBOX.evil${i}.s${i}`;
    nc.publish('meshfed.sync.east', signedSyncRequest(pki, 'evil', `s${i}`, reply), { reply });
  }
  await nc.flush();
  const handled = async () =>
    (await refused('unverified')) + (await refused('total_rate')) + (await refused('requester_rate'));
  // 20: what the old code refused of it (its total burst answered the rest); the fixed code refuses all 80
  await waitFor(async () => (await handled()) >= 20, { what: 'the flood to be handled' });
  // a real view of cluster west, started after east's push: it learns east's set only through its requests
  const west = await startNode({ pki, cluster: 'west', servers: [nats.url] });
  nodes.push(west);
  await waitFor(() => west.instances('shop', 'orders').length === 1, {
    what: 'west’s anti-entropy to be answered',
  });
  expect(await refused('requester_rate')).toBeGreaterThanOrEqual(37);
});
