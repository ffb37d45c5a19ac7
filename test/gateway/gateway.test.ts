import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { issueLeaf, spiffeIdFor } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import { TUNNEL_ALPN } from '../../gateway/index.ts';
import {
  chainHeader,
  createMesh,
  echoServer,
  httpService,
  type Mesh,
  request,
  type TestGateway,
} from './harness.ts';

let mesh: Mesh;
let a: TestGateway;
let b: TestGateway;
const backends: { server: import('node:http').Server; address: string }[] = [];

async function backend(label: string) {
  const s = await echoServer(label);
  backends.push(s);
  return s;
}

function splitAddr(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

async function metric(g: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const m = await g.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

beforeAll(async () => {
  mesh = await createMesh();
  a = await mesh.gateway('alpha');
  b = await mesh.gateway('beta');
  const localA = await backend('alpha-web');
  const remoteB = await backend('beta-api');
  const hidden = await backend('beta-hidden');
  a.source.set([httpService('shop', 'web', [localA.address])]);
  const api = httpService('shop', 'api', [remoteB.address]);
  const secret = httpService('shop', 'secret', [hidden.address], false);
  b.source.set([api, secret]);
  a.catalog.offer('beta', api, b.eastWest);
  // alpha's catalog wrongly claims beta offers `secret`: beta itself must still refuse it
  a.catalog.offer('beta', { ...secret, exported: true }, b.eastWest);
}, 30_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  for (const s of backends) s.server.close();
});

describe('egress HTTP/1.1', () => {
  test('a local service is served by its local endpoint', async () => {
    const r = await request(a.egress, { host: 'web.shop.svc.clusterset.local' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).label).toBe('alpha-web');
  });

  test('a remote service goes through the mTLS tunnel; the backend sees an anonymous caller of alpha (not its gateway) and the unchanged traceparent', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r = await request(a.egress, {
      host: 'api.shop.svc.clusterset.local',
      path: '/x?y=1',
      headers: { traceparent },
    });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body);
    expect(seen.label).toBe('beta-api');
    expect(seen.url).toBe('/x?y=1');
    expect(seen.headers.traceparent).toBe(traceparent);
    expect(seen.headers['x-meshfed-peer-identity']).toBe('spiffe://meshfed.test/cluster/alpha/anonymous');
    // internal tunnel headers never reach the backend
    expect(seen.headers['x-meshfed-chain']).toBeUndefined();
  });

  test('a POST body crosses the tunnel intact', async () => {
    const body = Buffer.alloc(300_000, 7);
    const r = await request(a.egress, { host: 'api.shop.svc.clusterset.local', method: 'POST', body });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).size).toBe(body.length);
  });

  test('an unknown service is a 503 with x-meshfed-error', async () => {
    const r = await request(a.egress, { host: 'nope.shop.svc.clusterset.local' });
    expect(r.status).toBe(503);
    expect(r.headers['x-meshfed-error']).toBe('unknown-service');
    expect(JSON.parse(r.body).error).toBe('unknown-service');
    const r2 = await request(a.egress, { host: 'example.com' });
    expect(r2.status).toBe(503);
    expect(r2.headers['x-meshfed-error']).toBe('unknown-service');
  });

  test('an unexported service is refused by the destination gateway even when the catalog claims it', async () => {
    const r = await request(a.egress, { host: 'secret.shop.svc.clusterset.local' });
    expect(r.status).toBe(404);
    expect(r.headers['x-meshfed-error']).toBe('not-exported');
    expect(r.body).not.toContain('beta-hidden');
  });

  test('a dead local endpoint fails over to another one (connect failure retried)', async () => {
    const live = await backend('alpha-live');
    const dead = await backend('alpha-dead');
    await new Promise<void>((r) => dead.server.close(() => r()));
    a.source.set([
      httpService('shop', 'web', [live.address]),
      httpService('shop', 'db', [dead.address, live.address]),
    ]);
    for (let i = 0; i < 10; i++) {
      const r = await request(a.egress, { host: 'db.shop.svc.clusterset.local' });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).label).toBe('alpha-live');
    }
  });
});

describe('egress h2c', () => {
  test('an h2c request reaches the remote service', async () => {
    const session = http2.connect(`http://${a.egress}`);
    try {
      const stream = session.request({ ':path': '/h2', ':authority': 'api.shop.svc.clusterset.local' });
      const chunks: Buffer[] = [];
      const [status] = await new Promise<[number]>((resolve, reject) => {
        let s = 0;
        stream.on('response', (h) => {
          s = Number(h[':status']);
        });
        stream.on('data', (d: Buffer) => chunks.push(d));
        stream.on('end', () => resolve([s]));
        stream.on('error', reject);
      });
      expect(status).toBe(200);
      expect(JSON.parse(Buffer.concat(chunks).toString()).label).toBe('beta-api');
    } finally {
      session.close();
    }
  });
});

