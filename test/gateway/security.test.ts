import type http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { type IssuedLeaf, issueLeaf, spiffeIdFor } from '../../ca/index.ts';
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
  tunnelSession,
} from './harness.ts';

// Regression tests for the attacks of the security review (issue 11), each performed as an operator of
// a member cluster or a local workload would: a forged caller identity through CONNECT, a crash by one
// HTTP/1.1 CONNECT, identity headers spelled with underscores, absolute-form targets that got healthy
// gateways ejected, TCP ports outside the egress rules, an anonymous caller shown as the gateway, and
// the admin listener answering any Host.

const TD = 'meshfed.test';
let mesh: Mesh;
let alpha: TestGateway;
let beta: TestGateway;
let tcpGate: TestGateway;
let strictTcp: TestGateway;
const closers: (() => void)[] = [];

/** a plain TCP server that records every byte it receives */
async function tcpRecorder(): Promise<{ address: string; received: () => string }> {
  let data = '';
  const server = net.createServer((s) => {
    s.on('data', (d) => {
      data += d.toString('latin1');
    });
    s.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  closers.push(() => server.close());
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, received: () => data };
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

let echoAddress = '';
let rawHttp: Awaited<ReturnType<typeof tcpRecorder>>;
let rawTcp: Awaited<ReturnType<typeof tcpRecorder>>;

beforeAll(async () => {
  mesh = await createMesh();
  const calls: string[] = [];
  alpha = await mesh.gateway('alpha');
  beta = await mesh.gateway('beta', {
    authorize: ({ caller }) => {
      calls.push(caller);
      return !caller.includes('/sa/blocked');
    },
  });
  const echo = await echoServer('beta-api');
  closers.push(() => echo.server.close());
  echoAddress = echo.address;
  rawHttp = await tcpRecorder();
  rawTcp = await tcpRecorder();
  const api = httpService('shop', 'api', [echo.address]);
  // an HTTP service whose backend is a raw recorder: what a CONNECT smuggles into it shows up here
  const web = httpService('shop', 'web', [rawHttp.address]);
  const db = httpService('shop', 'db', [rawTcp.address], true, 'tcp');
  beta.source.set([api, web, db]);
  alpha.catalog.offer('beta', api, beta.eastWest);
}, 30_000);

afterAll(async () => {
  for (const g of [alpha, beta, tcpGate, strictTcp]) await g?.close();
  for (const c of closers) c();
});

/** Opens a CONNECT stream to beta as `leaf`; resolves with the status (0: reset) and the open stream. */
async function connectTo(
  leaf: IssuedLeaf,
  authority: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; error: string | undefined; stream: http2.ClientHttp2Stream; close(): void }> {
  const session = tunnelSession(beta.eastWest, leaf, mesh.bundle.toPem()).session;
  const stream = session.request({
    ':method': 'CONNECT',
    ':authority': authority,
    'x-meshfed-chain': chainHeader(leaf.chainPem),
    ...headers,
  });
  stream.on('error', () => undefined);
  const { status, error } = await new Promise<{ status: number; error: string | undefined }>((resolve) => {
    stream.once('response', (h) =>
      resolve({ status: Number(h[':status']), error: h['x-meshfed-error'] as string | undefined }),
    );
    stream.once('close', () => resolve({ status: 0, error: undefined }));
  });
  return { status, error, stream, close: () => session.destroy() };
}

describe('CONNECT on the tunnel (finding 1)', () => {
  let betaGw: IssuedLeaf;
  let alphaGw: IssuedLeaf;
  beforeAll(async () => {
    betaGw = await issueLeaf(await mesh.intermediate('gamma'), { kind: 'gateway', name: 'gamma-gw' });
    alphaGw = await issueLeaf(await mesh.intermediate('alpha'), { kind: 'gateway', name: 'alpha-gw2' });
  });

  test('a CONNECT to an HTTP port is refused, and no byte of a smuggled request reaches the backend', async () => {
    const forged = spiffeIdFor(TD, 'workload', {
      cluster: 'beta',
      namespace: 'shop',
      serviceAccount: 'admin',
    });
    const c = await connectTo(betaGw, 'web.shop.svc.clusterset.local:8080');
    if (c.status === 200) {
      c.stream.write(
        `GET / HTTP/1.1\r\nhost: web.shop.svc.clusterset.local\r\nx-meshfed-peer-identity: ${forged}\r\n\r\n`,
      );
      // give the smuggled bytes the chance to arrive: the attack worked if they do
      await waitFor(() => rawHttp.received().includes(forged), { timeoutMs: 2_000 }).catch(() => undefined);
    }
    c.close();
    expect(rawHttp.received()).not.toContain('x-meshfed-peer-identity');
    expect(c.status).toBe(403);
    expect(c.error).toBe('not-a-tcp-port');
  });

  test('a CONNECT to a port the service does not declare is refused, not sent to its first port', async () => {
    const c = await connectTo(alphaGw, 'db.shop.svc.clusterset.local:9999');
    c.close();
    expect(c.status).toBe(404);
    expect(c.error).toBe('unknown-port');
  });

  test('a CONNECT to a declared TCP port is relayed', async () => {
    const c = await connectTo(alphaGw, 'db.shop.svc.clusterset.local:8080');
    expect(c.status).toBe(200);
    c.stream.write('hello-db');
    await waitFor(() => rawTcp.received().includes('hello-db'), { timeoutMs: 5_000 });
    c.close();
  });

  test('a CONNECT asserting a caller of another cluster is refused by the caller rule', async () => {
    const caller = spiffeIdFor(TD, 'workload', { cluster: 'beta', namespace: 'shop', serviceAccount: 'x' });
    const c = await connectTo(alphaGw, 'db.shop.svc.clusterset.local:8080', { 'x-meshfed-caller': caller });
    c.close();
    expect(c.status).toBe(403);
    expect(c.error).toBe('caller-identity');
  });

  test('the authorization hook applies to CONNECT as to requests', async () => {
    const caller = spiffeIdFor(TD, 'workload', {
      cluster: 'alpha',
      namespace: 'shop',
      serviceAccount: 'blocked',
    });
    const c = await connectTo(alphaGw, 'db.shop.svc.clusterset.local:8080', { 'x-meshfed-caller': caller });
    c.close();
    expect(c.status).toBe(403);
    expect(c.error).toBe('unauthorized');
  });
});

describe('HTTP/1.1 on the east-west listener (finding 2)', () => {
  test('an HTTP/1.1 CONNECT with a workload certificate is answered 405 and the gateway keeps serving', async () => {
    const wl = await issueLeaf(await mesh.intermediate('alpha'), {
      kind: 'workload',
      namespace: 'shop',
      serviceAccount: 'frontend',
    });
    const socket = tls.connect({
      ...splitAddr(beta.eastWest),
      ca: mesh.bundle.toPem(),
      cert: wl.chainPem,
      key: wl.keyPem,
      servername: 'api.shop.svc.clusterset.local',
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: () => undefined,
    });
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('secureConnect', r));
    socket.write(
      'CONNECT api.shop.svc.clusterset.local:8080 HTTP/1.1\r\nhost: api.shop.svc.clusterset.local:8080\r\n\r\n',
    );
    let answer = '';
    socket.on('data', (d) => {
      answer += d.toString();
    });
    await new Promise((r) => socket.once('close', r));
    expect(answer).toMatch(/^HTTP\/1\.1 405 /);
    // and the gateway still serves the tunnel
    const r = await request(alpha.egress, { host: 'api.shop.svc.clusterset.local' });
    expect(r.status).toBe(200);
  });
});

describe('internal headers spelled with underscores (finding 3)', () => {
  test('x_meshfed_peer_identity from a local app never reaches the remote backend', async () => {
    const forged = spiffeIdFor(TD, 'workload', {
      cluster: 'beta',
      namespace: 'shop',
      serviceAccount: 'admin',
    });
    const r = await request(alpha.egress, {
      host: 'api.shop.svc.clusterset.local',
      headers: { x_meshfed_peer_identity: forged, X_Meshfed_Caller: forged, x_other_thing: 'kept' },
    });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body).headers as Record<string, string>;
    for (const [k, v] of Object.entries(seen)) {
      if (k.replaceAll('_', '-').startsWith('x-meshfed-')) expect(v).not.toContain(forged);
    }
    // an underscore header that collides with nothing internal passes by default (headersWithUnderscores: allow)
    expect(seen.x_other_thing).toBe('kept');
  });

  test('headersWithUnderscores: reject-request answers 400', async () => {
    const g = await mesh.gateway('alpha', { config: { headersWithUnderscores: 'reject-request' } });
    try {
      g.catalog.offer('beta', httpService('shop', 'api', [echoAddress]), beta.eastWest);
      const r = await request(g.egress, { host: 'api.shop.svc.clusterset.local', headers: { x_a: '1' } });
      expect(r.status).toBe(400);
      expect(r.headers['x-meshfed-error']).toBe('header-with-underscore');
      const ok = await request(g.egress, { host: 'api.shop.svc.clusterset.local' });
      expect(ok.status).toBe(200);
    } finally {
      await g.close();
    }
  });

  test('headersWithUnderscores: drop-header drops every underscore header', async () => {
    const g = await mesh.gateway('alpha', { config: { headersWithUnderscores: 'drop-header' } });
    try {
      g.catalog.offer('beta', httpService('shop', 'api', [echoAddress]), beta.eastWest);
      const r = await request(g.egress, { host: 'api.shop.svc.clusterset.local', headers: { x_a: '1' } });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).headers.x_a).toBeUndefined();
    } finally {
      await g.close();
    }
  });
});

