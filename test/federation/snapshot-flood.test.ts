import { connect, type NatsConnection } from '@nats-io/transport-node';
import { silentLogger, waitFor } from '../../core/index.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import {
  CatalogPublisher,
  CatalogStore,
  type FederationNode,
  SCHEMA_VERSION,
  type SnapshotMessage,
} from '../../federation/index.ts';
import { SnapshotAssembly } from '../../federation/snapshot-assembly.ts';
import { makePki, type Pki, service, signerOf, startNode } from './helpers.ts';

/**
 * Issue 11 finding 5: snapshot collections were capped globally (4,096) and an incomplete one was held for
 * syncTimeout, so one member cluster publishing part-0-of-2 snapshots on its own bulk subject made every other
 * cluster's pushed snapshots (the TTL refreshes) be dropped until the timeout.
 */
const FLOOD = 4_200;
let nats: NatsServerProcess;
let pki: Pki;
let view: FederationNode;
let attacker: NatsConnection;

beforeAll(async () => {
  [nats, pki] = await Promise.all([
    startNatsServer({ name: 'snap-flood' }),
    makePki(['east', 'evil', 'view']),
  ]);
  // a long syncTimeout: whatever the flood holds stays held for the whole test. A long staleAfter too: the
  // client pings every staleAfter/4, and on a starved host (load 30) two unanswered pings behind the flood
  // made it reconnect, losing east's pushes in flight (a real gateway resyncs then; this test has no east)
  view = await startNode({
    pki,
    cluster: 'view',
    servers: [nats.url],
    config: { syncTimeout: '60s', staleAfter: '60s' },
  });
  await waitFor(() => view.natsStatus().connected, { what: 'the view to connect' });
  attacker = await connect({ servers: nats.url });
});

afterAll(async () => {
  await attacker.close();
  await view.stop();
  await nats.stop();
  nats.cleanup();
});

/** east's whole set as bulk snapshot parts, as its publisher pushes them at start and on every TTL refresh */
function eastPush(names: string[], partBytes: number): string[] {
  const east = signerOf(pki, 'east');
  const publisher = new CatalogPublisher({
    cluster: 'east',
    locality: { region: 'r', zone: 'z' },
    gateways: [{ name: 'gw', address: '127.0.0.1:15443' }],
    entryTtl: 60_000,
    signer: () => east,
    now: Date.now,
  });
  publisher.update(
    names.map((n) => service('shop', n)),
    { sign: false },
  );
  return publisher.snapshot(`push-${names.length}`, partBytes);
}

test('a cluster flooding incomplete snapshots on its own bulk subject does not hold up another cluster’s pushes', async () => {
  const evil = signerOf(pki, 'evil');
  const now = Date.now();
  const started = performance.now();
  for (let i = 0; i < FLOOD; i++) {
    const part: SnapshotMessage = {
      v: SCHEMA_VERSION,
      type: 'snapshot',
      cluster: 'evil',
      req: `flood-${i}`,
      part: 0,
      parts: 2,
      asOf: now * 1000 + i,
      count: 0,
      digest: '0'.repeat(32),
      issuedAt: now,
      expiresAt: now + 60_000,
      entries: [],
    };
    attacker.publish('meshfed.bulk.evil', evil.sign(part));
    if (i % 500 === 0) await attacker.flush();
  }
  await attacker.flush();
  expect(performance.now() - started).toBeLessThan(60_000);

  // after the flood, on the same connection (so in order): a single-part push, then a two-part push
  for (const part of eastPush(['orders'], 64 * 1024)) attacker.publish('meshfed.bulk.east', part);
  const twoParts = eastPush(['orders', 'carts', 'payments'], 400);
  expect(twoParts.length).toBeGreaterThan(1);
  for (const part of twoParts) attacker.publish('meshfed.bulk.east', part);
  await attacker.flush();

  await waitFor(() => ['orders', 'carts', 'payments'].every((n) => view.instances('shop', n).length === 1), {
    what: 'east’s pushed snapshots to apply despite the flood',
    // the view verifies the 4,200 flood messages before east's (in order): 20 s was not enough at load 27
    timeoutMs: 60_000,
  });
}, 120_000);

describe('SnapshotAssembly', () => {
  const part = (cluster: string, req: string, p: number, parts: number): SnapshotMessage => ({
    v: SCHEMA_VERSION,
    type: 'snapshot',
    cluster,
    req,
    part: p,
    parts,
    asOf: 1,
    count: 0,
    digest: '0'.repeat(32),
    issuedAt: 0,
    expiresAt: 60_000,
    entries: [],
  });

  test('holds at most one reply and one push collection per cluster; a single part needs none', () => {
    const assembly = new SnapshotAssembly({
      store: new CatalogStore({ self: 'view', staleAfter: 10_000, maxClockSkew: 0 }),
      proofs: undefined,
      log: silentLogger(),
      syncTimeout: 10_000,
    });
    const raw = new Uint8Array();
    for (let i = 0; i < 100; i++) assembly.add(part('evil', `p${i}`, 0, 2), raw, 'push', 'evil', 0);
    expect(assembly.size).toBe(1);
    expect(assembly.add(part('east', 'r1', 0, 2), raw, 'reply', 'east', 0)).toEqual({
      applied: 0,
      complete: false,
    });
    expect(assembly.add(part('east', 'p1', 0, 1), raw, 'push', 'east', 0)).toEqual({
      applied: 0,
      complete: true,
    });
    expect(assembly.size).toBe(2);
    expect(assembly.add(part('east', 'r1', 1, 2), raw, 'reply', 'east', 0)).toEqual({
      applied: 0,
      complete: true,
    });
    expect(assembly.size).toBe(1);
    assembly.expire(10_001);
    expect(assembly.size).toBe(0);
  });
});
