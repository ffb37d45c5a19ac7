import {
  type CaMaterial,
  createRoot,
  issueIntermediate,
  parseCertificates,
  TrustBundle,
  verify,
} from '../../ca/index.ts';
import { issueLeafInChildProcess } from '../../cli/leaf-issuer.ts';

let root: CaMaterial;
let east: CaMaterial;
beforeAll(async () => {
  root = await createRoot({ trustDomain: 'mesh.example' });
  east = await issueIntermediate(root, { cluster: 'east' });
});

describe('issueLeafInChildProcess', () => {
  test('issues the leaf issueLeaf would: it verifies under the root, with its dates as Dates', async () => {
    const leaf = await issueLeafInChildProcess(east, { kind: 'gateway', name: 'east-gw', ttlMs: 3_600_000 });
    const id = verify(
      parseCertificates(leaf.chainPem, 'chain').map((c) => c.raw),
      TrustBundle.fromPem(root.certPem),
      { kinds: ['gateway'] },
    );
    expect(id.spiffeId).toBe('spiffe://mesh.example/cluster/east/gateway/east-gw');
    expect(leaf.spiffeId).toBe(id.spiffeId);
    expect(leaf.notAfter).toBeInstanceOf(Date);
    expect(leaf.notAfter.getTime() - leaf.notBefore.getTime()).toBeGreaterThanOrEqual(3_600_000);
  });

  test("the child's refusal arrives as the same MeshfedError code", async () => {
    await expect(issueLeafInChildProcess(east, { kind: 'admin', name: 'ops' })).rejects.toMatchObject({
      code: 'MESHFED_CA_WRONG_ISSUER',
    });
  });

  test('a child that does not answer in time is killed, and the error says so and what to check', async () => {
    // no Node process starts and issues a certificate within 1 ms
    const err = await issueLeafInChildProcess(east, { kind: 'gateway', name: 'east-gw' }, 1).catch((e) => e);
    expect(err).toMatchObject({ code: 'MESHFED_INTERNAL' });
    expect(err.message).toMatch(
      /gave no answer within 1 ms and was killed; check that .* starts on this host/,
    );
  });
});
