import { X509Certificate } from 'node:crypto';
import {
  type CaMaterial,
  createRoot,
  type IdentityKind,
  issueAdminIntermediate,
  issueIntermediate,
  issueLeaf,
  parseSpiffeId,
  spiffeIdFor,
  TrustBundle,
  verify,
} from '../../ca/index.ts';
import { codeOf, forgeLeaf } from './helpers.ts';

const TD = 'mesh.example';
let root: CaMaterial;
let east: CaMaterial;
let west: CaMaterial;
let admins: CaMaterial;
let bundle: TrustBundle;

beforeAll(async () => {
  root = await createRoot({ trustDomain: TD });
  east = await issueIntermediate(root, { cluster: 'east' });
  west = await issueIntermediate(root, { cluster: 'west' });
  admins = await issueAdminIntermediate(root);
  bundle = TrustBundle.fromPem(root.certPem);
});

const KINDS: {
  kind: IdentityKind;
  o: Record<string, string>;
  id: string;
  usage: 'server' | 'client' | 'signing';
}[] = [
  { kind: 'gateway', o: { name: 'gw-1' }, id: `spiffe://${TD}/cluster/east/gateway/gw-1`, usage: 'server' },
  { kind: 'federation', o: {}, id: `spiffe://${TD}/cluster/east/federation`, usage: 'signing' },
  {
    kind: 'workload',
    o: { namespace: 'shop', serviceAccount: 'orders' },
    id: `spiffe://${TD}/cluster/east/ns/shop/sa/orders`,
    usage: 'server',
  },
  { kind: 'admin', o: { name: 'alice' }, id: `spiffe://${TD}/admin/alice`, usage: 'client' },
];

describe('issue and verify every identity kind', () => {
  test.each(KINDS)('$kind', async ({ kind, o, id, usage }) => {
    const leaf = await issueLeaf(kind === 'admin' ? admins : east, { kind, ...o });
    expect(leaf.spiffeId).toBe(id);
    expect(leaf.serial).toMatch(/^[0-7][0-9a-f]{31}$/);
    const v = verify(leaf.chainPem, bundle, { kinds: [kind], usage, trustDomain: TD });
    expect(v.spiffeId).toBe(id);
    expect(v.kind).toBe(kind);
    expect(v.serial).toBe(leaf.serial);
    expect(v.chainRootFingerprint256).toBe(new X509Certificate(root.certPem).fingerprint256);
    expect(v.issuerCluster).toBe(kind === 'admin' ? undefined : 'east');
    if (kind !== 'admin') expect(v.cluster).toBe('east');
    // the same chain as DER buffers and as X509Certificate objects
    const certs = leaf.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/).filter((s) => s.trim() !== '');
    expect(
      verify(
        certs.map((c) => new X509Certificate(c).raw),
        bundle,
      ).spiffeId,
    ).toBe(id);
    expect(
      verify(
        certs.map((c) => new X509Certificate(c)),
        bundle,
      ).spiffeId,
    ).toBe(id);
  });

  test('key usage: admin is client-only, federation is not a TLS identity, gateway is both', async () => {
    const admin = await issueLeaf(admins, { kind: 'admin', name: 'alice' });
    const fed = await issueLeaf(east, { kind: 'federation' });
    const gw = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
    expect(codeOf(() => verify(admin.chainPem, bundle, { usage: 'server' }))).toBe(
      'MESHFED_CA_BAD_KEY_USAGE',
    );
    expect(codeOf(() => verify(fed.chainPem, bundle, { usage: 'client' }))).toBe('MESHFED_CA_BAD_KEY_USAGE');
    expect(codeOf(() => verify(fed.chainPem, bundle, { usage: 'server' }))).toBe('MESHFED_CA_BAD_KEY_USAGE');
    expect(verify(gw.chainPem, bundle, { usage: 'client' }).kind).toBe('gateway');
    expect(verify(gw.chainPem, bundle, { usage: 'signing' }).kind).toBe('gateway');
  });

  test('serial numbers are random, positive and unique', async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 50; i++) serials.add((await issueLeaf(east, { kind: 'federation' })).serial);
    expect(serials.size).toBe(50);
    for (const s of serials) expect(Number.parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
  });
});