describe('east-west listener', () => {
  async function closedWithoutReply(write: Buffer): Promise<number> {
    const sock = net.connect(splitAddr(b.eastWest));
    let received = 0;
    sock.on('data', (d: Buffer) => {
      received += d.length;
    });
    sock.on('error', () => undefined);
    await new Promise((r) => sock.once('connect', r));
    sock.write(write);
    await new Promise((r) => sock.once('close', r));
    return received;
  }

  test('garbage and a ClientHello without SNI or tunnel ALPN are closed with no reply, and counted', async () => {
    expect(await closedWithoutReply(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toBe(0);
    expect(await metric(b, 'meshfed_refused_total', { listener: 'eastWest', reason: 'not-tls' })).toBe(1);
    // a real ClientHello without SNI: no ServerHello, the handshake fails
    const sock = tls.connect({ ...splitAddr(b.eastWest), rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    const outcome = await new Promise<string>((resolve) => {
      sock.once('secureConnect', () => resolve('secure'));
      sock.once('error', () => resolve('error'));
      sock.once('close', () => resolve('closed'));
    });
    expect(outcome).not.toBe('secure');
    await waitFor(
      async () =>
        (await metric(b, 'meshfed_refused_total', { listener: 'eastWest', reason: 'no-sni' })) === 1,
      { timeoutMs: 5_000 },
    );
  });

  test('a tunnel client without a certificate gets no answer', async () => {
    const r = await tunnelCall(undefined, {}).catch((e: Error) => ({
      status: 0,
      error: e.message,
      body: '',
    }));
    expect(r.status).toBe(0);
  });

  async function tunnelCall(
    leaf: { chainPem: string; keyPem: string } | undefined,
    headers: Record<string, string>,
  ): Promise<{ status: number; error: string | undefined; body: string }> {
    let socket: tls.TLSSocket | undefined;
    const session = http2.connect(`https://${b.eastWest}`, {
      createConnection: () => {
        socket = tls.connect({
          ...splitAddr(b.eastWest),
          ca: mesh.bundle.toPem(),
          ...(leaf ? { cert: leaf.chainPem, key: leaf.keyPem } : {}),
          ALPNProtocols: [TUNNEL_ALPN, 'h2'],
          checkServerIdentity: () => undefined,
        });
        return socket;
      },
    });
    session.on('error', () => undefined);
    try {
      const stream = session.request({
        ':path': '/',
        ':authority': 'api.shop.svc.clusterset.local',
        'x-meshfed-service': 'shop/api/http',
        // the server sees only our leaf: intermediates travel in this header, as gateways send them
        ...(leaf ? { 'x-meshfed-chain': chainHeader(leaf.chainPem) } : {}),
        ...headers,
      });
      return await new Promise((resolve, reject) => {
        let status = 0;
        let error: string | undefined;
        const chunks: Buffer[] = [];
        stream.on('response', (h) => {
          status = Number(h[':status']);
          error = h['x-meshfed-error'] as string | undefined;
        });
        stream.on('data', (d: Buffer) => chunks.push(d));
        stream.on('end', () => resolve({ status, error, body: Buffer.concat(chunks).toString() }));
        stream.on('error', reject);
      });
    } finally {
      // and its socket: a session destroyed before its TLS handshake ended leaves the socket to it
      session.destroy();
      socket?.destroy();
    }
  }

  test('a gateway may assert a caller of its own cluster; the backend sees it', async () => {
    const ca = await mesh.intermediate('alpha');
    const gw = await issueLeaf(ca, { kind: 'gateway', name: 'alpha-gw2' });
    const caller = spiffeIdFor('meshfed.test', 'workload', {
      cluster: 'alpha',
      namespace: 'shop',
      serviceAccount: 'frontend',
    });
    const r = await tunnelCall(gw, { 'x-meshfed-caller': caller });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).headers['x-meshfed-peer-identity']).toBe(caller);
  });

  test("a gateway of another cluster asserting alpha's caller is refused", async () => {
    const ca = await mesh.intermediate('gamma');
    const gw = await issueLeaf(ca, { kind: 'gateway', name: 'gamma-gw' });
    const caller = spiffeIdFor('meshfed.test', 'workload', {
      cluster: 'alpha',
      namespace: 'shop',
      serviceAccount: 'frontend',
    });
    const r = await tunnelCall(gw, { 'x-meshfed-caller': caller });
    expect(r.status).toBe(403);
    expect(r.error).toBe('caller-identity');
  });

  test('a workload certificate is not a gateway identity and is refused', async () => {
    const ca = await mesh.intermediate('alpha');
    const wl = await issueLeaf(ca, { kind: 'workload', namespace: 'shop', serviceAccount: 'frontend' });
    const r = await tunnelCall(wl, {}).catch(() => ({ status: 0, error: 'handshake', body: '' }));
    expect([403, 0]).toContain(r.status);
    expect(['peer-identity', 'handshake']).toContain(r.error);
  });
});

describe('admin', () => {
  test('health, readiness, metrics and route explanations', async () => {
    const h = await request(a.admin, { host: a.admin, path: '/healthz' });
    expect(h.status).toBe(200);
    const ready = await request(a.admin, { host: a.admin, path: '/readyz' });
    expect(ready.status).toBe(200);
    const m = await request(a.admin, { host: a.admin, path: '/metrics' });
    expect(m.body).toContain('meshfed_requests_total');
    const routes = await request(a.admin, { host: a.admin, path: '/debug/routes?service=shop/api' });
    expect(routes.status).toBe(200);
    expect(routes.body).toContain('beta');
    const bad = await request(a.admin, { host: a.admin, path: '/debug/routes' });
    expect(bad.status).toBe(400);
  });
});
