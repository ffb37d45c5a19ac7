import type http2 from 'node:http2';
import tls from 'node:tls';
import { type IssuedLeaf, issueLeaf, spiffeIdFor } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import {
  createMesh,
  echoServer,
  httpService,
  type Mesh,
  request,
  type TestGateway,
  chainHeader,
  tunnelSession,
} from './harness.ts';
import { policyDoc, TestPolicyView } from './policy-view.ts';
import { byteCounter, splitAddress } from './tunnel-client.ts';

// AuthorizationPolicy at the destination gateway (beta), on the identity it verified: tunnel requests and
// CONNECT streams from peer gateways of alpha and gamma (real gateway certificates, asserting callers as
// a source gateway does), requests through alpha's egress, gRPC, and SNI passthrough.

const TD = 'meshfed.test';
const workload = (cluster: string, namespace: string, serviceAccount: string) =>
  spiffeIdFor(TD, 'workload', { cluster, namespace, serviceAccount });
const anonymous = (cluster: string) => `spiffe://${TD}/cluster/${cluster}/anonymous`;

const API_POLICY = policyDoc('AuthorizationPolicy', 'api-access', {
  target: { service: 'shop/api' },
  rules: [
    { name: 'deny-intruder', action: 'DENY', from: [{ serviceAccount: 'intruder' }] },
    {
      name: 'deny-gamma-admin',
      action: 'DENY',
      from: [{ cluster: 'gamma' }],
      to: [{ paths: [{ prefix: '/admin' }] }],
    },
    {
      name: 'frontend-reads',
      action: 'ALLOW',
      from: [{ spiffeId: workload('alpha', 'web', 'frontend') }],
      to: [{ methods: ['GET'] }],
    },
    { name: 'shop-namespace', action: 'ALLOW', from: [{ cluster: 'alpha', namespace: 'shop' }] },
    { name: 'any-of-gamma', action: 'ALLOW', from: [{ cluster: 'gamma' }] },
    {
      name: 'grpc-unary',
      action: 'ALLOW',
      from: [{ cluster: 'alpha', serviceAccount: 'grpc-client' }],
      to: [{ grpc: { service: 'meshfed.test.Echo', method: 'Unary' } }],
    },
  ],
});
const DB_POLICY = policyDoc('AuthorizationPolicy', 'db-access', {
  target: { service: 'shop/db' },
  rules: [{ name: 'alpha-only', action: 'ALLOW', from: [{ cluster: 'alpha' }] }],
});
const VAULT_POLICY = policyDoc('AuthorizationPolicy', 'vault-access', {
  target: { service: 'shop/vault' },
  rules: [{ name: 'shop-callers', action: 'ALLOW', from: [{ namespace: 'shop' }] }],
});
const CERTS_POLICY = policyDoc('AuthorizationPolicy', 'certs-access', {
  target: { service: 'shop/certs' },
  rules: [{ name: 'tls-port', action: 'ALLOW', to: [{ ports: [8080] }] }],
});
const OTHER_CLUSTER_POLICY = policyDoc('AuthorizationPolicy', 'free-elsewhere', {
  target: { service: 'shop/free', cluster: 'alpha' },
  rules: [{ name: 'nobody', action: 'DENY' }],
});

let mesh: Mesh;
let alpha: TestGateway;
let beta: TestGateway;
let view: TestPolicyView;
let alphaGw: IssuedLeaf;
let gammaGw: IssuedLeaf;
const closers: (() => void)[] = [];
const sessions: http2.ClientHttp2Session[] = [];

async function tcpRecorder(): Promise<Awaited<ReturnType<typeof byteCounter>>> {
  const c = await byteCounter();
  closers.push(c.close);
  return c;
}

const sessionOf = new Map<IssuedLeaf, http2.ClientHttp2Session>();
function tunnel(leaf: IssuedLeaf): http2.ClientHttp2Session {
  let s = sessionOf.get(leaf);
  if (!s || s.closed || s.destroyed) {
    s = tunnelSession(beta.eastWest, leaf, mesh.bundle.toPem()).session;
    sessionOf.set(leaf, s);
    sessions.push(s);
  }
  return s;
}