describe('request targets (finding 7)', () => {
  test('an absolute-form target is a 400 at egress and never counts against the remote gateway', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await request(alpha.egress, { host: 'api.shop.svc.clusterset.local', path: 'http://x/' });
      expect(r.status).toBe(400);
      expect(r.headers['x-meshfed-error']).toBe('invalid-request-target');
    }
    const states = alpha.balancers
      .explain('shop', 'api')
      .levels.flatMap((l) => l.targets.map((t) => t.state));
    expect(states.length).toBeGreaterThan(0);
    expect(states.filter((s) => s.startsWith('ejected'))).toEqual([]);
    const ok = await request(alpha.egress, { host: 'api.shop.svc.clusterset.local' });
    expect(ok.status).toBe(200);
  });
});

describe('TCP ports (suspected: egress rules skipped)', () => {
  test('a TCP port honours trustedNetworks and clientAuth: required', async () => {
    const recorder = await tcpRecorder();
    const db = httpService('shop', 'db', [recorder.address], true, 'tcp');
    tcpGate = await mesh.gateway('alpha', {
      config: {
        egress: { trustedNetworks: ['10.99.0.0/16'] },
        tcpPorts: [{ listen: '127.0.0.1:0', service: 'db.shop' }],
      },
    });
    tcpGate.source.set([db]);
    strictTcp = await mesh.gateway('alpha', {
      config: {
        egress: { clientAuth: 'required' },
        tcpPorts: [{ listen: '127.0.0.1:0', service: 'db.shop' }],
      },
    });
    strictTcp.source.set([db]);
    for (const [g, reason] of [
      [tcpGate, 'untrusted-network'],
      [strictTcp, 'client-cert-required'],
    ] as const) {
      const s = net.connect(splitAddr(g.gateway.addresses()['tcp:db.shop']!));
      s.on('error', () => undefined);
      s.write('secret-bytes');
      await new Promise((r) => s.once('close', r));
      expect(await metric(g, 'meshfed_refused_total', { listener: 'tcp:db.shop', reason })).toBe(1);
    }
    expect(recorder.received()).toBe('');
  });
});

