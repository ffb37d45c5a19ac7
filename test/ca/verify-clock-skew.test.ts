import { createRoot, issueIntermediate, issueLeaf, TrustBundle, verify } from '../../ca/index.ts';

// Found by the chaos suite (clock skew ±5 min on one cluster): the data plane accepted a peer
// certificate at most 60 s before its notBefore, so a cluster whose clock ran 5 min ahead (its fresh
// leaves start in everyone else's future), or one 5 min behind (everyone's fresh leaves start in its
// future), could not open a single tunnel.

const MIN = 60_000;

async function leafStartingIn(ms: number, ttlMs = 3_600_000) {
  const root = await createRoot({ trustDomain: 'mesh.example' });
  const east = await issueIntermediate(root, { cluster: 'east' });
  const leaf = await issueLeaf(east, {
    kind: 'gateway',
    name: 'gw-1',
    notBefore: new Date(Date.now() + ms),
    ttlMs,
  });
  return { leaf, bundle: TrustBundle.fromPem(root.certPem) };
}

test('a certificate that starts 5 min in our future verifies (its issuer clock runs ahead)', async () => {
  const { leaf, bundle } = await leafStartingIn(5 * MIN);
  expect(verify(leaf.chainPem, bundle).name).toBe('gw-1');
});

test('one that starts an hour ahead, or 5 min ahead under an explicit 1 min allowance, does not', async () => {
  const far = await leafStartingIn(60 * MIN);
  expect(() => verify(far.leaf.chainPem, far.bundle)).toThrow(
    expect.objectContaining({ code: 'MESHFED_CA_NOT_YET_VALID' }),
  );
  const near = await leafStartingIn(5 * MIN);
  expect(() => verify(near.leaf.chainPem, near.bundle, { clockSkewMs: MIN })).toThrow(
    expect.objectContaining({ code: 'MESHFED_CA_NOT_YET_VALID' }),
  );
});

test('expiry keeps its 60 s allowance', async () => {
  const { leaf, bundle } = await leafStartingIn(-70 * MIN, 60 * MIN);
  expect(() => verify(leaf.chainPem, bundle)).toThrow(
    expect.objectContaining({ code: 'MESHFED_CA_EXPIRED' }),
  );
});

test('a fresh leaf is valid from a tenth of its life ago (at most 10 min), so peers 5 min behind accept it', async () => {
  const root = await createRoot({ trustDomain: 'mesh.example' });
  const east = await issueIntermediate(root, { cluster: 'east' });
  const bundle = TrustBundle.fromPem(root.certPem);
  const day = await issueLeaf(east, { kind: 'gateway', name: 'gw-1', ttlMs: 24 * 60 * MIN });
  expect(Date.now() - day.notBefore.getTime()).toBeGreaterThanOrEqual(9 * MIN);
  const hour = await issueLeaf(east, { kind: 'gateway', name: 'gw-1', ttlMs: 60 * MIN });
  // verified by a peer whose clock is 5 min behind and that allows no skew at all (as OpenSSL does)
  expect(verify(hour.chainPem, bundle, { now: new Date(Date.now() - 5 * MIN), clockSkewMs: 0 }).name).toBe(
    'gw-1',
  );
  // measured from the moment of issuing, not after it: key generation on a busy host takes its own time
  const issuing = Date.now();
  const short = await issueLeaf(east, { kind: 'gateway', name: 'gw-1', ttlMs: 10_000 });
  expect(issuing - short.notBefore.getTime()).toBeLessThanOrEqual(2_000);
});
