import { connect } from '@nats-io/transport-node';
import { createRegistry, type Registry, waitFor } from '../../core/index.ts';
import { type NatsCluster, startNatsCluster } from '../../cli/demo/nats-topology.ts';
import type { FederationNode } from '../../federation/index.ts';
import { counterValue, ListSource, makePki, offers, type Pki, service, startNode } from './helpers.ts';

const CLUSTERS = ['east', 'west', 'north'];
let nats: NatsCluster;
let pki: Pki;
const nodes = new Map<string, FederationNode>();
const sources = new Map<string, ListSource>();
const registries = new Map<string, Registry>();

beforeAll(async () => {
  [nats, pki] = await Promise.all([startNatsCluster({ name: 'shared', size: 3 }), makePki(CLUSTERS)]);
  for (const [i, c] of CLUSTERS.entries()) {
    const src = new ListSource([service('shop', `svc-${c}`, 1)]);
    sources.set(c, src);
    // each mesh cluster talks to a different server of the one shared NATS cluster
    const registry = createRegistry();
    registries.set(c, registry);
    nodes.set(
      c,
      await startNode({ pki, cluster: c, servers: [nats.servers[i]!.url], source: src, registry }),
    );
  }
});

afterAll(async () => {
  await Promise.all([...nodes.values()].map((n) => n.stop()));
  await nats.stop();
  nats.cleanup();
});

function others(c: string): FederationNode[] {
  return CLUSTERS.filter((x) => x !== c).map((x) => nodes.get(x)!);
}

describe('three mesh clusters on one shared NATS cluster', () => {
  test('every view learns every other cluster and its exports', async () => {
    await waitFor(
      () =>
        CLUSTERS.every((c) =>
          others(c).every((n) => n.instances('shop', `svc-${c}`).length === 1 && n.clusters().length === 2),
        ),
      { what: 'all views to converge', timeoutMs: 15_000 },
    );
    const west = nodes.get('west')!;
    const inst = west.instances('shop', 'svc-east')[0]!;
    expect(inst).toMatchObject({
      cluster: 'east',
      weight: 1,
      stale: false,
      locality: { region: 'region-east', zone: 'zone-east-a' },
      ports: [{ name: 'http', port: 8080, protocol: 'http' }],
    });
    expect(nodes.get('east')!.instances('shop', 'svc-east')).toHaveLength(0); // a view holds other clusters only
    expect(west.clusters().find((c) => c.cluster === 'east')).toMatchObject({ stale: false, services: 1 });
  });

  test('export, change and withdraw converge everywhere with the smallest diff', async () => {
    const north = nodes.get('north')!;
    const seen: string[] = [];
    const off = north.onChange((changes) => {
      for (const ch of changes) {
        const line =
          ch.type === 'upsert'
            ? `upsert ${ch.instance.cluster}/${ch.instance.name}=${ch.instance.weight}`
            : ch.type === 'remove'
              ? `remove ${ch.cluster}/${ch.name}`
              : undefined;
        // a stale flip on a loaded host repeats an upsert with the same weight; only real changes count here
        if (line && seen[seen.length - 1] !== line) seen.push(line);
      }
    });
    const east = sources.get('east')!;
    east.set([service('shop', 'svc-east', 1), service('shop', 'orders', 3)]);
    await waitFor(() => others('east').every((n) => offers(n, 'shop', 'orders').east === 3), {
      what: 'export to converge',
    });
    east.set([service('shop', 'svc-east', 1), service('shop', 'orders', 5)]);
    await waitFor(() => others('east').every((n) => offers(n, 'shop', 'orders').east === 5), {
      what: 'change to converge',
    });
    east.set([service('shop', 'svc-east', 1)]);
    await waitFor(() => others('east').every((n) => n.instances('shop', 'orders').length === 0), {
      what: 'withdraw to converge',
    });
    await waitFor(() => seen.includes('remove east/orders'), { what: 'the remove event' });
    off();
    expect(seen).toEqual(['upsert east/orders=3', 'upsert east/orders=5', 'remove east/orders']);
  });

  test('the same service exported by two clusters is offered by both', async () => {
    sources.get('west')!.set([service('shop', 'svc-west', 1), service('shop', 'cart', 2)]);
    sources.get('north')!.set([service('shop', 'svc-north', 1), service('shop', 'cart', 4)]);
    await waitFor(() => {
      const o = offers(nodes.get('east')!, 'shop', 'cart');
      return o.west === 2 && o.north === 4;
    });
    expect(
      nodes
        .get('east')!
        .services()
        .map((s) => `${s.namespace}/${s.name}`),
    ).toEqual(expect.arrayContaining(['shop/cart', 'shop/svc-west', 'shop/svc-north']));
  });

  test('a forged entry published straight onto the catalog subject is refused', async () => {
    const nc = await connect({ servers: nats.servers[0]!.url });
    const forged = {
      v: 1,
      type: 'entry',
      cluster: 'east',
      namespace: 'shop',
      name: 'evil',
      revision: Date.now() * 1000 + 5,
      issuedAt: Date.now(),
      expiresAt: Date.now() + 60_000,
      ports: [{ name: 'http', port: 80, protocol: 'http' }],
      locality: { region: 'r', zone: 'z' },
      gateways: [{ name: 'evil', address: '127.0.0.1:1' }],
      weight: 100,
    };
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    // no key at all: a plain JSON entry, a JWS with alg none, a JWS with a made-up signature
    nc.publish('meshfed.catalog.east', JSON.stringify(forged));
    nc.publish('meshfed.catalog.east', `${b64({ alg: 'none' })}.${b64(forged)}.`);
    nc.publish('meshfed.catalog.east', `${b64({ alg: 'ES256', x5c: ['AAAA'] })}.${b64(forged)}.AAAA`);
    await nc.flush();
    // then a real change, to know the forged ones were processed before it
    sources.get('east')!.set([service('shop', 'svc-east', 1), service('shop', 'after-forgery', 1)]);
    await waitFor(() => others('east').every((n) => n.instances('shop', 'after-forgery').length === 1));
    for (const n of others('east')) expect(n.instances('shop', 'evil')).toHaveLength(0);
    for (const c of ['west', 'north']) {
      const r = registries.get(c)!;
      expect(await counterValue(r, 'not_jws')).toBeGreaterThanOrEqual(1);
      expect(await counterValue(r, 'bad_header')).toBeGreaterThanOrEqual(2);
    }
    await nc.close();
  });
});
