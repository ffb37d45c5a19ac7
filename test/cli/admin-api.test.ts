import { mkdtempSync } from 'node:fs';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createRoot,
  type IssuedLeaf,
  issueAdminIntermediate,
  issueIntermediate,
  issueLeaf,
  TrustBundle,
} from '../../ca/index.ts';
import { AdminClient } from '../../cli/admin/admin-client.ts';
import { type AdminBackend, AdminServer } from '../../cli/admin/admin-server.ts';
import { MeshfedError, silentLogger } from '../../core/index.ts';
import { forgeLeaf } from '../ca/helpers.ts';

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

/** An admin server on loopback TCP (mTLS), presenting `leaf()` and trusting `bundle`. */
async function tcpAdminServer(leaf: () => IssuedLeaf, bundle: TrustBundle, onActivity?: () => void) {
  const server = new AdminServer({
    backend,
    logger: silentLogger(),
    ...(onActivity ? { onActivity } : {}),
    tcp: { host: '127.0.0.1', port: 0, leaf, bundle: () => bundle, trustDomain: 'mesh.example' },
  });
  await server.start();
  return { server, address: `127.0.0.1:${server.tcpPort}` };
}

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

  test('over TCP: mTLS with an admin identity is served; a gateway identity, and an admin one from a cluster intermediate, are refused', async () => {
    const root = await createRoot({ trustDomain: 'mesh.example' });
    const east = await issueIntermediate(root, { cluster: 'east' });
    const admins = await issueAdminIntermediate(root);
    const serverLeaf = await issueLeaf(east, { kind: 'gateway', name: 'gw' });
    const adminLeaf = await issueLeaf(admins, { kind: 'admin', name: 'alice' });
    const gwLeaf = await issueLeaf(east, { kind: 'gateway', name: 'other' });
    // what the holder of one cluster's intermediate key can make with openssl
    const forged = forgeLeaf(east, 'spiffe://mesh.example/admin/mallory');
    const bundle = TrustBundle.fromPem(root.certPem);
    // every call is admin activity (the daemon re-arms its idle heap shrink on it), refused or not
    let activity = 0;
    const { server, address } = await tcpAdminServer(
      () => serverLeaf,
      bundle,
      () => activity++,
    );
    const ok = new AdminClient({
      address,
      tls: { caPem: root.certPem, certPem: adminLeaf.chainPem, keyPem: adminLeaf.keyPem },
    });
    const wrong = new AdminClient({
      address,
      tls: { caPem: root.certPem, certPem: gwLeaf.chainPem, keyPem: gwLeaf.keyPem },
    });
    const clusterIssued = new AdminClient({
      address,
      tls: { caPem: root.certPem, certPem: forged.chainPem, keyPem: forged.keyPem },
    });
    try {
      expect(activity).toBe(0);
      expect((await ok.status()).cluster).toBe('east');
      expect(activity).toBe(1);
      // regression: any cluster intermediate could issue an admin identity every gateway accepted
      await expect(clusterIssued.status()).rejects.toMatchObject({
        code: 'MESHFED_GATEWAY_IDENTITY_REFUSED',
        details: { reason: 'MESHFED_CA_WRONG_ISSUER' },
      });
      await expect(wrong.status()).rejects.toMatchObject({
        code: 'MESHFED_GATEWAY_IDENTITY_REFUSED',
        details: { reason: 'MESHFED_CA_WRONG_KIND' },
      });
      expect(activity).toBe(3);
    } finally {
      ok.close();
      wrong.close();
      clusterIssued.close();
      await server.stop();
    }
  });

  test('over TCP: a root added to the bundle and a rotated leaf take effect on credentialsChanged(), without a restart', async () => {
    const root = await createRoot({ trustDomain: 'mesh.example' });
    const east = await issueIntermediate(root, { cluster: 'east' });
    const next = await createRoot({ trustDomain: 'mesh.example' });
    const nextAdmin = await issueLeaf(await issueAdminIntermediate(next), { kind: 'admin', name: 'bob' });
    let leaf = await issueLeaf(east, { kind: 'gateway', name: 'gw' });
    const bundle = TrustBundle.fromPem(root.certPem);
    const { server, address } = await tcpAdminServer(() => leaf, bundle);
    /** the serial of the certificate the listener presents to a new connection */
    const presented = () =>
      new Promise<string>((resolve, reject) => {
        const socket = tls.connect({
          host: '127.0.0.1',
          port: server.tcpPort!,
          rejectUnauthorized: false,
          ALPNProtocols: ['h2'],
        });
        socket.once('secureConnect', () => {
          resolve(socket.getPeerCertificate().serialNumber.toLowerCase());
          socket.destroy();
        });
        socket.once('error', reject);
      });
    const client = () =>
      new AdminClient({
        address,
        tls: { caPem: root.certPem, certPem: nextAdmin.chainPem, keyPem: nextAdmin.keyPem },
      });
    const before = client();
    try {
      await expect(before.status()).rejects.toMatchObject({ code: 'MESHFED_ADMIN_UNREACHABLE' });
      expect(BigInt(`0x${await presented()}`)).toBe(BigInt(`0x${leaf.serial}`));

      bundle.add(next.certPem);
      leaf = await issueLeaf(east, { kind: 'gateway', name: 'gw' });
      server.credentialsChanged();

      const after = client();
      try {
        expect((await after.status()).cluster).toBe('east');
      } finally {
        after.close();
      }
      expect(BigInt(`0x${await presented()}`)).toBe(BigInt(`0x${leaf.serial}`));
    } finally {
      before.close();
      await server.stop();
    }
  });
});
