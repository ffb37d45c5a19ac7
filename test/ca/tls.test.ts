import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import {
  type CaMaterial,
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
  type KeyType,
  parseCertificates,
  peerCertificateChain,
  TrustBundle,
  verify,
} from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import { codeOf } from './helpers.ts';

const TD = 'mesh.example';

/** An mTLS echo server that requires a client certificate from the bundle. */
async function echoServer(
  leaf: IssuedLeaf,
  bundle: TrustBundle,
): Promise<{ server: Server; port: number; peers: string[] }> {
  const peers: string[] = [];
  const server = createServer(
    {
      cert: leaf.chainPem,
      key: leaf.keyPem,
      ca: bundle.toPem(),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    },
    (socket) => {
      try {
        const id = verify(peerCertificateChain(socket), bundle, { kinds: ['gateway'], usage: 'client' });
        peers.push(id.spiffeId);
        socket.pipe(socket);
      } catch (err) {
        peers.push((err as { code: string }).code);
        socket.destroy();
      }
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, peers };
}

function dial(port: number, o: { leaf?: IssuedLeaf; bundle: TrustBundle }): TLSSocket {
  return connect({
    host: '127.0.0.1',
    port,
    ...(o.leaf ? { cert: o.leaf.chainPem, key: o.leaf.keyPem } : {}),
    ca: o.bundle.toPem(),
    // SPIFFE certificates carry no host name: the peer identity is checked with verify() below instead
    checkServerIdentity: () => undefined,
  });
}

async function roundTrip(socket: TLSSocket, text: string): Promise<string> {
  socket.write(text);
  const [data] = await once(socket, 'data');
  return String(data);
}

describe.each<KeyType>(['ecdsa-p256', 'rsa-2048'])('%s gateway certificates over node:tls', (keyType) => {
  let root: CaMaterial;
  let bundle: TrustBundle;
  let eastGw: IssuedLeaf;
  let westGw: IssuedLeaf;
  let server: Server;
  let port: number;
  let peers: string[];

  beforeAll(async () => {
    root = await createRoot({ trustDomain: TD, keyType });
    bundle = TrustBundle.fromPem(root.certPem);
    const eastCa = await issueIntermediate(root, { cluster: 'east' });
    eastGw = await issueLeaf(eastCa, { kind: 'gateway', name: 'gw-1' });
    westGw = await issueLeaf(await issueIntermediate(root, { cluster: 'west' }), {
      kind: 'gateway',
      name: 'gw-1',
    });
    // the accepting gateway knows the other clusters' intermediates (node's TLS server sees only the client's leaf)
    const serverBundle = TrustBundle.fromPem(root.certPem);
    expect(serverBundle.addIntermediates(eastCa.certPem)).toBe(1);
    ({ server, port, peers } = await echoServer(westGw, serverBundle));
  });
  afterAll(() => server.close());

  test('mutual TLS between two clusters gateways, both sides verify the other', async () => {
    const socket = dial(port, { leaf: eastGw, bundle });
    await once(socket, 'secureConnect');
    expect(socket.authorized).toBe(true);
    const server = verify(peerCertificateChain(socket), bundle, {
      cluster: 'west',
      kinds: ['gateway'],
      usage: 'server',
    });
    expect(server.spiffeId).toBe(`spiffe://${TD}/cluster/west/gateway/gw-1`);
    expect(await roundTrip(socket, 'ping')).toBe('ping');
    expect(peers).toContain(`spiffe://${TD}/cluster/east/gateway/gw-1`);
    // the dialer expected cluster "east" behind this address: the identity check refuses it
    expect(codeOf(() => verify(peerCertificateChain(socket), bundle, { cluster: 'east' }))).toBe(
      'MESHFED_CA_WRONG_CLUSTER',
    );
    socket.destroy();
  });

  test('a client with no certificate is refused', async () => {
    const refused = once(server, 'tlsClientError');
    const socket = dial(port, { bundle });
    socket.on('error', () => {});
    const [err] = await refused;
    expect(String((err as NodeJS.ErrnoException).code ?? err)).toMatch(/CERT|PEER/);
    socket.destroy();
  });

  test('a client from a foreign root is refused', async () => {
    const foreign = await createRoot({ trustDomain: TD, keyType });
    const intruder = await issueLeaf(await issueIntermediate(foreign, { cluster: 'east' }), {
      kind: 'gateway',
      name: 'gw-1',
    });
    const refused = once(server, 'tlsClientError');
    const socket = dial(port, {
      leaf: intruder,
      bundle: TrustBundle.fromPem(root.certPem + foreign.certPem),
    });
    socket.on('error', () => {});
    const [err] = await refused;
    expect(err).toHaveProperty('message');
    expect(peers).not.toContain(`spiffe://${TD}/cluster/east/gateway/intruder`);
    socket.destroy();
  });
});

test('root rotation keeps open and new connections working through the overlap', async () => {
  const r1 = await createRoot({ trustDomain: TD });
  const bundle = TrustBundle.fromPem(r1.certPem);
  const east1 = await issueIntermediate(r1, { cluster: 'east' });
  const west1 = await issueIntermediate(r1, { cluster: 'west' });
  const serverLeaf1 = await issueLeaf(west1, { kind: 'gateway', name: 'gw-1' });
  const clientLeaf1 = await issueLeaf(east1, { kind: 'gateway', name: 'gw-1' });
  const serverBundle = TrustBundle.fromPem(r1.certPem);
  serverBundle.addIntermediates(east1.certPem);
  const { server, port, peers } = await echoServer(serverLeaf1, serverBundle);
  try {
    const before = dial(port, { leaf: clientLeaf1, bundle });
    await once(before, 'secureConnect');
    expect(await roundTrip(before, 'a')).toBe('a');

    // step 1: both roots trusted everywhere; step 2: new intermediates and leaves under the new root
    const r2 = await createRoot({ trustDomain: TD });
    bundle.add(r2.certPem);
    serverBundle.add(r2.certPem);
    const serverLeaf2 = await issueLeaf(await issueIntermediate(r2, { cluster: 'west' }), {
      kind: 'gateway',
      name: 'gw-1',
    });
    const east2 = await issueIntermediate(r2, { cluster: 'east' });
    serverBundle.addIntermediates(east2.certPem);
    const clientLeaf2 = await issueLeaf(east2, { kind: 'gateway', name: 'gw-1' });
    server.setSecureContext({
      cert: serverLeaf2.chainPem,
      key: serverLeaf2.keyPem,
      ca: serverBundle.toPem(),
      requestCert: true,
      rejectUnauthorized: true,
    } as Parameters<Server['setSecureContext']>[0]);

    // an old-generation client still connects, a new one too; the connection opened before still works
    for (const leaf of [clientLeaf1, clientLeaf2]) {
      const s = dial(port, { leaf, bundle });
      await once(s, 'secureConnect');
      expect(verify(peerCertificateChain(s), bundle, { cluster: 'west' }).serial).toBe(serverLeaf2.serial);
      expect(await roundTrip(s, 'b')).toBe('b');
      s.destroy();
    }
    expect(await roundTrip(before, 'c')).toBe('c');
    expect(peers).toEqual([
      `spiffe://${TD}/cluster/east/gateway/gw-1`,
      `spiffe://${TD}/cluster/east/gateway/gw-1`,
      `spiffe://${TD}/cluster/east/gateway/gw-1`,
    ]);
    before.destroy();

    // step 3: the old root leaves the bundle; old-generation leaves stop verifying
    bundle.remove(verify(clientLeaf1.chainPem, bundle).chainRootFingerprint256);
    expect(codeOf(() => verify(clientLeaf1.chainPem, bundle))).toBe('MESHFED_CA_UNKNOWN_ROOT');
    expect(verify(clientLeaf2.chainPem, bundle).cluster).toBe('east');
  } finally {
    server.close();
  }
});

test('a peer chain is read the same each time on both sides; a server reads the leaf without the detailed certificate objects', async () => {
  const root = await createRoot({ trustDomain: TD });
  const bundle = TrustBundle.fromPem(root.certPem);
  const east = await issueLeaf(await issueIntermediate(root, { cluster: 'east' }), {
    kind: 'gateway',
    name: 'a',
  });
  const west = await issueLeaf(await issueIntermediate(root, { cluster: 'west' }), {
    kind: 'gateway',
    name: 'b',
  });
  const seen: {
    first: Buffer[];
    second: Buffer[];
    detailedCalls: number;
    detailedAfter: Buffer | undefined;
  }[] = [];
  const server = createServer(
    {
      cert: west.chainPem,
      key: west.keyPem,
      ca: bundle.toPem(),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket) => {
      let detailedCalls = 0;
      const detailed = socket.getPeerCertificate.bind(socket);
      socket.getPeerCertificate = ((d?: boolean) => {
        detailedCalls++;
        return detailed(d as true);
      }) as typeof socket.getPeerCertificate;
      const first = peerCertificateChain(socket);
      const second = peerCertificateChain(socket);
      seen.push({ first, second, detailedCalls, detailedAfter: detailed(true)?.raw });
      socket.destroy();
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const socket = dial((server.address() as AddressInfo).port, { leaf: east, bundle });
    await once(socket, 'secureConnect');
    // the client: the leaf and the intermediate its server sent (and the root node appends), twice the same
    const first = peerCertificateChain(socket);
    const second = peerCertificateChain(socket);
    expect(first.length).toBeGreaterThanOrEqual(2);
    expect(second).toEqual(first);
    expect(verify(first, bundle, { cluster: 'west', kinds: ['gateway'] }).spiffeId).toMatch(
      /cluster\/west\/gateway\/b$/,
    );
    // the server reads the client's certificate once it has the client's Finished, after the client's secureConnect
    await waitFor(() => seen.length > 0, { timeoutMs: 10_000, what: 'the server to accept the connection' });
    socket.destroy();
    const s = seen[0]!;
    // the server: the client's leaf only, read without getPeerCertificate, and still there for node's own calls
    expect(s.first).toHaveLength(1);
    expect(s.second).toEqual(s.first);
    expect(s.detailedCalls).toBe(0);
    expect(s.detailedAfter?.equals(s.first[0]!)).toBe(true);
    expect(
      verify(
        [
          ...s.first,
          ...parseCertificates(east.chainPem, 'the chain')
            .slice(1)
            .map((c) => c.raw),
        ],
        bundle,
        { kinds: ['gateway'] },
      ).spiffeId,
    ).toMatch(/cluster\/east\/gateway\/a$/);
  } finally {
    server.close();
  }
});