describe('who may issue admin identities: the admin intermediate, and it nothing else', () => {
  test('regression: an admin certificate from a cluster intermediate is refused (MESHFED_CA_WRONG_ISSUER)', () => {
    const forged = forgeLeaf(east, `spiffe://${TD}/admin/mallory`);
    for (const kinds of [undefined, ['admin' as const]]) {
      expect(codeOf(() => verify(forged.chainPem, bundle, kinds ? { kinds } : {}))).toBe(
        'MESHFED_CA_WRONG_ISSUER',
      );
    }
  });

  test('an admin certificate signed by the root itself is refused', () => {
    const forged = forgeLeaf(root, `spiffe://${TD}/admin/mallory`);
    expect(codeOf(() => verify(forged.chainPem, bundle))).toBe('MESHFED_CA_WRONG_ISSUER');
  });

  test('the admin intermediate cannot vouch for a gateway or a workload', () => {
    for (const id of [`spiffe://${TD}/cluster/east/gateway/gw-1`, `spiffe://${TD}/cluster/east/ns/a/sa/b`]) {
      expect(codeOf(() => verify(forgeLeaf(admins, id).chainPem, bundle))).toBe('MESHFED_CA_WRONG_ISSUER');
    }
  });

  test("meshfed's issuer mints neither", async () => {
    await expect(issueLeaf(east, { kind: 'admin', name: 'alice' })).rejects.toMatchObject({
      code: 'MESHFED_CA_WRONG_ISSUER',
    });
    await expect(issueLeaf(admins, { kind: 'gateway', name: 'gw-1' })).rejects.toMatchObject({
      code: 'MESHFED_CA_WRONG_ISSUER',
    });
    await expect(issueLeaf(root, { kind: 'admin', name: 'alice' })).rejects.toMatchObject({
      code: 'MESHFED_CA_WRONG_ISSUER',
    });
  });
});

