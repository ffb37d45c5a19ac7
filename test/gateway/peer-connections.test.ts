import { X509Certificate, webcrypto } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { createRoot, type IssuedLeaf, issueIntermediate, issueLeaf } from '../../ca/index.ts';
import { px } from '../../ca/x509-lib.ts';
import { waitFor } from '../../core/index.ts';
import { Counter, createRegistry } from '../../core/metrics.ts';
import { FAST_ALPN } from '../../gateway/index.ts';
import { PeerConnections } from '../../gateway/peer-connections.ts';
import {
  echoServer,
  fastPathWebGet,
  httpService,
  meshOfFile,
  type TestGateway,
  tunnelGet,
  tunnelSession,
} from './harness.ts';

// limits.maxConnectionsPerPeer: one authenticated peer identity holds at most that many east-west
// connections, whichever protocol they speak; other peers keep theirs, and a closed connection frees its slot.

/** a TLS socket as PeerConnections sees it: a verified certificate `pem`, closed by destroy() */
function fakeTls(pem: string): TLSSocket & { destroyed: boolean } {
  const s = new EventEmitter() as EventEmitter & { destroyed: boolean };
  s.destroyed = false;
  const cert = new X509Certificate(pem);
  Object.assign(s, {
    getPeerX509Certificate: () => cert,
    destroy() {
      if (s.destroyed) return;
      s.destroyed = true;
      s.emit('close');
    },
  });
  return s as unknown as TLSSocket & { destroyed: boolean };
}

/** a self-signed certificate naming `dns` and no SPIFFE ID */
async function plainCert(dns: string): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const cert = await px.X509CertificateGenerator.createSelfSigned({
    name: `CN=${dns}`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new px.SubjectAlternativeNameExtension([{ type: 'dns', value: dns }])],
  });
  return cert.toString('pem');
}

describe('PeerConnections', () => {
  function limited(max: number) {
    const registry = createRegistry();
    const refused = new Counter({
      name: 'refused_total',
      help: 'refused',
      labelNames: ['listener', 'reason'],
      registers: [registry],
    });
    const count = async () => (await refused.get()).values.reduce((a, v) => a + v.value, 0);
    return { peers: new PeerConnections({ max, refused, listener: 'eastWest' }), count };
  }

  let west: string;
  let eu: string;
  let other: string;
  beforeAll(async () => {
    const root = await createRoot({ trustDomain: 'mesh.example' });
    west = (
      await issueLeaf(await issueIntermediate(root, { cluster: 'west' }), { kind: 'gateway', name: 'gw' })
    ).certPem;
    eu = (await issueLeaf(await issueIntermediate(root, { cluster: 'eu' }), { kind: 'gateway', name: 'gw' }))
      .certPem;
    other = (await issueLeaf(await issueIntermediate(root, { cluster: 'x' }), { kind: 'gateway', name: 'g' }))
      .certPem;
  });

  test('admits up to max connections per SPIFFE ID; past it destroys and counts; a close frees a slot', async () => {
    const { peers, count } = limited(2);
    const a = fakeTls(west);
    const b = fakeTls(west);
    expect([peers.admit(a), peers.admit(b)]).toEqual([true, true]);
    const c = fakeTls(west);
    expect(peers.admit(c)).toBe(false);
    expect(c.destroyed).toBe(true);
    expect(await count()).toBe(1);
    // another identity has its own share
    expect(peers.admit(fakeTls(eu))).toBe(true);
    expect(peers.peers).toBe(2);
    a.destroy();
    expect(peers.of('spiffe://mesh.example/cluster/west/gateway/gw')).toBe(1);
    expect(peers.admit(fakeTls(west))).toBe(true);
    expect(await count()).toBe(1);
  });

  test('a certificate without a SPIFFE ID is counted by its fingerprint; a socket already gone is not counted', async () => {
    const { peers } = limited(1);
    const somewhere = await plainCert('somewhere');
    const fingerprint = new X509Certificate(somewhere).fingerprint256;
    expect(peers.admit(fakeTls(somewhere))).toBe(true);
    expect(peers.of(`sha256:${fingerprint}`)).toBe(1);
    expect(peers.admit(fakeTls(somewhere))).toBe(false);
    expect(peers.admit(fakeTls(await plainCert('elsewhere')))).toBe(true);
    const gone = fakeTls(other);
    gone.destroy();
    expect(peers.admit(gone)).toBe(false);
    expect(peers.of('spiffe://mesh.example/cluster/x/gateway/g')).toBe(0);
  });
});

