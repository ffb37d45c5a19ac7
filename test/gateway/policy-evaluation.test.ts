import {
  type AuthorizationPolicy,
  type AuthorizationRule,
  buildPolicySet,
  type PolicyDocument,
  validatePolicyDocuments,
} from '../../core/index.ts';
import {
  admit,
  chooseRoute,
  compileAuthorization,
  compileFaults,
  compilePolicy,
  compileSplit,
  evaluateAuthorization,
  explainAuthorization,
  faultsFor,
  grpcCall,
  policyPath,
  RateLimiter,
} from '../../gateway/policy/index.ts';
import { seeded } from './balancer/fixtures.ts';
import { policyDoc } from './policy-view.ts';

// The evaluation functions the gateway layers and `meshfed policy explain` share, without a gateway.

const TD = 'meshfed.test';
const wl = (cluster: string, ns: string, sa: string) => `spiffe://${TD}/cluster/${cluster}/ns/${ns}/sa/${sa}`;

function docs(...raw: unknown[]): PolicyDocument[] {
  return validatePolicyDocuments(raw, 'test');
}

function authz(rules: unknown[], name = 'p') {
  const [doc] = docs(policyDoc('AuthorizationPolicy', name, { target: { service: 'shop/api' }, rules }));
  return compileAuthorization([doc as AuthorizationPolicy]);
}

describe('policyPath', () => {
  test.each([
    ['/a/b?x=1', '/a/b'],
    ['/', '/'],
    ['//admin', '/admin'],
    ['/./admin', '/admin'],
    ['/x/../admin/', '/admin/'],
    ['/%61dmin', '/admin'],
    ['/a%2Fb', '/a%2Fb'],
    ['/a%2fb', '/a%2Fb'],
    ['/../../etc', '/etc'],
    ['/a/.', '/a/'],
    ['db.shop.svc.clusterset.local:5432', ''],
  ])('%s → %s', (target, path) => {
    expect(policyPath(target)).toBe(path);
  });
});

test('grpcCall reads /pkg.Service/Method and nothing else', () => {
  expect(grpcCall('/pkg.Svc/Get')).toEqual({ service: 'pkg.Svc', method: 'Get' });
  for (const p of ['/', '/pkg.Svc', '/pkg.Svc/', '//Get', '/a/b/c']) expect(grpcCall(p)).toBeUndefined();
});

