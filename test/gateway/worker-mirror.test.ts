import { serialize, deserialize } from 'node:v8';
import { MirroredCatalog, MirroredSource } from '../../cli/worker-protocol.ts';
import type { CatalogChange, RemoteServiceInstance } from '../../core/index.ts';

// What a data-plane worker knows of the federated catalog: the supervisor's snapshot, then every change
// as it crosses the IPC channel (node's "advanced" serialization: the structured clone of v8.serialize).

function instance(cluster: string, name: string, weight = 1): RemoteServiceInstance {
  return {
    namespace: 'shop',
    name,
    cluster,
    ports: [{ name: 'http', port: 80, protocol: 'http' }],
    locality: { region: cluster, zone: `${cluster}-a` },
    weight,
    gateways: [{ name: `${cluster}-gw`, address: `10.0.0.1:15443` }],
    revision: 1,
    expiresAt: Date.now() + 60_000,
    stale: false,
  };
}

const overIpc = <T>(v: T): T => deserialize(serialize(v)) as T;

test.each<[string, CatalogChange[], Record<string, string[]>]>([
  [
    'an upsert adds an offer',
    [{ type: 'upsert', instance: instance('west', 'api') }],
    { api: ['east:1', 'west:1'], web: ['east:1'] },
  ],
  [
    'an upsert of a known offer replaces it',
    [{ type: 'upsert', instance: instance('east', 'api', 5) }],
    { api: ['east:5'], web: ['east:1'] },
  ],
  [
    'a removal drops one offer',
    [{ type: 'remove', cluster: 'east', namespace: 'shop', name: 'web' }],
    { api: ['east:1'] },
  ],
  [
    'a batch applies in order',
    [
      { type: 'upsert', instance: instance('eu', 'web') },
      { type: 'remove', cluster: 'east', namespace: 'shop', name: 'web' },
    ],
    { api: ['east:1'], web: ['eu:1'] },
  ],
])('%s', (_name, changes, expected) => {
  const catalog = new MirroredCatalog(overIpc([instance('east', 'api'), instance('east', 'web')]), []);
  const seen: (readonly CatalogChange[])[] = [];
  catalog.onChange((c) => seen.push(c));
  catalog.apply(overIpc(changes));
  const got = Object.fromEntries(
    catalog.services().map((s) => [
      s.name,
      catalog
        .instances(s.namespace, s.name)
        .map((i) => `${i.cluster}:${i.weight}`)
        .sort(),
    ]),
  );
  expect(got).toEqual(expected);
  expect(seen).toHaveLength(1);
});

test('cluster states are tracked by name; the local source hands each new set to its listeners', () => {
  const catalog = new MirroredCatalog([], [{ cluster: 'west', gateways: [], stale: false, services: 1 }]);
  catalog.apply(
    overIpc([{ type: 'cluster', state: { cluster: 'west', gateways: [], stale: true, services: 1 } }]),
  );
  expect(catalog.clusters()).toEqual([{ cluster: 'west', gateways: [], stale: true, services: 1 }]);
  const source = new MirroredSource([]);
  const sets: number[] = [];
  source.onChange((s) => sets.push(s.length));
  source.set(
    overIpc([{ namespace: 'shop', name: 'web', ports: [], endpoints: [], exported: true, source: 's' }]),
  );
  expect(source.current()).toHaveLength(1);
  expect(sets).toEqual([1]);
});
