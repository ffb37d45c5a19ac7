import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { createRoot, issueIntermediate, issueLeaf } from '../../ca/index.ts';
import { createRegistry, type Registry, waitFor } from '../../core/index.ts';
import { type NatsSupercluster, startNatsSupercluster } from '../../cli/demo/nats-topology.ts';
import { CATALOG_FILE, type FederationNode, JwsSigner, SCHEMA_VERSION } from '../../federation/index.ts';
import {
  counterValue,
  ListSource,
  makePki,
  offers,
  type Pki,
  service,
  startNode,
  TD,
  tempDir,
} from './helpers.ts';

const CLUSTERS = ['east', 'west', 'north'];
let sc: NatsSupercluster;
let pki: Pki;
const nodes = new Map<string, FederationNode>();
const sources = new Map<string, ListSource>();
const registries = new Map<string, Registry>();
const state = tempDir('meshfed-fed-state-');

function urls(c: string): string[] {
  return sc.cluster(c).urls;
}

beforeAll(async () => {
  [sc, pki] = await Promise.all([
    startNatsSupercluster({ clusters: CLUSTERS.map((name) => ({ name })) }),
    makePki(CLUSTERS),
  ]);
  for (const c of CLUSTERS) {
    const src = new ListSource([service('shop', `svc-${c}`, 1), service('shop', 'common', 2)]);
    sources.set(c, src);
    // each mesh cluster talks only to its own NATS cluster; NATS gateways carry the rest
    const registry = createRegistry();
    registries.set(c, registry);
    nodes.set(
      c,
      await startNode({
        pki,
        cluster: c,
        servers: urls(c),
        source: src,
        stateDir: join(state.dir, c),
        registry,
      }),
    );
  }
});

afterAll(async () => {
  await Promise.all([...nodes.values()].map((n) => n.stop()));
  await sc.stop();
  sc.cleanup();
  state.cleanup();
});

function others(c: string): FederationNode[] {
  return CLUSTERS.filter((x) => x !== c).map((x) => nodes.get(x)!);
}

function staleOf(node: FederationNode, cluster: string): boolean | undefined {
  return node.clusters().find((s) => s.cluster === cluster)?.stale;
}