describe('evaluateAuthorization', () => {
  test('no policy allows (today’s behaviour)', () => {
    expect(evaluateAuthorization(undefined, { caller: wl('a', 'x', 'y'), sourceCluster: 'a' })).toEqual({
      allowed: true,
      reason: 'no-policy',
    });
  });

  test('DENY rules only: what no DENY matches is allowed', () => {
    const c = authz([{ name: 'no-b', action: 'DENY', from: [{ cluster: 'b' }] }]);
    expect(evaluateAuthorization(c, { sourceCluster: 'a', caller: wl('a', 'x', 'y') }).allowed).toBe(true);
    expect(evaluateAuthorization(c, { sourceCluster: 'b', caller: wl('b', 'x', 'y') })).toEqual({
      allowed: false,
      reason: 'deny-rule',
      rule: 'p/no-b',
    });
  });

  test('the first DENY in document order is reported, whichever index holds it', () => {
    const c = authz([
      { name: 'by-pattern', action: 'DENY', from: [{ namespace: 'x*' }] },
      { name: 'by-cluster', action: 'DENY', from: [{ cluster: 'a' }] },
      { name: 'by-id', action: 'DENY', from: [{ spiffeId: wl('a', 'x', 'y') }], to: [{ methods: ['GET'] }] },
    ]);
    const d = evaluateAuthorization(c, {
      sourceCluster: 'a',
      caller: wl('a', 'x', 'y'),
      method: 'GET',
      path: '/',
    });
    expect(d.rule).toBe('p/by-pattern');
    const e = explainAuthorization(c, {
      sourceCluster: 'a',
      caller: wl('a', 'x', 'y'),
      method: 'GET',
      path: '/',
    });
    expect(e.matched.map((m) => m.rule)).toEqual(['p/by-pattern', 'p/by-cluster', 'p/by-id']);
  });

  test('an anonymous caller is known by its cluster only: SPIFFE ID, namespace and account rules never match it', () => {
    const [p, q] = docs(
      policyDoc('AuthorizationPolicy', 'p', {
        target: { service: 'shop/api' },
        rules: [{ name: 'any-id', action: 'ALLOW', from: [{ spiffeId: '*' }] }],
      }),
      policyDoc('AuthorizationPolicy', 'q', {
        target: { service: 'shop/api' },
        rules: [{ name: 'ns', action: 'ALLOW', from: [{ namespace: '*' }] }],
      }),
    );
    const c = compileAuthorization([p, q] as AuthorizationPolicy[]);
    const anon = { caller: `spiffe://${TD}/cluster/a/anonymous`, sourceCluster: 'a' };
    expect(evaluateAuthorization(c, anon)).toMatchObject({ allowed: false, rule: 'default-deny' });
    expect(evaluateAuthorization(c, { caller: wl('a', 'n', 's'), sourceCluster: 'a' })).toMatchObject({
      allowed: true,
      rule: 'p/any-id',
    });
  });

  test('the cluster a rule tests is the verified source cluster, not the one a SPIFFE ID names', () => {
    const c = authz([{ name: 'a-only', action: 'ALLOW', from: [{ cluster: 'a' }] }]);
    expect(evaluateAuthorization(c, { caller: wl('a', 'n', 's'), sourceCluster: 'b' }).allowed).toBe(false);
  });

  test('an unknown caller (passthrough) fails closed', () => {
    const c = authz([
      { name: 'no-b', action: 'DENY', from: [{ cluster: 'b' }], to: [{ ports: [9000] }] },
      { name: 'port', action: 'ALLOW', to: [{ ports: [8443] }] },
      { name: 'ns', action: 'ALLOW', from: [{ namespace: 'shop' }] },
    ]);
    expect(evaluateAuthorization(c, { port: 8443 })).toMatchObject({ allowed: true, rule: 'p/port' });
    // the DENY might apply to a caller of b: refused
    expect(evaluateAuthorization(c, { port: 9000 })).toMatchObject({ allowed: false, rule: 'p/no-b' });
    // no ALLOW without a caller condition admits it
    expect(evaluateAuthorization(c, { port: 7000 })).toMatchObject({ allowed: false, rule: 'default-deny' });
    const e = explainAuthorization(c, { port: 9000 });
    expect(e.undecided.map((u) => u.rule)).toEqual(['p/no-b', 'p/ns']);
  });

  test('gRPC conditions match only gRPC calls; CONNECT matches no path', () => {
    const c = authz([
      { name: 'grpc', action: 'ALLOW', to: [{ grpc: { service: 'pkg.Svc' } }] },
      { name: 'root', action: 'ALLOW', to: [{ paths: [{ prefix: '/' }] }], from: [{ cluster: 'z' }] },
    ]);
    const base = { caller: wl('a', 'n', 's'), sourceCluster: 'a', method: 'POST', path: '/pkg.Svc/Get' };
    expect(evaluateAuthorization(c, { ...base, grpc: { service: 'pkg.Svc', method: 'Get' } }).allowed).toBe(
      true,
    );
    expect(evaluateAuthorization(c, base).allowed).toBe(false);
    expect(
      evaluateAuthorization(c, { caller: wl('z', 'n', 's'), sourceCluster: 'z', method: 'CONNECT', path: '' })
        .allowed,
    ).toBe(false);
  });

  /** The semantics written the plain way, to hold the indexed evaluation against. */
  function reference(
    rules: AuthorizationRule[],
    call: { caller: string; sourceCluster: string; method: string; path: string },
  ) {
    const parts = call.caller.split('/');
    const facts = { cluster: call.sourceCluster, namespace: parts[6], serviceAccount: parts[8] };
    const pat = (p: string | undefined, v: string | undefined) =>
      p === undefined ||
      (v !== undefined &&
        (p === '*' ||
          (p.endsWith('*')
            ? v.startsWith(p.slice(0, -1))
            : p.startsWith('*')
              ? v.endsWith(p.slice(1))
              : v === p)));
    const matches = (r: AuthorizationRule) =>
      (!r.from ||
        r.from.some(
          (f) =>
            pat(f.spiffeId, call.caller) &&
            pat(f.cluster, facts.cluster) &&
            pat(f.namespace, facts.namespace) &&
            pat(f.serviceAccount, facts.serviceAccount),
        )) &&
      (!r.to ||
        r.to.some(
          (t) =>
            (!t.methods || t.methods.includes(call.method)) &&
            (!t.paths ||
              t.paths.some((p) =>
                p.exact !== undefined ? call.path === p.exact : call.path.startsWith(p.prefix!),
              )),
        ));
    const deny = rules.find((r) => r.action === 'DENY' && matches(r));
    if (deny) return { allowed: false, rule: `p/${deny.name}` };
    if (!rules.some((r) => r.action === 'ALLOW')) return { allowed: true, rule: undefined };
    const allow = rules.find((r) => r.action === 'ALLOW' && matches(r));
    return allow ? { allowed: true, rule: `p/${allow.name}` } : { allowed: false, rule: 'default-deny' };
  }

  test('the indexed evaluation agrees with the plain semantics on 300 random policies', () => {
    const random = seeded(13);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const clusters = ['a', 'b', 'c'];
    const names = ['n1', 'n2'];
    const accounts = ['s1', 's2', 's3'];
    for (let round = 0; round < 300; round++) {
      const rules: AuthorizationRule[] = [];
      const count = 1 + Math.floor(random() * 6);
      for (let i = 0; i < count; i++) {
        const from = Array.from({ length: 1 + Math.floor(random() * 2) }, () => {
          const kind = Math.floor(random() * 4);
          if (kind === 0) return { spiffeId: wl(pick(clusters), pick(names), pick(accounts)) };
          if (kind === 1) return { cluster: pick(clusters) };
          if (kind === 2) return { cluster: pick(clusters), namespace: pick([...names, 'n*']) };
          return { serviceAccount: pick([...accounts, '*3']) };
        });
        const rule: AuthorizationRule = {
          name: `r${i}`,
          action: random() < 0.3 ? 'DENY' : 'ALLOW',
          ...(random() < 0.8 ? { from } : {}),
          ...(random() < 0.4
            ? { to: [{ methods: [pick(['GET', 'POST'])], paths: [{ prefix: pick(['/a', '/b']) }] }] }
            : {}),
        };
        rules.push(rule);
      }
      const compiled = compileAuthorization([
        {
          apiVersion: 'meshfed.io/v1alpha1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'p' },
          spec: { target: { service: 'shop/api' }, rules },
        },
      ]);
      for (let k = 0; k < 10; k++) {
        const cluster = pick(clusters);
        const call = {
          caller: wl(cluster, pick(names), pick(accounts)),
          sourceCluster: cluster,
          method: pick(['GET', 'POST']),
          path: pick(['/a/x', '/b', '/c']),
        };
        const d = evaluateAuthorization(compiled, call);
        const want = reference(rules, call);
        expect({ round, allowed: d.allowed, rule: d.rule }).toEqual({ round, ...want });
      }
    }
  });
});

