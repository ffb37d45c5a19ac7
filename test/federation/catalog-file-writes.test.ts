import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AnnounceMessage,
  CatalogStore,
  type EntryMessage,
  readCatalogFile,
  SCHEMA_VERSION,
  writeCatalogFile,
} from '../../federation/index.ts';
import { ProofMaker } from '../../federation/proof.ts';

// Found by bench:catalog: every heartbeat of every cluster moved the view's version, so a view of 100,000
// entries rewrote its whole catalog file as often as the write pacing allowed, forever, and each write first
// copied the whole view into arrays (~20 MB of garbage per write).

const NOW = 1_700_000_000_000;
const proofs = new ProofMaker();

function entry(cluster: string, name: string, revision: number): EntryMessage {
  return {
    v: SCHEMA_VERSION,
    type: 'entry',
    cluster,
    issuedAt: NOW,
    expiresAt: NOW + 60_000,
    namespace: 'shop',
    name,
    revision,
    ports: [{ name: 'http', port: 8080, protocol: 'http' }],
    locality: { region: 'r1', zone: 'z1' },
    gateways: [{ name: 'gw-1', address: '10.0.0.1:15443' }],
    weight: 1,
  };
}

function announce(cluster: string, revision: number, address = '10.0.0.1:15443'): AnnounceMessage {
  return {
    v: SCHEMA_VERSION,
    type: 'announce',
    cluster,
    issuedAt: NOW + revision,
    expiresAt: NOW + 60_000,
    revision,
    locality: { region: 'r1', zone: 'z1' },
    gateways: [{ name: 'gw-1', address }],
    services: 0,
    digest: '0'.repeat(32),
  };
}

/** a stand-in for a signed message: the file stores proofs as they are, the loader is what verifies them */
const proofOf = (label: string) => proofs.make(`header.${label}.signature`);

test('a heartbeat that only moves the announcement revision does not mark the view for writing', () => {
  const store = new CatalogStore({ self: 'view', staleAfter: 30_000, maxClockSkew: 0 });
  store.applyAnnounce(announce('east', 1), proofOf('a1'), NOW);
  const v1 = store.version;
  expect(store.applyAnnounce(announce('east', 2), proofOf('a2'), NOW).result).toBe('applied');
  expect(store.version).toBe(v1);
  // new gateways are news: the file must hold them
  store.applyAnnounce(announce('east', 3, '10.0.0.2:15443'), proofOf('a3'), NOW);
  expect(store.version).toBeGreaterThan(v1);
});

describe('writing the catalog file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshfed-catalog-file-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('writes every held entry once, each shared proof once', async () => {
    const store = new CatalogStore({ self: 'view', staleAfter: 30_000, maxClockSkew: 0 });
    const part = proofOf('part');
    for (const name of ['a', 'b', 'c']) store.applyEntry(entry('east', name, 5), part, NOW);
    store.applyEntry(entry('west', 'a', 7), proofOf('single'), NOW);
    store.applyAnnounce(announce('east', 1), proofOf('a1'), NOW);
    await writeCatalogFile(dir, 'view', store.exportState(), NOW);
    const file = readCatalogFile(dir)!;
    expect(file.proofCount).toBe(3);
    expect(file.entries.map(([key, revision]) => [key, revision]).sort()).toEqual([
      ['east/shop/a', 5],
      ['east/shop/b', 5],
      ['east/shop/c', 5],
      ['west/shop/a', 7],
    ]);
    expect(new Set(file.entries.filter(([k]) => k.startsWith('east/')).map(([, , p]) => p)).size).toBe(1);
    expect(file.proofText(file.entries.find(([k]) => k === 'west/shop/a')![2])).toBe(
      'header.single.signature',
    );
    expect(file.announces).toEqual([['east', 1, expect.any(Number), false]]);
  });

  test('an entry that arrives during a write is left for the next write, not written without its proof', async () => {
    const store = new CatalogStore({ self: 'view', staleAfter: 30_000, maxClockSkew: 0 });
    store.applyEntry(entry('east', 'a', 5), proofOf('first'), NOW);
    const writing = writeCatalogFile(dir, 'view', store.exportState(), NOW);
    store.applyEntry(entry('east', 'b', 6), proofOf('late'), NOW);
    store.applyEntry(entry('east', 'a', 8), proofOf('newer'), NOW);
    await writing;
    const file = readCatalogFile(dir)!;
    // every row the file holds names a proof it holds
    for (const [, , p] of file.entries) expect(file.proofText(p)).toBe('header.first.signature');
    expect(file.entries.map(([k]) => k)).not.toContain('east/shop/b');
    await writeCatalogFile(dir, 'view', store.exportState(), NOW);
    const again = readCatalogFile(dir)!;
    expect(again.entries.map(([key, revision]) => [key, revision]).sort()).toEqual([
      ['east/shop/a', 8],
      ['east/shop/b', 6],
    ]);
  });
});
