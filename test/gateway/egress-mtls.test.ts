import http2 from 'node:http2';
import { createRoot, type IssuedLeaf, issueIntermediate, issueLeaf, spiffeIdFor } from '../../ca/index.ts';
import {
  createMesh,
  echoServer,
  httpService,
  type Mesh,
  request,
  type TestGateway,
  TRUST_DOMAIN,
} from './harness.ts';

// Workload mTLS on the egress listener: the caller's SPIFFE ID comes from its verified certificate,
// crosses the tunnel, and reaches the destination backend as x-meshfed-peer-identity.

let mesh: Mesh;
let a: TestGateway;
let open: TestGateway;
let b: TestGateway;
const servers: import('node:http').Server[] = [];
let frontend: IssuedLeaf;
const FRONTEND = spiffeIdFor(TRUST_DOMAIN, 'workload', {
  cluster: 'alpha',
  namespace: 'shop',
  serviceAccount: 'frontend',
});

beforeAll(async () => {
  mesh = await createMesh();
  a = await mesh.gateway('alpha', { config: { egress: { clientAuth: 'required' } } });
  open = await mesh.gateway('alpha', { config: { egress: { clientAuth: 'optional' } } });
  b = await mesh.gateway('beta');
  const local = await echoServer('alpha-web');
  const remote = await echoServer('beta-api');
  servers.push(local.server, remote.server);
  const api = httpService('shop', 'api', [remote.address]);
  b.source.set([api]);
  for (const g of [a, open]) {
    g.source.set([httpService('shop', 'web', [local.address])]);
    g.catalog.offer('beta', api, b.eastWest);
  }
  // beta's intermediate is known to the bundle, so a beta workload verifies and is refused for its cluster
  mesh.bundle.addIntermediates((await mesh.intermediate('beta')).certPem);
  frontend = await workload('alpha', 'frontend');
}, 30_000);

afterAll(async () => {
  for (const g of [a, open, b]) await g?.close();
  for (const s of servers) s.close();
});

type Answer = { status: number; error: string | undefined; body: string };

/** One HTTP/1.1 request over TLS to an egress listener, on a fresh connection. */
async function tlsRequest(
  address: string,
  host: string,
  leaf?: { chainPem: string; keyPem: string },
): Promise<Answer> {
  const r = await request(address, {
    host,
    path: '/who',
    headers: { 'x-meshfed-peer-identity': 'spiffe://meshfed.test/cluster/alpha/ns/shop/sa/forged' },
    tls: {
      ca: mesh.bundle.toPem(),
      ...(leaf ? { cert: leaf.chainPem, key: leaf.keyPem } : {}),
      // the gateway's certificate names a SPIFFE ID, not a host name
      checkServerIdentity: () => undefined,
    },
  });
  return { status: r.status, error: r.headers['x-meshfed-error'] as string | undefined, body: r.body };
}

/** A workload leaf of `cluster` (namespace shop). */
async function workload(
  cluster: string,
  serviceAccount: string,
  o: { notBefore?: Date; ttlMs?: number } = {},
) {
  return issueLeaf(await mesh.intermediate(cluster), {
    kind: 'workload',
    namespace: 'shop',
    serviceAccount,
    ...o,
  });
}