describe('limits.maxConnectionsPerPeer on a gateway', () => {
  const { mesh, closing } = meshOfFile();
  const WEB = { namespace: 'shop', name: 'web' };
  let g: TestGateway;

  beforeAll(async () => {
    const web = await echoServer('pc-web');
    closing(() => web.server.close());
    g = await mesh().gateway('pc', { config: { limits: { maxConnectionsPerPeer: 2 } } });
    closing(() => g.close());
    g.source.set([httpService('shop', 'web', [web.address])]);
  }, 30_000);

  async function refused(reason: string): Promise<number> {
    const m = await g.registry.getSingleMetric('meshfed_refused_total')?.get();
    return m?.values.find((v) => v.labels.listener === 'eastWest' && v.labels.reason === reason)?.value ?? 0;
  }

  const ca = () => mesh().root.certPem;

  /** a GET over a new tunnel session of `leaf`: its status, 0 when the connection was closed first */
  async function tunnelServes(leaf: IssuedLeaf): Promise<{ status: number; close(): void }> {
    const t = tunnelSession(g.eastWest, leaf, ca());
    closing(() => t.session.destroy());
    try {
      await t.connected;
      return { status: await tunnelGet(t.session, leaf, WEB), close: () => t.session.destroy() };
    } catch {
      return { status: 0, close: () => t.session.destroy() };
    }
  }

  /** a GET on a new fast-path connection of `leaf`: the answer's status line, '' when closed without one */
  async function fastServes(leaf: IssuedLeaf): Promise<{ status: string; close(): void }> {
    const f = fastPathWebGet(g.eastWest, leaf, ca());
    closing(() => f.socket.destroy());
    await waitFor(() => f.received().includes('\r\n\r\n') || f.socket.destroyed || f.socket.readableEnded, {
      timeoutMs: 10_000,
      what: 'an answer or the close of a fast-path connection',
    });
    return { status: f.received().split('\r\n')[0] ?? '', close: () => f.socket.destroy() };
  }

  test('a peer gets two connections across both protocols, a third is closed unanswered; another peer is served; a closed one frees a slot', async () => {
    const peerA = await issueLeaf(await mesh().intermediate('pc-a'), { kind: 'gateway', name: 'pc-a-gw' });
    const peerB = await issueLeaf(await mesh().intermediate('pc-b'), { kind: 'gateway', name: 'pc-b-gw' });

    const tunnel = await tunnelServes(peerA);
    expect(tunnel.status).toBe(200);
    const fast = await fastServes(peerA);
    expect(fast.status).toBe('HTTP/1.1 200 OK');

    // A's third connection, of either protocol, is closed before any request on it is answered
    expect((await fastServes(peerA)).status).toBe('');
    expect((await tunnelServes(peerA)).status).toBe(0);
    expect(await refused('peer-connection-limit')).toBe(2);

    // B has its own share
    expect((await tunnelServes(peerB)).status).toBe(200);
    expect((await fastServes(peerB)).status).toBe('HTTP/1.1 200 OK');

    // once one of A's closes, A is served again
    fast.close();
    await waitFor(
      async () => {
        const again = await fastServes(peerA);
        again.close();
        return again.status === 'HTTP/1.1 200 OK';
      },
      { timeoutMs: 10_000, what: 'a new connection of peer A once one of its two closed' },
    );
    tunnel.close();
  }, 60_000);

  test('the fast path is what these connections speak when offered (so the case above covers both protocols)', async () => {
    const peerC = await issueLeaf(await mesh().intermediate('pc-c'), { kind: 'gateway', name: 'pc-c-gw' });
    const f = fastPathWebGet(g.eastWest, peerC, ca());
    closing(() => f.socket.destroy());
    await new Promise((r) => f.socket.once('secureConnect', r));
    expect(f.socket.alpnProtocol).toBe(FAST_ALPN);
  });
});