interface Answer {
  status: number;
  error: string | undefined;
  policy: string | undefined;
  grpcStatus: string | undefined;
}

/** One stream to beta as the peer gateway `leaf`, asserting `caller` (as a source gateway does). */
function call(
  leaf: IssuedLeaf,
  o: {
    caller?: string;
    service?: string;
    method?: string;
    path?: string;
    grpc?: boolean;
    authority?: string;
  },
): Promise<Answer> {
  const headers: http2.OutgoingHttpHeaders = {
    ':method': o.method ?? 'GET',
    'x-meshfed-chain': chainHeader(leaf.chainPem),
    ...(o.caller ? { 'x-meshfed-caller': o.caller } : {}),
  };
  if (o.method === 'CONNECT') headers[':authority'] = o.authority;
  else {
    headers[':path'] = o.path ?? '/';
    headers['x-meshfed-service'] = o.service ?? 'shop/api/http';
    if (o.grpc) headers['content-type'] = 'application/grpc';
  }
  const stream = tunnel(leaf).request(headers, { endStream: o.method !== 'CONNECT' });
  stream.on('error', () => undefined);
  return new Promise((resolve) => {
    stream.once('response', (h) => {
      resolve({
        status: Number(h[':status']),
        error: h['x-meshfed-error'] as string | undefined,
        policy: h['x-meshfed-policy'] as string | undefined,
        grpcStatus: h['grpc-status'] as string | undefined,
      });
      stream.close();
    });
    stream.once('close', () =>
      resolve({ status: 0, error: undefined, policy: undefined, grpcStatus: undefined }),
    );
    stream.resume();
  });
}