describe('anonymous callers (suspected: seen as the gateway)', () => {
  test('with clientAuth none the remote backend sees an anonymous caller of the source cluster, not the gateway', async () => {
    const r = await request(alpha.egress, { host: 'api.shop.svc.clusterset.local' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).headers['x-meshfed-peer-identity']).toBe(
      `spiffe://${TD}/cluster/alpha/anonymous`,
    );
  });
});

describe('admin listener (suspected: DNS rebinding)', () => {
  test('a request whose Host is not a loopback name or the listener address is refused', async () => {
    const evil = await request(alpha.admin, { host: 'rebind.attacker.example', path: '/debug/config' });
    expect(evil.status).toBe(421);
    const ok = await request(alpha.admin, { host: alpha.admin, path: '/healthz' });
    expect(ok.status).toBe(200);
    const local = await request(alpha.admin, {
      host: `localhost:${splitAddr(alpha.admin).port}`,
      path: '/healthz',
    });
    expect(local.status).toBe(200);
  });
});

describe('found by the east-west fuzz test', () => {
  test('an HTTP request naming a tcp or tls port through the tunnel is refused, not sent to that endpoint', async () => {
    const gw = await issueLeaf(await mesh.intermediate('alpha'), { kind: 'gateway', name: 'alpha-gw3' });
    const session = tunnelSession(beta.eastWest, gw, mesh.bundle.toPem()).session;
    try {
      const stream = session.request({
        ':path': '/',
        ':authority': 'db.shop.svc.clusterset.local',
        'x-meshfed-service': 'shop/db/tcp',
        'x-meshfed-chain': chainHeader(gw.chainPem),
      });
      stream.on('error', () => undefined);
      const h = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
      stream.resume();
      expect(h[':status']).toBe(403);
      expect(h['x-meshfed-error']).toBe('not-an-http-port');
      expect(rawTcp.received()).not.toContain('GET / HTTP');
    } finally {
      session.destroy();
    }
  });

  test('a peer refused as not a gateway loses its session after the answer', async () => {
    const wl = await issueLeaf(await mesh.intermediate('alpha'), {
      kind: 'workload',
      namespace: 'shop',
      serviceAccount: 'sneaky',
    });
    const session = tunnelSession(beta.eastWest, wl, mesh.bundle.toPem()).session;
    const closed = new Promise((r) => session.once('close', r));
    const stream = session.request({ ':path': '/', ':authority': 'api.shop.svc.clusterset.local' });
    stream.on('error', () => undefined);
    const h = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
    stream.resume();
    expect(h['x-meshfed-error']).toBe('peer-identity');
    await closed;
  });

  test('a ClientHello followed by silence is closed within helloTimeout, not after node’s 120 s', async () => {
    const { clientHello } = await import('./east-west-inputs.ts');
    const s = net.connect(splitAddr(beta.eastWest));
    s.on('error', () => undefined);
    // read what the gateway sends (its ServerHello): a socket that is not read never sees the close
    s.resume();
    s.write(clientHello({ alpn: [TUNNEL_ALPN, 'h2'] }));
    // the harness sets helloTimeout to 1 s; the test's own timeout would catch a 120 s handshake
    await new Promise((r) => s.once('close', r));
  });

  test('a client that leaves in the middle of its ClientHello is not counted as hello-timeout', async () => {
    const g = await mesh.gateway('beta');
    try {
      const partial = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
      const gone = net.connect(splitAddr(g.eastWest));
      gone.on('error', () => undefined);
      gone.resume();
      gone.end(partial);
      await new Promise((r) => gone.once('close', r));
      // a second client that stays silent does time out; the first, started earlier, would have too
      const stays = net.connect(splitAddr(g.eastWest));
      stays.on('error', () => undefined);
      stays.resume();
      stays.write(partial);
      await new Promise((r) => stays.once('close', r));
      expect(
        await metric(g, 'meshfed_refused_total', { listener: 'eastWest', reason: 'hello-timeout' }),
      ).toBe(1);
    } finally {
      await g.close();
    }
  });
});

