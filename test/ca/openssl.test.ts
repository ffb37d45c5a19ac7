import { KeyObject, type webcrypto } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type CaMaterial,
  createRoot,
  type IdentityKind,
  issueAdminIntermediate,
  issueIntermediate,
  issueLeaf,
  type KeyType,
  loadCa,
  TrustBundle,
  verify,
} from '../../ca/index.ts';
import { px } from '../../ca/x509-lib.ts';
import { asyncCodeOf, codeOf, openssl, opensslVerify, scratchDir } from './helpers.ts';

const TD = 'mesh.example';
const scratch = scratchDir();
afterAll(() => scratch.cleanup());

function sh(args: string[]): void {
  const r = openssl(args, scratch.dir);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}
const file = (name: string): string => readFileSync(join(scratch.dir, name), 'utf8');

const KINDS: { kind: IdentityKind; o: Record<string, string> }[] = [
  { kind: 'gateway', o: { name: 'gw-1' } },
  { kind: 'federation', o: {} },
  { kind: 'workload', o: { namespace: 'shop', serviceAccount: 'orders' } },
  { kind: 'admin', o: { name: 'alice' } },
];

describe.each<KeyType>(['ecdsa-p256', 'rsa-2048'])('%s: openssl verify agrees with verify()', (keyType) => {
  let root: CaMaterial;
  let east: CaMaterial;
  beforeAll(async () => {
    root = await createRoot({ trustDomain: TD, keyType });
    east = await issueIntermediate(root, { cluster: 'east' });
  });

  test('every kind chains, through name constraints', async () => {
    const bundle = TrustBundle.fromPem(root.certPem);
    const admins = await issueAdminIntermediate(root);
    for (const { kind, o } of KINDS) {
      const issuer = kind === 'admin' ? admins : east;
      const leaf = await issueLeaf(issuer, { kind, ...o });
      const r = opensslVerify(scratch.dir, root.certPem, issuer.chainPem, leaf.certPem);
      expect({ kind, status: r.status, out: r.stdout.trim().split(': ')[1] }).toEqual({
        kind,
        status: 0,
        out: 'OK',
      });
      expect(verify(leaf.chainPem, bundle).kind).toBe(kind);
    }
  });

  test('both refuse an expired leaf and a foreign root', async () => {
    const bundle = TrustBundle.fromPem(root.certPem);
    const old = await issueLeaf(east, {
      kind: 'gateway',
      name: 'old',
      notBefore: new Date(Date.now() - 7_200_000),
      ttlMs: 3_600_000,
    });
    expect(opensslVerify(scratch.dir, root.certPem, east.chainPem, old.certPem).status).not.toBe(0);
    expect(codeOf(() => verify(old.chainPem, bundle))).toBe('MESHFED_CA_EXPIRED');
    const foreign = await createRoot({ trustDomain: TD, keyType });
    const fEast = await issueIntermediate(foreign, { cluster: 'east' });
    const leaf = await issueLeaf(fEast, { kind: 'gateway', name: 'gw-1' });
    expect(opensslVerify(scratch.dir, root.certPem, fEast.chainPem, leaf.certPem).status).not.toBe(0);
    expect(codeOf(() => verify(leaf.chainPem, bundle))).toBe('MESHFED_CA_UNKNOWN_ROOT');
  });
});

