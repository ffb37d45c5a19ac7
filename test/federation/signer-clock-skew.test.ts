import { issueLeaf } from '../../ca/index.ts';
import { JwsSigner, MessageVerifier, SCHEMA_VERSION } from '../../federation/index.ts';
import { makePki, TD } from './helpers.ts';

// Found by the chaos suite (clock skew): a cluster whose clock ran 5 min ahead signed with certificates
// that start 5 min in the receiver's future, and the receiver refused them (certificate_expired) even
// with federation.maxClockSkew set to 10 min: the allowed skew covered the message, not its signer.

const FIVE_MIN = 5 * 60_000;

async function aheadSigned() {
  const pki = await makePki(['east']);
  const now = Date.now();
  // what a signer 5 min ahead issues for itself: valid from its now minus ca's 60 s backdate
  const leaf = await issueLeaf(pki.intermediates.get('east')!, {
    kind: 'federation',
    notBefore: new Date(now + FIVE_MIN - 60_000),
    ttlMs: 3_600_000,
  });
  const text = new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem }).sign({
    v: SCHEMA_VERSION,
    type: 'entry',
    cluster: 'east',
    namespace: 'shop',
    name: 'orders',
    revision: (now + FIVE_MIN) * 1000,
    issuedAt: now + FIVE_MIN,
    expiresAt: now + FIVE_MIN + 600_000,
    ports: [{ name: 'http', port: 8080, protocol: 'http' }],
    locality: { region: 'us-east', zone: 'us-east-1a' },
    gateways: [{ name: 'gw-1', address: '127.0.0.1:15443' }],
    weight: 1,
  });
  const verifier = (maxClockSkew: number) =>
    new MessageVerifier({
      trustDomain: TD,
      bundle: () => pki.bundle,
      maxMessageBytes: 16 * 1024,
      maxSnapshotBytes: 1024 * 1024,
      maxEntryTtl: 3_600_000,
      maxClockSkew,
      now: () => now,
    });
  return { text, verifier };
}

test('a signer 5 min ahead is accepted when maxClockSkew allows 10 min', async () => {
  const { text, verifier } = await aheadSigned();
  expect(verifier(10 * 60_000).verify(text)).toMatchObject({ ok: true });
});

test('a signer 5 min ahead is refused under the default 30 s skew', async () => {
  const { text, verifier } = await aheadSigned();
  expect(verifier(30_000).verify(text)).toMatchObject({ ok: false });
});