describe('verify refuses', () => {
  test('a leaf of cluster A where cluster B is expected', async () => {
    const gw = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
    expect(codeOf(() => verify(gw.chainPem, bundle, { cluster: 'west' }))).toBe('MESHFED_CA_WRONG_CLUSTER');
    expect(verify(gw.chainPem, bundle, { cluster: 'east' }).cluster).toBe('east');
  });

  test('an intermediate vouching for another cluster, even though openssl would accept it', async () => {
    // east's intermediate key signs a leaf that claims to be in cluster west
    const forged = await issueLeaf({ ...east, cluster: 'west' }, { kind: 'gateway', name: 'gw-1' });
    expect(forged.spiffeId).toBe(`spiffe://${TD}/cluster/west/gateway/gw-1`);
    expect(codeOf(() => verify(forged.chainPem, bundle))).toBe('MESHFED_CA_WRONG_CLUSTER');
    expect(codeOf(() => verify(forged.chainPem, bundle, { cluster: 'west' }))).toBe(
      'MESHFED_CA_WRONG_CLUSTER',
    );
  });

  test('a leaf from a foreign root', async () => {
    const foreignRoot = await createRoot({ trustDomain: TD });
    const foreignEast = await issueIntermediate(foreignRoot, { cluster: 'east' });
    const leaf = await issueLeaf(foreignEast, { kind: 'gateway', name: 'gw-1' });
    expect(codeOf(() => verify(leaf.chainPem, bundle))).toBe('MESHFED_CA_UNKNOWN_ROOT');
    // presenting the foreign root itself in the chain does not help
    expect(codeOf(() => verify(leaf.chainPem + foreignRoot.certPem, bundle))).toBe('MESHFED_CA_UNKNOWN_ROOT');
  });

  test('a leaf alone (intermediate missing)', async () => {
    const leaf = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
    expect(codeOf(() => verify(leaf.certPem, bundle))).toBe('MESHFED_CA_UNKNOWN_ROOT');
    // a bundle that remembers the intermediate (what a TLS server needs) completes the path
    const withInts = TrustBundle.fromPem(root.certPem);
    expect(withInts.addIntermediates(east.certPem + west.certPem)).toBe(2);
    expect(withInts.addIntermediates(east.certPem)).toBe(0);
    expect(verify(leaf.certPem, withInts, { cluster: 'east' }).name).toBe('gw-1');
    // remembered intermediates are never trust anchors
    const onlyInts = new TrustBundle();
    onlyInts.addIntermediates(east.certPem);
    expect(codeOf(() => verify(leaf.chainPem, onlyInts))).toBe('MESHFED_CA_UNKNOWN_ROOT');
  });

  test('an expired leaf and a not-yet-valid leaf, with the clock-skew allowance', async () => {
    const hour = 3_600_000;
    const expired = await issueLeaf(east, {
      kind: 'gateway',
      name: 'old',
      notBefore: new Date(Date.now() - 2 * hour),
      ttlMs: hour,
    });
    expect(codeOf(() => verify(expired.chainPem, bundle))).toBe('MESHFED_CA_EXPIRED');
    const future = await issueLeaf(east, {
      kind: 'gateway',
      name: 'new',
      notBefore: new Date(Date.now() + hour),
    });
    expect(codeOf(() => verify(future.chainPem, bundle))).toBe('MESHFED_CA_NOT_YET_VALID');
    // 30 s in the future is inside the default 60 s skew allowance
    const soon = await issueLeaf(east, {
      kind: 'gateway',
      name: 'soon',
      notBefore: new Date(Date.now() + 30_000),
    });
    expect(verify(soon.chainPem, bundle).name).toBe('soon');
    expect(codeOf(() => verify(soon.chainPem, bundle, { clockSkewMs: 0 }))).toBe('MESHFED_CA_NOT_YET_VALID');
    // `now` moves the whole window: the same cached chain is expired tomorrow
    const gw = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
    expect(verify(gw.chainPem, bundle).name).toBe('gw-1');
    expect(codeOf(() => verify(gw.chainPem, bundle, { now: new Date(Date.now() + 25 * hour) }))).toBe(
      'MESHFED_CA_EXPIRED',
    );
  });

  test('the wrong trust domain and the wrong kind', async () => {
    const other = await createRoot({ trustDomain: 'other.example' });
    const oEast = await issueIntermediate(other, { cluster: 'east' });
    const leaf = await issueLeaf(oEast, { kind: 'gateway', name: 'gw-1' });
    const both = TrustBundle.fromPem(root.certPem + other.certPem);
    expect(both.trustDomain).toBeUndefined();
    expect(codeOf(() => verify(leaf.chainPem, both, { trustDomain: TD }))).toBe(
      'MESHFED_CA_WRONG_TRUST_DOMAIN',
    );
    expect(verify(leaf.chainPem, both).trustDomain).toBe('other.example');
    const wl = await issueLeaf(east, { kind: 'workload', namespace: 'shop', serviceAccount: 'orders' });
    expect(codeOf(() => verify(wl.chainPem, bundle, { kinds: ['gateway'] }))).toBe('MESHFED_CA_WRONG_KIND');
  });

  test('a tampered signature', async () => {
    const gw = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
    const der = Buffer.from(new X509Certificate(gw.certPem).raw);
    der[der.length - 5]! ^= 0x01; // inside the signature value
    const inter = new X509Certificate(east.certPem).raw;
    expect(codeOf(() => verify([der, inter], bundle))).toBe('MESHFED_CA_BAD_SIGNATURE');
  });

  test('malformed input never throws anything but a MeshfedError', () => {
    expect(codeOf(() => verify('', bundle))).toBe('MESHFED_CA_MALFORMED');
    expect(
      codeOf(() => verify('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', bundle)),
    ).toBe('MESHFED_CA_MALFORMED');
    expect(codeOf(() => verify([Buffer.from('junk')], bundle))).toBe('MESHFED_CA_MALFORMED');
    expect(codeOf(() => verify([], bundle))).toBe('MESHFED_CA_MALFORMED');
    expect(codeOf(() => verify(east.chainPem, bundle))).toBe('MESHFED_CA_BAD_KEY_USAGE');
  });

  test('a cached failure is re-thrown with the same code on every call', async () => {
    const gw = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
    const empty = new TrustBundle();
    expect(codeOf(() => verify(gw.chainPem, empty))).toBe('MESHFED_CA_UNKNOWN_ROOT');
    expect(codeOf(() => verify(gw.chainPem, empty))).toBe('MESHFED_CA_UNKNOWN_ROOT');
    empty.add(root.certPem);
    expect(verify(gw.chainPem, empty).name).toBe('gw-1');
  });
});