describe('chooseRoute and faultsFor', () => {
  const [split] = docs(
    policyDoc('TrafficSplit', 's', {
      service: 'shop/orders',
      routes: [
        {
          name: 'h',
          match: { headers: [{ name: 'x-g', prefix: 'be' }] },
          backends: [{ service: 'shop/v3', weight: 1 }],
        },
        {
          name: 'all',
          backends: [
            { service: 'shop/orders', weight: 90 },
            { service: 'shop/off', weight: 0 },
            { service: 'shop/v2', cluster: 'b', weight: 10 },
          ],
        },
      ],
    }),
  );
  const compiled = compileSplit(split as never);
  const req = (headers = {}) => ({ method: 'GET', path: '/', headers });

  test('weights draw by their running sums; a 0 weight is never chosen', () => {
    expect(chooseRoute(compiled, req(), () => 0)?.backend).toMatchObject({ name: 'orders' });
    expect(chooseRoute(compiled, req(), () => 0.899)?.backend).toMatchObject({ name: 'orders' });
    expect(chooseRoute(compiled, req(), () => 0.9)).toEqual({
      route: 's/all',
      backend: { namespace: 'shop', name: 'v2', cluster: 'b', weight: 10 },
    });
    expect(chooseRoute(compiled, req(), () => 0.999999)?.backend.name).toBe('v2');
  });

  test('the first route whose match holds decides', () => {
    expect(chooseRoute(compiled, req({ 'x-g': 'beta' }), () => 0.5)?.route).toBe('s/h');
    expect(chooseRoute(compiled, req({ 'x-g': 'alpha' }), () => 0.5)?.route).toBe('s/all');
  });

  test('a delay and an abort are drawn each with its own percentage', () => {
    const [doc] = docs(
      policyDoc('FaultInjection', 'f', {
        service: 'shop/orders',
        rules: [
          { name: 'both', delay: { fixed: 50, percentage: 50 }, abort: { httpStatus: 500, percentage: 10 } },
        ],
      }),
    );
    const faults = compileFaults(doc as never);
    const draws = [0.2, 0.05];
    expect(faultsFor(faults, req(), () => draws.shift()!)).toEqual({
      rule: 'f/both',
      delayMs: 50,
      abort: { httpStatus: 500 },
    });
    expect(faultsFor(faults, req(), () => 0.6)).toBeUndefined();
  });
});