test('a request its client abandons is recorded as 499 client-cancelled, and blames no target', async () => {
  // an endpoint that accepts and never answers
  const silent = net.createServer((s) => {
    s.on('error', () => undefined);
    // reads nothing it is sent, but sees the gateway close its connection (a socket never read never does)
    s.resume();
  });
  silent.listen(0, '127.0.0.1');
  await new Promise((r) => silent.once('listening', r));
  closers.push(() => silent.close());
  const g = await mesh.gateway('alpha', { balancer: { timeouts: { request: 30_000 } } });
  try {
    g.source.set([httpService('shop', 'slow', [`127.0.0.1:${(silent.address() as net.AddressInfo).port}`])]);
    const client = net.connect(splitAddr(g.egress));
    client.on('error', () => undefined);
    client.write('GET / HTTP/1.1\r\nhost: slow.shop.svc.clusterset.local\r\n\r\n');
    await waitFor(async () => (await metric(g, 'meshfed_active_requests', {})) === 1, { timeoutMs: 5_000 });
    client.destroy();
    await waitFor(
      async () =>
        (await metric(g, 'meshfed_responses_total', {
          destination_service: 'slow.shop',
          status_class: '4xx',
        })) === 1,
      { timeoutMs: 5_000 },
    );
    const states = g.balancers.explain('shop', 'slow').levels.flatMap((l) => l.targets.map((t) => t.state));
    expect(states.filter((s) => s.startsWith('ejected'))).toEqual([]);
  } finally {
    await g.close();
  }
});