describe('root rotation', () => {
  test('old and new leaves both verify during the overlap; only new ones after the old root is removed', async () => {
    const r1 = await createRoot({ trustDomain: TD });
    const b = TrustBundle.fromPem(r1.certPem);
    const east1 = await issueIntermediate(r1, { cluster: 'east' });
    const old = await issueLeaf(east1, { kind: 'gateway', name: 'gw-1' });
    expect(verify(old.chainPem, b).name).toBe('gw-1');

    const r2 = await createRoot({ trustDomain: TD });
    b.add(r2.certPem); // step 1: every bundle trusts both roots
    expect(b.size).toBe(2);
    const east2 = await issueIntermediate(r2, { cluster: 'east' }); // step 2: re-issue intermediates
    const fresh = await issueLeaf(east2, { kind: 'gateway', name: 'gw-1' });
    expect(verify(old.chainPem, b, { cluster: 'east' }).chainRootFingerprint256).toBe(
      new X509Certificate(r1.certPem).fingerprint256,
    );
    expect(verify(fresh.chainPem, b, { cluster: 'east' }).chainRootFingerprint256).toBe(
      new X509Certificate(r2.certPem).fingerprint256,
    );

    expect(b.remove(new X509Certificate(r1.certPem).fingerprint256.toLowerCase())).toBe(true); // step 3
    expect(b.remove(new X509Certificate(r1.certPem).fingerprint256)).toBe(false);
    expect(codeOf(() => verify(old.chainPem, b))).toBe('MESHFED_CA_UNKNOWN_ROOT');
    expect(verify(fresh.chainPem, b).name).toBe('gw-1');
    expect(
      TrustBundle.fromPem(b.toPem())
        .roots()
        .map((r) => r.fingerprint256),
    ).toEqual([new X509Certificate(r2.certPem).fingerprint256]);
  });
});

describe('SPIFFE IDs', () => {
  test('round trip for every kind', () => {
    expect(parseSpiffeId(spiffeIdFor(TD, 'gateway', { cluster: 'east', name: 'gw-1' }))).toMatchObject({
      kind: 'gateway',
      cluster: 'east',
      name: 'gw-1',
    });
    expect(parseSpiffeId(`spiffe://${TD}/cluster/east/ns/shop/sa/orders`)).toMatchObject({
      kind: 'workload',
      namespace: 'shop',
      serviceAccount: 'orders',
    });
    expect(parseSpiffeId(`spiffe://${TD}/admin/alice`)).toMatchObject({ kind: 'admin', name: 'alice' });
    expect(parseSpiffeId(`spiffe://${TD}/cluster/east`)).toMatchObject({ kind: 'cluster', cluster: 'east' });
  });

  test.each([
    'http://mesh.example/cluster/east',
    'spiffe://mesh.example',
    'spiffe://Mesh.Example/cluster/east',
    'spiffe://mesh.example/cluster/east/gateway',
    'spiffe://mesh.example/cluster//gateway/x',
    'spiffe://mesh.example/cluster/east/gateway/x/y',
    'spiffe://mesh.example/cluster/../admin/x',
    'spiffe://mesh.example/other/x',
  ])('rejects %s', (uri) => {
    expect(codeOf(() => parseSpiffeId(uri))).toBe('MESHFED_CA_BAD_SPIFFE_ID');
  });

  test('names that are not DNS labels are refused at issuance', async () => {
    expect(codeOf(() => spiffeIdFor(TD, 'gateway', { cluster: 'East_1', name: 'gw' }))).toBe(
      'MESHFED_CA_INVALID_NAME',
    );
    await expect(issueIntermediate(root, { cluster: 'not a label' })).rejects.toMatchObject({
      code: 'MESHFED_CA_INVALID_NAME',
    });
    await expect(createRoot({ trustDomain: 'bad domain' })).rejects.toMatchObject({
      code: 'MESHFED_CA_INVALID_NAME',
    });
  });
});

test('leaves are not issued from a root or past the issuer expiry', async () => {
  await expect(issueLeaf(root, { kind: 'gateway', name: 'gw' })).rejects.toMatchObject({
    code: 'MESHFED_USAGE',
  });
  const shortEast = await issueIntermediate(root, { cluster: 'east', ttlMs: 3_600_000 });
  const leaf = await issueLeaf(shortEast, { kind: 'gateway', name: 'gw', ttlMs: 48 * 3_600_000 });
  expect(leaf.notAfter.getTime()).toBeLessThanOrEqual(
    new X509Certificate(shortEast.certPem).validToDate.getTime(),
  );
  await expect(issueIntermediate(east, { cluster: 'sub' })).rejects.toMatchObject({
    code: 'MESHFED_CA_NOT_A_CA',
  });
  expect(west.cluster).toBe('west');
});