describe('rate limiters', () => {
  const limit = (spec: Record<string, unknown>, name = 'l') =>
    docs(policyDoc('RateLimit', name, { target: { service: 'shop/api' }, ...spec }))[0] as never;

  test('a bucket admits its burst, then one request per refill interval, and says how long to wait', () => {
    const l = new RateLimiter(limit({ requests: 10, interval: 1000, burst: 2 }), 0);
    expect(admit([l], {}, 0).waitMs).toBe(0);
    expect(admit([l], {}, 0).waitMs).toBe(0);
    expect(admit([l], {}, 0)).toMatchObject({ waitMs: 100, limiter: l });
    expect(admit([l], {}, 50).waitMs).toBe(50);
    expect(admit([l], {}, 100).waitMs).toBe(0);
  });

  test('a refused call takes no token from another limit of the service', () => {
    const wide = new RateLimiter(limit({ requests: 100, interval: 1000 }, 'wide'), 0);
    const narrow = new RateLimiter(limit({ requests: 1, interval: 1000 }, 'narrow'), 0);
    expect(admit([wide, narrow], {}, 0).waitMs).toBe(0);
    for (let i = 0; i < 5; i++) expect(admit([wide, narrow], {}, 0).limiter).toBe(narrow);
    expect(wide.wait('', 0)).toBe(0);
    // 99 tokens left in the wide bucket: 5 refusals spent none
    for (let i = 0; i < 99; i++) wide.take('', 0);
    expect(wide.wait('', 0)).toBeGreaterThan(0);
  });

  test('per-caller buckets are bounded: the least recently used caller is evicted', () => {
    const l = new RateLimiter(limit({ requests: 1, interval: 60_000, bucketPer: 'caller' }), 0, 3);
    for (const c of ['a', 'b', 'c']) expect(admit([l], { caller: c }, 0).waitMs).toBe(0);
    expect(admit([l], { caller: 'a' }, 0).waitMs).toBeGreaterThan(0); // a is now most recent
    expect(admit([l], { caller: 'd' }, 0).waitMs).toBe(0); // evicts b
    expect(l.size).toBe(3);
    expect(admit([l], { caller: 'b' }, 0).waitMs).toBe(0); // b came back to a full bucket
    expect(admit([l], { caller: 'a' }, 0).waitMs).toBeGreaterThan(0);
  });
});

describe('compilePolicy', () => {
  const set = (raw: unknown[], revision: number) => buildPolicySet(docs(...raw), { revision, scopes: [] });
  const limitDoc = (requests: number) =>
    policyDoc('RateLimit', 'l', { target: { service: 'shop/api' }, requests, interval: 1000, burst: 1 });

  test('documents pinned to another cluster are left out', () => {
    const s = set(
      [
        policyDoc('AuthorizationPolicy', 'here', {
          target: { service: 'shop/api', cluster: 'a' },
          rules: [{ name: 'x', action: 'DENY' }],
        }),
        policyDoc('AuthorizationPolicy', 'there', {
          target: { service: 'shop/web', cluster: 'b' },
          rules: [{ name: 'x', action: 'DENY' }],
        }),
      ],
      1,
    );
    const c = compilePolicy(s, 'a');
    expect(c.services.get('shop/api')?.authorization).toBeDefined();
    expect(c.services.get('shop/web')?.authorization).toBeUndefined();
  });

  test('a rate limiter survives a policy change that leaves it as it was, and restarts when it changes', () => {
    const first = compilePolicy(set([limitDoc(5)], 1), 'a', { now: 0 });
    const l = first.services.get('shop/api')!.rateLimits[0]!;
    l.take('', 0);
    const same = compilePolicy(set([limitDoc(5)], 2), 'a', { now: 0, previous: first });
    expect(same.services.get('shop/api')!.rateLimits[0]).toBe(l);
    const changed = compilePolicy(set([limitDoc(6)], 3), 'a', { now: 0, previous: same });
    expect(changed.services.get('shop/api')!.rateLimits[0]).not.toBe(l);
  });
});