describe('bring your own CA made by openssl', () => {
  beforeAll(() => {
    // an RSA root whose key is legacy encrypted PKCS#1 ("Proc-Type: 4,ENCRYPTED")
    sh(['genrsa', '-traditional', '-aes256', '-passout', 'pass:s3cret', '-out', 'corp-root.key', '2048']);
    sh([
      'req',
      '-x509',
      '-new',
      '-key',
      'corp-root.key',
      '-passin',
      'pass:s3cret',
      '-subj',
      '/CN=Corp Root/O=Corp',
      '-days',
      '3650',
      '-addext',
      'basicConstraints=critical,CA:true',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      'corp-root.crt',
    ]);
    // a corporate intermediate (plain PKCS#1, unencrypted) that may sign one more CA level
    sh(['genrsa', '-traditional', '-out', 'corp-int.key', '2048']);
    sh([
      'req',
      '-new',
      '-key',
      'corp-int.key',
      '-subj',
      '/CN=Corp Issuing CA/O=Corp',
      '-out',
      'corp-int.csr',
    ]);
    writeFileSync(
      join(scratch.dir, 'ca1.ext'),
      'basicConstraints=critical,CA:true,pathlen:1\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
    );
    sh([
      'x509',
      '-req',
      '-in',
      'corp-int.csr',
      '-CA',
      'corp-root.crt',
      '-CAkey',
      'corp-root.key',
      '-passin',
      'pass:s3cret',
      '-CAcreateserial',
      '-days',
      '365',
      '-extfile',
      'ca1.ext',
      '-out',
      'corp-int.crt',
    ]);
    // a cluster intermediate made outside meshfed: SPIFFE URI SAN but NO name constraints
    sh(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'byo-east.key']);
    sh(['req', '-new', '-key', 'byo-east.key', '-subj', '/CN=byo east', '-out', 'byo-east.csr']);
    writeFileSync(
      join(scratch.dir, 'east.ext'),
      `basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=URI:spiffe://${TD}/cluster/east\n`,
    );
    sh([
      'x509',
      '-req',
      '-in',
      'byo-east.csr',
      '-CA',
      'corp-root.crt',
      '-CAkey',
      'corp-root.key',
      '-passin',
      'pass:s3cret',
      '-CAcreateserial',
      '-days',
      '30',
      '-extfile',
      'east.ext',
      '-out',
      'byo-east.crt',
    ]);
  });

  test('an RSA root with an encrypted PKCS#1 key: loadCa, issue, and both verifiers agree', async () => {
    const root = await loadCa({
      certPem: file('corp-root.crt'),
      keyPem: file('corp-root.key'),
      passphrase: 's3cret',
      trustDomain: TD,
    });
    expect(root.keyType).toBe('rsa-2048');
    expect(root.keyPem).toContain('-----BEGIN PRIVATE KEY-----');
    expect(root.bundlePem).toBe(root.certPem);
    const east = await issueIntermediate(root, { cluster: 'east' });
    expect(east.keyType).toBe('rsa-2048');
    const bundle = TrustBundle.fromPem(file('corp-root.crt'));
    expect(bundle.trustDomain).toBeUndefined(); // the corporate root names no trust domain
    const admins = await issueAdminIntermediate(root);
    for (const { kind, o } of KINDS) {
      const issuer = kind === 'admin' ? admins : east;
      const leaf = await issueLeaf(issuer, { kind, ...o });
      expect(opensslVerify(scratch.dir, file('corp-root.crt'), issuer.chainPem, leaf.certPem).status).toBe(0);
      expect(verify(leaf.chainPem, bundle, { trustDomain: TD }).kind).toBe(kind);
    }
  });

  test('a wrong or missing passphrase, and a key of another certificate, are refused', async () => {
    const base = { certPem: file('corp-root.crt'), trustDomain: TD };
    expect(
      await asyncCodeOf(() => loadCa({ ...base, keyPem: file('corp-root.key'), passphrase: 'nope' })),
    ).toBe('MESHFED_CA_BAD_PASSPHRASE');
    expect(await asyncCodeOf(() => loadCa({ ...base, keyPem: file('corp-root.key') }))).toBe(
      'MESHFED_CA_BAD_PASSPHRASE',
    );
    expect(await asyncCodeOf(() => loadCa({ ...base, keyPem: file('corp-int.key') }))).toBe(
      'MESHFED_CA_KEY_MISMATCH',
    );
    expect(await asyncCodeOf(() => loadCa({ ...base, keyPem: 'not a key' }))).toBe('MESHFED_CA_MALFORMED');
  });

  test('an intermediate brought with its chain issues cluster intermediates one level down', async () => {
    const corp = await loadCa({
      certPem: file('corp-int.crt') + file('corp-root.crt'),
      keyPem: file('corp-int.key'),
      trustDomain: TD,
    });
    expect(corp.bundlePem).toBe(new TrustBundle(TrustBundle.fromPem(file('corp-root.crt')).roots()).toPem());
    const west = await issueIntermediate(corp, { cluster: 'west' });
    const leaf = await issueLeaf(west, { kind: 'gateway', name: 'gw-1' });
    // leaf + cluster intermediate + corporate intermediate
    expect(leaf.chainPem.match(/BEGIN CERTIFICATE/g)).toHaveLength(3);
    const ints = leaf.chainPem.slice(leaf.certPem.length);
    expect(opensslVerify(scratch.dir, file('corp-root.crt'), ints, leaf.certPem).status).toBe(0);
    expect(verify(leaf.chainPem, TrustBundle.fromPem(file('corp-root.crt')), { cluster: 'west' }).name).toBe(
      'gw-1',
    );
  });

  test('a BYO cluster intermediate without name constraints is still bound to its cluster', async () => {
    const east = await loadCa({
      certPem: file('byo-east.crt'),
      chainPem: '',
      keyPem: file('byo-east.key'),
      trustDomain: TD,
    });
    expect(east.cluster).toBe('east');
    expect(east.keyType).toBe('ecdsa-p256');
    const bundle = TrustBundle.fromPem(file('corp-root.crt'));
    const ok = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
    expect(verify(ok.chainPem, bundle, { cluster: 'east' }).cluster).toBe('east');
    const forged = await issueLeaf({ ...east, cluster: 'west' }, { kind: 'gateway', name: 'gw-1' });
    // openssl has nothing to object to (no name constraints); meshfed's verify() binds the cluster
    expect(opensslVerify(scratch.dir, file('corp-root.crt'), east.chainPem, forged.certPem).status).toBe(0);
    expect(codeOf(() => verify(forged.chainPem, bundle))).toBe('MESHFED_CA_WRONG_CLUSTER');
    // and the wrong trust domain is refused when loading
    expect(
      await asyncCodeOf(() =>
        loadCa({ certPem: file('byo-east.crt'), keyPem: file('byo-east.key'), trustDomain: 'other.example' }),
      ),
    ).toBe('MESHFED_CA_WRONG_TRUST_DOMAIN');
  });

  test('pathLen is enforced: a cluster intermediate cannot sign another CA, and both verifiers agree', async () => {
    const east = await loadCa({
      certPem: file('byo-east.crt'),
      keyPem: file('byo-east.key'),
      trustDomain: TD,
    });
    expect(await asyncCodeOf(() => issueIntermediate(east, { cluster: 'east' }))).toBe('MESHFED_CA_NOT_A_CA');
    // openssl signs a sub-CA under the pathlen:0 intermediate anyway, and a leaf under that
    sh(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'sub.key']);
    sh(['req', '-new', '-key', 'sub.key', '-subj', '/CN=rogue sub CA', '-out', 'sub.csr']);
    writeFileSync(
      join(scratch.dir, 'sub.ext'),
      'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign\n',
    );
    sh([
      'x509',
      '-req',
      '-in',
      'sub.csr',
      '-CA',
      'byo-east.crt',
      '-CAkey',
      'byo-east.key',
      '-CAcreateserial',
      '-days',
      '5',
      '-extfile',
      'sub.ext',
      '-out',
      'sub.crt',
    ]);
    sh(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'rogue.key']);
    sh(['req', '-new', '-key', 'rogue.key', '-subj', '/CN=rogue', '-out', 'rogue.csr']);
    writeFileSync(
      join(scratch.dir, 'leaf.ext'),
      `basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://${TD}/cluster/east/gateway/rogue\n`,
    );
    sh([
      'x509',
      '-req',
      '-in',
      'rogue.csr',
      '-CA',
      'sub.crt',
      '-CAkey',
      'sub.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      'leaf.ext',
      '-out',
      'rogue.crt',
    ]);
    const ints = file('sub.crt') + file('byo-east.crt');
    expect(opensslVerify(scratch.dir, file('corp-root.crt'), ints, file('rogue.crt')).status).not.toBe(0);
    expect(codeOf(() => verify(file('rogue.crt') + ints, TrustBundle.fromPem(file('corp-root.crt'))))).toBe(
      'MESHFED_CA_BAD_KEY_USAGE',
    );
  });

  test('an expired issuer and a non-CA certificate are refused as issuers', async () => {
    const leafAsCa = await asyncCodeOf(() =>
      loadCa({ certPem: file('rogue.crt'), keyPem: file('rogue.key'), trustDomain: TD }),
    );
    expect(leafAsCa).toBe('MESHFED_CA_NOT_A_CA');
    // openssl 3.0 cannot backdate a certificate; @peculiar/x509 can
    const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const old = await px.X509CertificateGenerator.createSelfSigned({
      name: 'CN=Old Root',
      keys,
      notBefore: new Date('2020-01-01T00:00:00Z'),
      notAfter: new Date('2021-01-01T00:00:00Z'),
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new px.BasicConstraintsExtension(true, undefined, true)],
    });
    const oldKey = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
    expect(
      await asyncCodeOf(() => loadCa({ certPem: old.toString('pem'), keyPem: oldKey, trustDomain: TD })),
    ).toBe('MESHFED_CA_EXPIRED');
  });
});