async function metric(g: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const m = await g.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

describe('egress clientAuth: required', () => {
  test('a workload certificate of this cluster is accepted; its SPIFFE ID reaches the remote backend (a forged header does not)', async () => {
    const r = await tlsRequest(a.egress, 'api.shop.svc.clusterset.local', frontend);
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body);
    expect(seen.label).toBe('beta-api');
    expect(seen.headers['x-meshfed-peer-identity']).toBe(FRONTEND);
    expect(
      await metric(a, 'meshfed_egress_client_certs_total', { result: 'verified' }),
    ).toBeGreaterThanOrEqual(1);
  });

  test('a local service sees the caller too', async () => {
    const r = await tlsRequest(a.egress, 'web.shop.svc.clusterset.local', frontend);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).headers['x-meshfed-peer-identity']).toBe(FRONTEND);
  });

  test('HTTP/2 over TLS (what gRPC clients speak) carries the identity as well', async () => {
    const session = http2.connect(`https://${a.egress}`, {
      ca: mesh.bundle.toPem(),
      cert: frontend.chainPem,
      key: frontend.keyPem,
      checkServerIdentity: () => undefined,
    });
    try {
      const stream = session.request({ ':path': '/h2', ':authority': 'api.shop.svc.clusterset.local' });
      const chunks: Buffer[] = [];
      let status = 0;
      stream.on('response', (h) => {
        status = Number(h[':status']);
      });
      stream.on('data', (d: Buffer) => chunks.push(d));
      await new Promise((resolve, reject) => {
        stream.on('end', resolve);
        stream.on('error', reject);
      });
      expect(status).toBe(200);
      expect(JSON.parse(Buffer.concat(chunks).toString()).headers['x-meshfed-peer-identity']).toBe(FRONTEND);
    } finally {
      session.close();
    }
  });

  test('plain HTTP and TLS without a certificate are refused with 403 client-cert-required', async () => {
    const plain = await request(a.egress, { host: 'api.shop.svc.clusterset.local' });
    expect(plain.status).toBe(403);
    expect(plain.headers['x-meshfed-error']).toBe('client-cert-required');
    const anonymous = await tlsRequest(a.egress, 'api.shop.svc.clusterset.local');
    expect(anonymous.status).toBe(403);
    expect(anonymous.error).toBe('client-cert-required');
    expect(JSON.parse(anonymous.body).message).toContain('workload certificate');
    expect(
      await metric(a, 'meshfed_refused_total', { listener: 'egress', reason: 'client-cert-required' }),
    ).toBe(2);
  });

  test('a workload of another cluster is refused with 403 client-cert-foreign-cluster', async () => {
    const foreign = await workload('beta', 'frontend');
    const r = await tlsRequest(a.egress, 'api.shop.svc.clusterset.local', foreign);
    expect(r.status).toBe(403);
    expect(r.error).toBe('client-cert-foreign-cluster');
    expect(r.body).toContain('cluster beta');
  });

  test('a certificate from a foreign root is refused with 403 client-cert-untrusted', async () => {
    const otherRoot = await createRoot({ trustDomain: TRUST_DOMAIN });
    const otherAlpha = await issueIntermediate(otherRoot, { cluster: 'alpha' });
    const forged = await issueLeaf(otherAlpha, {
      kind: 'workload',
      namespace: 'shop',
      serviceAccount: 'frontend',
    });
    const r = await tlsRequest(a.egress, 'api.shop.svc.clusterset.local', forged);
    expect(r.status).toBe(403);
    expect(r.error).toBe('client-cert-untrusted');
    expect(await metric(a, 'meshfed_egress_client_certs_total', { result: 'client-cert-untrusted' })).toBe(1);
  });

  test('an expired workload certificate is refused with 403 client-cert-expired', async () => {
    const expired = await workload('alpha', 'frontend', {
      notBefore: new Date(Date.now() - 3 * 3_600_000),
      ttlMs: 3_600_000,
    });
    const r = await tlsRequest(a.egress, 'api.shop.svc.clusterset.local', expired);
    expect(r.status).toBe(403);
    expect(r.error).toBe('client-cert-expired');
  });

  test('a gateway certificate is not a workload identity', async () => {
    const gw = await issueLeaf(await mesh.intermediate('alpha'), { kind: 'gateway', name: 'other' });
    const r = await tlsRequest(a.egress, 'api.shop.svc.clusterset.local', gw);
    expect(r.status).toBe(403);
    expect(r.error).toBe('client-cert-not-workload');
  });
});

describe('egress clientAuth: optional', () => {
  test('plain callers pass as the anonymous caller of this cluster; TLS callers with a certificate are identified', async () => {
    const plain = await request(open.egress, { host: 'web.shop.svc.clusterset.local' });
    expect(plain.status).toBe(200);
    expect(JSON.parse(plain.body).headers['x-meshfed-peer-identity']).toBe(
      'spiffe://meshfed.test/cluster/alpha/anonymous',
    );
    const anonymous = await tlsRequest(open.egress, 'web.shop.svc.clusterset.local');
    expect(anonymous.status).toBe(200);
    const identified = await tlsRequest(open.egress, 'api.shop.svc.clusterset.local', frontend);
    expect(identified.status).toBe(200);
    expect(JSON.parse(identified.body).headers['x-meshfed-peer-identity']).toBe(FRONTEND);
    expect(await metric(open, 'meshfed_egress_client_certs_total', { result: 'anonymous' })).toBe(2);
  });

  test('a presented certificate that fails verification is still refused', async () => {
    const foreign = await workload('beta', 'x');
    const r = await tlsRequest(open.egress, 'api.shop.svc.clusterset.local', foreign);
    expect(r.status).toBe(403);
    expect(r.error).toBe('client-cert-foreign-cluster');
  });
});
