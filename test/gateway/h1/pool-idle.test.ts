import { createRoot, issueIntermediate, issueLeaf, TrustBundle } from '../../../ca/index.ts';
import { waitFor } from '../../../core/index.ts';
import { tcpServer, westAndPool } from './west-gateway.ts';

// Idle connections to remote gateways closed after the 4 s meant for backends: with most-recently-used
// reuse, the spare ones of a burst idled out within seconds, and the next burst paid TLS handshakes again
// (issue 16). They now have a timeout of their own, under the peer gateway's keep-alive.

test('an idle connection to a remote gateway outlives the idle timeout of local endpoints', async () => {
  const root = await createRoot({ trustDomain: 'meshfed.test' });
  const bundle = TrustBundle.fromPem(root.certPem);
  const east = await issueLeaf(await issueIntermediate(root, { cluster: 'east' }), {
    kind: 'gateway',
    name: 'east-gw',
  });
  const w = await westAndPool(() => east, bundle, root, { local: 40, gateway: 60_000 });
  const backend = await tcpServer();
  try {
    const toGateway = await w.pool.acquire(w.address, 'west');
    w.hold(toGateway.socket);
    const toBackend = await w.pool.acquire(backend.address);
    w.pool.release(toGateway);
    w.pool.release(toBackend);
    await waitFor(() => toBackend.socket.destroyed, {
      timeoutMs: 5_000,
      what: 'the idle backend connection to be closed by the sweep',
    });
    expect(toGateway.socket.destroyed).toBe(false);
    expect(w.pool.takeIdle(w.address, 'west')).toBe(toGateway);
  } finally {
    w.close();
    backend.close();
  }
}, 30_000);