describe('three mesh clusters on a NATS supercluster', () => {
  test('export, change and withdraw converge across NATS gateways', async () => {
    await waitFor(
      () =>
        CLUSTERS.every((c) => others(c).every((n) => Object.keys(offers(n, 'shop', 'common')).length === 2)),
      { what: 'all views to converge', timeoutMs: 20_000 },
    );
    const west = sources.get('west')!;
    west.set([service('shop', 'svc-west', 1), service('shop', 'common', 7), service('shop', 'pay', 1)]);
    await waitFor(() =>
      others('west').every(
        (n) => offers(n, 'shop', 'common').west === 7 && n.instances('shop', 'pay').length === 1,
      ),
    );
    west.set([service('shop', 'svc-west', 1), service('shop', 'common', 7)]);
    await waitFor(() => others('west').every((n) => n.instances('shop', 'pay').length === 0));
    expect(offers(nodes.get('east')!, 'shop', 'common')).toEqual({ west: 7, north: 2 });
  });

  test('forged entries published straight onto the catalog subjects are refused', async () => {
    // a process holding no valid key: one certificate from a root nobody trusts, and west's real key for east
    const foreignRoot = await createRoot({ trustDomain: TD });
    const foreign = await issueLeaf(await issueIntermediate(foreignRoot, { cluster: 'east' }), {
      kind: 'federation',
    });
    const now = Date.now();
    const forged = {
      v: SCHEMA_VERSION,
      type: 'entry' as const,
      cluster: 'east',
      namespace: 'shop',
      name: 'evil',
      revision: now * 1000 + 7,
      issuedAt: now,
      expiresAt: now + 60_000,
      ports: [{ name: 'http', port: 80, protocol: 'http' }],
      locality: { region: 'r', zone: 'z' },
      gateways: [{ name: 'evil', address: '127.0.0.1:1' }],
      weight: 100,
    };
    const nc = await connect({ servers: urls('north') });
    nc.publish('meshfed.catalog.east', new JwsSigner(foreign).sign(forged));
    const west = pki.leaves.get('west')!;
    nc.publish('meshfed.catalog.east', new JwsSigner(west).sign(forged));
    nc.publish('meshfed.bulk.east', 'not a snapshot');
    await nc.flush();
    await waitFor(
      async () =>
        (await counterValue(registries.get('west')!, 'untrusted_chain')) >= 1 &&
        (await counterValue(registries.get('west')!, 'wrong_cluster')) >= 1 &&
        (await counterValue(registries.get('north')!, 'untrusted_chain')) >= 1,
      { what: 'the forgeries to be counted' },
    );
    for (const n of others('east')) expect(n.instances('shop', 'evil')).toHaveLength(0);
    await nc.close();
  });

  test('a cluster whose NATS dies goes stale within the bound and converges after, withdrawals included', async () => {
    const north = sc.cluster('north').servers[0]!;
    await north.kill();
    const killedAt = Date.now();
    await waitFor(() => others('north').every((n) => staleOf(n, 'north') === true), {
      what: 'north to be marked stale',
      timeoutMs: 10_000,
    });
    const staleAfterMs = Date.now() - killedAt;
    // the bound is 1.2 s plus one check interval; allow scheduling noise on a shared machine
    expect(staleAfterMs).toBeLessThan(10_000);
    const east = nodes.get('east')!;
    // stale entries stay visible, flagged
    expect(east.instances('shop', 'svc-north')).toEqual([
      expect.objectContaining({ cluster: 'north', stale: true }),
    ]);
    // north itself keeps its whole view while its NATS is down
    const northNode = nodes.get('north')!;
    await waitFor(() => !northNode.natsStatus().connected, { what: 'north to notice its NATS is gone' });
    expect(Object.keys(offers(northNode, 'shop', 'common')).sort()).toEqual(['east', 'west']);

    // withdrawals on both sides of the partition
    sources.get('east')!.set([service('shop', 'svc-east', 1)]); // east withdraws common: north misses it
    sources.get('north')!.set([service('shop', 'common', 2)]); // north withdraws svc-north while cut off
    await waitFor(() =>
      nodes
        .get('west')!
        .instances('shop', 'common')
        .every((i) => i.cluster !== 'east'),
    );
    expect(offers(northNode, 'shop', 'common').east).toBe(2); // north has not heard of it yet

    await north.start();
    await waitFor(() => sc.meshed(), { what: 'the supercluster to re-form', timeoutMs: 20_000 });
    await waitFor(
      () =>
        others('north').every(
          (n) => staleOf(n, 'north') === false && n.instances('shop', 'svc-north').length === 0,
        ) &&
        northNode.natsStatus().connected &&
        offers(northNode, 'shop', 'common').east === undefined,
      { what: 'convergence after the outage', timeoutMs: 20_000 },
    );
    expect(offers(northNode, 'shop', 'common')).toEqual({ west: 7 });
    expect(offers(east, 'shop', 'common')).toEqual({ west: 7, north: 2 });
  });

  test('a gateway restarted while its NATS is down routes on the catalog from disk', async () => {
    const westDir = join(state.dir, 'west');
    await waitFor(() => existsSync(join(westDir, CATALOG_FILE)), { what: 'the catalog file' });
    const before = nodes.get('west')!;
    const expected = offers(before, 'shop', 'common');
    expect(Object.keys(expected).length).toBeGreaterThan(0);
    await before.stop();
    await sc.cluster('west').stop();
    const restarted = await startNode({
      pki,
      cluster: 'west',
      servers: urls('west'),
      stateDir: westDir,
      source: sources.get('west')!,
    });
    nodes.set('west', restarted);
    expect(restarted.natsStatus().connected).toBe(false);
    expect(offers(restarted, 'shop', 'common')).toEqual(expected);
    expect(restarted.instances('shop', 'svc-east')).toHaveLength(1);
    expect(
      restarted
        .clusters()
        .map((c) => c.cluster)
        .sort(),
    ).toEqual(['east', 'north']);
    // NATS silence after a restart says nothing about the others: nothing is marked stale while disconnected
    expect(restarted.clusters().every((c) => !c.stale)).toBe(true);
  });
});
