import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createRegistry, type Registry, type RemoteServiceInstance, waitFor } from '../../core/index.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import type { EntryMessage, FederationNode } from '../../federation/index.ts';
import {
  counterValue,
  entryMessage,
  ListSource,
  makePki,
  type Pki,
  service,
  signerOf,
  startNode,
} from './helpers.ts';

/**
 * Issue 11 finding 4: one message signed with east's federation key (a leaked leaf, or a publisher whose clock
 * jumped) claimed revision 2^53−1 and an expiry in the year 275760; the view held it for ever, refusing east's
 * own tombstone and re-publishes as stale revisions.
 */
let nats: NatsServerProcess;
let pki: Pki;
let east: FederationNode;
let west: FederationNode;
let eastSource: ListSource;
let registry: Registry;
let attacker: NatsConnection;
const MAX_ENTRY_TTL = 10 * 60_000;

beforeAll(async () => {
  [nats, pki] = await Promise.all([startNatsServer({ name: 'pinning' }), makePki(['east', 'west'])]);
  eastSource = new ListSource([service('shop', 'orders', 2), service('shop', 'carts', 1)]);
  east = await startNode({ pki, cluster: 'east', servers: [nats.url], source: eastSource });
  registry = createRegistry();
  west = await startNode({
    pki,
    cluster: 'west',
    servers: [nats.url],
    registry,
    config: { maxEntryTtl: '10m', maxClockSkew: '30s' },
  });
  attacker = await connect({ servers: nats.url });
  await waitFor(() => west.instances('shop', 'orders').length === 1, { what: 'west to learn east/orders' });
});

afterAll(async () => {
  await attacker.close();
  await Promise.all([east.stop(), west.stop()]);
  await nats.stop();
  nats.cleanup();
});

function signedByEast(o: Partial<EntryMessage>): string {
  return signerOf(pki, 'east').sign(entryMessage({ weight: 99, ...o }));
}

describe('a signed message cannot pin a catalog entry', () => {
  test('a revision of 2^53−1 with an expiry in the year 275760 is refused, and east can still withdraw and re-export', async () => {
    attacker.publish(
      'meshfed.catalog.east',
      signedByEast({ revision: Number.MAX_SAFE_INTEGER, expiresAt: 8.64e15 }),
    );
    await attacker.flush();
    // processed: refused (the fix) or applied (the weight the attacker chose)
    await waitFor(
      async () =>
        (await counterValue(registry, 'revision_in_future')) === 1 ||
        west.instances('shop', 'orders')[0]?.weight === 99,
      { what: 'the pinning entry to be handled' },
    );
    expect(west.instances('shop', 'orders')[0]?.weight).toBe(2);

    eastSource.set([service('shop', 'carts', 1)]);
    await waitFor(() => west.instances('shop', 'orders').length === 0, { what: 'east’s tombstone to apply' });
    eastSource.set([service('shop', 'carts', 1), service('shop', 'orders', 5)]);
    await waitFor(() => west.instances('shop', 'orders')[0]?.weight === 5, { what: 'east’s re-export' });
  });

  test('an issuedAt beyond the allowed clock skew is refused', async () => {
    const ahead = Date.now() + 5 * 60_000;
    attacker.publish(
      'meshfed.catalog.east',
      signedByEast({
        name: 'later',
        issuedAt: ahead,
        expiresAt: ahead + 60_000,
        revision: Date.now() * 1000,
      }),
    );
    await attacker.flush();
    await waitFor(
      async () =>
        (await counterValue(registry, 'issued_in_future')) === 1 ||
        west.instances('shop', 'later').length > 0,
      { what: 'the entry from the future to be handled' },
    );
    expect(west.instances('shop', 'later')).toHaveLength(0);
  });

  test('an expiry far away is capped at issuedAt + maxEntryTtl', async () => {
    // seen as the view applies it: east's next heartbeat shows west a digest without this entry, and the
    // snapshot west then asks for may prune it (anti-entropy) between two polls of instances(); a fresh-clone
    // CI run timed out waiting for it that way once (not reproduced since)
    let held: RemoteServiceInstance | undefined;
    const off = west.onChange((changes) => {
      for (const c of changes) if (c.type === 'upsert' && c.instance.name === 'forever') held ??= c.instance;
    });
    try {
      const now = Date.now();
      attacker.publish(
        'meshfed.catalog.east',
        signedByEast({ name: 'forever', issuedAt: now, expiresAt: 8.64e15 }),
      );
      await attacker.flush();
      await waitFor(() => held !== undefined, { what: 'the long-lived entry' });
      expect(held!.expiresAt).toBe(now + MAX_ENTRY_TTL);
    } finally {
      off();
    }
  });
});
