import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { createRegistry, isMeshfedError, parseConfig, waitFor } from '../../core/index.ts';
import { freePort } from '../../cli/demo/free-port.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import {
  CATALOG_FILE,
  CatalogPublisher,
  type EntryMessage,
  federationConfigSchema,
  JwsSigner,
  SCHEMA_VERSION,
  writeCatalogFile,
} from '../../federation/index.ts';
import { ProofMaker } from '../../federation/proof.ts';
import { counterValue, ListSource, makePki, type Pki, service, startNode, tempDir } from './helpers.ts';

let pki: Pki;
beforeAll(async () => {
  pki = await makePki(['east', 'west', 'view']);
});

function entry(cluster: string, name: string, revision: number): EntryMessage {
  const now = Date.now();
  return {
    v: SCHEMA_VERSION,
    type: 'entry',
    cluster,
    namespace: 'shop',
    name,
    revision,
    issuedAt: now,
    expiresAt: now + 60_000,
    ports: [{ name: 'http', port: 8080, protocol: 'http' }],
    locality: { region: 'r', zone: 'z' },
    gateways: [{ name: 'gw', address: '127.0.0.1:15443' }],
    weight: 2,
  };
}

/** A view with a stateDir and no NATS at all: what it holds came from disk alone. */
async function offlineView(dir: string, registry = createRegistry()) {
  const dead = await freePort();
  return startNode({ pki, cluster: 'view', servers: [`nats://127.0.0.1:${dead}`], stateDir: dir, registry });
}

const signer = (c: string) =>
  new JwsSigner({ chainPem: pki.leaves.get(c)!.chainPem, keyPem: pki.leaves.get(c)!.keyPem });

/** A catalog file holding one good entry (east's orders), then changed on disk by `damage`. */
async function writeDamagedFile(
  dir: string,
  damage: (file: Record<string, unknown> & { proofs: unknown[] }) => void,
) {
  const good = signer('east').sign(entry('east', 'orders', 10));
  await writeCatalogFile(
    dir,
    'view',
    {
      entries: [{ key: 'east/shop/orders', revision: 10, proof: good }],
      tombstones: [],
      announces: [],
    },
    Date.now(),
  );
  const file = JSON.parse(readFileSync(join(dir, CATALOG_FILE), 'utf8'));
  damage(file);
  writeFileSync(join(dir, CATALOG_FILE), JSON.stringify(file));
}