async function metric(g: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const m = await g.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

let vaultBackend: Awaited<ReturnType<typeof tcpRecorder>>;
let certsBackend: Awaited<ReturnType<typeof tcpRecorder>>;
let dbBackend: Awaited<ReturnType<typeof tcpRecorder>>;

beforeAll(async () => {
  mesh = await createMesh();
  view = new TestPolicyView([API_POLICY, DB_POLICY, VAULT_POLICY, CERTS_POLICY, OTHER_CLUSTER_POLICY]);
  alpha = await mesh.gateway('alpha');
  beta = await mesh.gateway('beta', { policy: view });
  const echo = await echoServer('beta-api');
  closers.push(() => echo.server.close());
  vaultBackend = await tcpRecorder();
  certsBackend = await tcpRecorder();
  dbBackend = await tcpRecorder();
  const api = httpService('shop', 'api', [echo.address]);
  const free = httpService('shop', 'free', [echo.address]);
  beta.source.set([
    api,
    free,
    httpService('shop', 'db', [dbBackend.address], true, 'tcp'),
    httpService('shop', 'vault', [vaultBackend.address], true, 'tls'),
    httpService('shop', 'certs', [certsBackend.address], true, 'tls'),
  ]);
  alpha.catalog.offer('beta', api, beta.eastWest);
  alphaGw = await issueLeaf(await mesh.intermediate('alpha'), { kind: 'gateway', name: 'alpha-gw2' });
  gammaGw = await issueLeaf(await mesh.intermediate('gamma'), { kind: 'gateway', name: 'gamma-gw' });
}, 30_000);

afterAll(async () => {
  for (const s of sessions) s.destroy();
  for (const g of [alpha, beta]) await g?.close();
  for (const c of closers) c();
});

describe('the authorization table (tunnel requests at the destination gateway)', () => {
  const rows: {
    name: string;
    peer: 'alpha' | 'gamma';
    caller?: string;
    method?: string;
    path?: string;
    status: number;
    error?: string;
    policy?: string;
  }[] = [
    {
      name: 'an ALLOW on an exact SPIFFE ID and method admits that workload',
      peer: 'alpha',
      caller: workload('alpha', 'web', 'frontend'),
      status: 200,
    },
    {
      name: 'the same workload with a method no ALLOW names is denied by default',
      peer: 'alpha',
      caller: workload('alpha', 'web', 'frontend'),
      method: 'POST',
      status: 403,
      error: 'policy-denied',
      policy: 'default-deny',
    },
    {
      name: 'an ALLOW on cluster and namespace admits any service account of it',
      peer: 'alpha',
      caller: workload('alpha', 'shop', 'checkout'),
      method: 'POST',
      path: '/orders',
      status: 200,
    },
    {
      name: 'DENY wins over a matching ALLOW',
      peer: 'alpha',
      caller: workload('alpha', 'shop', 'intruder'),
      status: 403,
      error: 'policy-denied',
      policy: 'api-access/deny-intruder',
    },
    {
      name: 'once an ALLOW exists, a caller no rule names is denied (anonymous caller of alpha)',
      peer: 'alpha',
      caller: anonymous('alpha'),
      status: 403,
      error: 'policy-denied',
      policy: 'default-deny',
    },
    {
      name: 'a peer gateway calling for itself matches no workload rule',
      peer: 'alpha',
      status: 403,
      error: 'policy-denied',
      policy: 'default-deny',
    },
    {
      name: 'an ALLOW on a cluster admits its anonymous callers',
      peer: 'gamma',
      caller: anonymous('gamma'),
      path: '/items',
      status: 200,
    },
    {
      name: 'a DENY on cluster and path prefix refuses that path',
      peer: 'gamma',
      caller: workload('gamma', 'shop', 'x'),
      path: '/admin/users',
      status: 403,
      error: 'policy-denied',
      policy: 'api-access/deny-gamma-admin',
    },
    {
      name: 'the path is normalised before matching (//admin, /./admin, /%61dmin)',
      peer: 'gamma',
      caller: anonymous('gamma'),
      path: '/x/..//%61dmin/./users?q=1',
      status: 403,
      error: 'policy-denied',
      policy: 'api-access/deny-gamma-admin',
    },
    {
      name: 'a workload of gamma with the namespace an ALLOW names for alpha is still only a gamma caller',
      peer: 'gamma',
      caller: workload('gamma', 'shop', 'intruder'),
      status: 403,
      error: 'policy-denied',
      policy: 'api-access/deny-intruder',
    },
    {
      name: 'a gateway of gamma asserting a workload of alpha is refused before policy (caller rule)',
      peer: 'gamma',
      caller: workload('alpha', 'shop', 'checkout'),
      status: 403,
      error: 'caller-identity',
    },
  ];
  test.each(rows)('$name', async (row) => {
    const a = await call(row.peer === 'alpha' ? alphaGw : gammaGw, {
      ...(row.caller ? { caller: row.caller } : {}),
      ...(row.method ? { method: row.method } : {}),
      ...(row.path ? { path: row.path } : {}),
    });
    expect({ status: a.status, error: a.error, policy: a.policy }).toEqual({
      status: row.status,
      error: row.error,
      policy: row.policy,
    });
  });

  test('a service no policy names stays reachable; a policy pinned to another cluster is not enforced here', async () => {
    const a = await call(gammaGw, { caller: anonymous('gamma'), service: 'shop/free/http' });
    expect(a.status).toBe(200);
  });

  test('decisions are counted per service, decision and rule', async () => {
    expect(
      await metric(beta, 'meshfed_policy_authorization_total', {
        service: 'api.shop',
        decision: 'deny',
        rule: 'api-access/deny-intruder',
      }),
    ).toBeGreaterThanOrEqual(2);
    expect(
      await metric(beta, 'meshfed_policy_authorization_total', {
        service: 'api.shop',
        decision: 'allow',
        rule: 'api-access/any-of-gamma',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      await metric(beta, 'meshfed_refused_total', { listener: 'eastWest', reason: 'policy-denied' }),
    ).toBeGreaterThan(0);
  });
});

describe('gRPC', () => {
  test('an ALLOW on a gRPC service and method admits that method only; others get PERMISSION_DENIED (7)', async () => {
    const caller = workload('alpha', 'ops', 'grpc-client');
    const ok = await call(alphaGw, { caller, method: 'POST', path: '/meshfed.test.Echo/Unary', grpc: true });
    expect(ok.status).toBe(200);
    expect(ok.error).toBeUndefined();
    const denied = await call(alphaGw, {
      caller,
      method: 'POST',
      path: '/meshfed.test.Echo/Chat',
      grpc: true,
    });
    expect(denied).toMatchObject({
      status: 200,
      grpcStatus: '7',
      error: 'policy-denied',
      policy: 'default-deny',
    });
    // the same path without the gRPC content type is not a gRPC call
    const plain = await call(alphaGw, { caller, method: 'POST', path: '/meshfed.test.Echo/Unary' });
    expect(plain).toMatchObject({ status: 403, error: 'policy-denied' });
  });
});

describe('CONNECT streams pass the same authorization', () => {
  test('an ALLOW on cluster alpha admits its anonymous caller and refuses gamma', async () => {
    const authority = 'db.shop.svc.clusterset.local:8080';
    const ok = await call(alphaGw, { method: 'CONNECT', authority, caller: anonymous('alpha') });
    expect(ok.status).toBe(200);
    const denied = await call(gammaGw, { method: 'CONNECT', authority, caller: anonymous('gamma') });
    expect(denied).toMatchObject({ status: 403, error: 'policy-denied', policy: 'default-deny' });
  });
});

describe('through a source gateway', () => {
  test("alpha's anonymous caller is refused end to end, and the app sees the rule that decided", async () => {
    const r = await request(alpha.egress, { host: 'api.shop.svc.clusterset.local' });
    expect(r.status).toBe(403);
    expect(r.headers['x-meshfed-error']).toBe('policy-denied');
    expect(r.headers['x-meshfed-policy']).toBe('default-deny');
  });

  test('a policy change takes effect on the next request', async () => {
    view.set([
      API_POLICY,
      DB_POLICY,
      VAULT_POLICY,
      CERTS_POLICY,
      policyDoc('AuthorizationPolicy', 'alpha-anonymous', {
        target: { service: 'shop/api' },
        rules: [
          {
            name: 'anonymous',
            action: 'ALLOW',
            from: [{ spiffeId: anonymous('alpha') }, { cluster: 'alpha' }],
          },
        ],
      }),
    ]);
    try {
      const r = await request(alpha.egress, { host: 'api.shop.svc.clusterset.local' });
      expect(r.status).toBe(200);
    } finally {
      view.set([API_POLICY, DB_POLICY, VAULT_POLICY, CERTS_POLICY, OTHER_CLUSTER_POLICY]);
    }
    expect((await request(alpha.egress, { host: 'api.shop.svc.clusterset.local' })).status).toBe(403);
  });
});

describe('SNI passthrough (not terminated: the caller cannot be known)', () => {
  function passthrough(sni: string): Promise<void> {
    return new Promise((resolve) => {
      const s = tls.connect({ ...splitAddress(beta.eastWest), servername: sni, rejectUnauthorized: false });
      s.on('error', () => undefined);
      s.once('close', () => resolve());
      closers.push(() => s.destroy());
      // the recorder never answers the handshake: the test ends the connection once it saw the hello
      s.once('secureConnect', () => s.destroy());
    });
  }

  test('a service whose ALLOW names callers refuses passthrough, and no byte reaches the backend', async () => {
    const before = await metric(beta, 'meshfed_refused_total', {
      listener: 'eastWest',
      reason: 'policy-denied',
    });
    await passthrough('vault.shop.svc.clusterset.local');
    expect(vaultBackend.received()).toBe(0);
    expect(
      await metric(beta, 'meshfed_refused_total', { listener: 'eastWest', reason: 'policy-denied' }),
    ).toBe(before + 1);
  });

  test('an ALLOW that names only the port admits passthrough', async () => {
    const done = passthrough('certs.shop.svc.clusterset.local');
    await waitFor(() => certsBackend.received() > 0, { timeoutMs: 5_000 });
    closers.at(-1)?.();
    await done;
  });
});
