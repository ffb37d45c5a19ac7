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
});