describe('persisted catalog', () => {
  test('a tampered file can drop entries but never add one', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const good = signer('east').sign(entry('east', 'orders', 10));
      const forged = signer('west').sign(entry('east', 'evil', 11)); // west's key, east's entry
      const [h, , s] = good.split('.');
      const swapped = `${h}.${Buffer.from(JSON.stringify(entry('east', 'evil2', 12))).toString('base64url')}.${s}`;
      await writeCatalogFile(
        dir,
        'view',
        {
          entries: [
            { key: 'east/shop/orders', revision: 10, proof: good },
            { key: 'east/shop/evil', revision: 11, proof: forged },
            { key: 'east/shop/evil2', revision: 12, proof: swapped },
            // the index names a revision its proof does not contain
            { key: 'east/shop/orders-old', revision: 9, proof: good },
          ],
          tombstones: [],
          announces: [],
        },
        Date.now(),
      );
      expect(JSON.parse(readFileSync(join(dir, CATALOG_FILE), 'utf8')).format).toBe('meshfed-catalog/2');
      const node = await offlineView(dir);
      try {
        expect(node.natsStatus().connected).toBe(false);
        expect(node.services().map((x) => x.name)).toEqual(['orders']);
        expect(node.instances('shop', 'orders')[0]).toMatchObject({
          cluster: 'east',
          revision: 10,
          weight: 2,
        });
      } finally {
        await node.stop();
      }
    } finally {
      cleanup();
    }
  });

  test('a proof is held compactly and given back byte for byte', () => {
    const east = signer('east');
    const publisher = new CatalogPublisher({
      cluster: 'east',
      locality: { region: 'r', zone: 'z' },
      gateways: [{ name: 'gw', address: '127.0.0.1:15443' }],
      entryTtl: 60_000,
      signer: () => east,
      now: Date.now,
    });
    publisher.update(
      Array.from({ length: 300 }, (_, i) => service('shop', `svc-${i}`)),
      { sign: false },
    );
    const [part] = publisher.snapshot('r1', 64 * 1024);
    const single = east.sign(entry('east', 'orders', 10));
    const maker = new ProofMaker();
    for (const jws of [part!, single]) {
      const proof = maker.make(Buffer.from(jws));
      expect(proof.text()).toBe(jws);
    }
    // a snapshot part shrinks to a few percent; its x5c header is shared, not copied
    const partProof = maker.make(part!);
    expect(partProof.body.byteLength).toBeLessThan(part!.length / 10);
    expect(partProof.header).toBe(maker.make(single).header);
  });

  test('a damaged proof in the file is refused and counted, never a crash', async () => {
    const { dir, cleanup } = tempDir();
    try {
      await writeDamagedFile(dir, (file) => {
        // claims to be deflated, is not
        file.proofs[0] = [0, 'z', Buffer.from('not a deflate stream').toString('base64')];
      });
      const registry = createRegistry();
      const node = await offlineView(dir, registry);
      try {
        expect(node.entryCount()).toBe(0);
        expect(await counterValue(registry, 'not_jws')).toBe(1);
      } finally {
        await node.stop();
      }
    } finally {
      cleanup();
    }
  });

  test('a deflate bomb in the file is refused without inflating it (a damaged proof, never an oversized one)', async () => {
    const { dir, cleanup } = tempDir();
    try {
      // 16 MiB of payload in ~16 KiB: inflated in full, it would only then be refused as oversized
      const bomb = deflateRawSync(Buffer.alloc(16 * 1024 * 1024, 0x41), { level: 9 });
      expect(bomb.byteLength).toBeLessThan(64 * 1024);
      await writeDamagedFile(dir, (file) => {
        file.proofs[0] = [0, 'z', bomb.toString('base64')];
      });
      const registry = createRegistry();
      const node = await offlineView(dir, registry);
      try {
        expect(node.entryCount()).toBe(0);
        expect(await counterValue(registry, 'oversized')).toBe(0);
        expect(await counterValue(registry, 'not_jws')).toBe(1);
      } finally {
        await node.stop();
      }
    } finally {
      cleanup();
    }
  });

  test('a file of the previous format (plain JWS proofs) still loads, re-verified', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const good = signer('east').sign(entry('east', 'orders', 10));
      const forged = signer('west').sign(entry('east', 'evil', 11));
      writeFileSync(
        join(dir, CATALOG_FILE),
        JSON.stringify({
          format: 'meshfed-catalog/1',
          cluster: 'view',
          savedAt: Date.now(),
          proofs: [good, forged, 'not a jws'],
          entries: [
            ['east/shop/orders', 10, 0],
            ['east/shop/evil', 11, 1],
            ['east/shop/junk', 12, 2],
          ],
          tombstones: [],
          announces: [],
        }),
      );
      const node = await offlineView(dir);
      try {
        expect(node.services().map((x) => x.name)).toEqual(['orders']);
      } finally {
        await node.stop();
      }
      // and it is written back in the current format, the proof intact
      const rewritten = JSON.parse(readFileSync(join(dir, CATALOG_FILE), 'utf8'));
      expect(rewritten.format).toBe('meshfed-catalog/2');
      expect(rewritten.entries).toEqual([['east/shop/orders', 10, 0]]);
    } finally {
      cleanup();
    }
  });

  test('a file without a valid savedAt is reported as damaged and the node starts empty (no RangeError at start)', async () => {
    const { dir, cleanup } = tempDir();
    try {
      await writeDamagedFile(dir, (file) => {
        delete file.savedAt;
      });
      const node = await offlineView(dir);
      try {
        expect(node.entryCount()).toBe(0);
      } finally {
        await node.stop();
      }
    } finally {
      cleanup();
    }
  });

  test('a view stopped with a write pending and started again keeps persisting', async () => {
    const { dir, cleanup } = tempDir();
    const nats = await startNatsServer({ name: 'persist-restart' });
    const source = new ListSource([service('shop', 'orders', 1)]);
    const east = await startNode({ pki, cluster: 'east', servers: [nats.url], source });
    const view = await startNode({ pki, cluster: 'view', servers: [nats.url], stateDir: dir });
    try {
      await waitFor(() => view.services().length === 1, { what: 'the view to learn orders' });
      // stopped within the write delay of that change: its write timer is pending
      await view.stop();
      await view.start();
      source.set([service('shop', 'orders', 1), service('shop', 'payments', 1)]);
      await waitFor(() => view.services().length === 2, { what: 'the view to learn payments' });
      await waitFor(
        () => {
          try {
            return JSON.parse(readFileSync(join(dir, CATALOG_FILE), 'utf8')).entries.length === 2;
          } catch {
            return false;
          }
        },
        { what: 'the restarted view to persist payments' },
      );
    } finally {
      await view.stop();
      await east.stop();
      await nats.stop();
      nats.cleanup();
      cleanup();
    }
  });

  test('a damaged file is reported and the node starts empty', async () => {
    const { dir, cleanup } = tempDir();
    try {
      writeFileSync(join(dir, CATALOG_FILE), '{"format":"something else"');
      const node = await offlineView(dir);
      expect(node.entryCount()).toBe(0);
      await node.stop();
    } finally {
      cleanup();
    }
  });
});

describe('federation config', () => {
  const base = { nats: { servers: ['nats://127.0.0.1:4222'] } };

  test('defaults are explicit and durations parse', () => {
    const c = parseConfig(federationConfigSchema, { ...base, staleAfter: '30s' }, { source: 'test' });
    expect(c).toMatchObject({
      subjectPrefix: 'meshfed',
      heartbeatInterval: 5000,
      staleAfter: 30_000,
      entryTtl: 60_000,
      maxMessageBytes: 65_536,
      withdrawOnStop: false,
    });
  });

  test('every problem is reported at once, naming the field', () => {
    let err: unknown;
    try {
      parseConfig(
        federationConfigSchema,
        {
          nats: { servers: [], passwd: 'x' },
          staleAfter: '1s',
          heartbeatInterval: '5s',
          subjectPrefix: 'a.*',
        },
        { source: 'gw.yaml' },
      );
    } catch (e) {
      err = e;
    }
    expect(isMeshfedError(err, 'MESHFED_CONFIG_INVALID')).toBe(true);
    const paths = ((err as { details: { problems: { path: string }[] } }).details.problems ?? []).map(
      (p) => p.path,
    );
    expect(paths).toEqual(
      expect.arrayContaining(['nats.servers', 'nats.passwd', 'subjectPrefix', 'staleAfter']),
    );
  });
});
