import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRoot, issueIntermediate, issueLeaf, TrustBundle } from '../../ca/index.ts';
import { AdminClient } from '../../cli/admin/admin-client.ts';
import { type AdminBackend, AdminServer } from '../../cli/admin/admin-server.ts';
import { MeshfedError, silentLogger } from '../../core/index.ts';

const backend: AdminBackend = {
  status: () => ({
    cluster: 'east',
    gateway: 'gw',
    nats_connected: true,
    clusters_seen: ['east', 'west'],
    now_ms: Date.now(),
  }),
  clusters: () => [
    { name: 'west', region: 'us-west', zone: 'us-west-2a', stale: false, services: 2, gateways: [] },
  ],
  services: () => [{ namespace: 'demo', name: 'hello', ports: [], offers: [{ cluster: 'west', weight: 3 }] }],
  stats: async (windowMs) => ({ windowMs, atMs: 1, buckets: [], rows: [] }),
  routes: (ns, name) => {
    if (name === 'nope') throw new MeshfedError('MESHFED_GATEWAY_NO_ROUTE', `no service ${name}.${ns}`);
    return { service: `${name}.${ns}`, levels: [{ level: 0, targets: [{ id: 'x' }] }] };
  },
};

describe('admin gRPC API', () => {
  test('over the Unix socket: every call answers; unknown services are NOT_FOUND; a dead socket is MESHFED_ADMIN_UNREACHABLE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-admin-'));
    const socketPath = join(dir, 'admin.sock');
    const server = new AdminServer({ backend, socketPath, logger: silentLogger() });
    await server.start();
    const client = new AdminClient({ address: `unix:${socketPath}` });
    try {
      expect((await client.status()).clusters_seen).toEqual(['east', 'west']);
      expect((await client.clusters())[0].name).toBe('west');
      expect((await client.services())[0].offers[0].weight).toBe(3);
      expect((await client.routes('demo', 'hello')).levels[0].targets[0].id).toBe('x');
      // the window asked for reaches the gateway, clamped to what it keeps
      expect((await client.stats(30)).windowMs).toBe(30_000);
      expect((await client.stats(100_000)).windowMs).toBe(300_000);
      await expect(client.routes('demo', 'nope')).rejects.toMatchObject({ code: 'MESHFED_GATEWAY_NO_ROUTE' });
    } finally {
      client.close();
      await server.stop();
    }
    const dead = new AdminClient({ address: `unix:${socketPath}` });
    await expect(dead.status()).rejects.toMatchObject({ code: 'MESHFED_ADMIN_UNREACHABLE' });
    dead.close();
  });

  test('over TCP: mTLS with an admin identity is served, a gateway identity is refused', async () => {
    const root = await createRoot({ trustDomain: 'mesh.example' });
    const east = await issueIntermediate(root, { cluster: 'east' });
    const serverLeaf = await issueLeaf(east, { kind: 'gateway', name: 'gw' });
    const adminLeaf = await issueLeaf(east, { kind: 'admin', name: 'alice' });
    const gwLeaf = await issueLeaf(east, { kind: 'gateway', name: 'other' });
    const bundle = TrustBundle.fromPem(root.certPem);
    const server = new AdminServer({
      backend,
      logger: silentLogger(),
      tcp: {
        host: '127.0.0.1',
        port: 0,
        certPem: serverLeaf.chainPem,
        keyPem: serverLeaf.keyPem,
        bundle: () => bundle,
        trustDomain: 'mesh.example',
      },
    });
    await server.start();
    const address = `127.0.0.1:${server.tcpPort}`;
    const ok = new AdminClient({
      address,
      tls: { caPem: root.certPem, certPem: adminLeaf.chainPem, keyPem: adminLeaf.keyPem },
    });
    const wrong = new AdminClient({
      address,
      tls: { caPem: root.certPem, certPem: gwLeaf.chainPem, keyPem: gwLeaf.keyPem },
    });
    try {
      expect((await ok.status()).cluster).toBe('east');
      await expect(wrong.status()).rejects.toMatchObject({ code: 'MESHFED_GATEWAY_IDENTITY_REFUSED' });
    } finally {
      ok.close();
      wrong.close();
      await server.stop();
    }
  });
});
