import { createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import {
  type CaMaterial,
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
  TrustBundle,
  verify,
} from '../../ca/index.ts';
import { px } from '../../ca/x509-lib.ts';
import { MeshfedError } from '../../core/index.ts';

let root: CaMaterial;
let east: CaMaterial;
let leaf: IssuedLeaf;
let bundle: TrustBundle;

beforeAll(async () => {
  root = await createRoot({ trustDomain: 'mesh.example' });
  east = await issueIntermediate(root, { cluster: 'east' });
  leaf = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
  bundle = TrustBundle.fromPem(root.certPem);
});

/** verify() either returns the genuine identity or throws a MeshfedError; never anything else. */
function outcome(chain: Buffer[] | string): string {
  try {
    return verify(chain, bundle).spiffeId;
  } catch (err) {
    expect(err).toBeInstanceOf(MeshfedError);
    return (err as MeshfedError).code;
  }
}

test('random byte flips in a presented chain never crash verify() and never forge an identity', () => {
  const der = [new X509Certificate(leaf.certPem).raw, new X509Certificate(east.certPem).raw];
  fc.assert(
    fc.property(
      fc.nat({ max: 1 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
      (which, flips) => {
        const chain = der.map((d) => Buffer.from(d));
        const target = chain[which]!;
        for (const [pos, xor] of flips) target[pos % target.length]! ^= xor;
        const r = outcome(chain);
        // a flip may land in an unsigned part (e.g. the outer signature algorithm copy) and change nothing we
        // rely on; otherwise it must be refused
        if (r.startsWith('spiffe://')) expect(r).toBe(leaf.spiffeId);
        else expect(r).toMatch(/^MESHFED_CA_/);
      },
    ),
    { numRuns: 150 },
  );
});

test('arbitrary text as a PEM chain is a typed refusal', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (text) => {
      expect(outcome(`-----BEGIN CERTIFICATE-----\n${text}\n-----END CERTIFICATE-----\n`)).toMatch(
        /^MESHFED_CA_/,
      );
    }),
    { numRuns: 200 },
  );
});

test('a certificate with a duplicated extension (two SANs) is refused as malformed', async () => {
  const signingKey = createPrivateKey(east.keyPem).toCryptoKey(
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  ) as webcrypto.CryptoKey;
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const cert = await px.X509CertificateGenerator.create({
    subject: 'CN=dup',
    issuer: new px.X509Certificate(east.certPem).subjectName,
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new px.SubjectAlternativeNameExtension([
        { type: 'url', value: 'spiffe://mesh.example/cluster/east/gateway/a' },
      ]),
      new px.SubjectAlternativeNameExtension([
        { type: 'url', value: 'spiffe://mesh.example/cluster/west/gateway/b' },
      ]),
    ],
  });
  expect(outcome(cert.toString('pem') + east.certPem)).toBe('MESHFED_CA_MALFORMED');
});
